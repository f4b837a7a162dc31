"""The training campaign's queue (results/campaign/campaign.sh) names configs that exist and share
the campaign's recipe, so a run that starts hours later does not fail on a typo or train at
another scale."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import REPO, load_config, write_images
from jdc_jax.default_config import CAMPAIGN_TRAIN, CAMPAIGN_VALIDATION

CAMPAIGN = REPO / "results" / "campaign" / "campaign.sh"


def queued_configs():
    return re.findall(r"^(?:ladder|train_run) (configs/\w+\.py:\w+)", CAMPAIGN.read_text(),
                      flags=re.MULTILINE)


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
