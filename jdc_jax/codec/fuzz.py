"""Decoder fault injection: mutated ``.jdc`` files and the tally of what a decoder makes of them.

Used by tests/test_faults.py (thousands of cases in CI) and benchmarks/fuzz_decoder.py (tens of
thousands, standalone). A decoder is robust when every mutated file ends in one of three
outcomes, and nothing else (no other exception, no hang, no allocation beyond the declared
sizes):

    decoded   an image of the size the file's header declares, (height, width, 3)
    refused   a `file_format.JdcFormatError` subclass (tallied by class name)
    usage     a plain ValueError naming something the file cannot give (e.g. the noisy output of
              a file whose enhancement chunk was cut off)

Mutations (`MUTATIONS`), each drawn from a seeded numpy Generator, so a case is reproducible
from (seed, index):

    flip          XOR one byte with a random non-zero mask
    burst         overwrite 2 to 32 consecutive bytes with random bytes
    truncate      cut the file at a random length
    insert        insert 1 to 16 random bytes
    delete        delete 1 to 16 bytes
    splice        the head of one file followed by the tail of another
    header_int    write an extreme or random 8/16/32-bit integer into the header, then recompute
                  the header CRC, so the value reaches the header's own checks
    chunk_length  the same for a chunk's length field, with its framing CRC recomputed
    payload       garbage in one chunk's payload (random bytes, a flipped byte, a shorter or
                  longer payload) with every CRC recomputed, so the range decoder runs on it
                  (`with_garbage_payload`)

This module imports no JAX; it runs any object with `decode(data, output)`.
"""

from __future__ import annotations

import collections
import dataclasses
import struct
import time
import zlib
from typing import Callable, Sequence

import numpy as np

from jdc_jax.codec import file_format

MUTATIONS = ("flip", "burst", "truncate", "insert", "delete", "splice", "header_int",
             "chunk_length", "payload")
# Extreme integers a forged field is most likely to get wrong (sizes 0, 1, powers of two and
# their neighbours, the largest values of each width).
_EXTREMES = (0, 1, 2, 3, 7, 8, 15, 16, 63, 64, 65, 255, 256, 4095, 4096, 65535, 65536, 2**24,
             2**28, 2**31 - 1, 2**31, 2**32 - 1)
_HEADER_SIZE_OFFSET = 10  # uint16 after the magic and the version, in every format version
_CHUNK_FRAMING = struct.Struct("<4sII")  # tag, payload length, symbols CRC; then its CRC


@dataclasses.dataclass
class Tally:
    """Outcome counts of a fuzz run.

    Attributes:
      counts: outcome -> count: "decoded", "usage: ValueError" and "refused: <class name>";
        anything else is "unexpected: <class name>".
      by_mutation: mutation -> count of cases.
      unexpected: (mutation, seed, index, repr of the exception) of every unexpected outcome,
        and of decoded images whose shape is not the declared one.
      slowest: (seconds, mutation) of the slowest case.
    """

    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    by_mutation: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    unexpected: list = dataclasses.field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        """The counts, one "outcome: count" line each, most frequent first."""
        return [f"{outcome}: {count}" for outcome, count in self.counts.most_common()]


def mutate(data: bytes, other: bytes, mutation: str, rng: np.random.Generator) -> bytes:
    """One mutated copy of `data` (`other`: the second file of a splice)."""
    size = len(data)
    if mutation == "flip":
        damaged = bytearray(data)
        damaged[rng.integers(size)] ^= int(rng.integers(1, 256))
        return bytes(damaged)
    if mutation == "burst":
        length = int(rng.integers(2, 33))
        start = int(rng.integers(0, max(size - length, 1)))
        return data[:start] + _random_bytes(rng, length) + data[start + length:]
    if mutation == "truncate":
        return data[:int(rng.integers(0, size))]
    if mutation == "insert":
        at = int(rng.integers(0, size + 1))
        return data[:at] + _random_bytes(rng, int(rng.integers(1, 17))) + data[at:]
    if mutation == "delete":
        at = int(rng.integers(0, size))
        return data[:at] + data[at + int(rng.integers(1, 17)):]
    if mutation == "splice":
        return data[:int(rng.integers(0, size + 1))] + other[int(rng.integers(0, len(other) + 1)):]
    if mutation == "header_int":
        return with_forged_header_integer(data, rng)
    if mutation == "chunk_length":
        return with_forged_chunk_length(data, rng)
    if mutation == "payload":
        return with_garbage_payload(data, rng)
    raise ValueError(f"unknown mutation {mutation!r}; expected one of {MUTATIONS}")


