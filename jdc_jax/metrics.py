"""Full-reference image-quality metrics: PSNR, SSIM and MS-SSIM, in numpy float64.

Conventions shared by every function here:

- ``a`` and ``b`` are two images of the same shape ``(H, W, C)`` (RGB: ``C = 3``), uint8 or
  float. Pixel values are used as they are, never rescaled; ``data_range`` is the span of the
  pixel range: ``255.0`` (the default) for [0, 255] images such as decoded uint8 files, ``1.0``
  for model outputs in [0, 1]. Everything is computed in float64.
- The metrics are symmetric in ``a`` and ``b``.

PSNR
    ``10 * log10(data_range**2 / MSE)`` in dB, MSE over all H * W * C values. Identical images
    give ``inf`` (MSE = 0), returned without a warning; callers that average PSNR over a
    data set must decide what a lossless image means for them.

SSIM (Wang, Bovik, Sheikh, Simoncelli 2004, "Image quality assessment: from error visibility
to structural similarity")
    Per channel, with Gaussian-weighted local statistics (11 x 11 window, sigma 1.5, weights
    summing to 1) and C1 = (0.01 * data_range)**2, C2 = (0.03 * data_range)**2::

        luminance          = (2 mu_a mu_b + C1) / (mu_a**2 + mu_b**2 + C1)
        contrast_structure = (2 sigma_ab + C2) / (sigma_a**2 + sigma_b**2 + C2)

    where the variances and covariance are the weighted population moments
    (``E[ab] - mu_a mu_b``, no sample-covariance correction). The SSIM map
    ``luminance * contrast_structure`` is evaluated only where the window lies wholly inside the
    image (a map of ``(H - 10, W - 10)``), averaged over it, and the per-channel means are
    averaged over channels. This is exactly ``skimage.metrics.structural_similarity(a, b,
    channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=data_range)``, whose 5-pixel border crop equals the valid region. Both sides
    must be at least 11 pixels.

MS-SSIM (Wang, Simoncelli, Bovik 2003, "Multi-scale structural similarity for image quality
assessment")
    Per channel, over scales j = 0..M-1 with weights w_j (0.0448, 0.2856, 0.3001, 0.2363,
    0.1333)::

        ms_ssim = prod_{j < M-1} relu(mean cs_j)**w_j  *  relu(mean ssim_{M-1})**w_{M-1}

    with the SSIM statistics above at each scale, then averaged over channels. Between scales
    an image with an odd side is first extended by repeating its last row / column, then 2 x 2
    average-pooled, so a side n becomes ceil(n / 2). This is the convention of
    ``tf.image.ssim_multiscale`` (and, up to the odd-side padding, of pytorch_msssim).

    The standard five scales need a short side of at least 161 pixels (ceil(161 / 16) = 11,
    the window size). Smaller images use the largest M for which every scale is at least 11
    pixels (``ms_ssim_scale_count``) and the first M weights renormalized to sum to 1; their
    scores are not comparable with five-scale MS-SSIM. Below 11 pixels a ValueError is raised.
"""

import math

import numpy as np

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1 = 0.01
K2 = 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _as_float64_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Checks two (H, W, C) numeric images of equal shape and returns them as float64."""
    a = np.asarray(a)
    b = np.asarray(b)
    for name, image in (("a", a), ("b", b)):
        if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
            raise ValueError(f"image {name} has non-numeric dtype {image.dtype}")
        if image.ndim != 3:
            raise ValueError(f"image {name} must have shape (H, W, C), got shape {image.shape}")
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def _check_data_range(data_range: float) -> float:
    data_range = float(data_range)
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive finite number, got {data_range}")
    return data_range


def psnr(a, b, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for identical images.

    Args:
      a, b: images of shape (H, W, C), uint8 or float, in [0, data_range].
      data_range: span of the pixel range (255.0 for [0, 255], 1.0 for [0, 1]).
    """
    a, b = _as_float64_pair(a, b)
    data_range = _check_data_range(data_range)
    mse = float(np.mean(np.square(a - b)))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def _gaussian_window() -> np.ndarray:
    """The 1-D factor of the separable 11 x 11 SSIM window, normalized to sum to 1."""
    offsets = np.arange(WINDOW_SIZE, dtype=np.float64) - (WINDOW_SIZE - 1) / 2
    window = np.exp(-0.5 * np.square(offsets / WINDOW_SIGMA))
    return window / window.sum()


def _filter_valid(images: np.ndarray) -> np.ndarray:
    """Gaussian-weighted local means of (H, W, K) planes, where the window fits: (H-10, W-10, K)."""
    window = _gaussian_window()
    rows = np.lib.stride_tricks.sliding_window_view(images, WINDOW_SIZE, axis=0) @ window
    return np.lib.stride_tricks.sliding_window_view(rows, WINDOW_SIZE, axis=1) @ window


