"""Range coder throughput (symbols per second) with the 64 Gaussian scale tables.

Two patterns, each timed `--repeats` times (median reported):
  one_chunk: 1,000,000 symbols coded in a single chunk;
  serial:    1536 chunks of 192 symbols, the serial-context decode pattern of a 768x512 image
             with 192 latent channels (one chunk per latent position, 48 x 32 positions).
Table indexes are uniform over the 64 scales (about 60 runs per 192-symbol chunk, a worst case
for per-run overhead); symbols are rounded N(0, scale) draws.

Usage: python benchmarks/bench_range_coder.py [--repeats 3] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from jdc_jax.entropy.gaussian import SCALE_TABLE, build_gaussian_tables
from jdc_jax.entropy.range_coder import Decoder, Encoder
from jdc_jax.results import write_file_atomically


def _draw(rng, count):
    indexes = rng.integers(0, len(SCALE_TABLE), count).astype(np.int32)
    symbols = np.round(SCALE_TABLE[indexes] * rng.standard_normal(count)).astype(np.int32)
    return symbols, indexes


def _time_chunks(tables, chunks):
    """Seconds to encode and to decode `chunks` [(symbols, indexes)], and the message bytes."""
    start = time.perf_counter()
    encoder = Encoder(tables)
    for symbols, indexes in chunks:
        encoder.encode(symbols, indexes)
    data = encoder.finish()
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    decoder = Decoder(data, tables)
    decoded = [decoder.decode(indexes) for _, indexes in chunks]
    decode_seconds = time.perf_counter() - start
    if not all(np.array_equal(d, s) for d, (s, _) in zip(decoded, chunks)):
        raise RuntimeError("round trip failed")
    return encode_seconds, decode_seconds, len(data)


def run(repeats: int) -> dict:
    tables = build_gaussian_tables()
    rng = np.random.default_rng(0)
    patterns = {
        "one_chunk": [_draw(rng, 1_000_000)],
        "serial": [_draw(rng, 192) for _ in range(1536)],
    }
    results = {}
    for name, chunks in patterns.items():
        symbols = sum(s.size for s, _ in chunks)
        timings = [_time_chunks(tables, chunks) for _ in range(repeats)]
        encode_seconds = statistics.median(t[0] for t in timings)
        decode_seconds = statistics.median(t[1] for t in timings)
        results[name] = {
            "chunks": len(chunks),
            "symbols": symbols,
            "bits_per_symbol": 8 * timings[0][2] / symbols,
            "encode_seconds": encode_seconds,
            "decode_seconds": decode_seconds,
            "encode_symbols_per_second": symbols / encode_seconds,
            "decode_symbols_per_second": symbols / decode_seconds,
        }
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per pattern")
    parser.add_argument("--json", help="also write the results to this JSON file")
    arguments = parser.parse_args()
    results = run(arguments.repeats)
    for name, r in results.items():
        print(f"{name:9s} {r['chunks']:5d} chunks, {r['symbols']:8d} symbols, "
              f"{r['bits_per_symbol']:.3f} bits/symbol: "
              f"encode {r['encode_symbols_per_second'] / 1e6:6.2f} M symbols/s "
              f"({r['encode_seconds'] * 1e3:7.1f} ms), "
              f"decode {r['decode_symbols_per_second'] / 1e6:6.2f} M symbols/s "
              f"({r['decode_seconds'] * 1e3:7.1f} ms)")
    if arguments.json:
        write_file_atomically(arguments.json, json.dumps(results, indent=2).encode())


if __name__ == "__main__":
    main()