def with_forged_header_integer(data: bytes, rng: np.random.Generator) -> bytes:
    """`data` with an 8, 16 or 32-bit integer written at a random place of its header (after
    the magic) and the header CRC recomputed. The header size field itself is left alone, so
    the CRC lands where a reader looks for it."""
    (header_size,) = struct.unpack_from("<H", data, _HEADER_SIZE_OFFSET)
    fmt = ("<B", "<H", "<I")[int(rng.integers(3))]
    width = struct.calcsize(fmt)
    body_end = header_size - 4
    places = [offset for offset in range(len(file_format.MAGIC), body_end - width + 1)
              if offset + width <= _HEADER_SIZE_OFFSET or offset >= _HEADER_SIZE_OFFSET + 2]
    damaged = bytearray(data)
    struct.pack_into(fmt, damaged, int(rng.choice(places)), _integer(rng, width))
    struct.pack_into("<I", damaged, body_end, zlib.crc32(damaged[:body_end]))
    return bytes(damaged)


def with_forged_chunk_length(data: bytes, rng: np.random.Generator) -> bytes:
    """`data` with one chunk's payload length replaced and its framing CRC recomputed."""
    spans = file_format.parse_file(data).spans
    offset, _ = spans[str(rng.choice([layer for layer in spans if layer != "header"]))]
    tag, _, symbols_crc = _CHUNK_FRAMING.unpack_from(data, offset)
    framing = _CHUNK_FRAMING.pack(tag, _integer(rng, 4), symbols_crc)
    return (data[:offset] + framing + struct.pack("<I", zlib.crc32(framing))
            + data[offset + _CHUNK_FRAMING.size + 4:])


def with_garbage_payload(data: bytes, rng: np.random.Generator,
                         layer: str | None = None) -> bytes:
    """`data` with garbage in one chunk's payload (`layer`, or a random one) and every CRC valid
    again: random bytes of the same length, of another length, or the payload with one byte
    flipped. The stored symbols CRC is kept, so only the decoded symbols can tell."""
    parsed = file_format.parse_file(data)
    layer = layer or str(rng.choice(sorted(parsed.chunks)))
    payload = parsed.chunks[layer]
    kind = int(rng.integers(3))
    if kind == 0 or not payload:
        garbage = _random_bytes(rng, len(payload))
    elif kind == 1:
        garbage = _random_bytes(rng, int(rng.integers(0, 2 * len(payload) + 9)))
    else:
        damaged = bytearray(payload)
        damaged[rng.integers(len(payload))] ^= int(rng.integers(1, 256))
        garbage = bytes(damaged)
    chunks = dict(parsed.chunks, **{layer: garbage})
    return file_format.write_file(parsed.header, chunks, parsed.symbols_crcs)


def run(codec, files: Sequence[bytes], count: int, seed: int = 0,
        outputs: Sequence[str] = ("denoised",), mutations: Sequence[str] = MUTATIONS,
        progress: Callable[[int], None] | None = None) -> Tally:
    """Decodes `count` mutated files with `codec.decode(data, output)` and tallies the outcomes.

    Case i mutates files[i % len(files)] (splicing in the next file) with mutations[i % len]
    and decodes output outputs[(i // len(files)) % len(outputs)], so every file meets every
    output; its random numbers come from (seed, i).
    `progress(i)` is called after each case when given.
    """
    tally = Tally()
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        mutation = mutations[index % len(mutations)]
        data = files[index % len(files)]
        damaged = mutate(data, files[(index + 1) % len(files)], mutation, rng)
        output = outputs[(index // len(files)) % len(outputs)]
        start = time.perf_counter()
        outcome = _outcome(codec, damaged, output)
        seconds = time.perf_counter() - start
        if outcome.startswith("unexpected"):
            tally.unexpected.append((mutation, seed, index, outcome))
        tally.counts[outcome.split(" (")[0]] += 1
        tally.by_mutation[mutation] += 1
        tally.slowest = max(tally.slowest, (seconds, mutation))
        if progress is not None:
            progress(index)
    return tally


def _outcome(codec, data: bytes, output: str) -> str:
    try:
        decoded = codec.decode(data, output)
    except file_format.JdcFormatError as error:
        return f"refused: {type(error).__name__}"
    except ValueError as error:
        if type(error) is ValueError:
            return "usage: ValueError"
        return f"unexpected: {type(error).__name__} ({error})"
    except Exception as error:  # noqa: BLE001 - anything else is the finding
        return f"unexpected: {type(error).__name__} ({error})"
    header = file_format.parse_file(data).header
    if decoded.image.shape != (header.height, header.width, 3):
        return (f"unexpected: decoded shape {decoded.image.shape} ({header.height}x"
                f"{header.width} declared)")
    return "decoded"


def _integer(rng: np.random.Generator, width: int) -> int:
    """An extreme value half the time, else a uniform one, below 2^(8 width)."""
    limit = 2 ** (8 * width)
    if rng.random() < 0.5:
        return int(rng.choice([value for value in _EXTREMES if value < limit]))
    return int(rng.integers(0, limit))


def _random_bytes(rng: np.random.Generator, length: int) -> bytes:
    return rng.integers(0, 256, length, dtype=np.uint8).tobytes()
