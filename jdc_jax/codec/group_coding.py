"""Encoder and decoder of one Gaussian-modelled latent group, in its context model's order.

A group (the base or the enhancement latent of JICD, the one latent of the other models), of
shape (h, w, C), is range-coded in chunks, each chunk one `Encoder.encode` / `Decoder.decode`
call over the elements it covers (positions in raster order, or a wavefront's by increasing
row; channels fastest):

- context "none": one chunk, all positions, with (mean, scale) = EP(psi, extra).
- "checkerboard" (He et al. 2021): two chunks. First the anchors ((row + col) even) with the
  parameters of EP(psi, ctx = 0, extra); then the other positions with those of
  EP(psi, ctx(decoded anchors), extra). `GroupEntropyParameters.__call__` gives both passes.
- "serial" (Minnen et al. 2018; Cheng et al. 2020): one chunk per front of its scan order
  (`scan_order`: "wavefront", w + 3h - 3 fronts of up to min(h, ceil(w / 3)) positions, or
  "raster", one position per front), C symbols per position, positions in the front's order,
  with the parameters of `GroupEntropyParameters.entropy_parameters_at` for all the front's
  positions at once: the 5x5 masked convolution restricted to each position (its T = 12 causal
  taps of already decoded y_hat times the matching kernel rows, one batched matrix product) and
  the 1x1 EP network on those positions. Every tap of a front lies in an earlier front, so the
  parameters are those the parallel masked convolution gives over the whole decoded latent.

Encoder and decoder run the same loop (`code_group`) with the same compiled functions on the same
inputs; only the element coder differs. `LatentEncoder` quantizes the known latent y and codes
it, `LatentDecoder` decodes; both return y_hat from the symbols (`latent_coding`), so the encoder
continues from exactly the values the decoder will have. Means and scales are therefore
bit-identical on both ends of one platform; a platform whose floats differ is caught by the
symbols CRC-32 (`symbols_crc`, stored in the file).

Serial decoding: the loop keeps y_hat in a host buffer padded by k // 2 zeros (above, left and
right), gathers the T causal taps of a front's positions (n, T, C), hands them to one jitted
function (`FrontParameters`; the codec pads a wavefront to a fixed bucket of positions so few
programs compile, `scan_order.front_bucket`), and decodes the front's n C symbols with one
range-decoder call. The masked kernel is restricted to its T taps once per model
(`serial_context_matrix`), not per front: a front costs one jit call of a few small matrix
products whatever the image size.

Symbols and quantization: `jdc_jax.entropy.latent_coding` (round around the mean for "none" and
"checkerboard", y_hat = round(y) for "serial").

Entropy paths. With the float path the parameter functions return float (mean, scale) and the
coders keep y_hat in float32. With the integer path (`jdc_jax.integer`, coders built with
`fraction_bits`) they return (fixed-point mean, scale index), int32, and the coders keep y_hat
in the same fixed point (int64, y_hat * 2^fraction_bits): the loop below is the same for both,
and the integer path's taps and anchors are integers end to end.
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

from jdc_jax.codec import scan_order as scan_orders
from jdc_jax.codec.file_format import CONTEXT_MODELS
from jdc_jax.entropy import latent_coding, range_coder
from jdc_jax.entropy.tables import CodingTables
from jdc_jax.layers.causal_mask import checkerboard_anchors

# (psi (h, w, 2M), y_hat (h, w, C) or None, extra (h, w, E) or None) -> (mean, scale) (h, w, C)
GroupParameters = Callable[..., tuple[np.ndarray, np.ndarray]]
# (psi_at (n, 2M), causal_taps (n, T, C), extra_at (n, E) or None) -> (mean, scale) (n, C):
# the parameters of the n positions of one front.
FrontParameters = Callable[..., tuple[np.ndarray, np.ndarray]]


class _ElementCoder:
    """Keeps the symbols (and table indexes) an element coder has coded, and the symbols' CRC-32,
    in coding order. fraction_bits: None for the float path; k for the integer path, whose
    means arrive in fixed point (mean * 2^k) with integer scale indexes."""

    def __init__(self, round_around_mean: bool, fraction_bits: int | None = None):
        self.round_around_mean = round_around_mean
        self.fraction_bits = fraction_bits
        self.symbols_crc = 0
        self._symbols: list[np.ndarray] = []
        self._indexes: list[np.ndarray] = []

    @property
    def latent_dtype(self):
        """The dtype of the y_hat this coder returns: float32, or int64 fixed point."""
        return np.float32 if self.fraction_bits is None else np.int64

    def _record(self, symbols: np.ndarray, indexes: np.ndarray) -> None:
        self._symbols.append(symbols.reshape(-1))
        self._indexes.append(np.asarray(indexes).reshape(-1))
        self.symbols_crc = zlib.crc32(symbols.astype("<i4").tobytes(), self.symbols_crc)

    @property
    def indexes(self) -> np.ndarray:
        """All table indexes used so far, int32, flattened in coding order."""
        if not self._indexes:
            return np.zeros(0, np.int32)
        return np.concatenate(self._indexes).astype(np.int32)

    @property
    def symbols(self) -> np.ndarray:
        """All symbols coded so far, int32, flattened in coding order."""
        if not self._symbols:
            return np.zeros(0, np.int32)
        return np.concatenate(self._symbols).astype(np.int32)

    def _table_indexes(self, mean, scale) -> np.ndarray:
        if self.fraction_bits is not None:
            return latent_coding.integer_indexes(mean, scale,
                                                 round_around_mean=self.round_around_mean,
                                                 fraction_bits=self.fraction_bits)
        # The table index depends on (mean, scale) only; the symbol argument is a placeholder.
        _, indexes = latent_coding.latent_symbols(np.zeros_like(mean), mean, scale,
                                                  round_around_mean=self.round_around_mean)
        return indexes

    def _latent(self, symbols, mean) -> np.ndarray:
        if self.fraction_bits is not None:
            return latent_coding.integer_latent_from_symbols(
                symbols, mean, round_around_mean=self.round_around_mean,
                fraction_bits=self.fraction_bits)
        return latent_coding.latent_from_symbols(symbols, mean,
                                                 round_around_mean=self.round_around_mean)


class LatentEncoder(_ElementCoder):
    """Quantizes and range-codes the elements of a known latent y (h, w, C) float32."""

    def __init__(self, y: np.ndarray, tables: CodingTables, *, round_around_mean: bool,
                 fraction_bits: int | None = None):
        super().__init__(round_around_mean, fraction_bits)
        self._y = np.asarray(y, np.float32)
        self._encoder = range_coder.Encoder(tables)

    def code(self, where, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Codes y[where] (one chunk; `where` a mask or (rows, cols) index arrays) with its
        (mean, scale) of the same shape; returns its y_hat."""
        y = self._y[where]
        if self.fraction_bits is not None:
            symbols = latent_coding.integer_symbols(y, mean,
                                                    round_around_mean=self.round_around_mean,
                                                    fraction_bits=self.fraction_bits)
            indexes = self._table_indexes(mean, scale)
        else:
            offset = mean if self.round_around_mean else np.zeros_like(mean)
            y_hat = np.round(y - offset) + offset
            symbols, indexes = latent_coding.latent_symbols(
                y_hat, mean, scale, round_around_mean=self.round_around_mean)
        self._encoder.encode(symbols.reshape(-1), indexes.reshape(-1))
        self._record(symbols, indexes)
        return self._latent(symbols, mean)

    def finish(self) -> bytes:
        """The range-coded payload."""
        return self._encoder.finish()


