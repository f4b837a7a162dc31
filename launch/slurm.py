"""Generate (and optionally submit) an sbatch script that trains on several GPU nodes.

One process runs per node and drives all GPUs of its node; the N processes form one JAX program
through jax.distributed. The script exports what that needs:

- JDC_COORDINATOR_ADDRESS: the first host of `scontrol show hostnames $SLURM_JOB_NODELIST`, at a
  port derived from the job id (SLURM_JOB_ID mod 4096 + 61440, as JAX's own Slurm detection picks
  it), so that jobs sharing a node do not collide;
- JDC_NUM_PROCESSES = SLURM_NTASKS (= nodes);
- JDC_PROCESS_ID = SLURM_PROCID, set inside the srun'd command since it differs per task;
- JAX_LOCAL_DEVICE_IDS = 0..G-1: without it, JAX's Slurm detection would give each process only
  the GPU numbered SLURM_LOCALID, i.e. one GPU per node.

It then runs `srun ... python -m jdc_jax.main --config=... --workdir=...`, or with --ladder
launch/ladder.sh with LAUNCH set to that srun prefix. Submit it from the repository root (the
config path and launch/ladder.sh are relative to it) in an environment that has jdc_jax and a CUDA
build of jax (`pip install 'jax[cuda12]==<pyproject's jax version>'`); sbatch passes that
environment on to every task.

    python launch/slurm.py --nodes=2 --gpus_per_node=8 --config=configs/jicd.py:sigma25 \\
        --workdir=runs/jicd_sigma25 --dry_run           # print the script
    python launch/slurm.py ... --out=train.sbatch --submit   # write it atomically, then sbatch it
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import training_command

# Slurm's time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
SLURM_TIME = re.compile(r"^([0-9]+-)?[0-9]+(:[0-9]{2}){0,2}$")
SLURM_NAME = re.compile(r"^[\w.-]+$")
# Runs each task's command with JDC_PROCESS_ID taken from that task's own SLURM_PROCID.
PER_TASK_ENVIRONMENT = 'export JDC_PROCESS_ID="$SLURM_PROCID"; exec "$@"'
CONTINUATION = " \\\n    "


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Generate an sbatch script for multi-node GPU training."
    )
    parser.add_argument(
        "--nodes", type=int, required=True, help="Number of nodes (one process each)."
    )
    parser.add_argument("--gpus_per_node", type=int, required=True, help="GPUs per node.")
    parser.add_argument(
        "--workdir",
        required=True,
        help="Workdir (ladder root with --ladder) on a shared filesystem.",
    )
    parser.add_argument("--job_name", default="jdc", help="Slurm job name.")
    parser.add_argument(
        "--time", help="Time limit, e.g. 48:00:00 or 2-00:00:00 (default: the partition's)."
    )
    parser.add_argument("--partition", help="Slurm partition.")
    parser.add_argument("--account", help="Slurm account.")
    parser.add_argument(
        "--cpus_per_task", type=int, help="CPUs for each node's process (input pipeline)."
    )
    parser.add_argument("--python", default="python", help="Python interpreter on the nodes.")
    training_command.add_flags(parser)
    parser.add_argument(
        "--dry_run", action="store_true", help="Print the script instead of writing it."
    )
    parser.add_argument(
        "--out", type=Path, help="Where to write the script (required without --dry_run)."
    )
    parser.add_argument(
        "--submit", action="store_true", help="Submit the written script with sbatch."
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parses and validates the flags; any problem exits through parser.error with its reason."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.nodes < 1:
        parser.error(f"--nodes must be at least 1, got {args.nodes}")
    if args.gpus_per_node < 1:
        parser.error(f"--gpus_per_node must be at least 1, got {args.gpus_per_node}")
    if args.cpus_per_task is not None and args.cpus_per_task < 1:
        parser.error(f"--cpus_per_task must be at least 1, got {args.cpus_per_task}")
    if not args.workdir.strip():
        parser.error("--workdir is empty")
    if args.time is not None and not SLURM_TIME.match(args.time):
        parser.error(
            f"--time must be a Slurm time such as 48:00:00 or 2-00:00:00, got {args.time!r}"
        )
    for flag in ("job_name", "partition", "account"):
        value = getattr(args, flag)
        if value is not None and not SLURM_NAME.match(value):
            parser.error(f"--{flag} must be letters, digits, '_', '.' or '-', got {value!r}")
    if not args.python.strip():
        parser.error("--python is empty")
    training_command.check_flags(parser, args)
    if args.dry_run and (args.out is not None or args.submit):
        parser.error("--dry_run prints the script; it does not go with --out or --submit")
    if not args.dry_run and args.out is None:
        parser.error("--out is required (or --dry_run to print the script)")
    return args


def regenerate_command(args: argparse.Namespace) -> str:
    """The generator's command line that produces this script (output options left out)."""
    words = ["python", "launch/slurm.py", f"--nodes={args.nodes}"]
    words += [f"--gpus_per_node={args.gpus_per_node}", f"--workdir={args.workdir}"]
    for flag in ("job_name", "time", "partition", "account", "cpus_per_task", "python"):
        value = getattr(args, flag)
        if value is not None:
            words.append(f"--{flag}={value}")
    words += training_command.canonical_flags(args)
    return shlex.join(words)


