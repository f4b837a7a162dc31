"""Bjontegaard-delta rate (BD-rate) between results files, and its command line.

BD-rate (Bjontegaard 2001, VCEG-M33) is the average relative rate difference of a test codec
against an anchor at equal quality. With ``r(q) = log10(rate)`` interpolated as a function of
quality ``q`` for each curve, over the quality range both curves cover, ``[q_lo, q_hi]``::

    BD-rate = 100 * (10 ** (mean over q in [q_lo, q_hi] of (r_test(q) - r_anchor(q))) - 1)   [%]

Negative means the test codec needs fewer bits for the same quality. The interpolation is the
piecewise cubic Hermite (PCHIP) one of the ``bjontegaard`` package (``bjontegaard.bd_rate(...,
method="pchip")``, scipy's ``PchipInterpolator``), which is defined for any number of points
from 2 up; with 2 points it is a straight line in (quality, log rate). Here every curve needs at
least ``MIN_RATE_POINTS`` = 2 points, so the usual 3 or 4 checkpoints per method both work, and
anchor and test may have different numbers of points. Within a curve, taken in increasing rate,
the quality must strictly increase (an RD curve that turns back cannot be interpolated as a
function of quality) and every rate must be positive.

A curve that turns back at high rates (a denoise-then-code pipeline whose last, largest files
keep more noise than they remove, say) has no BD-rate as a whole; ``--max-rate R`` leaves out
every point of every curve above the rate R, so the comparison covers the range where both are
rate-distortion curves. The table states the limit, and the JSON holds it (``max_rate``).

Curves whose quality ranges do not overlap have no BD-rate: the table says ``no overlap`` and
the JSON holds ``null``. The overlap fraction (length of the common quality range over the
length of the union) is reported with each value; values on an overlap below ``LOW_OVERLAP``
(0.75, where the bjontegaard package itself would warn) are flagged in the table, since they
average over a narrow part of the curves only.

Usage::

    python -m jdc_jax.bdrate ANCHOR.json TEST.json [TEST2.json ...] \\
        --metric psnr ssim ms-ssim --rate-key bpp [--max-rate 0.4] --out table.json

prints a markdown table (rows: test files by name; columns: BD-rate in % per metric) and
writes the same numbers as JSON, atomically.
"""

import argparse
import json
import sys
from typing import NamedTuple, Sequence

import bjontegaard

from jdc_jax.atomic_write import write_bytes_atomic
from jdc_jax import results as results_io

MIN_RATE_POINTS = 2
LOW_OVERLAP = 0.75
INTERPOLATION = "pchip"


class BdRate(NamedTuple):
    """BD-rate in percent (None when the quality ranges do not overlap) and the overlap fraction."""

    percent: float | None
    overlap: float


def _check_curve(rates: Sequence[float], qualities: Sequence[float], label: str) -> None:
    if len(rates) != len(qualities):
        raise ValueError(f"{label}: {len(rates)} rates but {len(qualities)} quality values")
    if len(rates) < MIN_RATE_POINTS:
        raise ValueError(
            f"{label}: BD-rate needs at least {MIN_RATE_POINTS} rate points, got {len(rates)}"
        )
    if any(rate <= 0 for rate in rates):
        raise ValueError(f"{label}: rates must be positive for log-rate interpolation: {rates}")
    points = sorted(zip(rates, qualities))
    if any(later[1] <= earlier[1] for earlier, later in zip(points, points[1:])):
        raise ValueError(
            f"{label}: quality must strictly increase with rate, got (rate, quality) = {points}"
        )


def quality_overlap(anchor_qualities: Sequence[float], test_qualities: Sequence[float]) -> float:
    """Length of the common quality range over the length of their union, in [0, 1]."""
    union = max(max(anchor_qualities), max(test_qualities)) - min(
        min(anchor_qualities), min(test_qualities)
    )
    common = min(max(anchor_qualities), max(test_qualities)) - max(
        min(anchor_qualities), min(test_qualities)
    )
    return max(common, 0.0) / union if union > 0 else 0.0


def bd_rate_percent(
    anchor_rates: Sequence[float],
    anchor_qualities: Sequence[float],
    test_rates: Sequence[float],
    test_qualities: Sequence[float],
) -> BdRate:
    """BD-rate of the test curve against the anchor curve (see the module docstring).

    Args:
      anchor_rates, test_rates: positive rates (e.g. bits per pixel), any order.
      anchor_qualities, test_qualities: quality per rate point (higher is better, e.g. PSNR in
        dB), strictly increasing with rate.

    Raises:
      ValueError: fewer than ``MIN_RATE_POINTS`` points, mismatched lengths, non-positive rates
        or a quality that does not strictly increase with rate.
    """
    _check_curve(anchor_rates, anchor_qualities, "anchor")
    _check_curve(test_rates, test_qualities, "test")
    overlap = quality_overlap(anchor_qualities, test_qualities)
    if overlap == 0.0:
        return BdRate(None, 0.0)
    anchor = sorted(zip(anchor_rates, anchor_qualities))
    test = sorted(zip(test_rates, test_qualities))
    percent = bjontegaard.bd_rate(
        [rate for rate, _ in anchor],
        [quality for _, quality in anchor],
        [rate for rate, _ in test],
        [quality for _, quality in test],
        method=INTERPOLATION,
        require_matching_points=False,
        # The overlap is reported with every value instead of as a warning.
        min_overlap=0.0,
    )
    return BdRate(float(percent), overlap)


