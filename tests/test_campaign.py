"""The training campaign's queue (results/campaign/campaign.sh) names configs that exist and share
the campaign's recipe, so a run that starts hours later does not fail on a typo or train at
another scale."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, load_config, write_images
from jdc_jax.default_config import CAMPAIGN_TRAIN, CAMPAIGN_VALIDATION

CAMPAIGN = REPO / "results" / "campaign" / "campaign.sh"


def queued_configs():
    return re.findall(r'^ +"[12] (?:ladder|train_run) (configs/\w+\.py:\w+)',
                      CAMPAIGN.read_text(), flags=re.MULTILINE)


# A stand-in for the campaign's python: `python -c` (a zoo look-up) says the entry has
# $ZOO_STEPS training steps and a $ZOO_TUNE_STEPS-step partial fine-tune (0 unless given); a run
# whose arguments contain $FAIL fails; anything else prints the cores it may use and its
# arguments. A training run then sleeps $SLEEP seconds when given; stopped by SIGTERM, it
# takes a moment to "save", writes "saved WORKDIR" to ./stopped.log and ends with 143, as
# `jdc_jax.main` does.
FAKE_PYTHON = """#!/usr/bin/env bash
if [[ "$1" == -c && "$2" == *partial_fine_tune* ]]; then echo "${ZOO_TUNE_STEPS:-0}"; exit 0; fi
if [[ "$1" == -c ]]; then echo "${ZOO_STEPS:-0}"; exit 0; fi
if [[ -n "${FAIL:-}" && "$*" == *"$FAIL"* ]]; then exit 1; fi
echo "cores=$(taskset -pc $$ | sed 's/.*: //') $*"
if [[ -n "${SLEEP:-}" && "$2" == jdc_jax.main ]]; then
  trap 'kill $sleeper; sleep 0.5; echo "saved ${4#--workdir=}" >> stopped.log; exit 143' TERM
  sleep "$SLEEP" &
  sleeper=$!
  wait $sleeper
