"""Rate cost of the integer entropy path against the float path, on Kodak, for shipped models.

For each rate point of a shipped model (`jicd-sigma25` by default), the integer network
is read from --integer-dir/rate_point_K.npz, or is the entry's own when it ships one, or is
calibrated on the built-in photographs (scikit-image's, centre 256 x 256 crops) with the
model's training noise (`integer.calibrate.calibrate_codec`; never on Kodak). Each Kodak image (../shared/testsets/kodak24, evaluation only)
gets AWGN as the evaluation synthesizes it (`noise.noisy_for_file`, seeded by its name) and is
compressed with both paths. Prints per rate point the total bytes and bits per pixel of each
path and the relative difference (integer - float) / float (goal: at most 1 %), and whether the
decoded pixels of the two paths are identical (serial contexts: y_hat = round(y) on both paths,
so only the rate may differ).

    python benchmarks/bench_integer_rate.py [--model jicd-sigma25] [--rate-points 1]
        [--limit N] [--weight-bits 8] [--activation-bits 12] [--integer-dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from jdc_jax import images, noise, zoo
from jdc_jax.atomic_write import write_bytes_atomic
from jdc_jax.integer import calibrate
from jdc_jax.integer.network import IntegerEntropyModel

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "testsets" / "kodak24"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="jicd-sigma25")
    parser.add_argument("--rate-points", default="", help="comma-separated (default: all)")
    parser.add_argument("--dataset", default=str(KODAK))
    parser.add_argument("--noise", default="awgn:25")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    parser.add_argument("--weight-bits", type=int, default=calibrate.DEFAULT_WEIGHT_BITS)
    parser.add_argument("--activation-bits", type=int,
                        default=calibrate.DEFAULT_ACTIVATION_BITS)
    parser.add_argument("--integer-dir", help="read/write rate_point_K.npz here")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    arguments = parser.parse_args(argv)

    points = ([int(p) for p in arguments.rate_points.split(",")] if arguments.rate_points
              else list(zoo.available()[arguments.model]))
    spec = noise.parse_noise_spec(arguments.noise)
    dataset = images.load_folder(arguments.dataset, arguments.limit)
    pixels = sum(image.shape[0] * image.shape[1] for _, image in dataset)
    print(f"{arguments.model}, rate points {points}; {len(dataset)} images of "
          f"{arguments.dataset} with {arguments.noise}; weight bits {arguments.weight_bits}, "
          f"activation bits {arguments.activation_bits}; load average {os.getloadavg()}",
          flush=True)
    report = []
    for point in points:
        base = zoo.load(arguments.model, rate_point=point)
        stored = (Path(arguments.integer_dir) / f"rate_point_{point}.npz"
                  if arguments.integer_dir else None)
        if stored is not None and stored.is_file():
            integer = IntegerEntropyModel.load(stored)
        elif base.integer_entropy is not None:  # the entry ships its own
            integer = base.integer_entropy
        else:
            integer = calibrate.calibrate_codec(base, weight_bits=arguments.weight_bits,
                                                activation_bits=arguments.activation_bits)
            if stored is not None:
                integer.save(stored)
        codec = base.with_integer_entropy(integer)
        totals = {"float": 0, "integer": 0}
        identical, start = True, time.perf_counter()
        for name, clean in dataset:
            noisy = noise.noisy_for_file(clean, name, spec, arguments.seed)
            files = {path: codec.compress(noisy, entropy_path=path) for path in totals}
            for path, data in files.items():
                totals[path] += len(data)
            if codec.context_model == "serial":
                identical &= all(np.array_equal(codec.decompress(files["float"], output),
                                                codec.decompress(files["integer"], output))
                                 for output in codec.outputs)
            print(f"  {name}: float {len(files['float'])} B, integer {len(files['integer'])} B "
                  f"({100 * (len(files['integer']) / len(files['float']) - 1):+.3f} %)",
                  flush=True)
        relative = totals["integer"] / totals["float"] - 1
        row = {"rate_point": point, "bytes": totals,
               "bits_per_pixel": {path: 8 * size / pixels for path, size in totals.items()},
               "relative_difference": relative, "identical_pixels": bool(identical),
               "largest_accumulator_bound": max(integer.accumulator_bounds().values()),
               "seconds": time.perf_counter() - start}
        report.append(row)
        print(f"rate point {point}: float {row['bits_per_pixel']['float']:.5f} bpp, integer "
              f"{row['bits_per_pixel']['integer']:.5f} bpp: {100 * relative:+.3f} %; decoded "
              f"pixels identical: {identical}", flush=True)
    print(f"load average at the end {os.getloadavg()}")
    if arguments.json:
        write_bytes_atomic(arguments.json, json.dumps(
            {"model": arguments.model, "images": len(dataset), "noise": arguments.noise,
             "weight_bits": arguments.weight_bits, "activation_bits": arguments.activation_bits,
             "rate_points": report}, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
