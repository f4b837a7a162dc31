"""Multi-process training: two local CPU processes joined by jax.distributed train exactly like one
process on the same global batches, and their checkpoint resumes in a single process.

Every run is the unchanged command line `python -m jdc_jax.main`. The two processes find each
other through JDC_COORDINATOR_ADDRESS (localhost, a free port) and use gloo CPU collectives; each
reads only its shard of the image folder.

Same global batches whatever the process count: the folder holds 12 images of exactly the crop
size (so the random crop is the whole image) with noise "none" and a shuffle buffer of 1 (so the
order is the sorted file order). Process p of 2 reads files p, p + 2, p + 4, ..., so global batch
k is files [4k, 4k + 2 | 4k + 1, 4k + 3], while one process reads [4k, 4k + 1, 4k + 2, 4k + 3].
Files 4k + 1 and 4k + 2 hold the same image, which makes the two batches equal element by element.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import FAST_COMPILE
from jdc_jax import checkpoints, main

REPO = Path(__file__).resolve().parents[1]
TIME_LIMIT_SECONDS = 170
TINY_JOB = ("--config=configs/jicd.py:smoke", "--config.channels=8",
            "--config.latent_channels=8", "--config.base_channels=6",
            "--config.context_model=none", "--config.crop_size=64", "--config.batch_size=4",
            "--config.noise=none", "--config.shuffle_buffer=1", "--config.eval_folder=",
            "--config.log_every_steps=1", "--config.checkpoint_every_steps=3",
            "--config.integer_calibration=")


def write_batch_aligned_folder(folder: Path, batches: int = 3) -> Path:
    """Per global batch, images [a, b, b, c] (module docstring), 64x64 uint8 PNGs."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(batches):
        a, b, c = (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3))
        for j, image in enumerate((a, b, b, c)):
            Image.fromarray(image).save(folder / f"image_{4 * k + j:03d}.png")
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def job_environment(**variables) -> dict:
    """This environment without cluster settings, on one CPU device per process (XLA_FLAGS:
    only the tests' compile setting)."""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("JDC_", "SLURM_", "OMPI_", "TPU_"))
                   and k != "XLA_FLAGS"}
    environment.update(JAX_PLATFORMS="cpu", XLA_FLAGS=FAST_COMPILE, **variables)
    return environment


def run_jobs(jobs: dict, logs: Path, deadline: float) -> dict:
    """Runs {name: (argv, environment)} side by side until all end, one fails or the deadline
    passes; always kills what is left. Returns {name: (stdout, stderr)}; fails the test unless
    every job exits with 0."""
    processes, streams = {}, []
    try:
        for name, (argv, environment) in jobs.items():
            stdout = open(logs / f"{name}.out", "w")
            stderr = open(logs / f"{name}.err", "w")
            streams += [stdout, stderr]
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "jdc_jax.main", *argv], cwd=REPO, env=environment,
                stdout=stdout, stderr=stderr, start_new_session=True)
        while any(p.poll() is None for p in processes.values()):
            if any(p.poll() not in (None, 0) for p in processes.values()):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"still running after {TIME_LIMIT_SECONDS} s: "
                            f"{[n for n, p in processes.items() if p.poll() is None]}")
            time.sleep(0.5)
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for stream in streams:
            stream.close()
    outputs = {n: ((logs / f"{n}.out").read_text(), (logs / f"{n}.err").read_text())
               for n in jobs}
    # A job that failed on its own first; the jobs killed after it (negative codes) say less.
    failed = sorted((p.returncode < 0, n) for n, p in processes.items() if p.returncode != 0)
    if failed:
        name = failed[0][1]
        pytest.fail(f"{name} exited with {processes[name].returncode} (all: "
                    f"{ {n: p.returncode for n, p in processes.items()} }):\n"
                    f"{outputs[name][1][-3000:]}")
    return outputs


def largest_difference(a, b) -> float:
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


