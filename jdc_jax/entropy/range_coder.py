"""Range coding of int32 symbols with integer `CodingTables`, using constriction's queue coder.

A message is a sequence of chunks; each chunk is a pair of equal-length 1-D int arrays
(symbols, indexes): symbol i is coded with table indexes[i]. The decoder, given the same
sequence of index arrays, returns the symbols chunk by chunk, in encode order, which is what a
serial autoregressive decoder needs (one chunk of C symbols per spatial position).

Within a chunk (no Python loop per symbol):
  1. symbols are stable-sorted by table index and each run of equal index is coded with one
     call on that table's model; the decoder sorts its indexes the same way, decodes the runs
     and undoes the sort;
  2. a symbol s outside its table's range is coded as the escape bin; after all the chunk's
     table-coded bins, each escaped value follows in a bypass code (uniform models): with bin
     k = s - offset and escape bin e = length - 1, u = 2 * (k - e) above the range and
     u = 2 * (-k - 1) + 1 below it; m = bit_length(u + 1) - 1 is coded uniformly in [0, 32],
     then the m low bits of u + 1 (its leading one is implied) in pieces of up to 8 bits, least
     significant first (an Elias-gamma code with a flat length prefix). Any int32 symbol
     round-trips.

Models: one constriction `Categorical(perfect=False)` per table, built from counts / 2**precision
in float64. Those are exact binary fractions, and constriction's fast quantizer maps them with
exact arithmetic (floor(cdf * (2**24 - K)) + index), so the coding model is the same on every
machine. Models are built when an Encoder or Decoder first sees a table set (about 10 ms for a
thousand tables) and cached for the last four sets, keyed by their canonical bytes.

Bytes: constriction's compressed uint32 words, little-endian.
"""

from __future__ import annotations

import functools

import constriction
import numpy as np

from jdc_jax.entropy.tables import CodingTables

# For int32 symbols and offsets |k| < 2**32, so u + 1 < 2**33 and m <= 32.
_MAX_ESCAPE_BITS = 32
_ESCAPE_PIECE_BITS = 8
_INT32 = np.iinfo(np.int32)

_escape_length_model = constriction.stream.model.Uniform(_MAX_ESCAPE_BITS + 1)
_escape_piece_models = constriction.stream.model.Uniform()


class Encoder:
    """Streaming encoder: `encode(symbols, indexes)` once per chunk, then `finish()`."""

    def __init__(self, tables: CodingTables):
        self._tables = _require_tables(tables)
        self._models = _table_models(self._tables)
        self._coder = constriction.stream.queue.RangeEncoder()
        self._finished = False

    def encode(self, symbols, indexes) -> None:
        """Append one chunk: `symbols` and `indexes`, 1-D integer arrays of equal length."""
        if self._finished:
            raise RuntimeError("the encoder is finished; start a new Encoder")
        symbols = _as_symbols(symbols)
        indexes = _as_indexes(indexes, self._tables.num_tables, expected_size=symbols.size)
        if symbols.size == 0:
            return
        bins = symbols.astype(np.int64) - self._tables.offsets[indexes]
        escape_bins = self._tables.lengths[indexes] - 1
        escaped = (bins < 0) | (bins >= escape_bins)
        coded_bins = np.where(escaped, escape_bins, bins).astype(np.int32)
        order, runs = _runs(indexes)
        sorted_bins = coded_bins[order]
        for start, stop, table in runs:
            self._coder.encode(sorted_bins[start:stop], self._models[table])
        if escaped.any():
            _encode_escapes(self._coder, bins[escaped], escape_bins[escaped])

    def finish(self) -> bytes:
        """The compressed message (little-endian uint32 words); ends this encoder."""
        self._finished = True
        return self._coder.get_compressed().astype("<u4").tobytes()


class Decoder:
    """Streaming decoder of `Encoder` output: `decode(indexes)` once per encoded chunk."""

    def __init__(self, data: bytes, tables: CodingTables):
        self._tables = _require_tables(tables)
        self._models = _table_models(self._tables)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        if len(data) % 4:
            raise ValueError(f"compressed data must be whole 32-bit words, got {len(data)} bytes")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        self._coder = constriction.stream.queue.RangeDecoder(words)

    def decode(self, indexes) -> np.ndarray:
        """The next chunk's symbols, (len(indexes),) int32, coded with tables `indexes`.

        Raises ValueError where the data cannot be valid (corrupt or truncated); some corrupt
        data decodes to wrong symbols instead, as no range coder can tell.
        """
        indexes = _as_indexes(indexes, self._tables.num_tables)
        if indexes.size == 0:
            return np.zeros(0, dtype=np.int32)
        order, runs = _runs(indexes)
        sorted_bins = np.empty(indexes.size, dtype=np.int64)
        try:
            for start, stop, table in runs:
                sorted_bins[start:stop] = self._coder.decode(self._models[table], stop - start)
        except (AssertionError, ValueError, KeyError, RuntimeError) as error:
            raise ValueError(f"corrupt compressed data: {error}") from error
        bins = np.empty_like(sorted_bins)
        bins[order] = sorted_bins
        escape_bins = self._tables.lengths[indexes] - 1
        escaped = bins == escape_bins
        if escaped.any():
            bins[escaped] = _decode_escapes(self._coder, escape_bins[escaped])
        symbols = bins + self._tables.offsets[indexes]
        if symbols.min() < _INT32.min or symbols.max() > _INT32.max:
            raise ValueError("corrupt compressed data: a decoded symbol does not fit int32")
        return symbols.astype(np.int32)


