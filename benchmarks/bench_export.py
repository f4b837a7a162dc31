"""Exported inference package of the default JICD: its size, load time and coding times.

The model is the default JICD (N = M = 192, base layer 180 channels, serial context),
randomly initialised. The package (`jdc_jax.export`) is written to a temporary directory, then a
fresh process (which imports no model code) loads it with `jdc_jax.exported.Codec.load` and
compresses the 768 x 512 benchmark image of `bench_codec` (layers "full"), and decompresses
"denoised" (side + base) and "noisy" (all chunks): the first call's time (which includes
compiling the pieces it is the first to use) and the median of `--repeats` further calls. The
native codec compresses the same image in this process, to confirm the package's file is
byte-identical. Times are wall-clock on whatever else the machine runs.

Usage: python benchmarks/bench_export.py [--repeats 1] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_codec import benchmark_image, default_jicd_params
from jdc_jax import export
from jdc_jax.codec import Codec
from jdc_jax.models import build_model
from jdc_jax.results import write_file_atomically

ROOT = Path(__file__).resolve().parents[1]

_FRESH_PROCESS = """
import json, statistics, sys, time
from pathlib import Path
import numpy as np
folder, repeats = Path(sys.argv[1]), int(sys.argv[2])
start = time.perf_counter()
from jdc_jax.exported import Codec
import_seconds = time.perf_counter() - start
start = time.perf_counter()
codec = Codec.load(folder / "package")
load_seconds = time.perf_counter() - start
image = np.load(folder / "image.npy")

def timed(function):
    start = time.perf_counter()
    result = function()
    first = time.perf_counter() - start
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return {"first_call_seconds": first,
            "seconds": statistics.median(seconds) if seconds else None}, result

results = {"import_seconds": import_seconds, "load_seconds": load_seconds}
results["compress_full"], data = timed(lambda: codec.compress(image))
(folder / "exported.jdc").write_bytes(data)
for output in ("denoised", "noisy"):
    results[f"decompress_{output}"], _ = timed(lambda: codec.decompress(data, output))
results["model_modules_loaded"] = sorted(
    name for name in sys.modules if name.split(".")[0] in ("flax", "orbax", "tensorflow")
    or name.startswith("jdc_jax.models"))
print(json.dumps(results))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="timed runs after the first")
    parser.add_argument("--json", help="also write the results to this JSON file")
    arguments = parser.parse_args()
    image, source = benchmark_image()
    codec = Codec(build_model("jicd"), default_jicd_params())
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        start = time.perf_counter()
        package = export.write_package(codec, folder / "package")
        export_seconds = time.perf_counter() - start
        sizes = {str(p.relative_to(package)): p.stat().st_size
                 for p in sorted(package.rglob("*")) if p.is_file()}
        np.save(folder / "image.npy", image)
        fresh = subprocess.run(
            [sys.executable, "-c", _FRESH_PROCESS, str(folder), str(arguments.repeats)],
            capture_output=True, text=True, cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)))
        if fresh.returncode != 0:
            sys.exit(f"the fresh process failed:\n{fresh.stderr}")
        results = json.loads(fresh.stdout.strip().splitlines()[-1])
        start = time.perf_counter()
        native = codec.compress(image)
        native_seconds = time.perf_counter() - start
        identical = native == (folder / "exported.jdc").read_bytes()
    functions = sum(size for name, size in sizes.items() if name.startswith("functions/"))
    results.update(image=source, export_seconds=export_seconds,
                   package_bytes=sum(sizes.values()), file_bytes=sizes,
                   native_compress_first_call_seconds=native_seconds,
                   byte_identical_to_native=identical, file_size=len(native))
    print(f"image {source} {image.shape[0]}x{image.shape[1]}; default JICD (serial), random init")
    print(f"package: {results['package_bytes'] / 2**20:.1f} MiB (weights "
          f"{sizes['weights.bin'] / 2**20:.1f} MiB, functions {functions / 2**20:.2f} MiB, "
          f"tables {(sizes['side_tables.bin'] + sizes['latent_tables.bin']) / 2**20:.2f} MiB); "
          f"exported in {export_seconds:.1f} s")
    print(f"fresh process: import {results['import_seconds']:.2f} s, load "
          f"{results['load_seconds']:.2f} s; model modules loaded: "
          f"{results['model_modules_loaded'] or 'none'}")
    for name in ("compress_full", "decompress_denoised", "decompress_noisy"):
        timing = results[name]
        median = "" if timing["seconds"] is None else f"{timing['seconds']:7.2f} s median, "
        print(f"  {name:20s} {median}first call (with compilation) "
              f"{timing['first_call_seconds']:.2f} s")
    print(f"native compress (first call) {native_seconds:.2f} s; file {len(native)} bytes; "
          f"byte-identical to the package's: {identical}")
    if arguments.json:
        write_file_atomically(arguments.json, json.dumps(results, indent=2).encode())


if __name__ == "__main__":
    main()
