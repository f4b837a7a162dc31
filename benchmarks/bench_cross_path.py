"""Cross-path decoding: do files decode on decoders whose floats differ from the encoder's?

Crops of real photographs (default ../shared/datasets/cbsd432, several sizes, AWGN of sigma 25
seeded by the crop's name) are compressed by the default jitted float32 codec of a shipped model
(`jicd-sigma25`, rate point 1), once with the float entropy path and once with the integer
path (`jdc_jax.integer`; the integer network calibrated on the built-in images with the model's
noise, unless --integer names a stored one). Every file is decoded (output "noisy": all chunks)
by four decoders:

    jitted    the encoder's own codec (the control)
    op-by-op  the same codec under jax.disable_jit()
    bfloat16  the same weights with the float parts computing in bfloat16
              (`Codec.with_compute_dtype`, as a TPU computes float32 convolutions by default)
    1-thread  a fresh process whose XLA:CPU runs one thread
              (XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1)

A decode succeeds when it returns an image and its symbols equal the encoder's (the decoder
checks them against the stored CRC and raises `SymbolsMismatch` otherwise). Prints, per path and
decoder, how many decodes succeeded, and over the integer files the largest decoded-pixel
difference (uint8 grey levels) of each decoder from the jitted decode: the synthesis stays
float, so that is the cross-platform pixel bound the integer path leaves.

    python benchmarks/bench_cross_path.py [--model jicd-sigma25] [--rate-point 1]
        [--crops 52] [--sizes 64x64,64x128,128x128,128x192,136x200] [--dataset DIR]
        [--integer FILE.npz] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jdc_jax import images, noise, zoo
from jdc_jax.atomic_write import write_bytes_atomic
from jdc_jax.codec import file_format
from jdc_jax.integer import calibrate
from jdc_jax.integer.network import IntegerEntropyModel

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO / ".." / "shared" / "datasets" / "cbsd432"
PATHS = ("float", "integer")
DECODERS = ("jitted", "op-by-op", "bfloat16", "1-thread")
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def crops(dataset: str, count: int, sizes, noise_spec: str, seed: int = 0):
    """[(name, noisy uint8 crop)]: `count` crops cycling through `sizes`, each from the next
    image of the folder at a seeded position, with noise seeded by the crop's name."""
    spec = noise.parse_noise_spec(noise_spec)
    files = images.list_images(dataset)
    rng = np.random.default_rng(seed)
    result = []
    for index in range(count):
        path = files[index % len(files)]
        clean = images.read_image(path)
        height, width = sizes[index % len(sizes)]
        height, width = min(height, clean.shape[0]), min(width, clean.shape[1])
        top = int(rng.integers(0, clean.shape[0] - height + 1))
        left = int(rng.integers(0, clean.shape[1] - width + 1))
        name = f"{images.image_name(path, dataset)}@{top},{left},{height}x{width}"
        crop = clean[top: top + height, left: left + width]
        result.append((name, noise.noisy_for_file(crop, name, spec, seed)))
    return result


def load_codec(model: str, rate_point: int, integer_path: str):
    return zoo.load(model, rate_point=rate_point).with_integer_entropy(
        IntegerEntropyModel.load(integer_path))


def decode(codec, data: bytes):
    """(uint8 image, symbols) or (None, the error's class name)."""
    try:
        decoding = codec.decode(data, "noisy")
    except file_format.JdcFormatError as error:  # SymbolsMismatch is one
        return None, type(error).__name__
    return images.to_uint8(decoding.image), decoding.symbols