def _up_to(curve: tuple[list[float], list[float]], max_rate: float | None):
    """The (rates, qualities) curve without its points above max_rate (None: all points)."""
    if max_rate is None:
        return curve
    kept = [(rate, quality) for rate, quality in zip(*curve) if rate <= max_rate]
    return [rate for rate, _ in kept], [quality for _, quality in kept]


def bd_rate_table(
    anchor_path: str, test_paths: Sequence[str], metrics: Sequence[str], rate_key: str,
    max_rate: float | None = None,
) -> dict:
    """BD-rates of every test file against the anchor file for every metric, as a JSON object;
    with `max_rate`, on the points at or below that rate only.

    Returns:
      ``{"anchor": {"name", "path"}, "rate_key", "max_rate", "metrics", "interpolation", "rows":
      [{"name", "path", "bd_rate_percent": {metric: float | None}, "quality_overlap": {metric:
      float}}]}``.
    """
    if max_rate is not None and not max_rate > 0:
        raise ValueError(f"max_rate must be a positive rate, got {max_rate}")
    anchor = results_io.read_results(anchor_path)
    rows = []
    for test_path in test_paths:
        test = results_io.read_results(test_path)
        bd_rates, overlaps = {}, {}
        for metric in metrics:
            anchor_curve = _up_to(
                results_io.rate_distortion_curve(anchor, rate_key, metric, anchor_path), max_rate)
            test_curve = _up_to(
                results_io.rate_distortion_curve(test, rate_key, metric, test_path), max_rate)
            try:
                value = bd_rate_percent(*anchor_curve, *test_curve)
            except ValueError as error:
                message = f"{metric} of {test_path} against {anchor_path}: {error}"
                if max_rate is not None:
                    message += f" (points above {rate_key} {max_rate:g} left out)"
                raise ValueError(message) from None
            bd_rates[metric], overlaps[metric] = value.percent, value.overlap
        rows.append(
            {
                "name": test["name"],
                "path": test_path,
                "bd_rate_percent": bd_rates,
                "quality_overlap": overlaps,
            }
        )
    return {
        "anchor": {"name": anchor["name"], "path": anchor_path},
        "rate_key": rate_key,
        "max_rate": max_rate,
        "metrics": list(metrics),
        "interpolation": INTERPOLATION,
        "rows": rows,
    }


def _format_cell(percent: float | None, overlap: float) -> str:
    if percent is None:
        return "no overlap"
    cell = f"{percent:.2f}"
    if overlap < LOW_OVERLAP:
        cell += f" (overlap {overlap:.0%})"
    return cell


def format_markdown(table: dict) -> str:
    """The table as markdown: one row per test file, one BD-rate column (in %) per metric."""
    metrics = table["metrics"]
    limit = table.get("max_rate")
    limit_text = "" if limit is None else f", points above {table['rate_key']} {limit:g} left out"
    lines = [
        f"BD-rate (%) against {table['anchor']['name']} "
        f"(rate: {table['rate_key']}{limit_text}, {table['interpolation']} interpolation)",
        "",
        "| method | " + " | ".join(metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for row in table["rows"]:
        cells = [
            _format_cell(row["bd_rate_percent"][metric], row["quality_overlap"][metric])
            for metric in metrics
        ]
        name = row["name"].replace("|", "\\|")  # a bare | would split the cell
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jdc_jax.bdrate",
        description="BD-rate (%) of results files against an anchor results file.",
    )
    parser.add_argument("anchor", help="anchor results JSON")
    parser.add_argument("tests", nargs="+", help="results JSON files to compare with the anchor")
    parser.add_argument(
        "--metric",
        nargs="+",
        action="extend",
        help="quality keys of results (default: psnr), e.g. psnr ssim ms-ssim",
    )
    parser.add_argument("--rate-key", default=results_io.RATE_KEY, help="rate key (default: bpp)")
    parser.add_argument("--max-rate", type=float,
                        help="leave out every curve's points above this rate (e.g. where a "
                             "stock pipeline's quality falls with rate)")
    parser.add_argument("--out", help="where to write the table as JSON")
    args = parser.parse_args(argv)
    metrics = list(dict.fromkeys(args.metric or ["psnr"]))
    try:
        table = bd_rate_table(args.anchor, args.tests, metrics, args.rate_key, args.max_rate)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    sys.stdout.write(format_markdown(table))
    if args.out:
        text = json.dumps(table, indent=2, allow_nan=False) + "\n"
        write_bytes_atomic(args.out, text.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
