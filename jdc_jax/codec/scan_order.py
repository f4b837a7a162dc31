"""The order in which a serial context model's latent positions are coded: raster or wavefront.

A serial context (Minnen et al. 2018; Cheng et al. 2020) predicts the entropy parameters of
position (i, j) of an h x w latent from its causal taps: the positions (i + di, j + dj) where
the k x k type-"A" mask is 1 (k = 5: di = -2 or -1 with |dj| <= 2, and di = 0 with dj = -2 or
-1; taps outside the latent read zero). Any order that codes every position after all its taps
decodes the same y_hat with the same probabilities; only the order of the symbols in the
stream changes. Encoder and decoder take their order from `scan_fronts`, one list of fronts,
each front a set of positions coded in one step (one jitted call, one range-coder call).

raster (format version 1, and for comparison): one position per front, row by row: h * w fronts.

wavefront: position (i, j) belongs to front t = j + s * i, where s (`wavefront_slope`) is the
smallest integer for which every tap lies on an earlier front: dj + s * di < 0 for every tap
(di, dj). For di = 0 this is dj < 0, which causality already gives; for di < 0 it asks
s > dj / (-di), so s = max over the taps with di < 0 of floor(dj / (-di)) + 1. For the 5x5 mask
the tap (-1, +2) asks s > 2 and (-2, +2) asks s > 1: s = 3. Positions of one front never read
each other (equal t), and every position a front reads was coded in an earlier front, so a
front is coded in one step: (w - 1) + s (h - 1) + 1 fronts, w + 3h - 3 for the 5x5 mask (141 for
the 32 x 48 latent of a 512 x 768 image, instead of 1536 positions). Within a front the
positions are listed by increasing row. The longest front holds min(h, ceil(w / s)) positions.

Buckets. The coder pads each wavefront to `front_bucket(length)` positions, a power of two of
at least MIN_FRONT_BUCKET, so a jitted front function compiles once per bucket: for a latent
whose longest front holds L positions, max(1, ceil(log2(L / MIN_FRONT_BUCKET)) + 1) programs per
latent group (2 for 512 x 768, 4 for 2048 x 2048), and images of other sizes reuse them.
"""

from __future__ import annotations

import numpy as np

from jdc_jax.codec.file_format import SCAN_ORDERS

DEFAULT_SCAN_ORDER = "wavefront"
MIN_FRONT_BUCKET = 8


def causal_offsets(causal_taps) -> tuple[np.ndarray, np.ndarray]:
    """(di, dj) int arrays of the T causal taps of a (k, k) bool mask (k odd), relative to its
    centre, in raster order of the window (the order `serial_context_matrix` stacks them).

    Raises ValueError for a mask that is not square and odd or has a tap at or after the centre
    in raster order (such a context cannot be decoded in any order)."""
    taps = np.asarray(causal_taps, bool)
    if taps.ndim != 2 or taps.shape[0] != taps.shape[1] or taps.shape[0] % 2 == 0:
        raise ValueError(f"causal taps must be a square mask of odd size, got shape "
                         f"{taps.shape}")
    reach = taps.shape[0] // 2
    if taps[reach + 1:].any() or taps[reach, reach:].any():
        raise ValueError("causal taps must precede the window's centre in raster order")
    rows, cols = np.nonzero(taps)
    return rows - reach, cols - reach


def wavefront_slope(causal_taps) -> int:
    """The smallest integer s with dj + s * di < 0 for every causal tap (di, dj) (module
    docstring): 3 for the 5x5 type-"A" mask, 1 for a mask whose taps are all left of the centre
    or above it in columns <= j."""
    di, dj = causal_offsets(causal_taps)
    above = di < 0
    if not above.any():
        return 1
    # Floor division of integers: floor(dj / -di) exactly.
    return max(1, int(np.max(dj[above] // -di[above])) + 1)


def scan_fronts(height: int, width: int, causal_taps,
                order: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The fronts of an h x w latent in coding order: (rows, cols) int arrays of each front's
    positions (module docstring); every position in exactly one front."""
    if order not in SCAN_ORDERS:
        raise ValueError(f"unknown scan order {order!r}; expected one of {SCAN_ORDERS}")
    if order == "raster":
        causal_offsets(causal_taps)  # refuses a non-causal mask in either order
        return [(np.array([row]), np.array([col]))
                for row in range(height) for col in range(width)]
    slope = wavefront_slope(causal_taps)
    fronts = []
    for front in range((width - 1) + slope * (height - 1) + 1):
        # Rows i with 0 <= front - slope * i < width.
        first = max(0, -(-(front - width + 1) // slope))
        rows = np.arange(first, min(height - 1, front // slope) + 1)
        fronts.append((rows, front - slope * rows))
    return fronts


def front_bucket(length: int) -> int:
    """The number of positions a front of `length` positions is padded to: the smallest power
    of two >= max(length, MIN_FRONT_BUCKET)."""
    if length < 1:
        raise ValueError(f"a front holds at least one position, got {length}")
    return max(MIN_FRONT_BUCKET, 1 << (int(length) - 1).bit_length())


def front_buckets(height: int, width: int, causal_taps) -> tuple[int, ...]:
    """The distinct buckets the wavefronts of an h x w latent use, ascending (one compiled front
    program per latent group each)."""
    return tuple(sorted({front_bucket(rows.size) for rows, _ in
                         scan_fronts(height, width, causal_taps, "wavefront")}))
