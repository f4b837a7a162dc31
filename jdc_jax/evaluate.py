"""Rate-distortion evaluation with the real codec: `python -m jdc_jax.evaluate`.

Every image is coded to a `.jdc` file and decoded, so rates are file sizes, not estimates. Noise
is synthesized per image from a seed derived from its file name (`noise.noisy_for_file`), so
every method sees identical noisy inputs. Methods:

- codec checkpoints (one per rate point; `zoo:NAME:RATE_POINT` names a shipped model): JICD
  (denoised from the base layer alone: the file cut after its base chunk; noisy reconstruction
  from the full file), Testolina, JDC;
- the cascade: plain-codec checkpoints (trained noisy -> noisy) with `--denoiser CKPT`, which
  denoises the decoded image;
- `--method denoiser --denoiser CKPT`: the denoiser on the raw noisy image (a reference result);
- `--method wavelet` or `--method bm3d`: a classical denoiser on the raw noisy image (CBM3D is
  given the true noise std: AWGN sigma; for other noise the std of noisy - clean, as the JICD
  paper does for FFDNet);
- stock pipelines (`baselines`): `--method wavelet+webp` (denoise, then code), `webp+wavelet`
  (code, then denoise after decoding), with `jpeg` or `bm3d` in either place, each at every
  `--target-bpp` (the largest codec quality whose file is not larger), so that they sit on the
  same plots and BD-rate tables as the learned codecs.

Per image and as means: `bpp` (the denoised product: header + side + base bytes), `bpp_full`
(the whole file), PSNR / SSIM / MS-SSIM of the denoised output vs the clean image and of the
noisy reconstruction vs the noisy input, the PSNR of the noisy input itself, and encode/decode
times. Output: one CompressAI-shaped results JSON (`jdc_jax.results`).

    python -m jdc_jax.evaluate --checkpoints runs/jicd/rp1 runs/jicd/rp2 \
        --dataset folder:../shared/testsets/kodak24 --noise awgn:25 --seed 0 \
        --name "JICD sigma=25" --out results/jicd_awgn25.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone

import jax
import numpy as np
from tqdm import tqdm

from jdc_jax import baselines, metrics
from jdc_jax import images as image_io
from jdc_jax import noise as noise_lib
from jdc_jax import results as results_lib
from jdc_jax import zoo
from jdc_jax.codec import Codec, file_format
from jdc_jax.models import registry
from jdc_jax.models.losses import psnr_from_mse, stream_bits

METHODS = ("codec", "denoiser")  # and every `baselines` pipeline name


def load_dataset(spec: str, limit: int = 0) -> list[tuple[str, np.ndarray]]:
    """`folder:PATH` -> [(name, uint8 RGB image)] (`images.load_folder`: the name is the path
    relative to the folder, the noise seed), sorted."""
    kind, _, path = spec.partition(":")
    if kind != "folder" or not path:
        raise ValueError(f"dataset must be folder:PATH, got {spec!r}")
    return image_io.load_folder(path, limit)


def quality(output: np.ndarray, reference: np.ndarray, prefix: str = "") -> dict:
    return {f"psnr{prefix}": metrics.psnr(output, reference),
            f"ssim{prefix}": metrics.ssim(output, reference),
            f"ms-ssim{prefix}": metrics.ms_ssim(output, reference)}


class DenoiserRunner:
    """A trained denoiser checkpoint (DnCNN-style or FFDNet) applied to uint8 images (compiled
    per image shape). FFDNet is told each image's noise std (8-bit units)."""

    def __init__(self, path: str):
        model, params, _ = registry.restore_model(path, kinds=registry.DENOISER_KINDS)
        self.takes_noise_level = registry.takes_noise_level(model)
        self._apply = jax.jit(lambda x, level: model.apply(
            {"params": params}, x, **_noise_level_argument(model, level))["denoised"])

    def __call__(self, image: np.ndarray, noise_std: float | None = None) -> np.ndarray:
        if self.takes_noise_level and noise_std is None:
            raise ValueError("this denoiser needs the noise std of the image")
        x = image[None].astype(np.float32) / 255.0
        level = np.float32((noise_std or 0.0) / 255.0)
        return image_io.to_uint8(np.asarray(self._apply(x, level))[0])


def _noise_level_argument(model, level) -> dict:
    """{"noise_level": level} for models told the noise level (FFDNet), else {}."""
    return {"noise_level": level} if registry.takes_noise_level(model) else {}


