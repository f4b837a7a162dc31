#!/usr/bin/env bash
# The JICD lambda ladder (Ranjbar Alvar et al. 2022, Sec. 5.1): one model per rate point, trained
# in sequence. The first point trains from scratch; every later point is fine-tuned from the
# checkpoints of the point before it.
#
# usage: launch/ladder.sh CONFIG WORKDIR_ROOT [--first=N] [--last=N] [--first_steps=STEPS]
#                         [--finetune_steps=STEPS] [--config.FIELD=VALUE ...]
#
#   CONFIG          e.g. configs/jicd.py:sigma25
#   WORKDIR_ROOT    rate point N trains in WORKDIR_ROOT/rate_point_N (a local path or gs://...)
#   --first, --last rate points 1..6 (config field rate_point; 1 is the lowest lambda, 0.0018,
#                   6 the highest, 0.0483). Default 1 -> 6: the paper trains the lowest lambda
#                   from scratch and fine-tunes upwards. --first=6 --last=1 walks down instead.
#   --first_steps, --finetune_steps
#                   training steps of the first point and of each fine-tuned point (config
#                   field named by STEPS_FIELD); the config's own value when not given.
#   --config.FIELD=VALUE
#                   passed through to every run (rate_point and init_from belong to the ladder).
#
# Environment:
#   LAUNCH       training command prefix, split into words like a shell command line (quotes
#                are honoured). Default: python -m jdc_jax.main. Inside an sbatch script:
#                srun python -m jdc_jax.main (launch/slurm.py --ladder sets it).
#   DRY_RUN=1    print the commands, one per line, shell-quoted, and run nothing.
#   STEPS_FIELD  config field holding the number of training steps (default: num_train_steps).
#
# A run that is started again resumes from its own workdir, so a stopped ladder is restarted with
# the same command.
set -euo pipefail

readonly LOWEST_RATE_POINT=1
readonly HIGHEST_RATE_POINT=6

die() {
  echo "ladder.sh: error: $*" >&2
  exit 2
}

# One line, each word shell-quoted, so the line can be pasted or parsed back.
print_command() {
  printf '%q' "$1"
  shift
  if (($#)); then
    printf ' %q' "$@"
  fi
  printf '\n'
}

if [[ $# -lt 2 ]]; then
  die "expected CONFIG and WORKDIR_ROOT (see the usage at the top of launch/ladder.sh)"
fi
config="$1"
workdir_root="${2%/}"
shift 2
if [[ -z "$config" ]]; then
  die "CONFIG is empty"
fi
if [[ -z "$workdir_root" ]]; then
  die "WORKDIR_ROOT is empty"
fi

first="$LOWEST_RATE_POINT"
last="$HIGHEST_RATE_POINT"
first_steps=""
finetune_steps=""
passthrough_overrides=()
for arg in "$@"; do
  case "$arg" in
    --first=*) first="${arg#*=}" ;;
    --last=*) last="${arg#*=}" ;;
    --first_steps=*) first_steps="${arg#*=}" ;;
    --finetune_steps=*) finetune_steps="${arg#*=}" ;;
    --config.rate_point=* | --config.init_from=*)
      die "${arg%%=*} is set by the ladder for each run; remove it" ;;
    --config.?*=*) passthrough_overrides+=("$arg") ;;
    *) die "unknown argument '$arg' (expected --first=, --last=, --first_steps=, --finetune_steps= or --config.FIELD=VALUE)" ;;
  esac
done

for name in first last; do
  value="${!name}"
  if ! [[ "$value" =~ ^[0-9]+$ ]] || ((value < LOWEST_RATE_POINT || value > HIGHEST_RATE_POINT)); then
    die "--$name must be a rate point from $LOWEST_RATE_POINT to $HIGHEST_RATE_POINT, got '$value'"
  fi
done
for name in first_steps finetune_steps; do
  value="${!name}"
  if [[ -n "$value" ]] && ! [[ "$value" =~ ^[1-9][0-9]*$ ]]; then
    die "--$name must be a positive integer, got '$value'"
  fi
done

steps_field="${STEPS_FIELD:-num_train_steps}"
# eval so that a quoted LAUNCH (e.g. srun bash -c '...' task python ...) keeps its words intact.
launch_command=()
eval "launch_command=(${LAUNCH:-python -m jdc_jax.main})"
if [[ ${#launch_command[@]} -eq 0 ]]; then
  die "LAUNCH is set but empty"
fi

if ((first <= last)); then
  direction=1
else
  direction=-1
fi

previous_workdir=""
rate_point="$first"
while true; do
  workdir="$workdir_root/rate_point_$rate_point"
  # ${a[@]+"${a[@]}"}: an empty array under set -u is an error before bash 4.4.
  command=("${launch_command[@]}" "--config=$config" "--workdir=$workdir"
    ${passthrough_overrides[@]+"${passthrough_overrides[@]}"} "--config.rate_point=$rate_point")
  if [[ -z "$previous_workdir" ]]; then
    steps="$first_steps"
  else
    steps="$finetune_steps"
    command+=("--config.init_from=$previous_workdir/checkpoints")
  fi
  if [[ -n "$steps" ]]; then
    command+=("--config.$steps_field=$steps")
  fi

  if [[ "${DRY_RUN:-0}" == "1" ]]; then
    print_command "${command[@]}"
  else
    echo "ladder.sh: rate point $rate_point -> $workdir" >&2
    "${command[@]}"
  fi

  if ((rate_point == last)); then
    break
  fi
  previous_workdir="$workdir"
  rate_point=$((rate_point + direction))
done
