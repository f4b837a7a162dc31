"""The launch scripts: TPU VM launcher, Slurm generator and lambda ladder, run without any cloud.

gcloud, scontrol, srun and python are replaced by small fakes on PATH where a command must run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TPU_VM = REPO / "launch" / "tpu_vm.py"
SLURM = REPO / "launch" / "slurm.py"
LADDER = REPO / "launch" / "ladder.sh"
EXAMPLE_SBATCH = REPO / "launch" / "slurm.sbatch"
DRY_RUN_PREFIX = "DRY-RUN: "
SYSTEM_PATH = "/usr/bin:/bin"

TPU_ARGS = [
    "--name=jdc-test",
    "--zone=us-central2-b",
    "--accelerator_type=v4-16",
    "--bucket_workdir=gs://jdc-bucket/runs/sigma25/",
    "--config=configs/jicd.py:sigma25",
    "--override=rate_point=3",
    "--override=batch_size=32",
]


def run(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(word) for word in argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def environment(**changes: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DRY_RUN", "LAUNCH", "STEPS_FIELD")
    }
    env.update(changes)
    return env


def write_executable(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def dry_run_commands(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    assert lines and all(line.startswith(DRY_RUN_PREFIX) for line in lines), stdout
    return [shlex.split(line.removeprefix(DRY_RUN_PREFIX)) for line in lines]


def remote_command(command: list[str]) -> str:
    return command[command.index("--command") + 1]


def tpu_dry_run(*extra: str) -> list[list[str]]:
    result = run([sys.executable, TPU_VM, *TPU_ARGS, *extra, "--dry_run"])
    assert result.returncode == 0, result.stderr
    return dry_run_commands(result.stdout)


def gcloud_verb(command: list[str]) -> str:
    if command[1:4] == ["-m", "pip", "wheel"]:
        return "wheel"
    assert command[:4] == ["gcloud", "compute", "tpus", "tpu-vm"], command
    return command[4]


# ----------------------------------------------------------------------------- TPU VM


def test_tpu_dry_run_for_two_host_slice_creates_installs_and_trains_on_all_workers():
    commands = tpu_dry_run("--create", "--delete_after")
    assert [gcloud_verb(command) for command in commands] == [
        "wheel",
        "create",
        "ssh",
        "scp",
        "ssh",
        "ssh",
        "delete",
    ]
    build, create, prepare, copy, install, train, delete = commands

    assert build[-1] == str(REPO)
    assert create[4:] == [
        "create",
        "jdc-test",
        "--zone",
        "us-central2-b",
        "--accelerator-type",
        "v4-16",
        "--version",
        "tpu-ubuntu2204-base",
    ]
    for command in (prepare, install, train):
        assert command[4:8] == ["ssh", "jdc-test", "--zone", "us-central2-b"]
        assert "--worker=all" in command
    assert "--worker=all" in copy
    assert copy[copy.index("--zone") - 1] == "jdc-test:jdc_jax_run"
    wheel = copy[5]
    assert Path(wheel).name.startswith("jdc_jax-") and wheel.endswith("-py3-none-any.whl")
    assert [Path(source).name for source in copy[6:9]] == ["requirements.lock", "configs", "launch"]

    install_words = shlex.split(remote_command(install))
    assert "jax[tpu]==0.10.2" in install_words
    assert f"./{Path(wheel).name}" in install_words
    assert install_words[install_words.index("--constraint") + 1] == "requirements.lock"

    assert shlex.split(remote_command(train)) == [
        "cd",
        "jdc_jax_run",
        "&&",
        "venv/bin/python",
        "-m",
        "jdc_jax.main",
        "--config=configs/jicd.py:sigma25",
        "--workdir=gs://jdc-bucket/runs/sigma25",
        "--config.rate_point=3",
        "--config.batch_size=32",
    ]
    assert delete[4:] == ["delete", "jdc-test", "--zone", "us-central2-b", "--quiet"]


def test_tpu_remote_commands_are_valid_shell():
    for extra in ([], ["--detach"], ["--repo_url=https://example.org/jdc_jax.git"]):
        for command in tpu_dry_run(*extra):
            if "--command" in command:
                result = run(["bash", "-n", "-c", remote_command(command)])
                assert result.returncode == 0, (remote_command(command), result.stderr)


def test_tpu_without_create_reuses_the_vm_and_keeps_it():
    verbs = [gcloud_verb(command) for command in tpu_dry_run("--no-create")]
    assert verbs == ["wheel", "ssh", "scp", "ssh", "ssh"]


def test_tpu_git_source_fetches_the_ref_on_every_worker_without_a_wheel():
    commands = tpu_dry_run(
        "--repo_url=https://example.org/jdc_jax.git", "--git_ref=v0.1", "--extras=eval"
    )
    assert [gcloud_verb(command) for command in commands] == ["ssh", "ssh", "ssh"]
    prepare, install, _ = commands
    fetch = "git -C jdc_jax_run fetch -q --depth=1 https://example.org/jdc_jax.git v0.1"
    assert f" && {fetch} && git -C jdc_jax_run checkout -q FETCH_HEAD" in remote_command(prepare)
    assert shlex.split(remote_command(install))[-2:] == ["jax[tpu]==0.10.2", ".[eval]"]


def test_tpu_detach_starts_training_under_nohup_with_a_log():
    train = tpu_dry_run("--detach")[-1]
    assert remote_command(train) == (
        "cd jdc_jax_run && { setsid nohup venv/bin/python -m jdc_jax.main "
        "--config=configs/jicd.py:sigma25 --workdir=gs://jdc-bucket/runs/sigma25 "
        "--config.rate_point=3 --config.batch_size=32 > train.log 2>&1 < /dev/null & }"
    )


def test_tpu_ladder_runs_the_ladder_script_with_the_worker_venv(tmp_path):
    args = [arg for arg in TPU_ARGS if not arg.startswith("--override=rate_point")]
    ladder_flags = ["--ladder", "--ladder_last=3", "--ladder_finetune_steps=50"]
    result = run([sys.executable, TPU_VM, *args, *ladder_flags, "--dry_run"])
    assert result.returncode == 0, result.stderr
    train = remote_command(dry_run_commands(result.stdout)[-1])

    # Run the worker's line against a copy of the shipped tree.
    (tmp_path / "jdc_jax_run" / "launch").mkdir(parents=True)
    shutil.copy(LADDER, tmp_path / "jdc_jax_run" / "launch" / "ladder.sh")
    ladder = run(["bash", "-c", train], env=environment(DRY_RUN="1"), cwd=tmp_path)
    assert ladder.returncode == 0, ladder.stderr
    lines = [shlex.split(line) for line in ladder.stdout.splitlines()]
    assert [line[:3] for line in lines] == [["venv/bin/python", "-m", "jdc_jax.main"]] * 3
    assert lines[2][3:] == [
        "--config=configs/jicd.py:sigma25",
        "--workdir=gs://jdc-bucket/runs/sigma25/rate_point_3",
        "--config.batch_size=32",
        "--config.rate_point=3",
        "--config.init_from=gs://jdc-bucket/runs/sigma25/rate_point_2/checkpoints",
        "--config.num_train_steps=50",
    ]


def test_tpu_without_gcloud_fails_before_running_anything():
    result = run([sys.executable, TPU_VM, *TPU_ARGS], env=environment(PATH=""))
    assert result.returncode == 1
    assert "gcloud is not on PATH" in result.stderr
    assert "==>" not in result.stderr


def test_tpu_failed_training_still_deletes_the_vm(tmp_path):
    log = tmp_path / "gcloud.log"
    write_executable(
        tmp_path,
        "gcloud",
        f'#!/bin/bash\necho "$*" >> {shlex.quote(str(log))}\n'
        '[[ "$*" == *jdc_jax.main* ]] && exit 3\nexit 0\n',
    )
    git_source = "--repo_url=https://example.org/jdc_jax.git"
    result = run(
        [sys.executable, TPU_VM, *TPU_ARGS, git_source, "--delete_after"],
        env=environment(PATH=f"{tmp_path}:{SYSTEM_PATH}"),
    )
    assert result.returncode == 1
    assert "'train on every worker' failed with exit code 3" in result.stderr
    calls = log.read_text().splitlines()
    assert [call.split()[3] for call in calls] == ["ssh", "ssh", "ssh", "delete"]
    assert calls[-1] == "compute tpus tpu-vm delete jdc-test --zone us-central2-b --quiet"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--accelerator_type": "v4_16"}, "--accelerator_type must be GENERATION-SIZE"),
        ({"--accelerator_type": "tpu-v4-16"}, "--accelerator_type must be GENERATION-SIZE"),
        ({"--accelerator_type": "v4-0"}, "--accelerator_type must be GENERATION-SIZE"),
        ({"--accelerator_type": "v7x-8"}, "no default runtime version for TPU generation 'v7x'"),
        ({"--bucket_workdir": None}, "the following arguments are required: --bucket_workdir"),
        ({"--bucket_workdir": "jdc-bucket/runs"}, "--bucket_workdir must be gs://BUCKET/PATH"),
        ({"--bucket_workdir": "/local/runs"}, "--bucket_workdir must be gs://BUCKET/PATH"),
        ({"--zone": "us-central2"}, "--zone must look like us-central2-b"),
        ({"--name": "Jdc_Test"}, "--name must be lower-case letters"),
        ({"--config": "/home/me/jicd.py:sigma25"}, "--config must be a file under configs/"),
        ({"--override": "rate_point"}, "--override must be FIELD=VALUE"),
        ({"--extras": "gpu"}, "--extras ['gpu'] are not extras of jdc_jax"),
        ({"--ladder_first": "2"}, "--ladder_first: only with --ladder"),
        ({"--git_ref": "main"}, "--git_ref needs --repo_url"),
        ({"--detach": "", "--delete_after": ""}, "--detach and --delete_after exclude each other"),
    ],
)
def test_tpu_bad_arguments_are_rejected_with_the_reason(change, message):
    flags = dict(arg.split("=", 1) for arg in TPU_ARGS if not arg.startswith("--override"))
    flags.update(change)
    argv = [
        flag if value == "" else f"{flag}={value}"
        for flag, value in flags.items()
        if value is not None
    ]
    result = run([sys.executable, TPU_VM, *argv, "--dry_run"])
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


# ----------------------------------------------------------------------------- Slurm


def slurm_script(*args: str) -> str:
    result = run([sys.executable, SLURM, *args, "--dry_run"])
    assert result.returncode == 0, result.stderr
    return result.stdout


def fake_cluster(directory: Path) -> dict[str, str]:
    """scontrol, srun (one task, SLURM_PROCID=1) and a python that reports what it was given."""
    write_executable(
        directory,
        "scontrol",
        "#!/bin/bash\n"
        '[[ "$*" == "show hostnames gpu-a[07-08]" ]] && printf "gpu-a07\\ngpu-a08\\n"\n',
    )
    # Drops srun's own options, then runs the command as task 1 would.
    write_executable(
        directory,
        "srun",
        "#!/bin/bash\n"
        'while [[ "$1" == --* ]]; do shift; done\n'
        'SLURM_PROCID=1 SLURM_LOCALID=0 exec "$@"\n',
    )
    write_executable(
        directory,
        "python",
        "#!/bin/bash\n"
        'echo "coordinator=$JDC_COORDINATOR_ADDRESS processes=$JDC_NUM_PROCESSES '
        'process=$JDC_PROCESS_ID devices=$JAX_LOCAL_DEVICE_IDS"\n'
        'echo "argv=$*"\n',
    )
    return environment(
        PATH=f"{directory}:{SYSTEM_PATH}",
        SLURM_JOB_NODELIST="gpu-a[07-08]",
        SLURM_NTASKS="2",
        SLURM_JOB_ID="123456",
    )


def test_slurm_script_for_two_nodes_requests_one_task_per_node_and_runs_srun():
    script = slurm_script(
        "--nodes=2",
        "--gpus_per_node=4",
        "--time=2-00:00:00",
        "--partition=gpu",
        "--config=configs/jicd.py:sigma25",
        "--workdir=runs/sigma25/rate_point_2",
        "--override=rate_point=2",
    )
    lines = script.splitlines()
    for directive in (
        "--nodes=2",
        "--ntasks-per-node=1",
        "--gpus-per-node=4",
        "--time=2-00:00:00",
        "--partition=gpu",
    ):
        assert f"#SBATCH {directive}" in lines
    assert 'mapfile -t hosts < <(scontrol show hostnames "$SLURM_JOB_NODELIST")' in lines
    assert 'export JDC_NUM_PROCESSES="$SLURM_NTASKS"' in lines
    assert "export JAX_LOCAL_DEVICE_IDS=0,1,2,3" in lines
    per_task = '\'export JDC_PROCESS_ID="$SLURM_PROCID"; exec "$@"\''
    assert f"launch=(srun --kill-on-bad-exit=1 bash -c {per_task} jdc_task" in lines
    # Every #SBATCH line comes before the first command, or sbatch ignores it.
    directive_lines = [index for index, line in enumerate(lines) if line.startswith("#SBATCH")]
    assert max(directive_lines) < lines.index("set -euo pipefail")


def test_slurm_script_gives_each_task_the_jax_distributed_environment(tmp_path):
    script = tmp_path / "train.sbatch"
    script.write_text(
        slurm_script(
            "--nodes=2",
            "--gpus_per_node=4",
            "--config=configs/jicd.py:sigma25",
            "--workdir=runs/sigma25/rate_point_2",
            "--override=rate_point=2",
        )
    )
    result = run(["bash", script], env=fake_cluster(tmp_path))
    assert result.returncode == 0, result.stderr
    # 123456 mod 4096 = 576, + 61440 = 62016.
    assert result.stdout.splitlines() == [
        "coordinator=gpu-a07:62016 processes=2 process=1 devices=0,1,2,3",
        "argv=-m jdc_jax.main --config=configs/jicd.py:sigma25 --workdir=runs/sigma25/rate_point_2 "
        "--config.rate_point=2",
    ]


def test_slurm_ladder_script_prints_six_srun_commands_under_dry_run(tmp_path):
    script = tmp_path / "ladder.sbatch"
    script.write_text(
        slurm_script(
            "--nodes=2",
            "--gpus_per_node=8",
            "--config=configs/jicd.py:sigma25",
            "--workdir=runs/ladder",
            "--ladder",
        )
    )
    env = fake_cluster(tmp_path)
    result = run(["bash", script], env={**env, "DRY_RUN": "1"})
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    assert len(commands) == 6
    srun_prefix = [
        "srun",
        "--kill-on-bad-exit=1",
        "bash",
        "-c",
        'export JDC_PROCESS_ID="$SLURM_PROCID"; exec "$@"',
    ]
    assert all(command[:5] == srun_prefix for command in commands)
    assert [command[-1] for command in commands[1:]] == [
        f"--config.init_from=runs/ladder/rate_point_{point}/checkpoints" for point in range(1, 6)
    ]

    # Without DRY_RUN each rate point goes through srun to a task that has its process id.
    result = run(["bash", script], env=env)
    assert result.returncode == 0, result.stderr
    reports = result.stdout.splitlines()[0::2]
    assert (
        reports == ["coordinator=gpu-a07:62016 processes=2 process=1 devices=0,1,2,3,4,5,6,7"] * 6
    )


def test_committed_slurm_sbatch_is_what_its_header_command_generates():
    text = EXAMPLE_SBATCH.read_text()
    header = [line for line in text.splitlines() if line.startswith("#   python launch/slurm.py ")]
    assert len(header) == 1
    words = shlex.split(header[0].removeprefix("#"))
    assert "--nodes=2" in words
    assert slurm_script(*words[2:]) == text


def test_slurm_writes_the_script_to_out(tmp_path):
    args = [
        "--nodes=3",
        "--gpus_per_node=2",
        "--config=configs/jicd.py:sigma50",
        "--workdir=/shared/runs/sigma50",
    ]
    out = tmp_path / "jobs" / "train.sbatch"
    result = run([sys.executable, SLURM, *args, f"--out={out}"])
    assert result.returncode == 0, result.stderr
    assert out.read_text() == slurm_script(*args)
    assert sorted(path.name for path in out.parent.iterdir()) == ["train.sbatch"]


def test_slurm_submit_without_sbatch_fails_before_writing(tmp_path):
    out = tmp_path / "train.sbatch"
    args = [
        "--nodes=2",
        "--gpus_per_node=8",
        "--config=configs/jicd.py",
        "--workdir=runs/x",
        f"--out={out}",
        "--submit",
    ]
    result = run([sys.executable, SLURM, *args], env=environment(PATH=""))
    assert result.returncode == 1
    assert "sbatch is not on PATH" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--nodes=0", "--dry_run"], "--nodes must be at least 1"),
        (["--nodes=2", "--gpus_per_node=0", "--dry_run"], "--gpus_per_node must be at least 1"),
        (["--nodes=2"], "--out is required"),
        (["--nodes=2", "--time=48h", "--dry_run"], "--time must be a Slurm time"),
        (["--nodes=2", "--override=rate_point", "--dry_run"], "--override must be FIELD=VALUE"),
        (
            ["--nodes=2", "--ladder", "--override=init_from=x", "--dry_run"],
            "conflicts with --ladder",
        ),
        (["--nodes=2", "--dry_run", "--submit"], "does not go with --out or --submit"),
        (["--nodes=2", "--partition=gpu a100", "--dry_run"], "--partition must be letters"),
    ],
)
def test_slurm_bad_arguments_are_rejected_with_the_reason(extra, message):
    base = ["--gpus_per_node=8", "--config=configs/jicd.py:sigma25", "--workdir=runs/x"]
    result = run([sys.executable, SLURM, *base, *extra])
    assert result.returncode == 2
    assert message in result.stderr


# ----------------------------------------------------------------------------- ladder


def ladder(*args: str, **env: str) -> subprocess.CompletedProcess:
    return run(["bash", LADDER, *args], env=environment(**env))


def test_ladder_dry_run_trains_six_rate_points_each_from_the_previous():
    result = ladder(
        "configs/jicd.py:sigma25",
        "/runs/ladder/",
        "--first_steps=100",
        "--finetune_steps=20",
        "--config.batch_size=8",
        DRY_RUN="1",
    )
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    expected = []
    for point in range(1, 7):
        command = ["python", "-m", "jdc_jax.main", "--config=configs/jicd.py:sigma25"]
        command += [
            f"--workdir=/runs/ladder/rate_point_{point}",
            "--config.batch_size=8",
            f"--config.rate_point={point}",
        ]
        if point == 1:
            command.append("--config.num_train_steps=100")
        else:
            command += [
                f"--config.init_from=/runs/ladder/rate_point_{point - 1}/checkpoints",
                "--config.num_train_steps=20",
            ]
        expected.append(command)
    assert commands == expected


def test_ladder_walks_down_when_first_is_above_last():
    result = ladder(
        "configs/jicd.py:sigma50",
        "runs/down",
        "--first=6",
        "--last=4",
        "--finetune_steps=7",
        DRY_RUN="1",
        STEPS_FIELD="max_steps",
    )
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    assert [command[4:] for command in commands] == [
        ["--workdir=runs/down/rate_point_6", "--config.rate_point=6"],
        [
            "--workdir=runs/down/rate_point_5",
            "--config.rate_point=5",
            "--config.init_from=runs/down/rate_point_6/checkpoints",
            "--config.max_steps=7",
        ],
        [
            "--workdir=runs/down/rate_point_4",
            "--config.rate_point=4",
            "--config.init_from=runs/down/rate_point_5/checkpoints",
            "--config.max_steps=7",
        ],
    ]


def test_ladder_with_the_srun_runner_prints_srun_commands():
    result = ladder(
        "configs/jicd.py:sigma25", "runs/ladder", LAUNCH="srun python -m jdc_jax.main", DRY_RUN="1"
    )
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    assert [command[:4] for command in commands] == [["srun", "python", "-m", "jdc_jax.main"]] * 6
    assert [command[6] for command in commands] == [
        f"--config.rate_point={point}" for point in range(1, 7)
    ]


def test_ladder_runs_each_point_in_order_and_stops_at_the_first_failure(tmp_path):
    log = tmp_path / "runs.log"
    trainer = write_executable(
        tmp_path,
        "trainer",
        f'#!/bin/bash\necho "$*" >> {shlex.quote(str(log))}\n'
        '[[ "$*" != *--config.rate_point=3* ]]\n',
    )
    result = ladder(
        "configs/jicd.py:sigma25", str(tmp_path / "root"), LAUNCH=shlex.quote(str(trainer))
    )
    assert result.returncode == 1
    runs = log.read_text().splitlines()
    assert [run.split()[-1] for run in runs] == [
        "--config.rate_point=1",
        f"--config.init_from={tmp_path}/root/rate_point_1/checkpoints",
        f"--config.init_from={tmp_path}/root/rate_point_2/checkpoints",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["configs/jicd.py:sigma25"], "expected CONFIG and WORKDIR_ROOT"),
        (
            ["configs/jicd.py:sigma25", "runs/x", "--first=7"],
            "--first must be a rate point from 1 to 6, got '7'",
        ),
        (
            ["configs/jicd.py:sigma25", "runs/x", "--last=zero"],
            "--last must be a rate point from 1 to 6",
        ),
        (
            ["configs/jicd.py:sigma25", "runs/x", "--first_steps=0"],
            "--first_steps must be a positive integer",
        ),
        (
            ["configs/jicd.py:sigma25", "runs/x", "--config.rate_point=2"],
            "--config.rate_point is set by the ladder",
        ),
        (["configs/jicd.py:sigma25", "runs/x", "--steps=5"], "unknown argument '--steps=5'"),
        (["configs/jicd.py:sigma25", "/"], "WORKDIR_ROOT is empty"),
    ],
)
def test_ladder_bad_arguments_are_rejected_with_the_reason(args, message):
    result = ladder(*args, DRY_RUN="1")
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


# ----------------------------------------------------------------------------- shell syntax


def shell_scripts(tmp_path: Path) -> list[Path]:
    """The committed scripts, and a generated ladder sbatch (slurm.py's other shape)."""
    generated = tmp_path / "ladder.sbatch"
    generated.write_text(
        slurm_script("--nodes=2", "--gpus_per_node=8", "--config=c.py", "--workdir=w", "--ladder")
    )
    committed = sorted((REPO / "launch").glob("*.sh")) + sorted((REPO / "launch").glob("*.sbatch"))
    assert [path.name for path in committed] == ["ladder.sh", "slurm.sbatch"]
    return [*committed, generated]


def test_every_shell_script_passes_bash_n(tmp_path):
    for script in shell_scripts(tmp_path):
        result = run(["bash", "-n", script])
        assert result.returncode == 0, (script, result.stderr)


def test_every_shell_script_passes_shellcheck(tmp_path):
    if shutil.which("shellcheck") is None:
        pytest.skip(
            "shellcheck is not installed (e.g. apt-get install shellcheck); bash -n still ran"
        )
    for script in shell_scripts(tmp_path):
        result = run(["shellcheck", "--shell=bash", script])
        assert result.returncode == 0, (script, result.stdout)
