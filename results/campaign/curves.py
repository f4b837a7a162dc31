"""Learning curves of the campaign's runs, from their TensorBoard summaries.

    python results/campaign/curves.py runs/campaign --out results/campaign

For every run below RUNS_ROOT (a folder holding `tensorboard/`), reads the scalars written at
evaluation steps ("eval/..." on Kodak, "val/..." on the validation split) and writes:

- `curves.json`: {run: {"eval": {metric: [[step, value], ...]}, "val": {...}}}, committed, so
  the curves survive the machine that trained them. The points already in it are kept and the
  summaries' points added (a summary wins at a step both hold), so a run continued on another
  machine (`campaign.sh`'s warm restart) extends its curve instead of replacing it;
- `curves_psnr.png` and `curves_bpp.png`: Kodak (solid) and validation (dashed) PSNR of the
  main output and rate (estimated bits per pixel of the denoised product) against steps.

A run continued from another (the lambda ladder's next rate point) starts its own curve.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys

import tensorflow as tf
from matplotlib.figure import Figure

from jdc_jax.atomic_write import write_bytes_atomic

PREFIXES = ("eval", "val")
# The main output's PSNR for each model family, first one present wins.
PSNR_KEYS = ("psnr_denoised", "psnr_reconstruction")
RATE_KEYS = ("bpp_denoised_stream", "bpp")


def read_run(tensorboard_dir: str) -> dict:
    """{prefix: {metric: [[step, value], ...]}} of one run's evaluation summaries."""
    curves: dict[str, dict[str, list]] = {prefix: {} for prefix in PREFIXES}
    for name in sorted(tf.io.gfile.listdir(tensorboard_dir)):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(tensorboard_dir, name)):
            for value in event.summary.value:
                prefix, _, metric = value.tag.partition("/")
                if prefix in curves:
                    number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") \
                        else float(value.simple_value)
                    curves[prefix].setdefault(metric, []).append([int(event.step), number])
    for metrics in curves.values():
        for metric, points in metrics.items():
            metrics[metric] = sorted({step: v for step, v in points}.items())
    return curves


def merge(old: dict, new: dict) -> dict:
    """`old` curves with `new`'s points added, per run, prefix and metric (new wins per step)."""
    merged = json.loads(json.dumps(old))
    for run, sets in new.items():
        for prefix, metrics in sets.items():
            target = merged.setdefault(run, {}).setdefault(prefix, {})
            for metric, points in metrics.items():
                steps = {int(step): value for step, value in target.get(metric, [])}
                steps.update({int(step): value for step, value in points})
                target[metric] = [[step, steps[step]] for step in sorted(steps)]
    return merged


def find_runs(root: str) -> dict[str, str]:
    """{run name relative to root: its tensorboard folder}."""
    runs = {}
    for folder, directories, _ in os.walk(root):
        if "tensorboard" in directories:
            runs[os.path.relpath(folder, root)] = os.path.join(folder, "tensorboard")
    return dict(sorted(runs.items()))


def _first(metrics: dict, keys: tuple[str, ...]):
    return next((metrics[k] for k in keys if k in metrics), None)


def plot(curves: dict, keys: tuple[str, ...], label: str) -> bytes:
    figure = Figure(figsize=(7.5, 4.8))
    axes = figure.subplots()
    for run, sets in curves.items():
        for prefix, style in (("eval", "-"), ("val", "--")):
            points = _first(sets.get(prefix, {}), keys)
            if points:
                steps, values = zip(*points)
                axes.plot(steps, values, style, marker=".",
                          label=f"{run} ({'Kodak' if prefix == 'eval' else 'validation'})")
    axes.set_xlabel("training step")
    axes.set_ylabel(label)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_root")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = parser.parse_args(argv)
    runs = find_runs(args.runs_root)
    if not runs:
        print(f"error: no run with a tensorboard folder below {args.runs_root}", file=sys.stderr)
        return 2
    curves = {run: read_run(folder) for run, folder in runs.items()}
    committed = os.path.join(args.out, "curves.json")
    if os.path.exists(committed):
        with open(committed) as file:
            curves = merge(json.load(file), curves)
    write_bytes_atomic(os.path.join(args.out, "curves.json"),
                       (json.dumps(curves, indent=1, sort_keys=True) + "\n").encode())
    write_bytes_atomic(os.path.join(args.out, "curves_psnr.png"),
                       plot(curves, PSNR_KEYS, "PSNR of the main output [dB]"))
    write_bytes_atomic(os.path.join(args.out, "curves_bpp.png"),
                       plot(curves, RATE_KEYS, "estimated bits per pixel (denoised product)"))
    for run, sets in curves.items():
        points = _first(sets["eval"], PSNR_KEYS)
        rates = _first(sets["eval"], RATE_KEYS)
        if points and rates:
            print(f"{run}: step {points[-1][0]}: Kodak {points[-1][1]:.2f} dB at "
                  f"{rates[-1][1]:.3f} bpp")
    return 0


if __name__ == "__main__":
    sys.exit(main())
