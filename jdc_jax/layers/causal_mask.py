"""The masks of the context models, in numpy alone: the causal (raster-order) kernel mask of
PixelCNN-style serial contexts, and the anchors of the checkerboard context.

Kept apart from `conv` (Flax) so that model-free code, such as the integer entropy path
(`jdc_jax.integer`) that an exported package runs, reads the same taps and anchors as the
models and the coder.
"""

from __future__ import annotations

import numpy as np


def masked_conv_mask(kernel_size: int, mask_type: str) -> np.ndarray:
    """The (k, k) float32 0/1 mask of a raster-order causal kernel (k odd).

    Ones mark the taps that read positions before the centre in raster (row-major) order: all
    rows above it, and the taps left of it in its own row. Type "A" excludes the centre itself
    (a context model's first layer: y[p] never sees x[p]); type "B" includes it.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"masked conv: kernel_size must be odd and positive, got {kernel_size}")
    if mask_type not in ("A", "B"):
        raise ValueError(f'masked conv: mask_type must be "A" or "B", got {mask_type!r}')
    raster_index = np.arange(kernel_size * kernel_size).reshape(kernel_size, kernel_size)
    centre_index = (kernel_size * kernel_size) // 2
    if mask_type == "A":
        before = raster_index < centre_index
    else:
        before = raster_index <= centre_index
    return before.astype(np.float32)


def checkerboard_anchors(height: int, width: int) -> np.ndarray:
    """(height, width) bool, True at the checkerboard context's anchors ((row + col) even: He
    et al. 2021), the positions coded first, from the hyperprior alone."""
    return (np.arange(height)[:, None] + np.arange(width)[None, :]) % 2 == 0
