"""The training campaign's queue (results/campaign/campaign.sh) names configs that exist and share
the campaign's recipe, so a run that starts hours later does not fail on a typo or train at
another scale."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, load_config, write_images
from jdc_jax.default_config import CAMPAIGN_TRAIN, CAMPAIGN_VALIDATION

CAMPAIGN = REPO / "results" / "campaign" / "campaign.sh"


def queued_configs():
    return re.findall(r'^ +"[12] (?:ladder|train_run) (configs/\w+\.py:\w+)',
                      CAMPAIGN.read_text(), flags=re.MULTILINE)


# A stand-in for the campaign's python: `python -c` (the zoo look-up) says the run has no
# committed steps; anything else prints the cores it may use and its arguments.
FAKE_PYTHON = """#!/usr/bin/env bash
if [[ "$1" == -c ]]; then echo 0; exit 0; fi
echo "cores=$(taskset -pc $$ | sed 's/.*: //') $*"
"""


def run_campaign(tmp_path, lanes: str):
    """campaign.sh with the fake python in tmp_path/.venv/bin: (status, stdout, stderr)."""
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    result = subprocess.run(["bash", str(CAMPAIGN), "runs"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "LANES": lanes})
    return result.returncode, result.stdout, result.stderr


def trained(log: str) -> list[tuple[str, str, str]]:
    """(cores, config, work directory) of every training run a campaign log shows."""
    return re.findall(r"^cores=(\S+) -m jdc_jax.main --config=(\S+) --workdir=runs/(\S+) ",
                      log, flags=re.MULTILINE)


LANE_1 = [("configs/jicd.py:campaign_sigma25", "jicd_sigma25"),
          ("configs/codec.py:campaign_clean", "codec_clean"),
          ("configs/jicd.py:campaign_sigma50", "jicd_sigma50"),
          ("configs/testolina.py:campaign_sigma25", "testolina_sigma25")]
LANE_2 = [("configs/jicd.py:campaign_variable", "jicd_variable"),
          ("configs/jdc.py:campaign_sigma25", "jdc_sigma25")]
FFDNET = ("configs/denoiser.py:campaign_ffdnet", "ffdnet_clip")


def ladder_runs(ladders) -> list[tuple[str, str]]:
    return [(config, f"{name}/rate_point_{point}") for config, name in ladders
            for point in (1, 2, 3, 4)]


def test_two_lanes_train_their_runs_in_order_each_pinned_to_its_half_of_the_cores(tmp_path):
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("two lanes need two cores")
    status, out, err = run_campaign(tmp_path, "2")
    assert status == 0, err
    half = len(cores) // 2
    for lane, expected, lane_cores in (
            (1, ladder_runs(LANE_1), cores[:half]),
            (2, [FFDNET] + ladder_runs(LANE_2), cores[half:])):
        runs = trained((tmp_path / "runs" / f"lane_{lane}.log").read_text())
        assert [(config, workdir) for _, config, workdir in runs] == expected, lane
        pinned = {c for c in runs[0][0].split(",")}
        assert pinned == {f"{lane_cores[0]}-{lane_cores[-1]}"} or pinned == {
            str(c) for c in lane_cores}, (lane, runs[0][0])
    assert out.splitlines()[-1].endswith("campaign ended")


def test_one_lane_trains_the_whole_queue_in_its_order_on_every_core(tmp_path):
    status, out, err = run_campaign(tmp_path, "1")
    assert status == 0, err
    ladders = ladder_runs(LANE_1[:2]) + [FFDNET] + ladder_runs(
        [LANE_1[2], LANE_2[0], LANE_1[3], LANE_2[1]])
    assert [(config, workdir) for _, config, workdir in trained(out)] == ladders


def test_the_campaign_refuses_an_unknown_number_of_lanes(tmp_path):
    status, _, err = run_campaign(tmp_path, "3")
    assert status == 2
    assert err.strip() == "LANES must be 1 or 2, got 3"


def test_the_campaign_queue_is_the_planned_order_of_runs():
    assert queued_configs() == [
        "configs/jicd.py:campaign_sigma25",
        "configs/codec.py:campaign_clean",
        "configs/denoiser.py:campaign_ffdnet",
        "configs/jicd.py:campaign_sigma50",
        "configs/jicd.py:campaign_variable",
        "configs/testolina.py:campaign_sigma25",
        "configs/jdc.py:campaign_sigma25",
    ]


def test_every_queued_codec_trains_at_the_campaign_scale_from_the_lowest_lambda():
    for spec in queued_configs():
        config = load_config(spec)
        assert (config.data_source, config.validation_folder) == (CAMPAIGN_TRAIN,
                                                                 CAMPAIGN_VALIDATION), spec
        assert (config.lr_schedule, config.warmup_steps) == ("cosine", 500), spec
        if config.model == "ffdnet":  # FFDNet: 64 x 64 patches, batch 32, peak 1e-3
            continue
        assert config.learning_rate == 5e-4, spec
        assert (config.channels, config.latent_channels) == (64, 64), spec
        assert (config.crop_size, config.batch_size) == (128, 8), spec
        # The ladder trains rate point 1 from scratch and passes --config.rate_point itself;
        # every codec shares JICD's lambdas, so all curves span the same rates.
        assert config.lambdas[:4] == (0.0018, 0.0035, 0.0067, 0.0130), spec


def test_the_sigma25_comparison_models_see_the_same_noise_as_jicd():
    noises = {spec: load_config(spec).noise for spec in queued_configs()}
    assert noises["configs/testolina.py:campaign_sigma25"] == "awgn:25"
    assert noises["configs/jdc.py:campaign_sigma25"] == "awgn:25"
    assert noises["configs/jicd.py:campaign_sigma25"] == "awgn:25"
    assert load_config("configs/jdc.py:campaign_sigma25").clean_fraction == 0.2


def test_the_readme_picture_shows_one_file_of_a_shipped_model_decoded_both_ways(tmp_path):
    """`side_by_side.py` (the README's picture) runs against the shipped zoo: three panels of the
    256 x 256 crop, written as one PNG."""
    write_images(tmp_path, [(300, 320)])
    (image_name,) = [p.name for p in tmp_path.glob("*.png")]
    out = tmp_path / "figure" / "side_by_side.png"
    out.parent.mkdir()
    result = subprocess.run(
        [sys.executable, "results/campaign/side_by_side.py", "--kodak", str(tmp_path),
         "--image", image_name, "--rate-point", "1", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == f"wrote {out}"
    assert np.asarray(Image.open(out)).shape[:2] == (460, 1200)
