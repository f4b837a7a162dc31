"""Encoder and decoder of one Gaussian-modelled latent group, in its context model's order.

A group (the base or the enhancement latent of JICD, the one latent of the other models), of
shape (h, w, C), is range-coded in chunks, each chunk one `Encoder.encode` / `Decoder.decode`
call over the elements it covers (positions in raster order, channels fastest):

- context "none": one chunk, all positions, with (mean, scale) = EP(psi, extra).
- "checkerboard" (He et al. 2021): two chunks. First the anchors ((row + col) even) with the
  parameters of EP(psi, ctx = 0, extra); then the other positions with those of
  EP(psi, ctx(decoded anchors), extra). `GroupEntropyParameters.__call__` gives both passes.
- "serial" (Minnen et al. 2018; Cheng et al. 2020): one chunk of C symbols per position, in
  raster order, with the parameters of `GroupEntropyParameters.entropy_parameters_at`: the 5x5
  masked convolution restricted to that position (its T = 12 causal taps of already decoded
  y_hat times the matching kernel rows, one matrix product) and the 1x1 EP network on that one
  position.

Encoder and decoder run the same loop (`code_group`) with the same compiled functions on the same
inputs; only the element coder differs. `LatentEncoder` quantizes the known latent y and codes
it, `LatentDecoder` decodes; both return y_hat from the symbols (`latent_coding`), so the encoder
continues from exactly the values the decoder will have. Means and scales are therefore
bit-identical on both ends of one platform; a platform whose floats differ is caught by the
symbols CRC-32 (`symbols_crc`, stored in the file).

Serial decoding on CPU: the loop keeps y_hat in a host buffer padded by k // 2 zeros
(above, left and right), gathers each position's T causal taps, hands them to one jitted
function, and decodes that position's C symbols with one range-decoder call. The masked kernel is
restricted to its T taps once per model (`serial_context_matrix`), not per position: a position
costs one small jit call (a few matrix-vector products) whatever the image size.

Symbols and quantization: `jdc_jax.entropy.latent_coding` (round around the mean for "none" and
"checkerboard", y_hat = round(y) for "serial").
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

from jdc_jax.codec.file_format import CONTEXT_MODELS
from jdc_jax.entropy import latent_coding, range_coder
from jdc_jax.entropy.tables import CodingTables

# (psi (h, w, 2M), y_hat (h, w, C) or None, extra (h, w, E) or None) -> (mean, scale) (h, w, C)
GroupParameters = Callable[..., tuple[np.ndarray, np.ndarray]]
# (psi_at (1, 2M), causal_taps (1, T, C), extra_at (1, E) or None) -> (mean, scale) (C,)
PositionParameters = Callable[..., tuple[np.ndarray, np.ndarray]]


class _ElementCoder:
    """Keeps the symbols an element coder has coded, and their CRC-32, in coding order."""

    def __init__(self, round_around_mean: bool):
        self.round_around_mean = round_around_mean
        self.symbols_crc = 0
        self._symbols: list[np.ndarray] = []

    def _record(self, symbols: np.ndarray) -> None:
        self._symbols.append(symbols.reshape(-1))
        self.symbols_crc = zlib.crc32(symbols.astype("<i4").tobytes(), self.symbols_crc)

    @property
    def symbols(self) -> np.ndarray:
        """All symbols coded so far, int32, flattened in coding order."""
        if not self._symbols:
            return np.zeros(0, np.int32)
        return np.concatenate(self._symbols).astype(np.int32)

    def _indexes(self, mean, scale) -> np.ndarray:
        # The table index depends on (mean, scale) only; the symbol argument is a placeholder.
        _, indexes = latent_coding.latent_symbols(np.zeros_like(mean), mean, scale,
                                                  round_around_mean=self.round_around_mean)
        return indexes

    def _latent(self, symbols, mean) -> np.ndarray:
        return latent_coding.latent_from_symbols(symbols, mean,
                                                 round_around_mean=self.round_around_mean)


class LatentEncoder(_ElementCoder):
    """Quantizes and range-codes the elements of a known latent y (h, w, C) float32."""

    def __init__(self, y: np.ndarray, tables: CodingTables, *, round_around_mean: bool):
        super().__init__(round_around_mean)
        self._y = np.asarray(y, np.float32)
        self._encoder = range_coder.Encoder(tables)

    def code(self, where, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Codes y[where] (one chunk) with its (mean, scale); returns its y_hat."""
        y = self._y[where]
        offset = mean if self.round_around_mean else np.zeros_like(mean)
        y_hat = np.round(y - offset) + offset
        symbols, indexes = latent_coding.latent_symbols(
            y_hat, mean, scale, round_around_mean=self.round_around_mean)
        self._encoder.encode(symbols.reshape(-1), indexes.reshape(-1))
        self._record(symbols)
        return self._latent(symbols, mean)

    def finish(self) -> bytes:
        """The range-coded payload."""
        return self._encoder.finish()


