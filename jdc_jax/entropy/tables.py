"""Integer coding tables: the quantized pmfs that encoder and decoder share bit for bit.

Table t models integer symbols s in [offsets[t], offsets[t] + lengths[t] - 2]: symbol s falls in
bin k = s - offsets[t] and has probability pmfs[t, k] / 2**precision. The last valid bin,
k = lengths[t] - 1, is the escape bin: a symbol outside the range is coded as the escape bin and
its value follows in a bypass code (see `range_coder`). Every valid bin has a count >= 1, so every
int32 symbol can be coded, and each row's valid counts sum to exactly 2**precision.

Tables are built once in float64 on the host (`factorized.FactorizedPrior.build_tables`,
`gaussian.build_gaussian_tables`) and then travel with the model as bytes: the decoder uses the
stored tables, never a rebuild, so float differences between machines cannot desynchronise it.
`digest()` names a table set, so a bitstream can say which tables it needs.

Canonical bytes, little-endian, format version 1:

    b"JDCT", uint16 version, uint8 precision, uint8 has_medians, uint32 table count T,
    int32 lengths[T], int32 offsets[T],
    int32 counts: the first lengths[t] entries of each row, rows one after another,
    float32 medians[T] (only if has_medians),
    uint32 CRC-32 of all the bytes before it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import struct
import zlib

import numpy as np

from jdc_jax.atomic_write import write_bytes_atomic

FORMAT_MAGIC = b"JDCT"
FORMAT_VERSION = 1
# constriction's default range coder works with 24-bit probabilities.
MAX_PRECISION = 24

_HEADER = struct.Struct("<4sHBBI")
_CHECKSUM = struct.Struct("<I")
_INT32 = np.iinfo(np.int32)


def quantize_pmf(pmf, tail_mass: float, precision: int = 16) -> np.ndarray:
    """Integer pmf of `pmf` followed by an escape bin of mass `tail_mass`.

    Redistribution rule (deterministic: IEEE float64 products and integer sums only, plus one
    correctly rounded `math.fsum`): with K = len(pmf) + 1 bins and probabilities p normalised to
    sum 1, every bin gets one count, the other 2**precision - K counts are shared in proportion to
    p and rounded down, and the few counts left over go one each to the bins with the largest
    fractional parts (ties to the lower bin index).

    Args:
      pmf: (K - 1,) non-negative finite floats, the in-range bin probabilities.
      tail_mass: probability of all symbols outside the range (the escape bin), >= 0.
      precision: counts sum to 2**precision.

    Returns:
      (K,) int32 counts, each >= 1, summing to exactly 2**precision; the last is the escape bin.
    """
    _check_precision(precision)
    pmf = np.asarray(pmf, dtype=np.float64)
    if pmf.ndim != 1 or pmf.size == 0:
        raise ValueError(f"pmf must be a non-empty 1-D array, got shape {pmf.shape}")
    if not (np.all(np.isfinite(pmf)) and np.all(pmf >= 0)):
        raise ValueError("pmf must hold finite non-negative probabilities")
    tail_mass = float(tail_mass)
    if not (math.isfinite(tail_mass) and tail_mass >= 0):
        raise ValueError(f"tail_mass must be finite and >= 0, got {tail_mass}")
    probabilities = np.append(pmf, tail_mass)
    bins = probabilities.size
    total = 1 << precision
    if bins > total:
        raise ValueError(
            f"{bins} bins (with the escape bin) do not fit {precision}-bit counts (at most {total});"
            " use a larger tail_mass or precision")
    mass = math.fsum(probabilities.tolist())
    if not mass > 0:
        raise ValueError("pmf and tail_mass have zero total mass")
    free = total - bins
    shares = probabilities * (free / mass)
    floors = np.floor(shares)
    counts = floors.astype(np.int64) + 1
    # The floors sum to at most `free` (up to rounding far below one count), so 0 <= leftover <= bins.
    leftover = total - int(counts.sum())
    by_fraction = np.argsort(floors - shares, kind="stable")
    while leftover > 0:
        receivers = by_fraction[:leftover]
        counts[receivers] += 1
        leftover -= receivers.size
    return counts.astype(np.int32)


@dataclasses.dataclass(frozen=True, eq=False)
class CodingTables:
    """A set of T integer coding tables (see the module docstring).

    Attributes:
      pmfs: (T, K_max) int32 counts; row t is valid over its first lengths[t] entries (the last
        of which is the escape bin) and zero after them. K_max == max(lengths).
      offsets: (T,) int32, the symbol value of bin 0 of each table.
      lengths: (T,) int32, valid bins per table including the escape bin (>= 2).
      medians: (T,) float32 or None; per-table value offsets both ends need (the factorized
        prior's channel medians: symbol = round(z - median)).
      precision: counts of each row sum to 2**precision (1 to 24).

    Arrays are copied, validated and made read-only; equality is exact (same canonical bytes).
    """

    pmfs: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    medians: np.ndarray | None = None
    precision: int = 16

    def __post_init__(self):
        _check_precision(self.precision)
        pmfs = _as_int32("pmfs", self.pmfs, ndim=2)
        count = pmfs.shape[0]
        if count == 0:
            raise ValueError("coding tables need at least one table")
        offsets = _as_int32("offsets", self.offsets, ndim=1)
        lengths = _as_int32("lengths", self.lengths, ndim=1)
        for name, array in (("offsets", offsets), ("lengths", lengths)):
            if array.shape != (count,):
                raise ValueError(f"{name} has shape {array.shape}, expected ({count},)")
        if np.any(lengths < 2):
            raise ValueError("every table needs at least one symbol bin and the escape bin")
        if pmfs.shape[1] != lengths.max():
            raise ValueError(
                f"pmfs has {pmfs.shape[1]} columns, but the longest table has {lengths.max()} bins")
        valid = np.arange(pmfs.shape[1]) < lengths[:, None]
        if np.any(pmfs[valid] < 1) or np.any(pmfs[~valid] != 0):
            raise ValueError("pmf counts must be >= 1 inside each table's length and 0 after it")
        sums = pmfs.sum(axis=1, dtype=np.int64)
        if np.any(sums != 1 << self.precision):
            bad = int(np.flatnonzero(sums != 1 << self.precision)[0])
            raise ValueError(
                f"table {bad} counts sum to {sums[bad]}, not 2**{self.precision}")
        last_symbols = offsets.astype(np.int64) + lengths - 2
        if np.any(last_symbols > _INT32.max):
            raise ValueError("offsets + lengths - 2 must fit in int32")
        medians = self.medians
        if medians is not None:
            medians = np.array(medians, dtype=np.float32)
            if medians.shape != (count,) or not np.all(np.isfinite(medians)):
                raise ValueError(f"medians must be ({count},) finite floats, got shape {medians.shape}")
            medians.setflags(write=False)
        for name, array in (("pmfs", pmfs), ("offsets", offsets), ("lengths", lengths)):
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        object.__setattr__(self, "medians", medians)
        object.__setattr__(self, "precision", int(self.precision))

    @classmethod
    def from_rows(cls, rows, offsets, *, precision: int = 16, medians=None) -> "CodingTables":
        """Tables from a sequence of 1-D count arrays (e.g. `quantize_pmf` outputs) of any lengths."""
        rows = [np.asarray(row) for row in rows]
        if not rows or any(row.ndim != 1 for row in rows):
            raise ValueError("rows must be a non-empty sequence of 1-D count arrays")
        lengths = np.array([row.size for row in rows], dtype=np.int64)
        pmfs = np.zeros((len(rows), int(lengths.max())), dtype=np.int64)
        for t, row in enumerate(rows):
            pmfs[t, :row.size] = row
        return cls(pmfs=pmfs, offsets=offsets, lengths=lengths, medians=medians,
                   precision=precision)

    @property
    def num_tables(self) -> int:
        return int(self.lengths.size)

    @functools.cached_property
    def _canonical_bytes(self) -> bytes:
        has_medians = self.medians is not None
        valid = np.arange(self.pmfs.shape[1]) < self.lengths[:, None]
        parts = [
            _HEADER.pack(FORMAT_MAGIC, FORMAT_VERSION, self.precision, has_medians, self.num_tables),
            self.lengths.astype("<i4").tobytes(),
            self.offsets.astype("<i4").tobytes(),
            self.pmfs[valid].astype("<i4").tobytes(),
        ]
        if has_medians:
            parts.append(self.medians.astype("<f4").tobytes())
        body = b"".join(parts)
        return body + _CHECKSUM.pack(zlib.crc32(body))

    def to_bytes(self) -> bytes:
        """The canonical byte form (see the module docstring)."""
        return self._canonical_bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> "CodingTables":
        """Parse `to_bytes` output; ValueError on a wrong magic, version, length or checksum."""
        data = bytes(data)
        if len(data) < _HEADER.size + _CHECKSUM.size:
            raise ValueError(f"coding tables data too short ({len(data)} bytes)")
        magic, version, precision, has_medians, count = _HEADER.unpack_from(data)
        if magic != FORMAT_MAGIC:
            raise ValueError(f"not coding tables data (magic {magic!r}, expected {FORMAT_MAGIC!r})")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported coding tables format version {version} "
                             f"(this build reads version {FORMAT_VERSION})")
        if has_medians not in (0, 1) or count == 0:
            raise ValueError("corrupt coding tables header")
        (checksum,) = _CHECKSUM.unpack_from(data, len(data) - _CHECKSUM.size)
        if zlib.crc32(data[:-_CHECKSUM.size]) != checksum:
            raise ValueError("coding tables data is corrupt (checksum mismatch)")
        position = _HEADER.size
        if len(data) < position + 8 * count + _CHECKSUM.size:
            raise ValueError("coding tables data is truncated")
        lengths = np.frombuffer(data, "<i4", count, position).astype(np.int64)
        offsets = np.frombuffer(data, "<i4", count, position + 4 * count).astype(np.int32)
        position += 8 * count
        if np.any(lengths < 2):
            raise ValueError("corrupt coding tables: a table has fewer than 2 bins")
        expected = position + 4 * int(lengths.sum()) + 4 * count * has_medians + _CHECKSUM.size
        if len(data) != expected:
            raise ValueError(f"coding tables data has {len(data)} bytes, its header implies {expected}")
        counts = np.frombuffer(data, "<i4", int(lengths.sum()), position)
        position += counts.nbytes
        medians = np.frombuffer(data, "<f4", count, position) if has_medians else None
        pmfs = np.zeros((count, int(lengths.max())), dtype=np.int32)
        pmfs[np.arange(pmfs.shape[1]) < lengths[:, None]] = counts
        return cls(pmfs=pmfs, offsets=offsets, lengths=lengths, medians=medians,
                   precision=precision)

    def digest(self) -> str:
        """sha256 hex digest of the canonical bytes."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def save(self, path) -> None:
        """Write the canonical bytes to `path` atomically (temporary file, then rename)."""
        write_bytes_atomic(path, self.to_bytes())

    @classmethod
    def load(cls, path) -> "CodingTables":
        with open(path, "rb") as file:
            return cls.from_bytes(file.read())

    def __eq__(self, other):
        if not isinstance(other, CodingTables):
            return NotImplemented
        return self is other or self.to_bytes() == other.to_bytes()

    def __hash__(self):
        return hash(self.to_bytes())


def _check_precision(precision):
    if not isinstance(precision, (int, np.integer)) or not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision must be an integer in [1, {MAX_PRECISION}], got {precision!r}")


def _as_int32(name, values, *, ndim):
    array = np.asarray(values)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.size and (array.min() < _INT32.min or array.max() > _INT32.max):
        raise ValueError(f"{name} values must fit in int32")
    return np.array(array, dtype=np.int32)
