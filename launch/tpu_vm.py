"""Train on a Cloud TPU VM or pod slice: create it, ship this package, start the job on every host.

Every host of a slice (a v4-16 is 8 chips on 2 hosts) runs the same command,

    python -m jdc_jax.main --config=CONFIG --workdir=gs://BUCKET/PATH [--config.FIELD=VALUE ...]

and `jax.distributed.initialize()` in the job finds its peers through the TPU metadata. All hosts
write checkpoints and summaries to the bucket workdir, so nothing of value stays on the VMs.

The launch is a fixed list of commands; `--dry_run` prints each one as `DRY-RUN: <shell words>`
and runs nothing.

 1. build (source from this checkout): `pip wheel` of this repository into build/tpu_vm_wheel/.
 2. create (only with --create): `gcloud compute tpus tpu-vm create NAME --zone ZONE
    --accelerator-type TYPE --version RUNTIME`.
 3. prepare, on all workers: Python 3.11 (pyproject's requires-python) from apt, and an empty
    ~/jdc_jax_run, or, with --repo_url/--git_ref, that one ref fetched there with git.
 4. copy (source from this checkout): `gcloud compute tpus tpu-vm scp --worker=all` of the wheel,
    requirements.lock, configs/ and launch/ into ~/jdc_jax_run. An uncommitted tree ships as it is.
 5. install, on all workers: a venv in ~/jdc_jax_run/venv with jdc_jax[EXTRAS] and jax[tpu] pinned
    to pyproject's jax version, constrained by requirements.lock.
 6. train, on all workers: the job, or launch/ladder.sh with --ladder (the bucket workdir is then
    the ladder's root). It runs in the foreground, so this command ends when training ends;
    --detach starts it under nohup instead (log: ~/jdc_jax_run/train.log on each worker).
 7. delete (only with --delete_after): after training, whether it succeeded or failed.

The VMs' service account needs write access to the bucket.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import training_command

REPO_ROOT = Path(__file__).resolve().parents[1]
WHEEL_DIR = REPO_ROOT / "build" / "tpu_vm_wheel"
DRY_RUN_PREFIX = "DRY-RUN: "
GCLOUD_TPU_VM = ("gcloud", "compute", "tpus", "tpu-vm")

# Relative to the remote home, where every `gcloud ... ssh --command` starts.
REMOTE_DIR = "jdc_jax_run"
REMOTE_PYTHON = "python3.11"
REMOTE_TRAIN_LOG = "train.log"

# Cloud TPU's recommended software version for JAX, by accelerator generation.
DEFAULT_RUNTIME_VERSIONS = {
    "v2": "tpu-ubuntu2204-base",
    "v3": "tpu-ubuntu2204-base",
    "v4": "tpu-ubuntu2204-base",
    "v5litepod": "v2-alpha-tpuv5-lite",
    "v5p": "v2-alpha-tpuv5",
    "v6e": "v2-alpha-tpuv6e",
}

ACCELERATOR_TYPE = re.compile(r"^(v[0-9]+[a-z]*)-([1-9][0-9]*)$")
TPU_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
ZONE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
BUCKET_URL = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")
# Only configs/ is shipped, and the job runs from the shipped tree.
SHIPPED_CONFIG_DIR = "configs/"


@dataclasses.dataclass(frozen=True)
class Command:
    """One step of the launch: a description for the log, the argv it runs, a file it must make."""

    description: str
    argv: tuple[str, ...]
    produces: Path | None = None


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    """The commands of one launch. `cleanup` runs after `on_tpu` however that ended."""

    local: list[Command]
    on_tpu: list[Command]
    cleanup: list[Command]

    def all_commands(self) -> list[Command]:
        return self.local + self.on_tpu + self.cleanup


@dataclasses.dataclass(frozen=True)
class ProjectMetadata:
    """What the launch reads from pyproject.toml."""

    version: str
    jax_version: str
    extras: frozenset[str]

    @property
    def wheel_name(self) -> str:
        # A pure-Python wheel, as setuptools names it.
        return f"jdc_jax-{self.version}-py3-none-any.whl"


def read_project_metadata(pyproject: Path) -> ProjectMetadata:
    """Reads the package version, the pinned jax version and the extras of pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())["project"]
    jax_pins = [
        requirement.split("==", 1)[1].strip()
        for requirement in project["dependencies"]
        if re.match(r"^jax\s*==", requirement)
    ]
    if len(jax_pins) != 1:
        raise ValueError(f"{pyproject} must pin jax exactly once as jax==VERSION, found {jax_pins}")
    return ProjectMetadata(
        version=project["version"],
        jax_version=jax_pins[0],
        extras=frozenset(project.get("optional-dependencies", {})),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train jdc_jax on a Cloud TPU VM or pod slice.",
        epilog="Example: python launch/tpu_vm.py --name=jdc-v4 --zone=us-central2-b "
        "--accelerator_type=v4-16 --bucket_workdir=gs://my-bucket/jicd/sigma25_rp1 "
        "--config=configs/jicd.py:sigma25 --override=rate_point=1 --create --dry_run",
    )
    parser.add_argument("--name", required=True, help="TPU VM (slice) name.")
    parser.add_argument("--zone", required=True, help="e.g. us-central2-b.")
    parser.add_argument(
        "--project", help="Google Cloud project (default: gcloud's configured one)."
    )
    parser.add_argument(
        "--accelerator_type",
        required=True,
        help="e.g. v4-8 (1 host), v4-16 (2 hosts), v5litepod-16.",
    )
    parser.add_argument(
        "--runtime_version",
        help="TPU software version; default by generation: "
        + ", ".join(f"{gen}: {runtime}" for gen, runtime in DEFAULT_RUNTIME_VERSIONS.items()),
    )
    parser.add_argument(
        "--bucket_workdir", required=True, help="gs://BUCKET/PATH the job writes to (--workdir)."
    )
    parser.add_argument(
        "--create",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Create the TPU VM first (default: use an existing one).",
    )
    parser.add_argument(
        "--delete_after", action="store_true", help="Delete the TPU VM when training has ended."
    )
    parser.add_argument(
        "--detach", action="store_true", help="Start training under nohup and return at once."
    )
    parser.add_argument("--dry_run", action="store_true", help="Print every command, run nothing.")
    parser.add_argument(
        "--repo_url", help="Fetch the source with git from this URL instead of shipping a wheel."
    )
    parser.add_argument(
        "--git_ref", help="Branch, tag or commit to fetch (with --repo_url; default main)."
    )
    parser.add_argument(
        "--extras", default="", help="Comma-separated extras of jdc_jax, e.g. eval."
    )
    training_command.add_flags(parser)
    return parser