class LatentDecoder(_ElementCoder):
    """Range-decodes a latent's elements chunk by chunk from its payload."""

    def __init__(self, payload: bytes, tables: CodingTables, *, round_around_mean: bool):
        super().__init__(round_around_mean)
        self._decoder = range_coder.Decoder(payload, tables)

    def code(self, where, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Decodes the next chunk: the elements at `where` (unused: their count is mean's);
        returns their y_hat. ValueError when the payload cannot decode."""
        indexes = self._indexes(mean, scale)
        symbols = self._decoder.decode(indexes.reshape(-1)).reshape(mean.shape)
        self._record(symbols)
        return self._latent(symbols, mean)


def code_group(coder: LatentEncoder | LatentDecoder, *, context_model: str, channels: int,
               psi: np.ndarray, extra: np.ndarray | None,
               group_parameters: GroupParameters,
               position_parameters: PositionParameters | None = None,
               causal_taps: np.ndarray | None = None) -> np.ndarray:
    """Codes one latent group in its context model's order; returns y_hat (h, w, C) float32.

    Args:
      coder: a `LatentEncoder` (holding y) or a `LatentDecoder` (holding the payload).
      context_model: "none", "serial" or "checkerboard".
      channels: C, the group's channels.
      psi: (h, w, 2M) hyper-synthesis features; extra: (h, w, E) conditioning or None.
      group_parameters: the group's parallel (mean, scale) function (all positions at once).
      position_parameters, causal_taps: the serial context model's per-position function and
        the (k, k) bool mask of its causal taps (needed for "serial" only).
    """
    if context_model not in CONTEXT_MODELS:
        raise ValueError(f"unknown context model {context_model!r}; expected one of "
                         f"{CONTEXT_MODELS}")
    height, width = psi.shape[:2]
    if context_model == "none":
        mean, scale = group_parameters(psi, None, extra)
        everywhere = np.ones((height, width), bool)
        return coder.code(everywhere, mean[everywhere], scale[everywhere]).reshape(
            height, width, channels)
    if context_model == "checkerboard":
        anchors = (np.arange(height)[:, None] + np.arange(width)[None, :]) % 2 == 0
        y_hat = np.zeros((height, width, channels), np.float32)
        mean, scale = group_parameters(psi, y_hat, extra)
        y_hat[anchors] = coder.code(anchors, mean[anchors], scale[anchors])
        mean, scale = group_parameters(psi, y_hat, extra)
        y_hat[~anchors] = coder.code(~anchors, mean[~anchors], scale[~anchors])
        return y_hat
    if position_parameters is None or causal_taps is None:
        raise ValueError("the serial context model needs its per-position parameter function "
                         "and causal taps")
    return _code_serial(coder, channels, psi, extra, position_parameters, causal_taps)


def _code_serial(coder, channels, psi, extra, position_parameters, causal_taps):
    height, width = psi.shape[:2]
    size = causal_taps.shape[0]
    reach = size // 2
    # Causal taps lie in the rows up to the centre's; no row below it is ever read.
    taps = np.asarray(causal_taps[: reach + 1], bool)
    if causal_taps[reach + 1:].any() or causal_taps[reach, reach:].any():
        raise ValueError("causal taps must precede the window's centre in raster order")
    # y_hat with `reach` zero rows above and zero columns left and right: the masked kernel's
    # "SAME" zero padding.
    buffer = np.zeros((height + reach, width + 2 * reach, channels), np.float32)
    for row in range(height):
        for col in range(width):
            neighbours = buffer[row: row + reach + 1, col: col + size][taps]
            extra_at = None if extra is None else extra[row, col][None]
            mean, scale = position_parameters(psi[row, col][None], neighbours[None], extra_at)
            buffer[row + reach, col + reach] = coder.code((row, col), mean, scale)
    return buffer[reach:, reach: reach + width].copy()
