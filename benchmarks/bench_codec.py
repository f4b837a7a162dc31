"""Compress / decompress times and stream sizes of the .jdc codec, default JICD, 768x512 image.

The model is the default JICD (N = M = 192, base layer 180 channels), randomly initialised,
once with the serial context model (one range-coder chunk per latent position: 48 x 32 = 1536
positions per layer) and once with the checkerboard context (two chunks per layer). The image is
the first landscape Kodak image when ../shared/testsets/kodak24 exists, else a generated one.

For each context model, compress with layers "full" and "base" and decompress "denoised" (side +
base chunks) and "noisy" (all chunks): the first call's time (which includes compiling the
pieces it is the first to use) and the median of `--repeats` further calls; the bytes of each
stream; and each stream's estimated bits (-log2 of the eval-mode likelihoods of the model's
forward pass) next to its coded bits. Times are wall-clock on whatever else the machine runs.

A randomly initialised model predicts scales far below the latents' spread, so many symbols are
coded through the tables' escape code: coded bits then fall well below the estimate, which
floors each likelihood at 1e-9 (30 bits). Trained models have no such gap.

Usage: python benchmarks/bench_codec.py [--repeats 3] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jdc_jax import images
from jdc_jax.codec import Codec, file_format
from jdc_jax.codec.api import PADDING_MULTIPLE, pad_to_multiple
from jdc_jax.codec.tiling import tiled_synthesis
from jdc_jax.models import build_model
from jdc_jax.atomic_write import write_bytes_atomic

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "testsets" / "kodak24"
HEIGHT, WIDTH = 512, 768


def benchmark_image() -> tuple[np.ndarray, str]:
    """A 512 x 768 (H x W) uint8 RGB image and where it came from."""
    if KODAK.is_dir():
        for path in sorted(KODAK.glob("*.png")):
            if images.image_size(path) == (HEIGHT, WIDTH):
                return images.read_image(path), path.name
    rows = np.linspace(0.0, 1.0, HEIGHT)[:, None, None]
    cols = np.linspace(0.0, 1.0, WIDTH)[None, :, None]
    rng = np.random.default_rng(0)
    image = 0.5 + 0.4 * np.sin(6.0 * rows + 4.0 * cols + np.array([0.0, 1.0, 2.0]))
    image = image + 0.05 * rng.standard_normal((HEIGHT, WIDTH, 3))
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8), "generated"


def decoder_forward(codec, decoding) -> np.ndarray:
    """The lower bound of a decode, run once: the decoder's forward pass from the latents a
    `decode` returned, with the codec's own compiled functions and synthesis tiling: the
    hyper-synthesis h_s(z_hat) (models with a side stream) and the synthesis of the decoded
    output, without entropy decoding or context model. Returns the (padded) image, numpy."""
    functions, latents = codec.functions, decoding.latents
    if "side" in latents:
        np.asarray(functions.hyper_synthesis(latents["side"][None]))
    synthesis = functions.synthesis["reconstruction" if not codec.scalable else decoding.output]
    streams = ("base", "enhancement") if decoding.output == "noisy" else ("base",)
    height, width = (16 * size for size in latents["base"].shape[:2])
    return tiled_synthesis(synthesis, [latents[stream] for stream in streams],
                           codec.tiling.synthesis_tiles(height, width))


def default_jicd_params(seed: int = 0):
    model = build_model("jicd")
    x = jnp.zeros((1, PADDING_MULTIPLE, PADDING_MULTIPLE, 3), jnp.float32)
    init = jax.jit(lambda x: model.init({"params": jax.random.key(seed)}, x, train=False))
    return jax.device_get(init(x)["params"])


def first_and_median_seconds(function, repeats: int) -> tuple[float, float, object]:
    """(first-call seconds, median seconds of `repeats` further calls, last result): the first
    call (ours: compilation included) is reported apart. Shared by the benchmarks."""
    start = time.perf_counter()
    result = function()
    first = time.perf_counter() - start
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return first, statistics.median(seconds), result


def run(context_model: str, params, image: np.ndarray, repeats: int) -> dict:
    model = build_model("jicd", context_model=context_model)
    start = time.perf_counter()
    codec = Codec(model, params)
    setup_seconds = time.perf_counter() - start
    results = {"codec_setup_seconds": setup_seconds}
    files = {}
    for layers in ("full", "base"):
        first, median, files[layers] = first_and_median_seconds(lambda: codec.compress(image, layers), repeats)
        results[f"compress_{layers}"] = {"seconds": median, "first_call_seconds": first}
    for output in ("denoised", "noisy"):
        first, median, _ = first_and_median_seconds(lambda: codec.decompress(files["full"], output), repeats)
        results[f"decompress_{output}"] = {"seconds": median, "first_call_seconds": first}
    forward = jax.jit(lambda p, x: model.apply({"params": p}, x, train=False))
    x = pad_to_multiple(image, PADDING_MULTIPLE)[None].astype(np.float32) / 255.0
    likelihoods = jax.device_get(forward(params, x)["likelihoods"])
    parsed = file_format.parse_file(files["full"])
    results["bytes"] = file_format.describe(parsed)["bytes"]
    results["streams"] = {
        stream: {"estimated_bits": float(-np.log2(lik.astype(np.float64)).sum()),
                 "coded_bits": 8 * len(parsed.chunks[stream])}
        for stream, lik in likelihoods.items()}
    results["bits_per_pixel"] = file_format.describe(parsed)["bits_per_pixel"]
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the first")
    parser.add_argument("--json", help="also write the results to this JSON file")
    arguments = parser.parse_args()
    image, source = benchmark_image()
    start = time.perf_counter()
    params = default_jicd_params()
    print(f"image {source} {image.shape[0]}x{image.shape[1]}; default JICD initialised in "
          f"{time.perf_counter() - start:.1f} s; {jax.device_count()} {jax.default_backend()} "
          f"device(s)")
    results = {"image": source, "context_models": {}}
    for context_model in ("serial", "checkerboard"):
        r = run(context_model, params, image, arguments.repeats)
        results["context_models"][context_model] = r
        print(f"\n{context_model}: codec setup {r['codec_setup_seconds']:.2f} s")
        for name in ("compress_full", "compress_base", "decompress_denoised",
                     "decompress_noisy"):
            print(f"  {name:20s} {r[name]['seconds']:7.3f} s median   (first call, with "
                  f"compilation: {r[name]['first_call_seconds']:.2f} s)")
        sizes, bpp = r["bytes"], r["bits_per_pixel"]
        print("  bytes: " + ", ".join(f"{part} {sizes[part]} ({bpp[part]:.4f} bpp)"
                                      for part in ("header", "side", "base", "enhancement",
                                                   "base_only", "total")))
        for stream, bits in r["streams"].items():
            print(f"  {stream:12s} estimated {bits['estimated_bits']:10.0f} bits, coded "
                  f"{bits['coded_bits']:10d} bits ({bits['coded_bits'] / bits['estimated_bits']:.3f}x)")
    if arguments.json:
        write_bytes_atomic(arguments.json, json.dumps(results, indent=2).encode())


if __name__ == "__main__":
    main()