def evaluate_images(model, params, images, noise_spec: str, seed: int,
                    target: str = "clean") -> dict:
    """Mean metrics over held-out images with rounding quantization (estimated rates).

    `images`: list of (name, uint8 HWC clean image), as `images.load_folder` gives. Noise is
    synthesized per image from a seed derived from its name, so every evaluation (this one
    during training, and `evaluate_codec` with real files) sees the same noisy inputs."""
    spec = noise_lib.parse_noise_spec(noise_spec)
    apply = jax.jit(lambda p, x, level: model.apply({"params": p}, x, train=False,
                                                    **_noise_level_argument(model, level)))
    sums: dict[str, float] = {}
    for name, clean in images:
        noisy = noise_lib.noisy_for_file(clean, name, spec, seed)
        h, w = clean.shape[:2]
        x = image_io.pad_to_multiple(noisy, 64)[None].astype(np.float32) / 255.0
        level = np.float32(noise_std(spec, noise_spec, noisy, clean) / 255.0)
        out = jax.device_get(apply(params, x, level))
        values = {}
        for stream, bits in stream_bits(out.get("likelihoods", {})).items():
            values[f"bpp_{stream}"] = float(bits[0]) / (h * w)
        if values:
            values["bpp"] = sum(values.values())
        refs = {"denoised": clean, "noisy_reconstruction": noisy,
                "reconstruction": noisy if target == "noisy" else clean}
        for key in model.outputs:
            img = image_io.to_uint8(out[key][0, :h, :w]).astype(np.float64)
            err = np.mean((img - refs[key].astype(np.float64)) ** 2)
            values[f"psnr_{key}"] = float(psnr_from_mse(err, 255.0))
        values["psnr_noisy_input"] = float(psnr_from_mse(
            np.mean((noisy.astype(np.float64) - clean) ** 2), 255.0))
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
    return {k: v / max(len(images), 1) for k, v in sums.items()}


def noise_std(spec: noise_lib.NoiseSpec, spec_text: str, noisy, clean) -> float:
    """The noise std (8-bit units) CBM3D and FFDNet are given: sigma for AWGN of one fixed
    sigma, else the std of noisy - clean (as the JICD paper gives FFDNet on practical noise)."""
    kind, _, argument = spec_text.partition(":")
    if kind == "awgn" and argument.replace(".", "", 1).isdigit():
        return float(argument)
    return float(np.std(noisy.astype(np.float64) - clean.astype(np.float64)))


def load_codec(checkpoint: str):
    """The codec of a checkpoint path, or of a shipped model given as zoo:NAME:RATE_POINT."""
    if checkpoint.startswith(zoo.SPEC_PREFIX):
        return zoo.load(*zoo.parse_spec(checkpoint))
    return Codec.from_checkpoint(checkpoint)


def evaluate_codec(checkpoint: str, dataset, spec, spec_text: str, seed: int, denoiser=None,
                   progress=None):
    """Per-image metrics of one codec checkpoint (one rate point)."""
    codec = load_codec(checkpoint)
    cascade = codec.model_kind == "codec"
    if cascade and denoiser is None:
        raise ValueError(f"{checkpoint} is a plain codec (noisy -> noisy): give --denoiser to "
                         "evaluate the codec-then-denoiser cascade")
    rows = []
    for name, clean in dataset:
        noisy = noise_lib.noisy_for_file(clean, name, spec, seed)
        pixels = clean.shape[0] * clean.shape[1]
        t0 = time.perf_counter()
        data = codec.compress(noisy, layers="full")
        encoding_time = time.perf_counter() - t0
        row = {"image": name, "bpp_full": 8.0 * len(data) / pixels,
               "encoding_time": encoding_time, "psnr_noisy_input": metrics.psnr(noisy, clean)}
        t0 = time.perf_counter()
        if codec.scalable:
            base_only = file_format.truncate_to_base(data)
            row["bpp"] = 8.0 * len(base_only) / pixels
            denoised = codec.decompress(base_only, output="denoised")
            row["decoding_time"] = time.perf_counter() - t0
            row.update(quality(codec.decompress(data, output="noisy"), noisy,
                               "_noisy_reconstruction"))
            # The denoised output (base layer alone) against the noisy input: what the full
            # file's noisy reconstruction, with the enhancement chunk, has to improve on.
            row["psnr_base_vs_noisy"] = metrics.psnr(denoised, noisy)
        else:
            row["bpp"] = row["bpp_full"]
            decoded = codec.decompress(data, output="reconstruction")
            if cascade:
                row.update(quality(decoded, noisy, "_noisy_reconstruction"))
                denoised = denoiser(decoded, noise_std(spec, spec_text, noisy, clean))
            else:
                denoised = decoded
            row["decoding_time"] = time.perf_counter() - t0
        row.update(quality(denoised, clean))
        rows.append(row)
        if progress is not None:
            progress.update(1)
    return rows


