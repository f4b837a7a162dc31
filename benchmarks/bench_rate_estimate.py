"""Coded size against the estimated rate, per stream, on Kodak images (default JICD, random init).

For each image (the first `--images` of ../shared/testsets/kodak24, else generated 512x768
images): the model's estimated bits per stream, -log2 of the likelihoods of its eval-mode
forward pass (the rate term evaluation reports), and the bytes the range coder actually wrote
for that stream (payload only, then the whole file with header and framing), as bits per pixel
of the real image.

The model is the default JICD (N = M = 192, base 180), randomly initialised, serial context by
default. Such a model predicts scales far below its latents' spread: its symbols land in the
tables' escape code, which costs far fewer bits than the estimate's floor of 30 bits per
element (likelihood 1e-9), so coded < estimated here; a trained model's ratio is close to 1.
`--scale-bias B` adds B to the predicted scales (the bias of the last entropy-parameter layer),
which removes most escapes and shows the coder reaching the estimate.

Usage: python benchmarks/bench_rate_estimate.py [--images 4] [--context-model serial]
       [--scale-bias 0] [--json results.json]
"""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np

from bench_codec import KODAK, benchmark_image, default_jicd_params
from jdc_jax import images
from jdc_jax.codec import Codec, file_format
from jdc_jax.codec.api import PADDING_MULTIPLE, pad_to_multiple
from jdc_jax.models import build_model
from jdc_jax.results import write_file_atomically


def benchmark_images(count: int) -> list[tuple[str, np.ndarray]]:
    paths = sorted(KODAK.glob("*.png"))[:count] if KODAK.is_dir() else []
    if paths:
        return [(path.name, images.read_image(path)) for path in paths]
    _, generated = benchmark_image()
    rng = np.random.default_rng(1)
    return [(f"generated{i}", np.roll(generated, int(rng.integers(0, 768)), axis=1))
            for i in range(count)]


def with_scale_bias(params, bias: float):
    params = jax.tree.map(np.array, params)
    for group in ("base_parameters", "enhancement_parameters"):
        last = params[group]["ep2"]["bias"]
        last[last.size // 2:] += bias  # the second half of the outputs is the scale
    return params


def run(codec: Codec, params, name: str, image: np.ndarray) -> dict:
    forward = jax.jit(lambda p, x: codec.model.apply({"params": p}, x, train=False))
    x = pad_to_multiple(image, PADDING_MULTIPLE)[None].astype(np.float32) / 255.0
    likelihoods = jax.device_get(forward(params, x)["likelihoods"])
    data = codec.compress(image)
    parsed = file_format.parse_file(data)
    pixels = image.shape[0] * image.shape[1]
    streams = {}
    for stream, lik in likelihoods.items():
        estimated = float(-np.log2(lik.astype(np.float64)).sum())
        coded = 8 * len(parsed.chunks[stream])
        streams[stream] = {"estimated_bpp": estimated / pixels, "coded_bpp": coded / pixels,
                           "coded_over_estimated": coded / estimated}
    estimated_total = sum(s["estimated_bpp"] for s in streams.values())
    return {"image": name, "streams": streams, "estimated_bpp": estimated_total,
            "file_bpp": 8 * len(data) / pixels}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="number of test images")
    parser.add_argument("--context-model", default="serial",
                        choices=("serial", "checkerboard", "none"))
    parser.add_argument("--scale-bias", type=float, default=0.0,
                        help="added to the predicted Gaussian scales (0: plain random init)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    arguments = parser.parse_args()
    params = with_scale_bias(default_jicd_params(), arguments.scale_bias)
    codec = Codec(build_model("jicd", context_model=arguments.context_model), params)
    results = []
    for name, image in benchmark_images(arguments.images):
        r = run(codec, params, name, image)
        results.append(r)
        print(f"{name}: estimated {r['estimated_bpp']:.4f} bpp, file {r['file_bpp']:.4f} bpp; "
              + "; ".join(f"{stream} {s['estimated_bpp']:.4f} -> {s['coded_bpp']:.4f} bpp "
                          f"({s['coded_over_estimated']:.3f}x)"
                          for stream, s in r["streams"].items()))
    if arguments.json:
        write_file_atomically(arguments.json, json.dumps(results, indent=2).encode())


if __name__ == "__main__":
    main()
