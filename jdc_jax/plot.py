"""Rate-distortion plots of results files, and their command line.

Two tasks, following the two products of a joint denoising codec:

- ``denoising``: x = ``bpp`` (the denoised product: side + base streams), y = ``METRIC``
  (denoised output vs clean image).
- ``noisy_reconstruction``: x = ``bpp_full`` (the whole file) where a results file has it,
  else ``bpp`` (single-product codecs, whose whole file is ``bpp``), y =
  ``METRIC_noisy_reconstruction`` (reconstruction vs noisy input).

Each rate-distortion results file is one curve labelled with its ``name``; each ``reference``
results file (no rate: a denoiser on the raw noisy image, CBM3D) is a horizontal dashed line at
its ``METRIC`` value for the task. The title names the task and the ``dataset`` and ``noise``
found in the files' ``meta``.

Usage::

    python -m jdc_jax.plot RESULTS.json [...] --task denoising --metric psnr --out fig.png

The figure is rendered with matplotlib's Agg canvas (no display needed) and written
atomically; its size in pixels is ``FIGURE_SIZE_INCHES * --dpi`` (640 x 480 by default).
"""

import argparse
import io
import sys
from typing import Sequence

from matplotlib.figure import Figure

from jdc_jax.atomic_write import write_bytes_atomic
from jdc_jax import results as results_io

TASKS = ("denoising", "noisy_reconstruction")
FIGURE_SIZE_INCHES = (6.4, 4.8)
DEFAULT_DPI = 100
_METRIC_LABELS = {"psnr": "PSNR [dB]", "ssim": "SSIM", "ms-ssim": "MS-SSIM"}
_TASK_TITLES = {"denoising": "Denoising", "noisy_reconstruction": "Noisy reconstruction"}
_RATE_LABELS = {
    "denoising": "bits per pixel (denoised product: side + base)",
    "noisy_reconstruction": "bits per pixel (whole file)",
}
_QUALITY_LABELS = {
    "denoising": "denoised vs clean",
    "noisy_reconstruction": "reconstruction vs noisy input",
}


def quality_key(task: str, metric: str) -> str:
    """The results key of ``metric`` for ``task``: ``psnr`` or ``psnr_noisy_reconstruction``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    return metric if task == "denoising" else f"{metric}_noisy_reconstruction"


def rate_key(task: str, document: dict) -> str:
    """The rate key plotted for ``task``: ``bpp``, or ``bpp_full`` for a noisy reconstruction."""
    if task == "noisy_reconstruction" and "bpp_full" in document["results"]:
        return "bpp_full"
    return results_io.RATE_KEY


def _describe(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items())
    return str(value)


def _title(task: str, documents: Sequence[dict]) -> str:
    """The task, then every distinct meta dataset and noise, in file order."""
    parts = []
    for field in ("dataset", "noise"):
        values = [_describe(d["meta"][field]) for d in documents if field in d["meta"]]
        if values:
            parts.append(" / ".join(dict.fromkeys(values)))
    return _TASK_TITLES[task] + (": " + ", ".join(parts) if parts else "")


def plot_rate_distortion(
    documents: Sequence[dict],
    sources: Sequence[str],
    task: str,
    metric: str,
    dpi: int = DEFAULT_DPI,
) -> Figure:
    """One RD figure of validated results documents (``sources`` name them in errors).

    Raises:
      ValueError: unknown task, or a document without the keys the task needs.
    """
    key = quality_key(task, metric)
    figure = Figure(figsize=FIGURE_SIZE_INCHES, dpi=dpi)
    axes = figure.add_subplot()
    for index, (document, source) in enumerate(zip(documents, sources, strict=True)):
        # One colour per file: reference lines would otherwise restart the colour cycle.
        color = f"C{index % 10}"
        if document["kind"] == results_io.REFERENCE:
            value = results_io.result(document, key, source)
            axes.axhline(value, linestyle="--", color=color, label=document["name"])
        else:
            rates, qualities = results_io.rate_distortion_curve(
                document, rate_key(task, document), key, source
            )
            axes.plot(rates, qualities, marker="o", color=color, label=document["name"])
    axes.set_xlabel(_RATE_LABELS[task])
    axes.set_ylabel(f"{_METRIC_LABELS.get(metric, metric)} ({_QUALITY_LABELS[task]})")
    axes.set_title(_title(task, documents))
    axes.grid(True, alpha=0.3)
    axes.legend()
    return figure


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jdc_jax.plot", description="Rate-distortion plot of results files."
    )
    parser.add_argument("results", nargs="+", help="results JSON files")
    parser.add_argument("--task", choices=TASKS, default="denoising")
    parser.add_argument("--metric", default="psnr", help="psnr, ssim, ms-ssim, ...")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--dpi", type=int, default=DEFAULT_DPI, help="pixels per inch")
    args = parser.parse_args(argv)
    if args.dpi <= 0:
        parser.error(f"--dpi must be positive, got {args.dpi}")
    try:
        documents = [results_io.read_results(path) for path in args.results]
        figure = plot_rate_distortion(documents, args.results, args.task, args.metric, args.dpi)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(args.out, buffer.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