def render_script(args: argparse.Namespace) -> str:
    """The sbatch script text for the parsed flags."""
    directives = {
        "job-name": args.job_name,
        "nodes": args.nodes,
        "ntasks-per-node": 1,
        "gpus-per-node": args.gpus_per_node,
        "cpus-per-task": args.cpus_per_task,
        "time": args.time,
        "partition": args.partition,
        "account": args.account,
        "output": "%x-%j.out",
    }
    local_device_ids = ",".join(str(index) for index in range(args.gpus_per_node))

    nodes_and_gpus = f"{args.nodes} node(s) x {args.gpus_per_node} GPU(s)"
    lines = [
        "#!/usr/bin/env bash",
        f"# Trains jdc_jax on {nodes_and_gpus}, one process per node.",
        "# Generated by launch/slurm.py; edit by regenerating:",
        f"#   {regenerate_command(args)}",
        "# Submit from the repository root, with jdc_jax and a CUDA build of jax installed.",
        *(f"#SBATCH --{name}={value}" for name, value in directives.items() if value is not None),
        "set -euo pipefail",
        "",
        "# jax.distributed: process 0 is the coordinator on the first node. The port follows the",
        "# job id, as in JAX's own Slurm detection, so jobs sharing a node do not collide.",
        'mapfile -t hosts < <(scontrol show hostnames "$SLURM_JOB_NODELIST")',
        "if [[ ${#hosts[@]} -eq 0 ]]; then",
        '  echo "error: scontrol listed no hosts for SLURM_JOB_NODELIST=$SLURM_JOB_NODELIST" >&2',
        "  exit 1",
        "fi",
        'export JDC_COORDINATOR_ADDRESS="${hosts[0]}:$((SLURM_JOB_ID % 4096 + 61440))"',
        'export JDC_NUM_PROCESSES="$SLURM_NTASKS"',
        "# Every GPU of a node belongs to its one process (JAX's Slurm detection would otherwise",
        "# give each process only the GPU numbered SLURM_LOCALID).",
        f"export JAX_LOCAL_DEVICE_IDS={local_device_ids}",
        "",
        "# JDC_PROCESS_ID is set inside each task: only there does SLURM_PROCID have its own value",
        "# (hence the single quotes).",
        "# shellcheck disable=SC2016",
        f"launch=(srun --kill-on-bad-exit=1 bash -c {shlex.quote(PER_TASK_ENVIRONMENT)} jdc_task",
        f"  {shlex.join([args.python, '-m', training_command.TRAINING_MODULE])})",
        "",
    ]
    if args.ladder:
        lines += [
            "# launch/ladder.sh runs the launch command once per rate point.",
            "printf -v LAUNCH '%q ' \"${launch[@]}\"",
            "export LAUNCH",
            continued(
                ["bash", training_command.LADDER_SCRIPT],
                training_command.ladder_arguments(args, args.workdir),
            ),
        ]
    else:
        lines.append(
            continued(['"${launch[@]}"'], training_command.job_arguments(args, args.workdir))
        )
    return "\n".join(lines) + "\n"


def continued(head: list[str], arguments: tuple[str, ...]) -> str:
    """`head` (shell text, taken as it is) then each argument shell-quoted on its own line."""
    return CONTINUATION.join([" ".join(head), *map(shlex.quote, arguments)])


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    script = render_script(args)
    if args.dry_run:
        sys.stdout.write(script)
        return 0
    if args.submit and shutil.which("sbatch") is None:
        raise SystemExit(
            "error: sbatch is not on PATH; run this on a Slurm login node, or leave out --submit"
        )
    write_atomically(args.out, script)
    print(f"wrote {args.out}", file=sys.stderr)
    if args.submit:
        return subprocess.run(["sbatch", str(args.out)], check=False).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
