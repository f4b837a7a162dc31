"""Tiled analysis and synthesis: tile geometry, agreement with the whole-image transforms, and
files that are those of the untiled coder."""

import numpy as np
import pytest

from conftest import generated_image, tiny_model
from jdc_jax import export, exported
from jdc_jax.codec import Codec, file_format
from jdc_jax.codec.file_codec import FileCodec
from jdc_jax.codec.tiling import (LATENT_STRIDE, Tiling, tile_grid, tiled_analysis,
                                  tiled_synthesis)

# Padded 256 x 320 (image 250 x 300). The tiny models use the Cheng2020 transforms, whose
# analysis reaches 57 px and synthesis 7 latent positions (112 px) beyond a position.
IMAGE_SIZE = (250, 300)
PADDED_SIZE = (256, 320)
# Analysis windows of at most 192 x 192 with a 64 px halo: 2 x 3 tiles of 192 x 192.
# Synthesis windows of at most 288 x 288 with a 128 px halo: rows whole, 2 tiles of 256 x 288.
SMALL_TILES = Tiling(max_analysis_pixels=192 * 192, max_synthesis_pixels=288 * 288,
                     analysis_halo=64, synthesis_halo=128)
NO_TILES = Tiling(max_analysis_pixels=0, max_synthesis_pixels=0)
GEOMETRY_CASES = [(height, width, max_pixels, halo)
                  for height, width in ((64, 64), (256, 320), (512, 64), (64, 1280), (704, 960),
                                        (4032, 6016))
                  for max_pixels, halo in ((0, 64), (48 * 48, 16), (192 * 192, 64),
                                           (300 * 300, 64), (2048 * 2048, 64),
                                           (512 * 512, 128))]


