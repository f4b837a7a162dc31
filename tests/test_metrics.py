"""PSNR, SSIM and MS-SSIM against closed forms, scikit-image and TensorFlow."""

import math
import os

import numpy as np
import pytest
import skimage.data
from skimage.metrics import structural_similarity

from jdc_jax import metrics


def _noisy_copy(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """A uint8 copy of ``image`` with seeded Gaussian noise of ``sigma`` grey levels."""
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.float64) + rng.normal(0.0, sigma, image.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _random_image(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


IMAGES = {
    "random_11x11": lambda: _random_image(11, 11, seed=1),
    "random_17x23": lambda: _random_image(17, 23, seed=2),
    "random_177x203": lambda: _random_image(177, 203, seed=3),
    "astronaut_481x321": lambda: skimage.data.astronaut()[:481, :321],
    "chelsea_300x451": lambda: skimage.data.chelsea(),
}
MULTISCALE_IMAGES = ["random_177x203", "astronaut_481x321", "chelsea_300x451"]


def test_psnr_of_constant_offset_of_one_is_48_1308_db():
    clean = _random_image(32, 48, seed=0) // 2
    # MSE = 1, so PSNR = 10 log10(255^2 / 1) = 48.1308 dB.
    assert metrics.psnr(clean, clean + 1) == pytest.approx(48.1308036087, abs=1e-9)


def test_psnr_of_identical_images_is_infinite():
    image = _random_image(8, 8, seed=0)
    assert metrics.psnr(image, image) == math.inf


def test_psnr_in_unit_range_equals_psnr_in_255_range():
    clean = _random_image(16, 16, seed=4)
    noisy = _noisy_copy(clean, sigma=10.0, seed=5)
    in_255 = metrics.psnr(clean, noisy)
    in_unit = metrics.psnr(clean / 255.0, noisy / 255.0, data_range=1.0)
    assert in_unit == pytest.approx(in_255, abs=1e-9)


@pytest.mark.parametrize("image_name", sorted(IMAGES))
def test_ssim_matches_skimage_gaussian_population_convention(image_name):
    clean = IMAGES[image_name]()
    noisy = _noisy_copy(clean, sigma=20.0, seed=6)
    expected = structural_similarity(
        clean,
        noisy,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert metrics.ssim(clean, noisy) == pytest.approx(expected, abs=1e-6)


def test_ssim_of_identical_images_is_one():
    image = _random_image(20, 30, seed=7)
    assert metrics.ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_uint8_equals_ssim_of_float_in_unit_range():
    clean = _random_image(24, 24, seed=8)
    noisy = _noisy_copy(clean, sigma=15.0, seed=9)
    expected = metrics.ssim(clean, noisy)
    assert metrics.ssim(clean / 255.0, noisy / 255.0, data_range=1.0) == pytest.approx(
        expected, abs=1e-12
    )


@pytest.fixture(scope="module")
def tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("tensorflow")


def _tf_ms_ssim(tensorflow, a, b, power_factors=metrics.MS_SSIM_WEIGHTS) -> float:
    return float(
        tensorflow.image.ssim_multiscale(
            a.astype(np.float32), b.astype(np.float32), 255.0, power_factors=power_factors
        )
    )


@pytest.mark.parametrize("image_name", MULTISCALE_IMAGES)
def test_ms_ssim_matches_tensorflow(tensorflow, image_name):
    clean = IMAGES[image_name]()
    noisy = _noisy_copy(clean, sigma=25.0, seed=10)
    expected = _tf_ms_ssim(tensorflow, clean, noisy)
    assert metrics.ms_ssim(clean, noisy) == pytest.approx(expected, abs=1e-4)


def test_ms_ssim_of_unrelated_images_matches_tensorflow(tensorflow):
    # Low similarity exercises the clipping of negative contrast-structure terms.
    first = _random_image(200, 190, seed=11)
    second = _random_image(200, 190, seed=12)
    expected = _tf_ms_ssim(tensorflow, first, second)
    assert metrics.ms_ssim(first, second) == pytest.approx(expected, abs=1e-4)


def test_ms_ssim_of_small_image_uses_three_renormalized_scales(tensorflow):
    clean = _random_image(100, 60, seed=13)
    noisy = _noisy_copy(clean, sigma=25.0, seed=14)
    # 60 -> 30 -> 15 px are at least the 11-px window; the next scale (8 px) is not.
    assert metrics.ms_ssim_scale_count(100, 60) == 3
    weights = np.asarray(metrics.MS_SSIM_WEIGHTS[:3])
    expected = _tf_ms_ssim(tensorflow, clean, noisy, power_factors=weights / weights.sum())
    assert metrics.ms_ssim(clean, noisy) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    "height, width, scales", [(161, 161, 5), (512, 768, 5), (160, 500, 4), (21, 21, 2), (11, 40, 1)]
)
def test_ms_ssim_scale_count_follows_ceil_halving(height, width, scales):
    assert metrics.ms_ssim_scale_count(height, width) == scales


def test_ms_ssim_with_one_scale_equals_ssim():
    clean = _random_image(20, 20, seed=15)
    noisy = _noisy_copy(clean, sigma=10.0, seed=16)
    assert metrics.ms_ssim(clean, noisy) == pytest.approx(metrics.ssim(clean, noisy), abs=1e-12)


def test_ms_ssim_of_identical_images_is_one():
    image = _random_image(176, 176, seed=17)
    assert metrics.ms_ssim(image, image) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("metric", [metrics.psnr, metrics.ssim, metrics.ms_ssim])
def test_metrics_reject_images_of_different_shapes(metric):
    with pytest.raises(ValueError, match="differ in shape"):
        metric(np.zeros((16, 16, 3)), np.zeros((16, 17, 3)))


@pytest.mark.parametrize("metric", [metrics.psnr, metrics.ssim, metrics.ms_ssim])
def test_metrics_reject_arrays_that_are_not_hwc_images(metric):
    with pytest.raises(ValueError, match=r"shape \(H, W, C\)"):
        metric(np.zeros((16, 16)), np.zeros((16, 16)))


@pytest.mark.parametrize("metric", [metrics.ssim, metrics.ms_ssim])
def test_window_metrics_reject_images_smaller_than_the_window(metric):
    with pytest.raises(ValueError, match="at least 11 x 11"):
        metric(np.zeros((10, 40, 3)), np.zeros((10, 40, 3)))


def test_metrics_reject_non_positive_data_range():
    with pytest.raises(ValueError, match="data_range"):
        metrics.psnr(np.zeros((4, 4, 3)), np.ones((4, 4, 3)), data_range=0.0)