def evaluate_pipeline(pipeline: baselines.Pipeline, dataset, spec, spec_text: str, seed: int,
                      target_bpp: float | None = None, denoiser=None, progress=None):
    """Per-image metrics of a stock pipeline (`baselines`) at one target rate, or, with no
    pipeline, of the trained `denoiser` on the raw noisy image."""
    rows = []
    for name, clean in dataset:
        noisy = noise_lib.noisy_for_file(clean, name, spec, seed)
        t0 = time.perf_counter()
        if pipeline is None:
            output, size = denoiser(noisy, noise_std(spec, spec_text, noisy, clean)), 0
        else:
            output, size = baselines.run_pipeline(pipeline, noisy, target_bpp,
                                                  noise_std(spec, spec_text, noisy, clean))
        row = {"image": name, "decoding_time": time.perf_counter() - t0,
               "psnr_noisy_input": metrics.psnr(noisy, clean)}
        if size:
            row["bpp"] = 8.0 * size / (clean.shape[0] * clean.shape[1])
            row["bpp_full"] = row["bpp"]
        row.update(quality(output, clean))
        rows.append(row)
        if progress is not None:
            progress.update(1)
    return rows


def mean_of(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k != "image"]
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jdc_jax.evaluate",
                                     description="Rate-distortion evaluation with real files.")
    parser.add_argument("--checkpoints", nargs="*", default=[],
                        help="codec checkpoints, one per rate point (a path, or "
                             "zoo:NAME:RATE_POINT for a shipped model)")
    parser.add_argument("--method", default="codec",
                        help="codec | denoiser | a stock pipeline: wavelet, bm3d, or a denoiser "
                             "and a codec (webp, jpeg) joined by '+', e.g. wavelet+webp")
    parser.add_argument("--target-bpp", type=float, nargs="*", default=[],
                        help="rate points of a stock pipeline that codes the image")
    parser.add_argument("--denoiser", default="", help="denoiser checkpoint, or zoo:NAME for a "
                        "shipped one (cascade or --method denoiser)")
    parser.add_argument("--dataset", required=True, help="folder:PATH")
    parser.add_argument("--noise", required=True,
                        help="awgn:S | practical | poisson_gaussian:a,b | ...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", required=True, help="method name in plots and tables")
    parser.add_argument("--description", default="")
    parser.add_argument("--limit", type=int, default=0, help="evaluate the first N images only")
    parser.add_argument("--out", required=True, help="results JSON path")
    args = parser.parse_args(argv)
    try:
        spec = noise_lib.parse_noise_spec(args.noise)
        dataset = load_dataset(args.dataset, args.limit)
        denoiser = DenoiserRunner(args.denoiser) if args.denoiser else None
        pipeline = None if args.method in METHODS else baselines.parse_pipeline(args.method)
        if args.method == "codec" and not args.checkpoints:
            raise ValueError("--method codec needs --checkpoints")
        if args.method == "denoiser" and denoiser is None:
            raise ValueError("--method denoiser needs --denoiser CKPT")
        if pipeline is not None and (pipeline.codec is not None) != bool(args.target_bpp):
            raise ValueError(f"--method {pipeline.name}: give --target-bpp exactly when the "
                             f"pipeline has a codec")
        meta = {"dataset": args.dataset, "noise": args.noise, "seed": args.seed,
                "checkpoints": args.checkpoints, "denoiser": args.denoiser,
                "method": args.method, "target_bpp": args.target_bpp, "images": len(dataset),
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores"}
        points = args.checkpoints if args.method == "codec" else args.target_bpp
        units = len(dataset) * max(len(points), 1)
        with tqdm(total=units, desc=args.name, unit="image", file=sys.stderr) as progress:
            if points:
                if args.method == "codec":
                    per_point = [evaluate_codec(c, dataset, spec, args.noise, args.seed,
                                                denoiser, progress) for c in points]
                else:
                    per_point = [evaluate_pipeline(pipeline, dataset, spec, args.noise,
                                                   args.seed, bpp, progress=progress)
                                 for bpp in points]
                means = [mean_of(rows) for rows in per_point]
                results = {k: [m[k] for m in means] for k in means[0]}
                per_image = [dict(r, rate_point=i) for i, rows in enumerate(per_point)
                             for r in rows]
                kind = results_lib.RATE_DISTORTION
            else:
                rows = evaluate_pipeline(pipeline, dataset, spec, args.noise, args.seed,
                                         denoiser=denoiser, progress=progress)
                results, per_image, kind = mean_of(rows), rows, results_lib.REFERENCE
        results_lib.write_results(args.out, args.name, results, description=args.description,
                                  meta=meta, per_image=per_image, kind=kind)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