def parse_args(argv: list[str] | None, metadata: ProjectMetadata) -> argparse.Namespace:
    """Parses and validates the flags; any problem exits through parser.error with its reason."""
    parser = build_parser()
    args = parser.parse_args(argv)

    if not TPU_NAME.match(args.name):
        parser.error(
            "--name must be lower-case letters, digits and '-', starting with a letter, "
            f"got {args.name!r}"
        )
    if not ZONE.match(args.zone):
        parser.error(f"--zone must look like us-central2-b, got {args.zone!r}")
    accelerator = ACCELERATOR_TYPE.match(args.accelerator_type)
    if not accelerator:
        parser.error(
            "--accelerator_type must be GENERATION-SIZE such as v4-16 or v5litepod-8, "
            f"got {args.accelerator_type!r}"
        )
    if args.runtime_version is None:
        generation = accelerator.group(1)
        if generation not in DEFAULT_RUNTIME_VERSIONS:
            parser.error(
                f"no default runtime version for TPU generation {generation!r}; "
                "pass --runtime_version"
            )
        args.runtime_version = DEFAULT_RUNTIME_VERSIONS[generation]
    if not BUCKET_URL.match(args.bucket_workdir):
        parser.error(
            "--bucket_workdir must be gs://BUCKET/PATH (every host writes checkpoints there), "
            f"got {args.bucket_workdir!r}"
        )
    args.bucket_workdir = args.bucket_workdir.rstrip("/")
    training_command.check_flags(parser, args)
    if not args.config.startswith(SHIPPED_CONFIG_DIR):
        parser.error(
            f"--config must be a file under {SHIPPED_CONFIG_DIR} (the tree the workers get), "
            f"got {args.config!r}"
        )

    extras = [extra for extra in args.extras.split(",") if extra]
    unknown = sorted(set(extras) - metadata.extras)
    if unknown:
        parser.error(
            f"--extras {unknown} are not extras of jdc_jax (known: {sorted(metadata.extras)})"
        )
    args.extras = extras

    if args.git_ref is not None and args.repo_url is None:
        parser.error("--git_ref needs --repo_url")
    if args.repo_url is not None and args.git_ref is None:
        args.git_ref = "main"
    if args.detach and args.delete_after:
        parser.error(
            "--detach and --delete_after exclude each other: a detached run cannot be waited for"
        )

    return args