def _coverage(tiles, height, width):
    """How many interiors hold each 16 x 16 block of the padded image."""
    count = np.zeros((height // LATENT_STRIDE, width // LATENT_STRIDE), np.int64)
    for tile in tiles:
        count[tile.interior_rows.divided(LATENT_STRIDE),
              tile.interior_cols.divided(LATENT_STRIDE)] += 1
    return count


@pytest.mark.parametrize("height, width, max_pixels, halo", GEOMETRY_CASES)
def test_interiors_cover_the_padded_image_exactly_once_on_the_latent_grid(height, width,
                                                                           max_pixels, halo):
    tiles = tile_grid(height, width, max_pixels, halo)
    for tile in tiles:
        for span in (tile.interior_rows, tile.interior_cols, tile.window_rows, tile.window_cols):
            assert span.start % LATENT_STRIDE == 0 and span.stop % LATENT_STRIDE == 0
    coverage = _coverage(tiles, height, width)
    assert coverage.min() == 1 and coverage.max() == 1


@pytest.mark.parametrize("height, width, max_pixels, halo", GEOMETRY_CASES)
def test_windows_hold_interior_and_halo_clipped_at_the_border(height, width, max_pixels, halo):
    for tile in tile_grid(height, width, max_pixels, halo):
        for window, interior, size in ((tile.window_rows, tile.interior_rows, height),
                                       (tile.window_cols, tile.interior_cols, width)):
            assert 0 <= window.start <= max(interior.start - halo, 0)
            assert min(interior.stop + halo, size) <= window.stop <= size


@pytest.mark.parametrize("height, width, max_pixels, halo", GEOMETRY_CASES)
def test_windows_share_one_shape_within_the_pixel_bound(height, width, max_pixels, halo):
    tiles = tile_grid(height, width, max_pixels, halo)
    shapes = {(tile.window_rows.size, tile.window_cols.size) for tile in tiles}
    assert len(shapes) == 1
    (window_height, window_width), = shapes
    if max_pixels == 0 or height * width <= max_pixels:
        assert len(tiles) == 1 and (window_height, window_width) == (height, width)
    else:
        assert len(tiles) > 1 and window_height * window_width <= max_pixels


def test_24_megapixel_image_takes_the_fewest_and_smallest_windows():
    # 6000 x 4000 pads to 6016 x 4032. Windows of at most 2048 advance by at most 2048 - 128
    # pixels: 2 rows reach 2048 + 1920 = 3968 < 4032, so 3 rows, and 3 rows of 1424 reach
    # 1424 + 2 * 1296 = 4016 < 4032, of 1440 reach 4064; 3 columns reach 5888 < 6016, so 4, and
    # 4 columns of 1600 reach 1600 + 3 * 1472 = 6016.
    tiles = Tiling().analysis_tiles(4032, 6016)
    assert len(tiles) == 12
    assert {(tile.window_rows.size, tile.window_cols.size) for tile in tiles} == {(1440, 1600)}


def test_narrow_image_keeps_its_short_side_whole_and_spends_the_budget_on_the_long_one():
    # Windows of 64 rows may be 65536 / 64 = 1024 wide: 4 reach 1024 + 3 x 896 = 3712 < 4096,
    # so 5, of 928 (928 + 4 x 800 = 4128; 912 + 4 x 784 = 4048 < 4096).
    tiles = tile_grid(64, 4096, 256 * 256, 64)
    assert {(tile.window_rows.size, tile.window_cols.size) for tile in tiles} == {(64, 928)}
    assert len(tiles) == 5


def _block_corners(x):
    """A stand-in analysis: (1, h, w, 3) -> (1, h/16, w/16, 6), two pixels of each 16 x 16
    block, so a misplaced window or interior shows."""
    x = np.asarray(x)
    return np.concatenate([x[:, ::16, ::16], x[:, 15::16, 15::16]], axis=-1)


def _upsampled(*latents):
    """A stand-in synthesis: (1, h, w, C_i) -> (1, 16h, 16w, 3), each latent position repeated."""
    first = np.concatenate(latents, axis=-1)[..., :3]
    return np.repeat(np.repeat(first, 16, axis=1), 16, axis=2)


def _recorded_block_corners(calls):
    """`_block_corners` that appends each input's shape to `calls`."""
    def analysis(x):
        calls.append(x.shape)
        return _block_corners(x)
    return analysis


def test_tiles_are_assembled_where_they_belong():
    image = generated_image(*PADDED_SIZE, seed=5)
    calls = []
    analysis = _recorded_block_corners(calls)
    expected = _block_corners(image[None].astype(np.float32) / 255.0)[0]
    np.testing.assert_array_equal(
        tiled_analysis(analysis, image, SMALL_TILES.analysis_tiles(*PADDED_SIZE)), expected)
    assert calls == [(1, 192, 192, 3)] * 6
    latents = [expected[..., :2], expected[..., 2:]]
    np.testing.assert_array_equal(
        tiled_synthesis(_upsampled, latents, SMALL_TILES.synthesis_tiles(*PADDED_SIZE)),
        _upsampled(*(latent[None] for latent in latents))[0])


def test_no_tiling_runs_each_transform_once_on_the_whole_image():
    image = generated_image(*PADDED_SIZE, seed=5)
    calls = []
    tiled_analysis(_recorded_block_corners(calls), image, NO_TILES.analysis_tiles(*PADDED_SIZE))
    assert calls == [(1, *PADDED_SIZE, 3)]
    assert tile_grid(8192, 8192, 0, 64)[0].window_rows.size == 8192


@pytest.fixture(scope="module")
def jicd():
    """A tiny JICD (serial context), untiled and with small tiles, and its image."""
    model, params = tiny_model("jicd")
    untiled = Codec(model, params, tiling=NO_TILES)
    tiled = Codec(model, params, tiling=SMALL_TILES)
    return untiled, tiled, generated_image(*IMAGE_SIZE, seed=7)


def _padded(image):
    return np.pad(image, ((0, PADDED_SIZE[0] - image.shape[0]),
                          (0, PADDED_SIZE[1] - image.shape[1]), (0, 0)), mode="edge")


def test_tiled_latent_equals_the_whole_image_latent_when_the_halo_covers_the_receptive_field(
        jicd):
    untiled, _, image = jicd
    analysis = untiled._functions.analysis
    whole = tiled_analysis(analysis, _padded(image), NO_TILES.analysis_tiles(*PADDED_SIZE))
    tiled = tiled_analysis(analysis, _padded(image), SMALL_TILES.analysis_tiles(*PADDED_SIZE))
    # Bit-identical on XLA:CPU in a process without TensorFlow; once TensorFlow is loaded (any
    # test that imports jdc_jax.train), up to 4.2e-7 apart on 1.6 % of the values.
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-6)
    # A 16 px halo does not cover the 57 px reach: tiles then see their zero-padded edges.
    narrow = tiled_analysis(analysis, _padded(image), tile_grid(*PADDED_SIZE, 192 * 192, 16))
    assert np.max(np.abs(narrow - whole)) > 1e-2


def test_tiled_synthesis_equals_the_whole_image_synthesis(jicd):
    untiled, _, image = jicd
    latents = untiled.encode(image).latents
    for output, streams in (("denoised", ("base",)), ("noisy", ("base", "enhancement"))):
        synthesis = untiled._synthesis[output]
        inputs = [latents[stream] for stream in streams]
        whole = tiled_synthesis(synthesis, inputs, NO_TILES.synthesis_tiles(*PADDED_SIZE))
        tiled = tiled_synthesis(synthesis, inputs, SMALL_TILES.synthesis_tiles(*PADDED_SIZE))
        np.testing.assert_array_equal(tiled, whole)


def test_tiled_compress_writes_the_untiled_file_and_decodes_to_the_same_pixels(jicd):
    untiled, tiled, image = jicd
    encoding = tiled.encode(image)
    assert encoding.data == untiled.compress(image)
    info = tiled.info(encoding.data)
    assert (info["height"], info["width"]) == IMAGE_SIZE
    assert (info["padded_height"], info["padded_width"]) == PADDED_SIZE
    for output in tiled.outputs:
        decoding = tiled.decode(encoding.data, output)
        for stream, symbols in decoding.symbols.items():
            np.testing.assert_array_equal(symbols, encoding.symbols[stream])
        np.testing.assert_array_equal(decoding.image, untiled.decode(encoding.data, output).image)
        assert decoding.image.shape == (*IMAGE_SIZE, 3)


def test_default_codec_codes_small_images_untiled_and_tiling_is_replaceable(jicd):
    untiled, _, image = jicd
    model_id = untiled.model_id
    default = Codec(untiled.model, untiled.params)
    assert default.tiling == Tiling()
    assert len(default.tiling.analysis_tiles(*PADDED_SIZE)) == 1
    assert default.compress(image) == untiled.compress(image)
    default.tiling = SMALL_TILES
    assert default.compress(image) == untiled.compress(image)
    assert default.model_id == model_id


def test_exported_codec_tiles_like_the_native_one(tmp_path):
    model, params = tiny_model("hyperprior")
    native = Codec(model, params, tiling=SMALL_TILES)
    export.write_package(native, tmp_path / "package")
    loaded = exported.Codec.load(tmp_path / "package", tiling=SMALL_TILES)
    assert loaded.tiling == SMALL_TILES
    image = generated_image(*IMAGE_SIZE, seed=9)
    data = native.compress(image)
    assert loaded.compress(image) == data
    np.testing.assert_array_equal(loaded.decompress(data), native.decompress(data))
    assert len(file_format.parse_file(data).chunks["base"]) > 0


@pytest.mark.parametrize("fields, message", [
    (dict(analysis_halo=40), "analysis_halo must be a multiple of 16"),
    (dict(synthesis_halo=-16), "synthesis_halo must be a non-negative integer"),
    (dict(max_analysis_pixels=1000), "max_analysis_pixels = 1000 cannot hold one tile"),
    (dict(max_synthesis_pixels=2.5e7), "max_synthesis_pixels must be a non-negative integer"),
])
def test_bad_tilings_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        Tiling(**fields)


def test_bad_tile_grids_and_tiling_arguments_are_refused(jicd):
    with pytest.raises(ValueError, match="padded height must be a positive multiple of 16"):
        tile_grid(100, 320, 0, 64)
    untiled = jicd[0]
    with pytest.raises(ValueError, match="tiling must be a jdc_jax.codec.tiling.Tiling"):
        FileCodec(functions=untiled._functions, model_kind=untiled.model_kind,
                  model_id=untiled.model_id, context_model=untiled.context_model,
                  streams=untiled.streams, groups=untiled.groups,
                  side_channels=untiled.side_channels, side_tables=untiled.side_tables,
                  latent_tables=untiled.latent_tables, tiling={"max_analysis_pixels": 0})
