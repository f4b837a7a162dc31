"""The training command that every launcher starts, and the flags that describe it.

One run:

    JOB --config=CONFIG --workdir=WORKDIR [--config.FIELD=VALUE ...]

where JOB is the command prefix of the platform (`python -m jdc_jax.main` on a TPU worker,
`srun ... python -m jdc_jax.main` in an sbatch script). With --ladder, the lambda ladder instead:

    LAUNCH='JOB' bash launch/ladder.sh CONFIG WORKDIR [--first=N ...] [--config.FIELD=VALUE ...]

which runs JOB once per rate point, each in WORKDIR/rate_point_N (see launch/ladder.sh).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex

TRAINING_MODULE = "jdc_jax.main"
LADDER_SCRIPT = "launch/ladder.sh"
RATE_POINTS = range(1, 7)
# Set by the ladder for each rate point, so they cannot be overridden around it.
LADDER_FIELDS = ("rate_point", "init_from")

CONFIG_FILE = re.compile(r"^[^\s:]+\.py(:[\w.-]+)?$")
CONFIG_FIELD = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclasses.dataclass(frozen=True)
class TrainingCommand:
    """A shell command: environment assignments, then the argv."""

    environment: tuple[tuple[str, str], ...]
    argv: tuple[str, ...]

    def shell_line(self, wrapper: tuple[str, ...] = ()) -> str:
        """The command as one line of shell text, `wrapper` words (e.g. nohup) before the argv."""
        assignments = [f"{name}={shlex.quote(value)}" for name, value in self.environment]
        return " ".join([*assignments, shlex.join([*wrapper, *self.argv])])


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Adds --config, --override and the ladder's flags."""
    parser.add_argument("--config", required=True, help="e.g. configs/jicd.py:sigma25.")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="Config override, passed as --config.FIELD=VALUE; repeatable.",
    )
    ladder = parser.add_argument_group("lambda ladder (launch/ladder.sh)")
    ladder.add_argument(
        "--ladder",
        action="store_true",
        help="Train rate points in sequence with launch/ladder.sh; the workdir is its root.",
    )
    ladder.add_argument(
        "--ladder_first", type=int, choices=RATE_POINTS, help="First rate point (default 1)."
    )
    ladder.add_argument(
        "--ladder_last", type=int, choices=RATE_POINTS, help="Last rate point (default 6)."
    )
    ladder.add_argument("--ladder_first_steps", type=int, help="Training steps of the first point.")
    ladder.add_argument(
        "--ladder_finetune_steps", type=int, help="Training steps of each later point."
    )


def check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Rejects malformed flags of add_flags through parser.error, naming the problem."""
    if not CONFIG_FILE.match(args.config):
        parser.error(f"--config must be PATH.py or PATH.py:VARIANT, got {args.config!r}")
    for override in args.override:
        field, equals, _ = override.partition("=")
        if not equals or not CONFIG_FIELD.match(field):
            parser.error(
                f"--override must be FIELD=VALUE with a config field name, got {override!r}"
            )
        if args.ladder and field in LADDER_FIELDS:
            parser.error(
                f"--override {field}=... conflicts with --ladder, "
                f"which sets {field} for each rate point"
            )

    ladder_flags = _ladder_flags(args)
    given = [flag for flag, value in ladder_flags.items() if value is not None]
    if given and not args.ladder:
        parser.error(f"{', '.join(given)}: only with --ladder")
    for flag in ("--ladder_first_steps", "--ladder_finetune_steps"):
        if ladder_flags[flag] is not None and ladder_flags[flag] < 1:
            parser.error(f"{flag} must be a positive number of steps, got {ladder_flags[flag]}")


def _ladder_flags(args: argparse.Namespace) -> dict[str, int | None]:
    return {
        "--ladder_first": args.ladder_first,
        "--ladder_last": args.ladder_last,
        "--ladder_first_steps": args.ladder_first_steps,
        "--ladder_finetune_steps": args.ladder_finetune_steps,
    }


def canonical_flags(args: argparse.Namespace) -> list[str]:
    """The flags of add_flags as --name=value words, in a fixed order (absent ones left out)."""
    words = [f"--config={args.config}", *(f"--override={override}" for override in args.override)]
    if args.ladder:
        words.append("--ladder")
        words += [
            f"{flag}={value}" for flag, value in _ladder_flags(args).items() if value is not None
        ]
    return words


def job_arguments(args: argparse.Namespace, workdir: str) -> tuple[str, ...]:
    """The arguments of one training run."""
    overrides = (f"--config.{override}" for override in args.override)
    return (f"--config={args.config}", f"--workdir={workdir}", *overrides)


def ladder_arguments(args: argparse.Namespace, workdir_root: str) -> tuple[str, ...]:
    """The arguments of launch/ladder.sh."""
    options = (
        f"--{flag.removeprefix('--ladder_')}={value}"
        for flag, value in _ladder_flags(args).items()
        if value is not None
    )
    overrides = (f"--config.{override}" for override in args.override)
    return (args.config, workdir_root, *options, *overrides)


def training_command(args: argparse.Namespace, job: list[str], workdir: str) -> TrainingCommand:
    """The command that trains: `job` once, or launch/ladder.sh running `job` per rate point."""
    if not args.ladder:
        return TrainingCommand(environment=(), argv=(*job, *job_arguments(args, workdir)))
    return TrainingCommand(
        environment=(("LAUNCH", shlex.join(job)),),
        argv=("bash", LADDER_SCRIPT, *ladder_arguments(args, workdir)),
    )
