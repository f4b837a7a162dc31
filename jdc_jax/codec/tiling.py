"""Tiled analysis and synthesis transforms: bounded memory for large images, same file format.

A 6000 x 4000 image through the default JICD (N = 192) makes a first analysis activation of
3000 x 2000 x 192 float32, 4.6 GB, and the synthesis the same at its end. `Tiling` bounds the
pixels a transform sees at once: when the padded image has more pixels than the bound, the
transform runs on overlapping windows of it and keeps the interior of each window's output.

Geometry (`tile_grid`), in pixels of the padded image (height and width multiples of 16):

    window   = interior extended by `halo` pixels on each side, clipped at the image border
    interiors: a partition of the image (each pixel in exactly one), multiples of 16
    windows:   all of one shape (window_height, window_width), multiples of 16, with
               window_height * window_width <= max_pixels; one compilation per image size

Along each axis the windows are as few as the bound allows, then as small as still covers the
axis, evenly spaced with starts on multiples of 16, from 0 to the far border. An interior's halo
may be wider than `halo` (a window that hits the border keeps its shape and moves inwards), never
narrower except at the image border, where the window ends with the image. A side that fits the
bound is not cut, and lends the unused budget to the other side. `max_pixels` = 0, or an image
within the bound, gives one tile: the whole image, exactly the untiled computation.

Analysis (`tiled_analysis`): a window of the uint8 image (rows r0:r1, cols c0:c1) gives the
latent window (r0/16 : r1/16, c0/16 : c1/16); the latent of the interior is cut out of it and
placed into the whole latent (H/16, W/16, M). Synthesis (`tiled_synthesis`) runs the same
geometry backwards: latent windows (pixels / 16) give image windows, whose interiors fill the
(H, W, 3) image; its halo is in pixels too, `halo / 16` latent positions.

Why the halo makes tiles agree with the whole image. Every layer is a "SAME" convolution, a
pointwise nonlinearity, GDN (across channels only) or a sub-pixel shuffle. Windows start on
multiples of 16, so every stride-2 layer samples the same grid as on the whole image, and an
output position depends only on inputs within the transform's receptive field. Inside a window
the only difference from the whole image is the zero padding at the window's edges, which reaches
no further inwards than the receptive field; at the image border window and image pad alike. So
when the halo covers the receptive field, each interior output is computed from the same inputs
as in the whole image, and equals it up to float rounding (the convolution may sum in another
order for another input shape; on XLA:CPU the tiles have been bit-identical). Reach of each
transform beyond the 16 px of a latent position (analysis) or the latent position of a pixel
(synthesis):

    analysis:  Cheng2020 (JICD, codec) 42 px before, 57 px after; Balle (hyperprior, jdc,
               Testolina) 15 and 30 px                          -> default halo 64 px
    synthesis: Cheng2020 7 latent positions; Balle 2; Testolina (four 5x5 convolutions on the
               latent before the Balle synthesis) 10             -> default halo 160 px

The file format and the decoder are unaffected: everything after the analysis (hyper analysis
of the whole latent, which is 1/16 of the image per side; entropy coding) is the untiled coder,
and a file encoded with or without tiles decodes with any decoder tiling. The encoder's tiling
changes the bytes only where a latent rounds differently after a float-rounding difference
(halo covering the receptive field) or where the halo is too small to cover it. Decoders with
different synthesis tilings may differ in output pixels by float rounding (halo covering the
receptive field); the coded symbols, and their CRC check, never depend on it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple, Sequence

import numpy as np

# g_a downsamples by 16: one latent position per 16 x 16 pixels.
LATENT_STRIDE = 16
# 2048 x 2048: compressing one such window with the default JICD peaks at 4.1 GiB resident
# (whole process, XLA:CPU), half of an 8 GB budget; smaller windows cost more halo.
DEFAULT_MAX_TILE_PIXELS = 2048 * 2048
DEFAULT_ANALYSIS_HALO = 64
DEFAULT_SYNTHESIS_HALO = 160


class Span(NamedTuple):
    """Positions [start, stop) along one axis, in pixels."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def within(self, outer: "Span") -> "Span":
        """This span relative to the start of `outer`."""
        return Span(self.start - outer.start, self.stop - outer.start)

    def divided(self, stride: int) -> slice:
        """The slice of this span in an array of `stride` pixels per element."""
        return slice(self.start // stride, self.stop // stride)


@dataclasses.dataclass(frozen=True)
class Tile:
    """One window of the padded image and the interior it is responsible for, in pixels."""

    window_rows: Span
    window_cols: Span
    interior_rows: Span
    interior_cols: Span


@dataclasses.dataclass(frozen=True)
class Tiling:
    """How the coder splits large images for the analysis and the synthesis transforms.

    Attributes:
      max_analysis_pixels: the most pixels the analysis sees at once; a padded image with more
        is coded in tiles. 0: never tile.
      max_synthesis_pixels: the same bound for the synthesis (output pixels). 0: never tile.
      analysis_halo, synthesis_halo: pixels each window extends beyond its interior, a
        multiple of 16 (the synthesis halo is halo / 16 latent positions).
    """

    max_analysis_pixels: int = DEFAULT_MAX_TILE_PIXELS
    max_synthesis_pixels: int = DEFAULT_MAX_TILE_PIXELS
    analysis_halo: int = DEFAULT_ANALYSIS_HALO
    synthesis_halo: int = DEFAULT_SYNTHESIS_HALO

    def __post_init__(self):
        for transform in ("analysis", "synthesis"):
            check_tile_bound(getattr(self, f"max_{transform}_pixels"),
                             getattr(self, f"{transform}_halo"),
                             f"max_{transform}_pixels", f"{transform}_halo")

    def analysis_tiles(self, height: int, width: int) -> list[Tile]:
        """The analysis tiles of a padded image (pixels, multiples of 16)."""
        return tile_grid(height, width, self.max_analysis_pixels, self.analysis_halo)

    def synthesis_tiles(self, height: int, width: int) -> list[Tile]:
        """The synthesis tiles of a padded image (pixels, multiples of 16)."""
        return tile_grid(height, width, self.max_synthesis_pixels, self.synthesis_halo)


def check_tile_bound(max_pixels, halo, max_name: str = "max_pixels",
                     halo_name: str = "halo") -> None:
    """Raises ValueError unless `halo` is a non-negative multiple of 16 and `max_pixels` is 0
    or holds one window of a 16-pixel interior and its halo, (16 + 2 halo)^2."""
    for name, value in ((max_name, max_pixels), (halo_name, halo)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if halo % LATENT_STRIDE:
        raise ValueError(f"{halo_name} must be a multiple of {LATENT_STRIDE} pixels (the latent "
                         f"stride), got {halo}")
    smallest = (LATENT_STRIDE + 2 * halo) ** 2
    if 0 < max_pixels < smallest:
        raise ValueError(f"{max_name} = {max_pixels} cannot hold one tile with a {halo} px halo:"
                         f" use 0 (no tiling) or at least ({LATENT_STRIDE} + 2 x {halo})^2 = "
                         f"{smallest}")


def tile_grid(height: int, width: int, max_pixels: int, halo: int) -> list[Tile]:
    """The tiles of a padded image of height x width pixels (multiples of 16), row by row
    (module docstring). max_pixels 0, or height * width <= max_pixels: one tile, the image."""
    check_tile_bound(max_pixels, halo)
    for name, size in (("height", height), ("width", width)):
        if size <= 0 or size % LATENT_STRIDE:
            raise ValueError(f"padded {name} must be a positive multiple of {LATENT_STRIDE}, "
                             f"got {size}")
    if max_pixels == 0 or height * width <= max_pixels:
        return [Tile(Span(0, height), Span(0, width), Span(0, height), Span(0, width))]
    side = _floor_to_stride(math.isqrt(max_pixels))
    # A side that fits is not cut; the other side takes the whole budget.
    if height <= side:
        max_window_height, max_window_width = height, _floor_to_stride(max_pixels // height)
    elif width <= side:
        max_window_height, max_window_width = _floor_to_stride(max_pixels // width), width
    else:
        max_window_height = max_window_width = side
    rows = _axis_tiles(height, max_window_height, halo)
    cols = _axis_tiles(width, max_window_width, halo)
    return [Tile(window_rows, window_cols, interior_rows, interior_cols)
            for window_rows, interior_rows in rows for window_cols, interior_cols in cols]


def _axis_tiles(size: int, max_window: int, halo: int) -> list[tuple[Span, Span]]:
    """(window, interior) spans along one axis; every window is of one size <= max_window."""
    if size <= max_window:
        return [(Span(0, size), Span(0, size))]
    # Consecutive windows may start at most this far apart for their halos to meet.
    max_step = max_window - 2 * halo
    count = 1 + _ceil_div(size - max_window, max_step)
    # The smallest window that covers the axis with `count` windows: count * window must reach
    # size + (count - 1) * 2 * halo.
    window = min(max_window, _ceil_to_stride(_ceil_div(size + 2 * halo * (count - 1), count)))
    blocks = (size - window) // LATENT_STRIDE
    starts = sorted({LATENT_STRIDE * (index * blocks // (count - 1)) for index in range(count)})
    bounds = [0, *(start + halo for start in starts[1:]), size]
    return [(Span(start, start + window), Span(bounds[index], bounds[index + 1]))
            for index, start in enumerate(starts)]


def tiled_analysis(analysis: Callable, image: np.ndarray, tiles: Sequence[Tile]) -> np.ndarray:
    """The latent y (H/16, W/16, M) float32 of a padded uint8 image (H, W, 3) in [0, 255],
    running analysis(x (1, h, w, 3) float32 in [0, 1]) -> (1, h/16, w/16, M) per window."""
    return map_tiles(lambda window: analysis(window.astype(np.float32) / 255.0), [image], tiles,
                     input_stride=1, output_stride=LATENT_STRIDE)


def tiled_synthesis(synthesis: Callable, latents: Sequence[np.ndarray],
                    tiles: Sequence[Tile]) -> np.ndarray:
    """The image (16h, 16w, 3) float32 in [0, 1] (unclipped) of latents, each (h, w, C_i),
    running synthesis(*latent windows (1, h', w', C_i)) -> (1, 16h', 16w', 3) per window."""
    return map_tiles(synthesis, latents, tiles, input_stride=LATENT_STRIDE, output_stride=1)


def map_tiles(function: Callable, inputs: Sequence[np.ndarray], tiles: Sequence[Tile], *,
              input_stride: int, output_stride: int) -> np.ndarray:
    """Assembles function(*windows of the inputs) over the tiles, keeping each interior.

    Inputs are (rows, cols, C_i) arrays of `input_stride` pixels per element; each call gets
    the tile's window of every input with a batch axis, (1, rows', cols', C_i), and returns
    (1, rows'', cols'', C) at `output_stride` pixels per element. Returns (rows, cols, C)
    float32 at the output stride."""
    output = None
    for tile in tiles:
        windows = [array[None, tile.window_rows.divided(input_stride),
                         tile.window_cols.divided(input_stride)] for array in inputs]
        result = np.asarray(function(*windows))[0]
        if output is None:
            height = max(tile.interior_rows.stop for tile in tiles) // output_stride
            width = max(tile.interior_cols.stop for tile in tiles) // output_stride
            output = np.empty((height, width, result.shape[-1]), np.float32)
        rows = tile.interior_rows.within(tile.window_rows)
        cols = tile.interior_cols.within(tile.window_cols)
        output[tile.interior_rows.divided(output_stride),
               tile.interior_cols.divided(output_stride)] = \
            result[rows.divided(output_stride), cols.divided(output_stride)]
    return output


def _floor_to_stride(pixels: int) -> int:
    return pixels // LATENT_STRIDE * LATENT_STRIDE


def _ceil_to_stride(pixels: int) -> int:
    return _ceil_div(pixels, LATENT_STRIDE) * LATENT_STRIDE


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)