def encode(symbols, indexes, tables: CodingTables) -> bytes:
    """One-chunk message of `symbols` coded with `indexes` (integer arrays of equal shape)."""
    symbols, indexes = np.asarray(symbols), np.asarray(indexes)
    if symbols.shape != indexes.shape:
        raise ValueError(f"symbols {symbols.shape} and indexes {indexes.shape} differ in shape")
    encoder = Encoder(tables)
    encoder.encode(symbols.reshape(-1), indexes.reshape(-1))
    return encoder.finish()


def decode(data: bytes, indexes, tables: CodingTables) -> np.ndarray:
    """Inverse of `encode`: int32 symbols of `indexes`' shape."""
    indexes = np.asarray(indexes)
    return Decoder(data, tables).decode(indexes.reshape(-1)).reshape(indexes.shape)


def _require_tables(tables):
    if tables is None:
        raise ValueError("coding tables are not built: call build_tables(...) (factorized prior) "
                         "or build_gaussian_tables(...) first")
    if not isinstance(tables, CodingTables):
        raise TypeError(f"tables must be CodingTables, got {type(tables).__name__}")
    return tables


@functools.lru_cache(maxsize=4)
def _table_models(tables: CodingTables):
    scale = 1.0 / (1 << tables.precision)
    return [constriction.stream.model.Categorical(row[:length] * scale, perfect=False)
            for row, length in zip(tables.pmfs.astype(np.float64), tables.lengths.tolist())]


def _as_symbols(symbols):
    symbols = np.asarray(symbols)
    if symbols.ndim != 1:
        raise ValueError(f"symbols must be 1-D, got shape {symbols.shape}")
    if not np.issubdtype(symbols.dtype, np.integer):
        raise ValueError(f"symbols must be integers, got dtype {symbols.dtype}")
    wider_than_int32 = not np.can_cast(symbols.dtype, np.int32)
    if wider_than_int32 and symbols.size and (symbols.min() < _INT32.min
                                               or symbols.max() > _INT32.max):
        raise ValueError("symbols must fit in int32")
    return symbols


def _as_indexes(indexes, num_tables, expected_size=None):
    indexes = np.asarray(indexes)
    if indexes.ndim != 1:
        raise ValueError(f"indexes must be 1-D, got shape {indexes.shape}")
    if expected_size is not None and indexes.size != expected_size:
        raise ValueError(f"{indexes.size} indexes for {expected_size} symbols")
    if not np.issubdtype(indexes.dtype, np.integer):
        raise ValueError(f"indexes must be integers, got dtype {indexes.dtype}")
    if indexes.size and (indexes.min() < 0 or indexes.max() >= num_tables):
        raise ValueError(f"indexes must lie in [0, {num_tables}), got "
                         f"[{indexes.min()}, {indexes.max()}]")
    return indexes.astype(np.intp, copy=False)


def _runs(indexes):
    """Stable sort order of `indexes` and its runs as (start, stop, table) tuples."""
    order = np.argsort(indexes, kind="stable")
    sorted_indexes = indexes[order]
    starts = np.flatnonzero(sorted_indexes[1:] != sorted_indexes[:-1]) + 1
    bounds = [0, *starts.tolist(), indexes.size]
    tables = sorted_indexes[bounds[:-1]].tolist()
    return order, list(zip(bounds[:-1], bounds[1:], tables))


def _escape_pieces(lengths):
    """Owner, rank and width of every bypass piece of escaped values with `lengths` bits."""
    counts = -(-lengths // _ESCAPE_PIECE_BITS)
    owners = np.repeat(np.arange(lengths.size), counts)
    ranks = np.arange(owners.size) - np.repeat(np.cumsum(counts) - counts, counts)
    widths = np.minimum(_ESCAPE_PIECE_BITS, lengths[owners] - _ESCAPE_PIECE_BITS * ranks)
    return owners, ranks, widths


def _encode_escapes(coder, bins, escape_bins):
    above = bins >= escape_bins
    folded = np.where(above, 2 * (bins - escape_bins), 2 * (-bins - 1) + 1)
    code = folded + 1
    lengths = _bit_lengths(code) - 1
    coder.encode(lengths.astype(np.int32), _escape_length_model)
    owners, ranks, widths = _escape_pieces(lengths)
    if owners.size:
        pieces = (code[owners] >> (_ESCAPE_PIECE_BITS * ranks)) & ((1 << widths) - 1)
        coder.encode(pieces.astype(np.int32), _escape_piece_models,
                     (1 << widths).astype(np.int32))


def _decode_escapes(coder, escape_bins):
    try:
        lengths = coder.decode(_escape_length_model, escape_bins.size).astype(np.int64)
        owners, ranks, widths = _escape_pieces(lengths)
        code = np.left_shift(1, lengths)
        if owners.size:
            pieces = coder.decode(_escape_piece_models, (1 << widths).astype(np.int32))
            np.bitwise_or.at(code, owners, pieces.astype(np.int64) << (_ESCAPE_PIECE_BITS * ranks))
    except (AssertionError, KeyError, RuntimeError) as error:
        raise ValueError(f"corrupt compressed data: {error}") from error
    folded = code - 1
    return np.where(folded % 2 == 0, escape_bins + folded // 2, -(folded // 2) - 1)


def _bit_lengths(values):
    """Bit lengths of positive int64 values (exact; no float logarithm)."""
    lengths = np.zeros(values.shape, dtype=np.int64)
    remaining = values.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        big = remaining >= (1 << shift)
        lengths += np.where(big, shift, 0)
        remaining = np.where(big, remaining >> shift, remaining)
    return lengths + 1
