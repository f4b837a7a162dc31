"""Results files, BD-rate and RD plots, down to their command lines."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jdc_jax import bdrate, plot, results

ANCHOR_BPP = [0.1, 0.2, 0.4, 0.8]
ANCHOR_PSNR = [28.0, 30.0, 32.0, 34.0]
ANCHOR_SSIM = [0.80, 0.85, 0.90, 0.95]


def _write(path, name, **columns):
    return results.write_results(path, name, columns, meta={"dataset": "kodak", "noise": "awgn 25"})


# --- results files ---------------------------------------------------------------------------


def test_written_results_read_back_equal_with_lists_sorted_by_bpp(tmp_path):
    path = tmp_path / "jicd.json"
    written = results.write_results(
        path,
        "JICD",
        {"bpp": np.array([0.4, 0.1, 0.2]), "psnr": [32.0, 28.0, 30.0], "bpp_full": [0.9, 0.3, 0.5]},
        description="three checkpoints",
        meta={"dataset": "kodak", "seed": 0},
        per_image=[{"image": "kodim01", "rate_point": 0, "psnr": 27.5}],
    )
    read = results.read_results(path)
    assert read == written
    assert read["results"] == {
        "bpp": [0.1, 0.2, 0.4],
        "psnr": [28.0, 30.0, 32.0],
        "bpp_full": [0.3, 0.5, 0.9],
    }


def test_written_file_holds_exactly_the_documented_top_level_keys(tmp_path):
    path = tmp_path / "jicd.json"
    _write(path, "JICD", bpp=ANCHOR_BPP, psnr=ANCHOR_PSNR)
    raw = json.loads(path.read_text())
    assert sorted(raw) == sorted(results.RESULTS_SCHEMA)
    assert raw["kind"] == "rate_distortion"
    assert raw["meta"] == {"dataset": "kodak", "noise": "awgn 25"}


def test_writing_leaves_no_temporary_file_behind(tmp_path):
    _write(tmp_path / "jicd.json", "JICD", bpp=ANCHOR_BPP, psnr=ANCHOR_PSNR)
    _write(tmp_path / "jicd.json", "JICD", bpp=ANCHOR_BPP[:2], psnr=ANCHOR_PSNR[:2])
    assert os.listdir(tmp_path) == ["jicd.json"]
    assert results.read_results(tmp_path / "jicd.json")["results"]["bpp"] == [0.1, 0.2]


def test_reference_results_round_trip_as_single_values(tmp_path):
    path = tmp_path / "cbm3d.json"
    results.write_results(path, "CBM3D", {"psnr": 30.5, "ssim": 0.87}, kind=results.REFERENCE)
    read = results.read_results(path)
    assert read["kind"] == "reference"
    assert read["results"] == {"psnr": 30.5, "ssim": 0.87}


def test_file_without_kind_reads_as_rate_distortion(tmp_path):
    # The shape CompressAI's evaluation writes.
    path = tmp_path / "compressai.json"
    path.write_text(json.dumps({"name": "bmshj2018", "results": {"bpp": [0.3], "psnr": [29.0]}}))
    read = results.read_results(path)
    assert (read["kind"], read["description"], read["meta"]) == ("rate_distortion", "", {})


@pytest.mark.parametrize(
    "document, message",
    [
        ({"results": {"bpp": [0.1]}}, "missing key 'name'"),
        ({"name": "x", "results": {"psnr": [30.0]}}, r"missing key results\['bpp'\]"),
        (
            {"name": "x", "results": {"bpp": [0.1, 0.2], "psnr": [30.0]}},
            r"results\['psnr'\] has 1 entries but results\['bpp'\] has 2",
        ),
        (
            {"name": "x", "results": {"bpp": [0.1], "psnr": ["30"]}},
            r"results\['psnr'\]\[0\] is not a number",
        ),
        ({"name": "x", "results": {"bpp": [0.1], "psnr": [float("nan")]}}, "not finite"),
        ({"name": "x", "results": {"bpp": 0.1}}, "must be a list"),
        ({"name": "x", "results": {"bpp": []}}, "is empty"),
        ({"name": 3, "results": {"bpp": [0.1]}}, "'name' must be a JSON str"),
        ({"name": "x", "kind": "baseline", "results": {}}, "unknown kind 'baseline'"),
        ({"name": "x", "kind": "reference", "results": {"psnr": 30.0, "bpp": 0.1}}, "has no rate"),
        ({"name": "x", "kind": "reference", "results": {"psnr": [30.0]}}, "is not a number"),
        (
            {"name": "x", "results": {"bpp": [0.1]}, "per_image": [1]},
            r"per_image\[0\] must be an object",
        ),
    ],
)
def test_read_results_rejects_invalid_documents_naming_the_problem(tmp_path, document, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=message):
        results.read_results(path)


def test_read_results_rejects_invalid_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        results.read_results(path)


# --- BD-rate ---------------------------------------------------------------------------------


def test_bd_rate_of_curve_against_itself_is_zero():
    value = bdrate.bd_rate_percent(ANCHOR_BPP, ANCHOR_PSNR, ANCHOR_BPP, ANCHOR_PSNR)
    assert abs(value.percent) < 1e-9
    assert value.overlap == 1.0


def test_bd_rate_of_rates_scaled_by_0_8_is_minus_20_percent():
    # Same PSNR nodes, every log10 rate shifted by log10(0.8). PCHIP sees the ordinates only
    # through their values at the nodes and their differences (the secant slopes), so the test
    # interpolant is the anchor's plus log10(0.8) everywhere. The mean log-rate difference over
    # the (full) overlap is log10(0.8), and 100 * (10**log10(0.8) - 1) = -20 %.
    scaled = [0.8 * rate for rate in ANCHOR_BPP]
    value = bdrate.bd_rate_percent(ANCHOR_BPP, ANCHOR_PSNR, scaled, ANCHOR_PSNR)
    assert value.percent == pytest.approx(-20.0, abs=1e-6)


def test_bd_rate_of_constant_log_rate_shift_on_differently_sampled_linear_curves():
    # Both curves are exactly linear in (PSNR, log10 rate), log10 R = 0.1 q - 4 (+ shift), which
    # PCHIP reproduces exactly. The test curve has 3 points at other PSNRs; over the overlap
    # [31, 35] the log-rate difference is the constant shift -0.05, so BD-rate = 10**-0.05 - 1.
    anchor_psnr = [30.0, 32.0, 34.0, 36.0]
    test_psnr = [31.0, 33.0, 35.0]
    anchor_rates = [10 ** (0.1 * q - 4) for q in anchor_psnr]
    test_rates = [10 ** (0.1 * q - 4 - 0.05) for q in test_psnr]
    value = bdrate.bd_rate_percent(anchor_rates, anchor_psnr, test_rates, test_psnr)
    assert value.percent == pytest.approx(100 * (10**-0.05 - 1), abs=1e-9)  # -10.8749 %
    assert value.overlap == pytest.approx(4 / 6, abs=1e-12)


def test_bd_rate_with_two_points_per_curve_is_defined():
    value = bdrate.bd_rate_percent([0.1, 0.4], [28.0, 32.0], [0.05, 0.2], [28.0, 32.0])
    assert value.percent == pytest.approx(-50.0, abs=1e-9)


def test_bd_rate_of_disjoint_quality_ranges_is_none():
    value = bdrate.bd_rate_percent(ANCHOR_BPP, ANCHOR_PSNR, [1.0, 2.0, 4.0], [40.0, 41.0, 42.0])
    assert value == bdrate.BdRate(None, 0.0)


def test_bd_rate_rejects_a_single_rate_point():
    with pytest.raises(ValueError, match="at least 2 rate points, got 1"):
        bdrate.bd_rate_percent(ANCHOR_BPP, ANCHOR_PSNR, [0.2], [30.0])


def test_bd_rate_rejects_quality_that_does_not_increase_with_rate():
    with pytest.raises(ValueError, match="strictly increase"):
        bdrate.bd_rate_percent(ANCHOR_BPP, ANCHOR_PSNR, [0.1, 0.2, 0.4], [30.0, 29.0, 31.0])


def test_bd_rate_rejects_non_positive_rates():
    with pytest.raises(ValueError, match="positive"):
        bdrate.bd_rate_percent(ANCHOR_BPP, ANCHOR_PSNR, [0.0, 0.2, 0.4], [29.0, 30.0, 31.0])


@pytest.fixture
def rd_files(tmp_path):
    """An anchor, a codec at 0.8x and one at 1.25x its rates, one out of range, and a reference."""
    names = ("anchor", "better", "worse", "far", "cbm3d")
    paths = {name: str(tmp_path / f"{name}.json") for name in names}
    _write(paths["anchor"], "Anchor", bpp=ANCHOR_BPP, psnr=ANCHOR_PSNR, ssim=ANCHOR_SSIM)
    _write(
        paths["better"],
        "Better",
        bpp=[0.8 * r for r in ANCHOR_BPP],
        psnr=ANCHOR_PSNR,
        ssim=ANCHOR_SSIM,
        bpp_full=[1.6 * r for r in ANCHOR_BPP],
        psnr_noisy_reconstruction=[25.0, 26.0, 27.0, 28.0],
    )
    worse_bpp = [1.25 * r for r in ANCHOR_BPP]
    _write(paths["worse"], "Worse", bpp=worse_bpp, psnr=ANCHOR_PSNR, ssim=ANCHOR_SSIM)
    far_ssim = [0.96, 0.97, 0.98]
    _write(paths["far"], "Far", bpp=[1.0, 2.0, 4.0], psnr=[40.0, 41.0, 42.0], ssim=far_ssim)
    results.write_results(
        paths["cbm3d"], "CBM3D", {"psnr": 31.0, "psnr_noisy_reconstruction": 26.5}, kind="reference"
    )
    return paths


def test_bdrate_cli_prints_markdown_table_and_writes_json(rd_files, tmp_path, capsys):
    out = tmp_path / "table.json"
    argv = [rd_files["anchor"], rd_files["better"], rd_files["worse"], rd_files["far"]]
    assert bdrate.main(argv + ["--metric", "psnr", "ssim", "--out", str(out)]) == 0
    assert capsys.readouterr().out == (
        "BD-rate (%) against Anchor (rate: bpp, pchip interpolation)\n"
        "\n"
        "| method | psnr | ssim |\n"
        "|---|---:|---:|\n"
        "| Better | -20.00 | -20.00 |\n"
        "| Worse | 25.00 | 25.00 |\n"
        "| Far | no overlap | no overlap |\n"
    )
    table = json.loads(out.read_text())
    assert table["anchor"] == {"name": "Anchor", "path": rd_files["anchor"]}
    assert [row["name"] for row in table["rows"]] == ["Better", "Worse", "Far"]
    assert table["rows"][1]["bd_rate_percent"]["psnr"] == pytest.approx(25.0, abs=1e-9)
    assert table["rows"][2]["bd_rate_percent"] == {"psnr": None, "ssim": None}


def test_max_rate_leaves_out_the_points_where_a_curve_turns_back(tmp_path, capsys):
    """A pipeline whose quality falls at its largest rate has no BD-rate as a whole; with
    --max-rate the comparison covers the points below the turn, and says so."""
    turning, test, out = tmp_path / "turning.json", tmp_path / "test.json", tmp_path / "t.json"
    _write(turning, "Turning", bpp=ANCHOR_BPP, psnr=ANCHOR_PSNR[:3] + [31.0])
    _write(test, "Test", bpp=[0.8 * r for r in ANCHOR_BPP[:3]], psnr=ANCHOR_PSNR[:3])
    with pytest.raises(SystemExit) as exit_info:
        bdrate.main([str(turning), str(test)])
    assert exit_info.value.code == 2
    assert "anchor: quality must strictly increase with rate" in capsys.readouterr().err

    assert bdrate.main([str(turning), str(test), "--max-rate", "0.5", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "BD-rate (%) against Turning (rate: bpp, points above bpp 0.5 left out, pchip "
        "interpolation)")
    table = json.loads(out.read_text())
    assert table["max_rate"] == 0.5
    assert table["rows"][0]["bd_rate_percent"]["psnr"] == pytest.approx(-20.0, abs=1e-9)

    # A limit that leaves a curve one point names the limit in the error.
    with pytest.raises(SystemExit):
        bdrate.main([str(turning), str(test), "--max-rate", "0.15"])
    assert capsys.readouterr().err.strip().endswith(
        "BD-rate needs at least 2 rate points, got 1 (points above bpp 0.15 left out)")
    with pytest.raises(SystemExit):
        bdrate.main([str(turning), str(test), "--max-rate", "0"])
    assert "max_rate must be a positive rate, got 0.0" in capsys.readouterr().err


def test_bdrate_table_flags_low_overlap():
    table = {
        "anchor": {"name": "A", "path": "a.json"},
        "rate_key": "bpp",
        "metrics": ["psnr"],
        "interpolation": "pchip",
        "rows": [
            {"name": "T", "bd_rate_percent": {"psnr": -10.874}, "quality_overlap": {"psnr": 0.4}}
        ],
    }
    assert bdrate.format_markdown(table).splitlines()[-1] == "| T | -10.87 (overlap 40%) |"


@pytest.mark.slow
def test_bdrate_cli_reports_missing_metric_key(rd_files, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bdrate.main([rd_files["anchor"], rd_files["better"], "--metric", "ms-ssim"])
    assert exit_info.value.code == 2
    assert "missing key results['ms-ssim']" in capsys.readouterr().err


@pytest.mark.slow
def test_bdrate_cli_rejects_reference_results(rd_files, capsys):
    with pytest.raises(SystemExit):
        bdrate.main([rd_files["anchor"], rd_files["cbm3d"]])
    assert "has no rate points" in capsys.readouterr().err


@pytest.mark.slow
def test_bdrate_runs_as_module(rd_files):
    completed = subprocess.run(
        [sys.executable, "-m", "jdc_jax.bdrate", rd_files["anchor"], rd_files["better"]],
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.splitlines()[-1] == "| Better | -20.00 |"


# --- plots -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_plot_cli_writes_png_of_expected_size(rd_files, tmp_path):
    out = tmp_path / "figures" / "rd.png"
    completed = subprocess.run(
        [sys.executable, "-m", "jdc_jax.plot", rd_files["anchor"], rd_files["better"],
         rd_files["cbm3d"], "--task", "denoising", "--metric", "psnr", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr
    with Image.open(out) as image:
        assert (image.format, image.size) == ("PNG", (640, 480))
    assert os.listdir(out.parent) == ["rd.png"]


@pytest.mark.slow
def test_plot_cli_dpi_sets_pixel_size(rd_files, tmp_path):
    out = tmp_path / "rd.png"
    assert plot.main([rd_files["anchor"], "--out", str(out), "--dpi", "50"]) == 0
    with Image.open(out) as image:
        assert image.size == (320, 240)


def test_denoising_plot_draws_curves_and_reference_line_with_meta_title(rd_files):
    documents = [results.read_results(rd_files[name]) for name in ("anchor", "better", "cbm3d")]
    figure = plot.plot_rate_distortion(documents, ["a", "b", "c"], "denoising", "psnr")
    axes = figure.axes[0]
    assert axes.get_title() == "Denoising: kodak, awgn 25"
    anchor_line, better_line, reference_line = axes.lines
    assert list(better_line.get_xdata()) == pytest.approx([0.8 * r for r in ANCHOR_BPP])
    assert list(better_line.get_ydata()) == ANCHOR_PSNR
    assert list(reference_line.get_ydata()) == [31.0, 31.0]
    assert reference_line.get_linestyle() == "--"
    colors = [line.get_color() for line in axes.lines]
    assert colors == ["C0", "C1", "C2"]
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == ["Anchor", "Better", "CBM3D"]


def test_noisy_reconstruction_plot_uses_full_file_rate(rd_files):
    documents = [results.read_results(rd_files[name]) for name in ("better", "cbm3d")]
    figure = plot.plot_rate_distortion(documents, ["b", "c"], "noisy_reconstruction", "psnr")
    curve, reference_line = figure.axes[0].lines
    assert list(curve.get_xdata()) == pytest.approx([1.6 * r for r in ANCHOR_BPP])
    assert list(curve.get_ydata()) == [25.0, 26.0, 27.0, 28.0]
    assert list(reference_line.get_ydata()) == [26.5, 26.5]


def test_noisy_reconstruction_plot_reports_missing_metric(rd_files, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        plot.main(
            [rd_files["anchor"], "--task", "noisy_reconstruction", "--out", str(tmp_path / "x.png")]
        )
    assert exit_info.value.code == 2
    assert "missing key results['psnr_noisy_reconstruction']" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