def shell_and(commands: list[list[str]]) -> str:
    """One remote shell line that runs the commands in order and stops at the first failure."""
    return " && ".join(shlex.join(command) for command in commands)


def gcloud_tpu(
    verb: str, positional: list[str], args: argparse.Namespace, *options: str
) -> tuple[str, ...]:
    """gcloud compute tpus tpu-vm VERB POSITIONAL... --zone ZONE [--project PROJECT] OPTIONS..."""
    project = ("--project", args.project) if args.project else ()
    return (*GCLOUD_TPU_VM, verb, *positional, "--zone", args.zone, *project, *options)


def on_all_workers(args: argparse.Namespace, remote_command: str) -> tuple[str, ...]:
    return gcloud_tpu("ssh", [args.name], args, "--worker=all", "--command", remote_command)


def remote_training_line(args: argparse.Namespace) -> str:
    """The remote shell line that trains, run from ~/REMOTE_DIR on every worker."""
    command = training_command.training_command(
        args,
        job=["venv/bin/python", "-m", training_command.TRAINING_MODULE],
        workdir=args.bucket_workdir,
    )
    if args.detach:
        # setsid + nohup + every stream redirected: the run outlives the ssh session.
        detached = command.shell_line(wrapper=("setsid", "nohup"))
        return f"cd {REMOTE_DIR} && {{ {detached} > {REMOTE_TRAIN_LOG} 2>&1 < /dev/null & }}"
    return f"cd {REMOTE_DIR} && {command.shell_line()}"


