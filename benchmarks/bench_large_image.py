"""Peak memory of compressing a 24-megapixel image with tiled transforms, and their rate cost.

(a) Memory. Each measurement runs in a fresh process: build the default JICD (N = M = 192, base
layer 180 channels, serial context, randomly initialised), generate an image of the given size
(a colour gradient with mild noise, made in row blocks so no full-size float copy exists), and
compress it once (`layers="full"`, compilation included). It reports the process's resident set
size high-water mark (VmHWM of /proc/self/status, or `resource.getrusage` elsewhere), the
resident size just before compressing, the seconds the compression took, the file size and the
analysis tiles (`jdc_jax.codec.tiling`, default bound 2048 x 2048 pixels, 64 px halo).
"tiled" uses the codec's default tiling; "untiled" sets max_analysis_pixels = 0. The default
sizes show the whole-image analysis growing with the image (1500x1000, 3000x2000 untiled) and
the tiled one staying flat (3000x2000, 6000x4000 tiled). A 6000x4000 untiled run needs far more
memory (its first activation alone is 4.6 GB) and is run only when asked for with
--untiled-sizes.

(b) Rate cost of tiling, on the first landscape Kodak image (768x512) when
../shared/testsets/kodak24 exists, else a generated one: compress untiled and, for each halo of
--halos, with analysis windows of at most a 128 x 128 px interior and its halo ((128 + 2 halo)^2
pixels), and report each file's bytes, their difference relative to the untiled file, how many
coded symbols changed, and the PSNR of the decoded denoised and noisy outputs against the input
image. When the halo covers the analysis' receptive field (57 px for the Cheng2020 transforms)
the tiled file is the untiled one. The untiled file is also decoded with synthesis windows of
at most a 128 x 128 px interior and the default 160 px halo, whose largest pixel difference from the
untiled decoding is reported. The model is a randomly initialised default JICD unless
--checkpoint names a trained one.

Usage:
  python benchmarks/bench_large_image.py [--json FILE]
  python benchmarks/bench_large_image.py --channels 32 --tiled-sizes 1024x768 \\
      --untiled-sizes 1024x768 --skip-rate          (a quick check with a narrow model)
  python benchmarks/bench_large_image.py --skip-memory --checkpoint WORKDIR
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Default JICD's base layer: 180 of 192 channels; narrower models keep that proportion.
BASE_FRACTION = 180 / 192
RATE_INTERIOR = 128


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """"6000x4000,1500x1000" -> [(4000, 6000), (1000, 1500)]: (height, width) from WxH."""
    sizes = []
    for item in filter(None, text.split(",")):
        try:
            width, height = (int(part) for part in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"size {item!r} is not WIDTHxHEIGHT") from None
        if width <= 0 or height <= 0:
            raise argparse.ArgumentTypeError(f"size {item!r} must be positive")
        sizes.append((height, width))
    return sizes


def peak_resident_bytes() -> int:
    """The process's resident set size high-water mark, bytes."""
    peak = _status_kibibytes("VmHWM")
    if peak is not None:
        return peak * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


def resident_bytes() -> int:
    """The process's resident set size now, bytes (0 where /proc is missing)."""
    return (_status_kibibytes("VmRSS") or 0) * 1024


