"""The README's picture: noisy input, denoised base-layer output and noisy reconstruction, side by
side, from one .jdc file of a shipped JICD model.

    python results/campaign/side_by_side.py --kodak ../shared/testsets/kodak24 \
        --out results/campaign/side_by_side.png [--model jicd-sigma25] [--rate-point 3] \
        [--image kodim23.png]

The image is a 256x256 crop of a Kodak image (the test set, never used in training) with AWGN of
sigma 25 from the evaluation's per-file seed (the noise `jdc_jax.evaluate` gives that file). The
titles give each product's bits per pixel (the denoised product: the file cut after its base
chunk; the noisy reconstruction: the whole file) and its PSNR against the clean crop (denoised)
or the noisy input (reconstruction).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from jdc_jax import images, metrics, noise, zoo
from jdc_jax.atomic_write import write_bytes_atomic
from jdc_jax.codec import file_format

CROP = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", required=True, help="folder of the Kodak images")
    parser.add_argument("--model", default="jicd-sigma25", help="a shipped JICD model")
    parser.add_argument("--image", default="kodim23.png")
    parser.add_argument("--rate-point", type=int, default=3)
    parser.add_argument("--out", required=True, help="PNG to write")
    args = parser.parse_args()

    clean_full = images.read_image(Path(args.kodak) / args.image)
    top = (clean_full.shape[0] - CROP) // 2
    left = (clean_full.shape[1] - CROP) // 2
    clean = np.ascontiguousarray(clean_full[top:top + CROP, left:left + CROP])
    noisy = noise.noisy_for_file(clean, args.image, noise.parse_noise_spec("awgn:25"), 0)

    codec = zoo.load(args.model, args.rate_point)
    data = codec.compress(noisy)
    base_only = file_format.truncate_to_base(data)
    denoised = codec.decompress(base_only, "denoised")
    reconstruction = codec.decompress(data, "noisy")
    bpp = 8.0 / (CROP * CROP)

    panels = [
        (noisy, f"noisy input (sigma 25)\nPSNR {metrics.psnr(noisy, clean):.2f} dB vs clean"),
        (denoised, f"denoised, base layer: {len(base_only) * bpp:.3f} bpp\n"
                   f"PSNR {metrics.psnr(denoised, clean):.2f} dB vs clean"),
        (reconstruction, f"noisy reconstruction, full file: {len(data) * bpp:.3f} bpp\n"
                         f"PSNR {metrics.psnr(reconstruction, noisy):.2f} dB vs noisy input"),
    ]
    figure = Figure(figsize=(12, 4.6), dpi=100)
    for index, (pixels, title) in enumerate(panels):
        axes = figure.add_subplot(1, 3, index + 1)
        axes.imshow(pixels, interpolation="nearest")
        axes.set_title(title, fontsize=10)
        axes.axis("off")
    steps = zoo.card(args.model, args.rate_point)["training_steps"]
    figure.suptitle(f"{args.model}, rate point {args.rate_point} ({steps:,} training steps): "
                    f"one file, two products "
                    f"({args.image}, centre {CROP}x{CROP} crop)", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 0.92))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(args.out, buffer.getvalue())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