class LatentDecoder(_ElementCoder):
    """Range-decodes a latent's elements chunk by chunk from its payload."""

    def __init__(self, payload: bytes, tables: CodingTables, *, round_around_mean: bool,
                 fraction_bits: int | None = None):
        super().__init__(round_around_mean, fraction_bits)
        self._decoder = range_coder.Decoder(payload, tables)

    def code(self, where, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Decodes the next chunk: the elements at `where` (unused: their count is mean's);
        returns their y_hat. ValueError when the payload cannot decode."""
        indexes = self._table_indexes(mean, scale)
        symbols = self._decoder.decode(indexes.reshape(-1)).reshape(mean.shape)
        self._record(symbols, indexes)
        return self._latent(symbols, mean)


def code_group(coder: LatentEncoder | LatentDecoder, *, context_model: str, channels: int,
               psi: np.ndarray, extra: np.ndarray | None,
               group_parameters: GroupParameters,
               front_parameters: FrontParameters | None = None,
               causal_taps: np.ndarray | None = None,
               scan_order: str = "raster") -> np.ndarray:
    """Codes one latent group in its context model's order; returns y_hat (h, w, C) in the
    coder's representation (`latent_dtype`: float32, or int64 fixed point on the integer path).

    Args:
      coder: a `LatentEncoder` (holding y) or a `LatentDecoder` (holding the payload).
      context_model: "none", "serial" or "checkerboard".
      channels: C, the group's channels.
      psi: (h, w, 2M) hyper-synthesis features; extra: (h, w, E) conditioning or None.
      group_parameters: the group's parallel (mean, scale) function (all positions at once).
      front_parameters, causal_taps, scan_order: the serial context model's function of a
        front's positions, the (k, k) bool mask of its causal taps and the order of its fronts,
        "raster" or "wavefront" (`scan_order`; for "serial" only).
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
        anchors = checkerboard_anchors(height, width)
        y_hat = np.zeros((height, width, channels), coder.latent_dtype)
        mean, scale = group_parameters(psi, y_hat, extra)
        y_hat[anchors] = coder.code(anchors, mean[anchors], scale[anchors])
        mean, scale = group_parameters(psi, y_hat, extra)
        y_hat[~anchors] = coder.code(~anchors, mean[~anchors], scale[~anchors])
        return y_hat
    if front_parameters is None or causal_taps is None:
        raise ValueError("the serial context model needs its front parameter function and "
                         "causal taps")
    return _code_serial(coder, channels, psi, extra, front_parameters, causal_taps, scan_order)


def _code_serial(coder, channels, psi, extra, front_parameters, causal_taps, scan_order):
    height, width = psi.shape[:2]
    tap_rows, tap_cols = scan_orders.causal_offsets(causal_taps)
    reach = np.asarray(causal_taps).shape[0] // 2
    # y_hat with `reach` zero rows above and zero columns left and right: the masked kernel's
    # "SAME" zero padding. Causal taps lie in the rows up to the centre's, so no row below is
    # ever read.
    buffer = np.zeros((height + reach, width + 2 * reach, channels), coder.latent_dtype)
    for rows, cols in scan_orders.scan_fronts(height, width, causal_taps, scan_order):
        taps = buffer[(rows + reach)[:, None] + tap_rows, (cols + reach)[:, None] + tap_cols]
        extra_at = None if extra is None else extra[rows, cols]
        mean, scale = front_parameters(psi[rows, cols], taps, extra_at)
        buffer[rows + reach, cols + reach] = coder.code((rows, cols), mean, scale)
    return buffer[reach:, reach: reach + width].copy()