fi
"""


def campaign_command(tmp_path, lanes: str | None, pin: list[int] | None = None, **env):
    """(command, environment) of campaign.sh (pinned to `pin` when given), run in tmp_path with
    the fake python in tmp_path/.venv/bin; `env`: FAIL, SLEEP."""
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True, exist_ok=True)
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = {"PATH": os.environ["PATH"], **env}
    if lanes is not None:
        env["LANES"] = lanes
    command = ["bash", str(CAMPAIGN), "runs"]
    if pin is not None:
        command = ["taskset", "-c", ",".join(map(str, pin))] + command
    return command, env


def run_campaign(tmp_path, lanes: str | None, pin: list[int] | None = None, **env):
    """campaign.sh with the fake python: (status, stdout, stderr)."""
    command, env = campaign_command(tmp_path, lanes, pin, **env)
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env=env)
    return result.returncode, result.stdout, result.stderr


def core_set(text: str) -> set[int]:
    """"0-2,5" -> {0, 1, 2, 5}."""
    cores = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cores.update(range(int(first), int(last or first) + 1))
    return cores


def trained(log: str) -> list[tuple[frozenset, str, str]]:
    """(cores, config, work directory) of every training run a campaign log shows."""
    return [(frozenset(core_set(cores)), config, workdir) for cores, config, workdir in
            re.findall(r"^cores=(\S+) -m jdc_jax.main --config=(\S+) --workdir=runs/(\S+) ",
                       log, flags=re.MULTILINE)]


LANE_1 = [("configs/jicd.py:campaign_sigma25", "jicd_sigma25"),
          ("configs/codec.py:campaign_clean", "codec_clean"),
          ("configs/jicd.py:campaign_sigma50", "jicd_sigma50"),
          ("configs/testolina.py:campaign_sigma25", "testolina_sigma25")]
LANE_2 = [("configs/jicd.py:campaign_variable", "jicd_variable"),
          ("configs/jdc.py:campaign_sigma25", "jdc_sigma25")]
FFDNET = ("configs/denoiser.py:campaign_ffdnet", "ffdnet_clip")
ONE_LANE = [LANE_1[0], LANE_1[1], FFDNET, LANE_1[2], LANE_2[0], LANE_1[3], LANE_2[1]]


def queue_runs(queue) -> list[tuple[str, str]]:
    """(config, work directory) of each run of a queue of ladders (and FFDNet); each JICD rate
    point is followed by its enhancement fine-tune."""
    runs = []
    for config, name in queue:
        if (config, name) == FFDNET:
            runs.append(FFDNET)
            continue
        for point in (1, 2, 3, 4):
            runs.append((config, f"{name}/rate_point_{point}"))
            if config.startswith("configs/jicd.py:"):
                runs.append((config, f"{name}/rate_point_{point}_enhancement"))
    return runs


def needs_two_cores():
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("two lanes need two cores")
    return cores


def test_two_lanes_train_their_runs_in_order_each_pinned_to_its_half_of_the_cores(tmp_path):
    cores = needs_two_cores()
    status, out, err = run_campaign(tmp_path, None)  # two lanes: the default with 2+ cores
    assert status == 0, err
    half = len(cores) // 2
    for lane, queue, lane_cores in ((1, LANE_1, cores[:half]),
                                    (2, [FFDNET] + LANE_2, cores[half:])):
        runs = trained((tmp_path / "runs" / f"lane_{lane}.log").read_text())
        assert [(config, workdir) for _, config, workdir in runs] == queue_runs(queue), lane
        assert {pinned for pinned, _, _ in runs} == {frozenset(lane_cores)}, lane
    assert out.splitlines()[-1].endswith("campaign ended")


def test_a_failed_lane_stops_but_the_other_goes_on_and_the_campaign_says_so(tmp_path):
    needs_two_cores()
    status, out, _ = run_campaign(tmp_path, "2", FAIL="configs/codec.py:campaign_clean")
    assert status == 1
    lane_1 = trained((tmp_path / "runs" / "lane_1.log").read_text())
    lane_2 = trained((tmp_path / "runs" / "lane_2.log").read_text())
    assert [(config, workdir) for _, config, workdir in lane_1] == queue_runs(LANE_1[:1])
    assert [(config, workdir) for _, config, workdir in lane_2] == queue_runs([FFDNET] + LANE_2)
    assert out.splitlines()[-2].endswith("lane 1 failed: see runs/lane_1.log")


def sleeping_fakes(seconds: str) -> list[int]:
    """Processes running `sleep SECONDS` (the fake python's runs)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                if file.read().split(b"\0")[:2] == [b"sleep", seconds.encode()]:
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def campaign_processes() -> list[int]:
    """Processes running campaign.sh: the script and its lanes (forks of it)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as file:
                if str(CAMPAIGN).encode() in file.read().split(b"\0"):
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.parametrize("lanes,signalled", [("2", "script"), ("2", "every process"),
                                             ("1", "script")])
def test_stopping_the_campaign_lets_every_run_save_and_waits_for_them(tmp_path, lanes,
                                                                      signalled):
    """SIGTERM to the script (`kill`), or to the script and its lanes at once (`pkill -f`, which
    matches the lanes too): each lane's run gets SIGTERM, and the campaign ends only once every
    run has saved and ended, starting no other run."""
    if lanes == "2":
        needs_two_cores()
    runs = int(lanes)
    seconds = f"97.2{lanes}{len(signalled)}"  # a duration no other process sleeps
    command, env = campaign_command(tmp_path, lanes, SLEEP=seconds)
    campaign = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(sleeping_fakes(seconds)) < runs and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(sleeping_fakes(seconds)) == runs  # one run in each lane
        if signalled == "script":
            campaign.terminate()
        else:
            processes = campaign_processes()
            assert campaign.pid in processes and len(processes) >= 1 + runs
            for pid in processes:
                os.kill(pid, 15)
        out, _ = campaign.communicate(timeout=20)
        assert campaign.returncode == 143
        # Every run had saved when the campaign ended (each takes 0.5 s after its SIGTERM).
        saved = sorted((tmp_path / "stopped.log").read_text().splitlines())
        assert saved == sorted(["saved runs/jicd_sigma25/rate_point_1",
                                "saved runs/ffdnet_clip"][:runs])
        assert out.splitlines()[-1].endswith("campaign stopped")
        assert sleeping_fakes(seconds) == []
        # No lane went on to its next run.
        logs = out if lanes == "1" else "".join(
            (tmp_path / "runs" / f"lane_{k}.log").read_text() for k in (1, 2))
        assert len(trained(logs)) == runs
    finally:
        campaign.kill()
        for pid in sleeping_fakes(seconds) + campaign_processes():
            os.kill(pid, 9)


def test_one_lane_trains_the_whole_queue_in_its_order_on_every_core(tmp_path):
    status, out, err = run_campaign(tmp_path, "1")
    assert status == 0, err
    runs = trained(out)
    assert [(config, workdir) for _, config, workdir in runs] == queue_runs(ONE_LANE)
    assert {pinned for pinned, _, _ in runs} == {frozenset(os.sched_getaffinity(0))}
    # Without checkpoints here, an enhancement fine-tune starts from its rate point's entry.
    assert (" -m jdc_jax.main --config=configs/jicd.py:campaign_sigma50 "
            "--workdir=runs/jicd_sigma50/rate_point_2_enhancement --config.num_train_steps=1500 "
            "--config.rate_point=2 --config.init_from=zoo:jicd-sigma50:2 "
            "--config.learning_rate=1e-3 --config.warmup_steps=100 --config.eval_every_steps=500 "
            "--config.module_lr_scales=g_a=0,h_a=0,side_prior=0,h_s=0,base_parameters=0,"
            "g_s_base=0\n") in out


def test_runs_and_fine_tunes_whose_entries_have_their_steps_are_skipped(tmp_path):
    status, out, err = run_campaign(tmp_path, "1", ZOO_STEPS="100000", ZOO_TUNE_STEPS="1500")
    assert status == 0, err
    assert trained(out) == []
    assert "zoo:jicd-sigma25:1 has its 14000 steps; skipped\n" in out
    assert "zoo:jicd-sigma25:4 has its 1500-step enhancement fine-tune; skipped\n" in out
    assert "zoo:codec-clean:4 has its 3000 steps; skipped\n" in out
    assert "zoo:codec-clean:1 has its 1500-step enhancement" not in out  # JICD only
    # Entries with all their steps but no enhancement fine-tune: only the fine-tunes train,
    # each from its rate point's entry.
    status, out, err = run_campaign(tmp_path, "1", ZOO_STEPS="100000", ZOO_TUNE_STEPS="1499")
    assert status == 0, err
    assert [(config, workdir) for _, config, workdir in trained(out)] == [
        run for run in queue_runs(ONE_LANE) if run[1].endswith("_enhancement")]
    assert "--config.init_from=zoo:jicd-variable:3 " in out


def test_a_single_core_runs_one_lane_and_refuses_two(tmp_path):
    core = min(os.sched_getaffinity(0))
    status, out, err = run_campaign(tmp_path, None, pin=[core])
    assert status == 0, err
    runs = trained(out)
    assert [(config, workdir) for _, config, workdir in runs] == queue_runs(ONE_LANE)
    assert {pinned for pinned, _, _ in runs} == {frozenset({core})}
    status, _, err = run_campaign(tmp_path, "2", pin=[core])
    assert status == 2
    assert err.strip() == ("LANES=2 needs at least 2 cores; this process may use 1 "
                           "(LANES=1: one lane)")


def test_the_campaign_refuses_an_unknown_number_of_lanes(tmp_path):
    status, _, err = run_campaign(tmp_path, "3")
    assert status == 2
    assert err.strip() == "LANES must be 1 or 2, got 3"
    assert not (tmp_path / "runs").exists()  # refused before anything was written


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
