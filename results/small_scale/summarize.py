"""Markdown tables of the small-scale results, one per noise, for results/small_scale/README.md.

    python results/small_scale/summarize.py > results/small_scale/tables.md

Rows: every results file of a noise folder (rate points of a codec, or one reference row);
columns: the denoised product's bpp and PSNR / SSIM / MS-SSIM against the clean image, the whole
file's bpp and the noisy reconstruction's PSNR against the noisy input, and the mean seconds to
encode and decode one Kodak image.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jdc_jax import results

HERE = Path(__file__).resolve().parent
NOISES = {"awgn25": "AWGN sigma 25", "awgn50": "AWGN sigma 50",
          "practical": "practical noise simulator (unseen in training)"}
ORDER = ("jicd", "cascade", "testolina", "denoiser", "bm3d", "context_serial",
         "context_checkerboard")
COLUMNS = (("bpp", "bpp (denoised)", 3), ("psnr", "PSNR dB", 2), ("ssim", "SSIM", 4),
           ("ms-ssim", "MS-SSIM", 4), ("bpp_full", "bpp (full file)", 3),
           ("psnr_noisy_reconstruction", "noisy rec. PSNR dB", 2),
           ("encoding_time", "encode s", 2), ("decoding_time", "decode s", 2))


def table(folder: Path) -> list[str]:
    lines = ["| method | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    noisy_input = None
    for stem in ORDER:
        path = folder / f"{stem}.json"
        if not path.exists():
            continue
        document = results.read_results(path)
        values = document["results"]
        noisy_input = noisy_input or values.get("psnr_noisy_input")
        count = len(values["bpp"]) if document.get("kind") != results.REFERENCE else 1
        for index in range(count):
            cells = []
            for key, _, digits in COLUMNS:
                value = values.get(key)
                if isinstance(value, list):
                    value = value[index]
                cells.append("-" if value is None else f"{value:.{digits}f}")
            label = document["name"] + (f", point {index + 1} of {count} by rate"
                                        if count > 1 else "")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if noisy_input is not None:
        noisy = noisy_input[0] if isinstance(noisy_input, list) else noisy_input
        lines.append(f"\nNoisy input: PSNR {noisy:.2f} dB against the clean images.")
    return lines


def main() -> None:
    for name, title in NOISES.items():
        folder = HERE / name
        if folder.is_dir():
            print(f"### {title}\n")
            print("\n".join(table(folder)))
            bd = folder / "bdrate_jicd_vs_cascade.md"
            if bd.exists():
                print("\nBD-rate of JICD (base layer) against the cascade, denoised task:\n")
                print(bd.read_text().strip())
            print()


if __name__ == "__main__":
    sys.exit(main())
