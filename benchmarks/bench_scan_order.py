"""Rate and identity of the serial context's two scan orders on Kodak: wavefront vs raster.

For each Kodak image (../shared/testsets/kodak24, evaluation only), AWGN of sigma 25 is
synthesized as the evaluation synthesizes it (`noise.noisy_for_file`, seeded by the image's
name), and a shipped serial-context JICD (`jicd-sigma25`, rate point 1 by default)
compresses the noisy image once in raster order and once in wavefront order. Both files are
decoded to both outputs (denoised: side + base chunks; noisy: all chunks), and the two orders
must give identical latents (y_hat) and pixels; the run stops with an error otherwise.

Prints one row per image (bytes of each file, their difference, and whether each stream's
symbols are the raster symbols reordered: the same probabilities give the same symbols unless a
batched float rounds a mean or scale differently), then the totals, the relative rate difference
(wavefront - raster) / raster over the whole set, and the median compress and decompress seconds
of each order over the images after the first (whose calls compile). Wall-clock times move with
the machine's load; the rates do not.

    python benchmarks/bench_scan_order.py [--model jicd-sigma25] [--rate-point 1]
        [--limit N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from jdc_jax import images, noise, zoo
from jdc_jax.atomic_write import write_bytes_atomic
from jdc_jax.codec import scan_order

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "testsets" / "kodak24"
ORDERS = ("raster", "wavefront")


def symbols_in_raster_order(codec, encoding, stream: str) -> np.ndarray:
    """A wavefront encoding's symbols of one latent group, (h * w, C) in raster order."""
    height, width, channels = encoding.latents[stream].shape
    fronts = scan_order.scan_fronts(height, width, codec.groups[stream].causal_taps,
                                    "wavefront")
    positions = np.concatenate([rows * width + cols for rows, cols in fronts])
    reordered = np.empty((height * width, channels), np.int32)
    reordered[positions] = encoding.symbols[stream].reshape(-1, channels)
    return reordered


def code_image(codec, noisy: np.ndarray) -> dict:
    """Both orders of one image: bytes, seconds, and the identity checks."""
    result = {}
    decoded = {}
    encodings = {}
    for order in ORDERS:
        start = time.perf_counter()
        encodings[order] = codec.encode(noisy, scan_order=order)
        compress = time.perf_counter() - start
        start = time.perf_counter()
        decoded[order] = {output: codec.decode(encodings[order].data, output)
                          for output in codec.outputs}
        decompress = (time.perf_counter() - start) / len(codec.outputs)
        result[order] = {"bytes": len(encodings[order].data), "compress_seconds": compress,
                         "decompress_seconds": decompress}
    for output in codec.outputs:
        raster, wavefront = (decoded[order][output] for order in ORDERS)
        for stream, latent in raster.latents.items():
            if not np.array_equal(wavefront.latents[stream], latent):
                raise SystemExit(f"{output}: the {stream} latents of the two orders differ")
        if not np.array_equal(wavefront.image, raster.image):
            raise SystemExit(f"{output}: the decoded images of the two orders differ")
    result["same_symbols"] = {
        stream: bool(np.array_equal(
            symbols_in_raster_order(codec, encodings["wavefront"], stream),
            encodings["raster"].symbols[stream].reshape(-1, codec.groups[stream].channels)))
        for stream in codec.groups}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="jicd-sigma25", help="a zoo model name")
    parser.add_argument("--rate-point", type=int, default=1)
    parser.add_argument("--dataset", default=str(KODAK), help="folder of test images")
    parser.add_argument("--noise", default="awgn:25", help="noise spec (jdc_jax.noise)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed, as in evaluation")
    parser.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    arguments = parser.parse_args(argv)

    codec = zoo.load(arguments.model, rate_point=arguments.rate_point)
    if codec.context_model != "serial":
        parser.error(f"{arguments.model} has a {codec.context_model!r} context: one order only")
    spec = noise.parse_noise_spec(arguments.noise)
    dataset = images.load_folder(arguments.dataset, arguments.limit)
    print(f"{arguments.model} rate point {arguments.rate_point} ({codec.model_kind}, serial "
          f"context); {len(dataset)} images of {arguments.dataset} with {arguments.noise}; "
          f"load average {os.getloadavg()}", flush=True)
    print(f"{'image':<14} {'raster B':>9} {'wavefront B':>11} {'diff B':>7}  same symbols")
    rows = []
    for name, clean in dataset:
        noisy = noise.noisy_for_file(clean, name, spec, arguments.seed)
        row = {"image": name, **code_image(codec, noisy)}
        rows.append(row)
        same = ", ".join(f"{stream} {'yes' if same else 'no'}"
                         for stream, same in row["same_symbols"].items())
        print(f"{name:<14} {row['raster']['bytes']:>9d} {row['wavefront']['bytes']:>11d} "
              f"{row['wavefront']['bytes'] - row['raster']['bytes']:>+7d}  {same}", flush=True)
    totals = {order: sum(row[order]["bytes"] for row in rows) for order in ORDERS}
    relative = (totals["wavefront"] - totals["raster"]) / totals["raster"]
    print(f"{'total':<14} {totals['raster']:>9d} {totals['wavefront']:>11d} "
          f"{totals['wavefront'] - totals['raster']:>+7d}  wavefront vs raster "
          f"{100 * relative:+.4f} %; latents and pixels identical on every image")
    timed = rows[1:] or rows
    seconds = {order: {part: statistics.median(row[order][f"{part}_seconds"] for row in timed)
                       for part in ("compress", "decompress")} for order in ORDERS}
    for order in ORDERS:
        print(f"{order}: median compress {seconds[order]['compress']:.3f} s, decompress "
              f"{seconds[order]['decompress']:.3f} s per output (images after the first)")
    print(f"load average at the end {os.getloadavg()}")
    if arguments.json:
        write_bytes_atomic(arguments.json, json.dumps(
            {"model": arguments.model, "rate_point": arguments.rate_point,
             "noise": arguments.noise, "images": rows, "total_bytes": totals,
             "relative_difference": relative, "median_seconds": seconds}, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
