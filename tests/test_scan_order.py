"""The serial context's scan orders: the wavefront covers every position once, in w + 3h - 3
fronts, and no position is coded before any input its mask reads."""

import jax
import numpy as np
import pytest

from conftest import tiny_model
from jdc_jax.codec import group_coding, scan_order
from jdc_jax.entropy import latent_coding

SIZES = [(1, 1), (1, 7), (6, 1), (4, 5), (7, 9), (32, 48)]


@pytest.fixture(scope="module")
def context():
    """The real serial context of a JICD base group: (its causal taps mask, a function y_hat
    (h, w, C) -> the masked convolution's features (h, w, 2C) with the model's weights)."""
    model, params = tiny_model("jicd")
    group = model.bind({"params": params}).base_parameters
    features = jax.jit(lambda y_hat: group.context_features(y_hat[None])[0])
    return group.serial_context_taps(), features


def front_of_each_position(fronts, height, width) -> np.ndarray:
    """(h, w) int: the index of the front that codes each position; -1 where none does."""
    index = np.full((height, width), -1)
    for number, (rows, cols) in enumerate(fronts):
        assert (index[rows, cols] == -1).all(), "a position is coded twice"
        index[rows, cols] = number
    return index


def test_the_5x5_mask_has_slope_3_and_a_768x512_image_141_fronts(context):
    taps, _ = context
    assert taps.sum() == 12
    assert scan_order.wavefront_slope(taps) == 3
    # 512 x 768 pixels: a 32 x 48 latent.
    assert len(scan_order.scan_fronts(32, 48, taps, "wavefront")) == 48 + 3 * 32 - 3 == 141
    assert len(scan_order.scan_fronts(32, 48, taps, "raster")) == 1536
    assert max(rows.size for rows, _ in scan_order.scan_fronts(32, 48, taps, "wavefront")) == 16


@pytest.mark.parametrize("order", scan_order.SCAN_ORDERS)
@pytest.mark.parametrize("height,width", SIZES)
def test_every_position_is_in_exactly_one_front(context, order, height, width):
    taps, _ = context
    index = front_of_each_position(scan_order.scan_fronts(height, width, taps, order),
                                   height, width)
    assert (index >= 0).all()


def test_raster_fronts_are_single_positions_row_by_row(context):
    taps, _ = context
    fronts = scan_order.scan_fronts(3, 4, taps, "raster")
    assert [(int(r[0]), int(c[0])) for r, c in fronts] == [(r, c) for r in range(3)
                                                           for c in range(4)]


@pytest.mark.parametrize("order", scan_order.SCAN_ORDERS)
@pytest.mark.parametrize("height,width", SIZES)
def test_every_tap_of_a_position_is_coded_in_an_earlier_front(context, order, height, width):
    taps, _ = context
    index = front_of_each_position(scan_order.scan_fronts(height, width, taps, order),
                                   height, width)
    di, dj = scan_order.causal_offsets(taps)
    late = 0
    for row in range(height):
        for col in range(width):
            rows, cols = row + di, col + dj
            inside = (rows >= 0) & (cols >= 0) & (cols < width)
            late += int(np.sum(index[rows[inside], cols[inside]] >= index[row, col]))
    assert late == 0


def _reads_of_later_fronts(features, y_hat, fronts) -> int:
    """Positions whose masked-convolution output changes when every position of its own or a
    later front is zeroed: positions that read an input not yet decoded."""
    height, width = y_hat.shape[:2]
    index = front_of_each_position(fronts, height, width)
    full = np.asarray(features(y_hat))
    changed = 0
    for number, (rows, cols) in enumerate(fronts):
        decoded = np.where((index < number)[..., None], y_hat, 0.0)
        changed += int(np.sum(np.any(np.asarray(features(decoded))[rows, cols]
                                     != full[rows, cols], axis=-1)))
    return changed


def test_the_model_masked_convolution_reads_only_earlier_wavefronts(context):
    """The real layer (its mask and weights), not the tap list: at every front, the context
    features from the latent decoded so far equal those of the whole latent."""
    taps, features = context
    rng = np.random.default_rng(0)
    y_hat = rng.integers(1, 6, (7, 11, 12)) * rng.choice([-1.0, 1.0], (7, 11, 12))
    y_hat = y_hat.astype(np.float32)
    for order in scan_order.SCAN_ORDERS:
        assert _reads_of_later_fronts(features, y_hat,
                                      scan_order.scan_fronts(7, 11, taps, order)) == 0
    # The check can fail: fronts of slope 2 (t = j + 2i) put (i - 1, j + 2) on the same front
    # as (i, j), which reads it.
    slope_2 = []
    for front in range(11 + 2 * 6):
        rows = np.array([row for row in range(7) if 0 <= front - 2 * row < 11])
        slope_2.append((rows, front - 2 * rows))
    assert _reads_of_later_fronts(features, y_hat, slope_2) == 6 * 9


def test_coding_loop_hands_each_front_only_already_coded_taps(context):
    """Run the encoder's loop with a spy: every tap a front receives equals the final y_hat
    there (all non-zero), so none was read before it was coded."""
    taps, _ = context
    height, width, channels = 6, 10, 3
    rng = np.random.default_rng(1)
    y = (rng.integers(1, 4, (height, width, channels))
         * rng.choice([-1, 1], (height, width, channels))).astype(np.float32)
    seen = []

    def front_parameters(psi_at, taps_at, extra_at):
        seen.append(taps_at.copy())
        shape = (psi_at.shape[0], channels)
        return np.zeros(shape, np.float32), np.ones(shape, np.float32)

    coder = group_coding.LatentEncoder(y, latent_coding.build_latent_tables(),
                                       round_around_mean=False)
    y_hat = group_coding.code_group(
        coder, context_model="serial", channels=channels, psi=np.zeros((height, width, 2)),
        extra=None, group_parameters=None, front_parameters=front_parameters, causal_taps=taps,
        scan_order="wavefront")
    np.testing.assert_array_equal(y_hat, y)
    di, dj = scan_order.causal_offsets(taps)
    padded = np.pad(y_hat, ((2, 0), (2, 2), (0, 0)))
    fronts = scan_order.scan_fronts(height, width, taps, "wavefront")
    assert len(seen) == len(fronts) == width + 3 * height - 3
    for (rows, cols), taps_at in zip(fronts, seen):
        np.testing.assert_array_equal(taps_at, padded[rows[:, None] + 2 + di,
                                                      cols[:, None] + 2 + dj])


@pytest.mark.parametrize("length,bucket", [(1, 8), (8, 8), (9, 16), (16, 16), (17, 32),
                                           (43, 64)])
def test_fronts_are_padded_to_power_of_two_buckets_of_at_least_eight(length, bucket):
    assert scan_order.front_bucket(length) == bucket


def test_an_image_size_uses_few_buckets(context):
    taps, _ = context
    assert scan_order.front_buckets(4, 4, taps) == (8,)
    assert scan_order.front_buckets(32, 48, taps) == (8, 16)        # 512 x 768
    assert scan_order.front_buckets(128, 128, taps) == (8, 16, 32, 64)  # 2048 x 2048


def test_masks_that_read_the_centre_or_later_are_refused():
    taps = np.zeros((5, 5), bool)
    taps[2, 3] = True
    with pytest.raises(ValueError, match="^causal taps must precede the window's centre"):
        scan_order.scan_fronts(4, 4, taps, "wavefront")
    with pytest.raises(ValueError, match="^unknown scan order 'zigzag'"):
        scan_order.scan_fronts(4, 4, np.zeros((5, 5), bool), "zigzag")
