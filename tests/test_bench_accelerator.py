"""The accelerator benchmark runs on the CPU with its smoke-test sizes and prints its table."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIZES = ("64x96", "128x128")


def _table(stdout: str) -> dict[str, str]:
    """{figure: value} of the markdown table's rows (header and rule left out)."""
    rows = [line.split("|")[1:-1] for line in stdout.splitlines() if line.startswith("| ")]
    return {figure.strip(): value.strip() for figure, value in rows[1:]}


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+\.\d+) s", value)
    assert match, value
    return float(match.group(1))


@pytest.mark.slow
def test_cpu_run_prints_training_decode_and_compilation_figures():
    result = subprocess.run([sys.executable, "benchmarks/bench_accelerator.py", "--cpu"],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    table = _table(result.stdout)
    assert len(table) == 25
    assert table["device"].startswith("cpu: ")
    for dtype in ("float32", "bfloat16"):
        images_per_second = table[f"training {dtype}: images/s (batch 2 of 64x64, tf.data input)"]
        assert float(images_per_second) > 0
        assert _seconds(table[f"training {dtype}: step time (median of 3)"]) > 0
        assert _seconds(table[f"training {dtype}: compile time"]) > 0
        wait = re.fullmatch(r"(\d+\.\d+) %", table[f"training {dtype}: input wait share"])
        assert wait and 0 <= float(wait.group(1)) <= 100
        assert table[f"compilations: training step {dtype} (compile / 3 steps)"] == "1 / 0"
    for size in SIZES:
        decode = _seconds(table[f"decode {size} (denoised, serial wavefront)"])
        bound = _seconds(table[f"decoder forward {size} (hyper-synthesis + synthesis)"])
        assert _seconds(table[f"forward {size} (eval pass, all outputs)"]) > 0
        assert _seconds(table[f"compress {size} (serial wavefront)"]) > 0
        assert float(table[f"decode / decoder forward {size}"]) == pytest.approx(
            decode / bound, rel=0.05)  # both printed to 0.1 ms
        first, second = table[f"compilations: codec {size} (first image / second image)"].split(
            " / ")
        assert int(first) >= 1 and second == "0"