@pytest.mark.slow
def test_two_processes_train_like_one_and_their_checkpoint_resumes_in_one(tmp_path):
    deadline = time.monotonic() + TIME_LIMIT_SECONDS
    data = write_batch_aligned_folder(tmp_path / "images")
    job = (*TINY_JOB, f"--config.data_source=folder:{data}")
    # The single-process runs share compiled programs: the resumption compiles nothing new.
    single = job_environment(JAX_COMPILATION_CACHE_DIR=str(tmp_path / "compiled"),
                             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    coordinator = f"localhost:{free_port()}"
    two, one = tmp_path / "two_processes", tmp_path / "one_process"
    outputs = run_jobs({
        f"process_{i}": ((*job, "--config.num_train_steps=3", f"--workdir={two}",
                          "--config.integer_calibration=builtin"),
                         job_environment(JDC_COORDINATOR_ADDRESS=coordinator,
                                         JDC_NUM_PROCESSES="2", JDC_PROCESS_ID=str(i),
                                         JDC_CPU_COLLECTIVES="gloo"))
        for i in range(2)
    } | {"one_process": ((*job, "--config.num_train_steps=4", f"--workdir={one}"), single)},
        tmp_path, deadline)

    # Two processes formed one job: each saved its own input position, as process i of 2.
    assert sorted(p.name for p in (two / "data_state" / "3").glob("*.index")) == [
        "process_0_of_2.index", "process_1_of_2.index"]
    # Only process 0 reports: the compilation of step 1, then a progress line per logging step.
    report = outputs["process_0"][0]
    assert report.count("compiling the training step") == 1
    assert len(re.findall(r"^step \d+/3 ", report, re.M)) == 3 and "final metrics:" in report
    assert "step " not in outputs["process_1"][0] and "final metrics" not in \
        outputs["process_1"][0]
    assert (two / "final_metrics.json").is_file() and (two / "config.json").is_file()
    # Process 0 alone calibrates the final checkpoint's integer entropy network, from the
    # parameters it holds (no collective restore with a process that has already ended).
    assert "integer entropy network calibrated on builtin" in report
    assert (two / "checkpoints" / "3" / "integer_entropy.npz").is_file()

    two_params, _, two_step = checkpoints.restore_params(two, step=3)
    one_params, _, _ = checkpoints.restore_params(one, step=3)
    one_step_later, _, _ = checkpoints.restore_params(one, step=4)
    assert two_step == 3
    assert largest_difference(two_params, one_params) <= 1e-5
    # A step moves the parameters by far more, so the bound above can fail.
    assert largest_difference(two_params, one_step_later) > 1e-4

    # One process resumes the two processes' step 3 and takes step 4 on global batch 0, which is
    # where one process's epoch 2 starts too (no input state of 1 process: data restarts).
    outputs = run_jobs({"resumed": ((*job, "--config.num_train_steps=4", f"--workdir={two}"),
                                    single)}, tmp_path, deadline)
    assert (f"resumed from step 3 in {two}; no input pipeline state for 1 process(es): the data "
            f"order restarts") in outputs["resumed"][0]
    assert f"checkpoint: {two / 'checkpoints' / '4'}" in outputs["resumed"][0]
    resumed, _, resumed_step = checkpoints.restore_params(two, step=4)
    reference, _, _ = checkpoints.restore_params(one, step=4)
    assert resumed_step == 4
    assert largest_difference(resumed, reference) <= 1e-5


@pytest.mark.parametrize("environment,message", [
    ({"JDC_COORDINATOR_ADDRESS": "localhost:1234"}, "JDC_NUM_PROCESSES, JDC_PROCESS_ID missing"),
    ({"JDC_COORDINATOR_ADDRESS": "localhost", "JDC_NUM_PROCESSES": "2",
      "JDC_PROCESS_ID": "0"}, "must be host:port"),
    ({"JDC_COORDINATOR_ADDRESS": "localhost:1234", "JDC_NUM_PROCESSES": "two",
      "JDC_PROCESS_ID": "0"}, "JDC_NUM_PROCESSES must be an integer"),
    ({"JDC_COORDINATOR_ADDRESS": "localhost:1234", "JDC_NUM_PROCESSES": "2",
      "JDC_PROCESS_ID": "2"}, "JDC_PROCESS_ID 2 is not below JDC_NUM_PROCESSES 2"),
    ({"JDC_COORDINATOR_ADDRESS": "localhost:1234", "JDC_NUM_PROCESSES": "2",
      "JDC_PROCESS_ID": "0", "JDC_CPU_COLLECTIVES": "nccl"}, "JDC_CPU_COLLECTIVES must be one of"),
])
def test_incomplete_or_bad_multiprocess_settings_are_refused(environment, message):
    with pytest.raises(ValueError, match=message):
        main.initialize_distributed(environment)


def test_explicit_settings_and_cluster_launchers_are_recognized():
    assert main.explicit_settings({"JDC_COORDINATOR_ADDRESS": "10.0.0.1:61440",
                                   "JDC_NUM_PROCESSES": "4", "JDC_PROCESS_ID": "3"}) == {
        "coordinator_address": "10.0.0.1:61440", "num_processes": 4, "process_id": 3}
    assert main.initialize_distributed({"SLURM_NTASKS": "1", "OMPI_COMM_WORLD_SIZE": "1"}) \
        == "single"
    assert [main.cluster_detected(e) for e in (
        {"SLURM_NTASKS": "8"}, {"OMPI_COMM_WORLD_SIZE": "2"},
        {"TPU_WORKER_HOSTNAMES": "host-0,host-1"}, {"TPU_WORKER_HOSTNAMES": "host-0"})] == [
        True, True, True, False]


def _train_until_sigterm(tmp_path, data, work, total: int, after_line: str, run: int):
    """Two processes train in `work`; once process 0 prints a line that starts with
    `after_line`, process 1 gets SIGTERM. Both must exit with 143; returns process 0's stdout."""
    coordinator = f"localhost:{free_port()}"
    processes, streams = [], []
    try:
        for i in range(2):
            stdout = open(tmp_path / f"run_{run}_process_{i}.out", "w")
            stderr = open(tmp_path / f"run_{run}_process_{i}.err", "w")
            streams += [stdout, stderr]
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "jdc_jax.main", *TINY_JOB,
                 f"--config.data_source=folder:{data}", f"--config.num_train_steps={total}",
                 "--config.checkpoint_every_steps=1000", f"--workdir={work}"],
                cwd=REPO, stdout=stdout, stderr=stderr, start_new_session=True,
                env=job_environment(JDC_COORDINATOR_ADDRESS=coordinator, JDC_NUM_PROCESSES="2",
                                    JDC_PROCESS_ID=str(i), JDC_CPU_COLLECTIVES="gloo")))
        report = tmp_path / f"run_{run}_process_0.out"
        deadline = time.monotonic() + TIME_LIMIT_SECONDS
        while not re.search(rf"^{re.escape(after_line)}", report.read_text(), re.M):
            assert all(p.poll() is None for p in processes), \
                f"a process ended before {after_line!r}"
            assert time.monotonic() < deadline, f"no {after_line!r} in time"
            time.sleep(0.2)
        processes[1].send_signal(signal.SIGTERM)  # the host that prints nothing
        statuses = [p.wait(timeout=120) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for stream in streams:
            stream.close()
    assert statuses == [143, 143], \
        (tmp_path / f"run_{run}_process_0.err").read_text()[-3000:]
    return report.read_text()


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_one_step_also_after_a_resume(tmp_path):
    """A preemption notice reaches one host of a job: JAX's preemption service tells the other,
    both agree on a step, save it together and exit with 143. The requeued job resumes there,
    and a notice that comes while it compiles stops it after its first step (the service
    counts steps from the resume: counted from 0, it would wait for a step 1 that never
    comes)."""
    data = write_batch_aligned_folder(tmp_path / "images")
    work, total = tmp_path / "two_processes", 400
    report = _train_until_sigterm(tmp_path, data, work, total, "step 4/", 0)
    saved = sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())
    assert len(saved) == 1 and 4 <= saved[0] < total
    first = saved[0]

    report_2 = _train_until_sigterm(tmp_path, data, work, total,
                                    f"step {first + 1}: compiling", 1)
    assert f"resumed from step {first} in {work}" in report_2
    saved = sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == [first, first + 1]
    for step, text in ((first, report), (first + 1, report_2)):
        assert text.splitlines()[-1] == (
            f"stopped by SIGTERM after step {step} of {total}: checkpoint {step} saved in "
            f"{work}; the same command resumes from it")
        assert sorted(p.name for p in (work / "data_state" / str(step)).glob("*.index")) == [
            "process_0_of_2.index", "process_1_of_2.index"]
    assert not (work / "final_metrics.json").exists()