def _ssim_and_contrast_structure(
    a: np.ndarray, b: np.ndarray, data_range: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel means of the SSIM map and of the contrast-structure map, each of shape (C,)."""
    height, width, channels = a.shape
    if min(height, width) < WINDOW_SIZE:
        raise ValueError(
            f"SSIM needs images of at least {WINDOW_SIZE} x {WINDOW_SIZE} pixels, "
            f"got {height} x {width}"
        )
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    # One filtering pass over the five stacked moment planes.
    moments = _filter_valid(np.concatenate([a, b, a * a, b * b, a * b], axis=-1))
    mean_a, mean_b, mean_aa, mean_bb, mean_ab = np.split(moments, 5, axis=-1)
    variance_a = mean_aa - mean_a * mean_a
    variance_b = mean_bb - mean_b * mean_b
    covariance = mean_ab - mean_a * mean_b
    luminance = (2 * mean_a * mean_b + c1) / (mean_a**2 + mean_b**2 + c1)
    contrast_structure = (2 * covariance + c2) / (variance_a + variance_b + c2)
    return (
        np.mean(luminance * contrast_structure, axis=(0, 1)),
        np.mean(contrast_structure, axis=(0, 1)),
    )


def ssim(a, b, data_range: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004), Gaussian window 11 x 11 / sigma 1.5, averaged over channels.

    Args:
      a, b: images of shape (H, W, C) with H, W >= 11, uint8 or float, in [0, data_range].
      data_range: span of the pixel range (255.0 for [0, 255], 1.0 for [0, 1]).

    Returns:
      A float in [-1, 1]; 1 for identical images.
    """
    a, b = _as_float64_pair(a, b)
    data_range = _check_data_range(data_range)
    ssim_per_channel, _ = _ssim_and_contrast_structure(a, b, data_range)
    return float(np.mean(ssim_per_channel))


def ms_ssim_scale_count(height: int, width: int) -> int:
    """Number of MS-SSIM scales used for an image: the standard 5, fewer for small images.

    A scale is usable when both sides are still at least the 11-pixel window after the
    ceil-halving downsampling. Raises ValueError when not even the full-resolution scale is.
    """
    side = min(height, width)
    if side < WINDOW_SIZE:
        raise ValueError(
            f"MS-SSIM needs images of at least {WINDOW_SIZE} x {WINDOW_SIZE} pixels, "
            f"got {height} x {width}"
        )
    scales = 0
    while scales < len(MS_SSIM_WEIGHTS) and side >= WINDOW_SIZE:
        scales += 1
        side = -(-side // 2)
    return scales


def _downsample_by_two(image: np.ndarray) -> np.ndarray:
    """2 x 2 average pooling of (H, W, C); an odd side is first extended by its last row/column."""
    height, width, _ = image.shape
    image = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return 0.25 * (image[0::2, 0::2] + image[1::2, 0::2] + image[0::2, 1::2] + image[1::2, 1::2])


def ms_ssim(a, b, data_range: float = 255.0) -> float:
    """Multi-scale SSIM (Wang et al. 2003), matching ``tf.image.ssim_multiscale``.

    Args:
      a, b: images of shape (H, W, C), uint8 or float, in [0, data_range]. The standard five
        scales need min(H, W) >= 161; smaller images (down to 11) use fewer scales with
        renormalized weights (see the module docstring and ``ms_ssim_scale_count``).
      data_range: span of the pixel range (255.0 for [0, 255], 1.0 for [0, 1]).

    Returns:
      A float in [0, 1]; 1 for identical images.
    """
    a, b = _as_float64_pair(a, b)
    data_range = _check_data_range(data_range)
    scales = ms_ssim_scale_count(a.shape[0], a.shape[1])
    weights = np.asarray(MS_SSIM_WEIGHTS[:scales])
    if scales < len(MS_SSIM_WEIGHTS):
        weights = weights / weights.sum()

    factors = []  # one (C,) array per scale
    for scale in range(scales):
        if scale > 0:
            a = _downsample_by_two(a)
            b = _downsample_by_two(b)
        ssim_per_channel, contrast_structure = _ssim_and_contrast_structure(a, b, data_range)
        # Only the coarsest scale contributes its luminance term.
        factors.append(ssim_per_channel if scale == scales - 1 else contrast_structure)

    factors = np.maximum(np.stack(factors, axis=-1), 0.0)
    return float(np.mean(np.prod(factors**weights, axis=-1)))