def _status_kibibytes(field: str) -> int | None:
    """A "kB" field of /proc/self/status; None where there is none."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return None


def generated_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A colour gradient with mild noise, uint8 (height, width, 3), built 256 rows at a time."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    cols = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    phase = np.array([0.0, 1.0, 2.0], np.float32)
    for top in range(0, height, 256):
        rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[top:top + 256, None, None]
        block = 0.5 + 0.4 * np.sin(6.0 * rows + 4.0 * cols + phase)
        block += 0.05 * rng.standard_normal(block.shape, np.float32)
        image[top:top + 256] = np.clip(np.round(block * 255), 0, 255).astype(np.uint8)
    return image


def jicd_codec(channels: int, context_model: str, tiling, seed: int = 0):
    """A randomly initialised JICD codec, default (N = M = 192) or `channels` wide."""
    import jax
    import jax.numpy as jnp

    from jdc_jax.codec import Codec
    from jdc_jax.models import build_model

    fields = {"context_model": context_model}
    if channels != 192:
        fields.update(channels=channels, latent_channels=channels,
                      base_channels=max(1, round(channels * BASE_FRACTION)))
    model = build_model("jicd", **fields)
    x = jnp.zeros((1, 64, 64, 3), jnp.float32)
    init = jax.jit(lambda x: model.init({"params": jax.random.key(seed)}, x, train=False))
    return Codec(model, jax.device_get(init(x)["params"]), tiling=tiling)


# ------------------------------------------------------------------------------- (a) memory

def measure_encoding(spec: dict) -> dict:
    """In this process: compress one generated image as `spec` says; what `run_memory` reports."""
    from jdc_jax.codec.tiling import Tiling

    tiling = Tiling() if spec["tiled"] else Tiling(max_analysis_pixels=0)
    codec = jicd_codec(spec["channels"], spec["context_model"], tiling)
    image = generated_image(spec["height"], spec["width"])
    padded = (-(-spec["height"] // 64) * 64, -(-spec["width"] // 64) * 64)
    tiles = codec.tiling.analysis_tiles(*padded)
    before = resident_bytes()
    start = time.perf_counter()
    data = codec.compress(image)
    seconds = time.perf_counter() - start
    return {**spec, "peak_resident_bytes": peak_resident_bytes(),
            "resident_bytes_before_compress": before, "compress_seconds": seconds,
            "file_bytes": len(data), "analysis_tiles": len(tiles),
            "analysis_window": [tiles[0].window_rows.size, tiles[0].window_cols.size]}


def run_memory(sizes_tiled, sizes_untiled, channels: int, context_model: str) -> list[dict]:
    """One fresh process per (size, tiled) measurement."""
    results = []
    runs = [(size, False) for size in sizes_untiled] + [(size, True) for size in sizes_tiled]
    for (height, width), tiled in runs:
        spec = {"height": height, "width": width, "tiled": tiled, "channels": channels,
                "context_model": context_model}
        # PYTHONPATH: run the checkout's package as the tests do.
        environment = dict(os.environ, PYTHONPATH=str(ROOT))
        completed = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                                   capture_output=True, text=True, env=environment)
        label = f"{width}x{height} {'tiled' if tiled else 'untiled'}"
        if completed.returncode != 0:
            tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"  {label:24s} failed (exit status {completed.returncode}: {tail})")
            results.append({**spec, "error": f"exit status {completed.returncode}: {tail}"})
            continue
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"  {label:24s} peak RSS {result['peak_resident_bytes'] / 2**30:6.2f} GiB "
              f"(before compress {result['resident_bytes_before_compress'] / 2**30:5.2f} GiB), "
              f"compress {result['compress_seconds']:7.1f} s, {result['file_bytes']} bytes, "
              f"{result['analysis_tiles']} analysis tile(s) of "
              f"{result['analysis_window'][1]}x{result['analysis_window'][0]}", flush=True)
    return results


# ---------------------------------------------------------------------------- (b) rate cost

def run_rate_cost(codec, image: np.ndarray, halos: list[int]) -> dict:
    """Bytes, changed symbols and decoded PSNR of untiled and tiled analyses (module docstring)."""
    from jdc_jax.codec import file_format
    from jdc_jax.codec.tiling import DEFAULT_SYNTHESIS_HALO, Tiling
    from jdc_jax.metrics import psnr

    height, width = image.shape[:2]
    padded = (-(-height // 64) * 64, -(-width // 64) * 64)
    untiled = Tiling(max_analysis_pixels=0, max_synthesis_pixels=0)
    rows = [("untiled", untiled)] + [
        (f"halo {halo}", Tiling(max_analysis_pixels=(RATE_INTERIOR + 2 * halo) ** 2,
                                max_synthesis_pixels=0, analysis_halo=halo)) for halo in halos]
    results, reference = {}, None
    for name, tiling in rows:
        codec.tiling = tiling
        encoding = codec.encode(image)
        tiles = tiling.analysis_tiles(*padded)
        described = file_format.describe(file_format.parse_file(encoding.data))
        row = {"analysis_tiles": len(tiles),
               "analysis_window": [tiles[0].window_rows.size, tiles[0].window_cols.size],
               "bytes": described["bytes"], "bits_per_pixel": described["bits_per_pixel"]}
        if reference is None:
            reference = encoding
        row["relative_size_difference"] = len(encoding.data) / len(reference.data) - 1
        row["changed_symbols"] = int(sum(np.sum(encoding.symbols[s] != reference.symbols[s])
                                         for s in reference.symbols))
        row["psnr"] = {output: psnr(codec.decompress(encoding.data, output), image)
                       for output in codec.outputs}
        results[name] = row
    codec.tiling = untiled
    whole = {output: codec.decode(reference.data, output).image for output in codec.outputs}
    codec.tiling = Tiling(max_synthesis_pixels=(RATE_INTERIOR + 2 * DEFAULT_SYNTHESIS_HALO) ** 2)
    tiles = codec.tiling.synthesis_tiles(*padded)
    results["synthesis_tiles"] = {
        "tiles": len(tiles), "window": [tiles[0].window_rows.size, tiles[0].window_cols.size],
        "max_abs_difference": {
            output: float(np.max(np.abs(codec.decode(reference.data, output).image
                                        - whole[output]))) for output in codec.outputs}}
    codec.tiling = untiled
    return results


def print_rate_cost(results: dict) -> None:
    for name, row in results.items():
        if name == "synthesis_tiles":
            continue
        bytes_ = row["bytes"]
        psnrs = ", ".join(f"{output} {value:.3f} dB" for output, value in row["psnr"].items())
        print(f"  {name:9s} {row['analysis_tiles']:3d} tile(s) of {row['analysis_window'][1]}x"
              f"{row['analysis_window'][0]}: {bytes_['total']} bytes (base {bytes_['base']}, "
              f"enhancement {bytes_['enhancement']}), {row['relative_size_difference']:+.4%}, "
              f"{row['changed_symbols']} symbols changed; PSNR {psnrs}")
    synthesis = results["synthesis_tiles"]
    differences = ", ".join(f"{output} {value:.3g}"
                            for output, value in synthesis["max_abs_difference"].items())
    print(f"  decoding with {synthesis['tiles']} synthesis tiles of {synthesis['window'][1]}x"
          f"{synthesis['window'][0]}: largest |difference| from untiled, in [0, 1] units: "
          f"{differences}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiled-sizes", type=parse_sizes, default="3000x2000,6000x4000",
                        help="WIDTHxHEIGHT list compressed with the default tiling")
    parser.add_argument("--untiled-sizes", type=parse_sizes, default="1500x1000,3000x2000",
                        help="WIDTHxHEIGHT list compressed without tiling (6000x4000 needs far "
                             "more memory than 8 GB)")
    parser.add_argument("--channels", type=int, default=192,
                        help="N = M of the randomly initialised JICD (192: the default model)")
    parser.add_argument("--context-model", default="serial",
                        choices=("serial", "checkerboard", "none"))
    parser.add_argument("--halos", default="0,16,32,64",
                        help="analysis halos (pixels, multiples of 16) for the rate cost")
    parser.add_argument("--checkpoint", help="trained codec for the rate cost (work directory "
                                             "or step directory); default: random JICD")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-rate", action="store_true")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        print(json.dumps(measure_encoding(json.loads(arguments.worker))))
        return
    results = {}
    if not arguments.skip_memory:
        print(f"(a) peak memory of compressing (JICD N = M = {arguments.channels}, "
              f"{arguments.context_model} context, random weights; one process each):",
              flush=True)
        results["memory"] = run_memory(arguments.tiled_sizes, arguments.untiled_sizes,
                                       arguments.channels, arguments.context_model)
    if not arguments.skip_rate:
        from bench_codec import benchmark_image

        from jdc_jax.codec import Codec
        from jdc_jax.codec.tiling import Tiling

        image, source = benchmark_image()
        if arguments.checkpoint:
            codec, model = Codec.from_checkpoint(arguments.checkpoint), arguments.checkpoint
        else:
            codec = jicd_codec(arguments.channels, arguments.context_model, Tiling())
            model = f"random JICD N = M = {arguments.channels}, {arguments.context_model}"
        halos = [int(halo) for halo in arguments.halos.split(",") if halo]
        print(f"(b) rate cost of tiling: {source} {image.shape[1]}x{image.shape[0]}, {model}; "
              f"analysis interiors of {RATE_INTERIOR} px:", flush=True)
        rate = run_rate_cost(codec, image, halos)
        print_rate_cost(rate)
        results["rate_cost"] = {"image": source, "model": model, "interior": RATE_INTERIOR,
                                "rows": rate}
    if arguments.json:
        from jdc_jax.results import write_file_atomically

        write_file_atomically(arguments.json, json.dumps(results, indent=2).encode())


if __name__ == "__main__":
    main()