def worker(directory: str) -> int:
    """The 1-thread decoder: decodes the files the manifest names, writes outcomes and images."""
    directory = Path(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    codec = load_codec(manifest["model"], manifest["rate_point"], manifest["integer"])
    outcomes, decoded = {}, {}
    for key in manifest["files"]:
        image, symbols = decode(codec, (directory / f"{key}.jdc").read_bytes())
        if image is None:
            outcomes[key] = symbols
        else:
            outcomes[key] = _fingerprints(symbols)
            decoded[key] = image
    np.savez(directory / "worker_images.npz", **decoded)
    (directory / "worker.json").write_text(json.dumps(outcomes))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="jicd-sigma25")
    parser.add_argument("--rate-point", type=int, default=1)
    parser.add_argument("--crops", type=int, default=52)
    parser.add_argument("--sizes", default="64x64,64x128,128x128,128x192,136x200")
    parser.add_argument("--dataset", default=str(DATASET))
    parser.add_argument("--noise", default="awgn:25")
    parser.add_argument("--integer", help="a stored integer network (.npz); default: calibrate "
                        "on the built-in images and store it in the run's temporary folder")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.worker:
        return worker(arguments.worker)

    sizes = [tuple(int(v) for v in size.split("x")) for size in arguments.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="cross_path_"))
    base = zoo.load(arguments.model, rate_point=arguments.rate_point)
    integer_path = arguments.integer
    if integer_path is None:
        integer_path = str(work / "integer_entropy.npz")
        calibrate.calibrate_codec(base).save(integer_path)
    codec = load_codec(arguments.model, arguments.rate_point, integer_path)
    bfloat16 = codec.with_compute_dtype(jnp.bfloat16)
    dataset = crops(arguments.dataset, arguments.crops, sizes, arguments.noise)
    print(f"{arguments.model} rate point {arguments.rate_point}; {len(dataset)} crops of "
          f"{arguments.dataset} ({arguments.sizes}) with {arguments.noise}; load average "
          f"{os.getloadavg()}", flush=True)

    successes = {path: {decoder: 0 for decoder in DECODERS} for path in PATHS}
    failures = {path: {decoder: {} for decoder in DECODERS} for path in PATHS}
    pixel_difference = {decoder: 0 for decoder in DECODERS}
    reference_images, expected_symbols, files = {}, {}, []
    start = time.perf_counter()
    for index, (name, noisy) in enumerate(dataset):
        for path in PATHS:
            encoding = codec.encode(noisy, entropy_path=path)
            key = f"{index}_{path}"
            (work / f"{key}.jdc").write_bytes(encoding.data)
            files.append(key)
            expected_symbols[key] = _fingerprints(encoding.symbols)
            results = {"jitted": decode(codec, encoding.data)}
            with jax.disable_jit():
                results["op-by-op"] = decode(codec, encoding.data)
            results["bfloat16"] = decode(bfloat16, encoding.data)
            for decoder, (image, symbols) in results.items():
                ok = image is not None and all(
                    np.array_equal(symbols[s], encoding.symbols[s]) for s in encoding.symbols)
                _tally(successes, failures, path, decoder, ok, symbols)
            if results["jitted"][0] is not None:
                reference_images[key] = results["jitted"][0]
                if path == "integer":
                    for decoder in ("op-by-op", "bfloat16"):
                        image = results[decoder][0]
                        if image is not None:
                            pixel_difference[decoder] = max(pixel_difference[decoder], int(
                                np.abs(image.astype(int) - reference_images[key]).max()))
        print(f"{index + 1:>3}/{len(dataset)} {name} {noisy.shape[0]}x{noisy.shape[1]}: "
              + "; ".join(f"{path} " + " ".join(str(successes[path][d]) for d in DECODERS[:3])
                          for path in PATHS), flush=True)
    seconds = time.perf_counter() - start

    (work / "manifest.json").write_text(json.dumps(
        {"model": arguments.model, "rate_point": arguments.rate_point,
         "integer": str(integer_path), "files": files}))
    environment = dict(os.environ, XLA_FLAGS=ONE_THREAD, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, __file__, "--worker", str(work)], check=True,
                   env=environment, cwd=REPO)
    outcomes = json.loads((work / "worker.json").read_text())
    with np.load(work / "worker_images.npz") as worker_images:
        for key in files:
            path = key.split("_", 1)[1]
            outcome = outcomes[key]
            ok = isinstance(outcome, dict) and outcome == expected_symbols[key]
            _tally(successes, failures, path, "1-thread", ok, outcome)
            if ok and path == "integer" and key in reference_images:
                pixel_difference["1-thread"] = max(pixel_difference["1-thread"], int(np.abs(
                    worker_images[key].astype(int) - reference_images[key]).max()))

    print(f"\ndecodes that succeeded, of {len(dataset)} files per path "
          f"(encoder: jitted float32 codec; {seconds:.0f} s in process):")
    print(f"{'path':<8} " + " ".join(f"{d:>9}" for d in DECODERS))
    for path in PATHS:
        print(f"{path:<8} " + " ".join(f"{successes[path][d]:>9d}" for d in DECODERS))
    for path in PATHS:
        for decoder, kinds in failures[path].items():
            if kinds:
                print(f"  {path} / {decoder} failures: {kinds}")
    print("largest decoded-pixel difference from the jitted decode, integer files (grey "
          "levels): " + ", ".join(f"{d} {pixel_difference[d]}" for d in DECODERS[1:]))
    print(f"load average at the end {os.getloadavg()}")
    if arguments.json:
        write_bytes_atomic(arguments.json, json.dumps(
            {"model": arguments.model, "rate_point": arguments.rate_point,
             "crops": len(dataset), "sizes": arguments.sizes, "noise": arguments.noise,
             "successes": successes, "failures": failures,
             "largest_pixel_difference_integer": pixel_difference}, indent=2).encode())
    return 0


def _fingerprints(symbols) -> dict:
    return {stream: zlib.crc32(np.asarray(v).astype("<i4").tobytes())
            for stream, v in symbols.items()}


def _tally(successes, failures, path, decoder, ok, outcome):
    if ok:
        successes[path][decoder] += 1
    else:
        kind = outcome if isinstance(outcome, str) else "different symbols"
        failures[path][decoder][kind] = failures[path][decoder].get(kind, 0) + 1


if __name__ == "__main__":
    sys.exit(main())