def plan(args: argparse.Namespace, metadata: ProjectMetadata) -> LaunchPlan:
    """The launch commands in the order they run."""
    local: list[Command] = []
    steps: list[Command] = []
    ships_wheel = args.repo_url is None
    wheel = WHEEL_DIR / metadata.wheel_name
    if ships_wheel:
        pip_wheel = (sys.executable, "-m", "pip", "wheel", "--no-deps")
        local.append(
            Command(
                "build the jdc_jax wheel",
                (*pip_wheel, "--wheel-dir", str(WHEEL_DIR), str(REPO_ROOT)),
                produces=wheel,
            )
        )
    if args.create:
        steps.append(
            Command(
                f"create TPU VM {args.name} ({args.accelerator_type})",
                gcloud_tpu(
                    "create",
                    [args.name],
                    args,
                    "--accelerator-type",
                    args.accelerator_type,
                    "--version",
                    args.runtime_version,
                ),
            )
        )

    # A fresh VM runs unattended upgrades at boot: wait for the dpkg lock instead of failing.
    apt_get = shlex.split(
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=600"
    )
    prepare = [
        [*apt_get, "update"],
        [*apt_get, "install", "-y", REMOTE_PYTHON, f"{REMOTE_PYTHON}-venv", "git"],
        ["rm", "-rf", REMOTE_DIR],
    ]
    if ships_wheel:
        prepare.append(["mkdir", "-p", REMOTE_DIR])
    else:
        # Fetching the single ref works for branches, tags and commits alike.
        prepare += [
            ["git", "init", "-q", REMOTE_DIR],
            ["git", "-C", REMOTE_DIR, "fetch", "-q", "--depth=1", args.repo_url, args.git_ref],
            ["git", "-C", REMOTE_DIR, "checkout", "-q", "FETCH_HEAD"],
        ]
    steps.append(Command("prepare every worker", on_all_workers(args, shell_and(prepare))))

    if ships_wheel:
        sources = [
            str(wheel),
            *(str(REPO_ROOT / name) for name in ("requirements.lock", "configs", "launch")),
        ]
        steps.append(
            Command(
                "copy the wheel, configs and launch scripts to every worker",
                gcloud_tpu(
                    "scp",
                    [*sources, f"{args.name}:{REMOTE_DIR}"],
                    args,
                    "--worker=all",
                    "--recurse",
                ),
            )
        )

    extras = f"[{','.join(args.extras)}]" if args.extras else ""
    package = f"./{metadata.wheel_name}{extras}" if ships_wheel else f".{extras}"
    install = [
        ["cd", REMOTE_DIR],
        [REMOTE_PYTHON, "-m", "venv", "venv"],
        [
            *shlex.split("venv/bin/pip install --quiet --constraint requirements.lock"),
            f"jax[tpu]=={metadata.jax_version}",
            package,
        ],
    ]
    steps.append(
        Command(
            "install jdc_jax and jax[tpu] on every worker", on_all_workers(args, shell_and(install))
        )
    )
    steps.append(Command("train on every worker", on_all_workers(args, remote_training_line(args))))

    cleanup = []
    if args.delete_after:
        cleanup.append(
            Command(
                f"delete TPU VM {args.name}", gcloud_tpu("delete", [args.name], args, "--quiet")
            )
        )
    return LaunchPlan(local=local, on_tpu=steps, cleanup=cleanup)


def run(command: Command) -> int:
    """Runs the command; returns its exit code, or 1 when it did not make the file it should."""
    print(f"==> {command.description}", file=sys.stderr, flush=True)
    returncode = subprocess.run(command.argv, check=False).returncode
    if returncode == 0 and command.produces is not None and not command.produces.is_file():
        print(f"error: {command.description} did not produce {command.produces}", file=sys.stderr)
        return 1
    return returncode


def failure(command: Command, returncode: int) -> str:
    command_line = shlex.join(command.argv)
    return f"error: '{command.description}' failed with exit code {returncode}: {command_line}"


def run_all(commands: list[Command]) -> None:
    for command in commands:
        returncode = run(command)
        if returncode != 0:
            raise SystemExit(failure(command, returncode))


def main(argv: list[str] | None = None) -> int:
    metadata = read_project_metadata(REPO_ROOT / "pyproject.toml")
    args = parse_args(argv, metadata)
    launch = plan(args, metadata)
    if args.dry_run:
        for command in launch.all_commands():
            print(DRY_RUN_PREFIX + shlex.join(command.argv))
        return 0

    if shutil.which("gcloud") is None:
        raise SystemExit(
            "error: gcloud is not on PATH; install the Google Cloud CLI "
            "(https://cloud.google.com/sdk/docs/install) or use --dry_run to see the commands"
        )
    if launch.local:
        # A fresh directory, so the wheel that is shipped is the one built now.
        shutil.rmtree(WHEEL_DIR, ignore_errors=True)
    run_all(launch.local)
    cleanup_failed = False
    try:
        run_all(launch.on_tpu)
    finally:
        # Reported, not raised: a failed delete must not hide why training stopped.
        for command in launch.cleanup:
            returncode = run(command)
            if returncode != 0:
                print(failure(command, returncode), file=sys.stderr)
                cleanup_failed = True
    return 1 if cleanup_failed else 0


if __name__ == "__main__":
    sys.exit(main())
