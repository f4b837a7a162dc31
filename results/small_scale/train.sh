#!/usr/bin/env bash
# Trains every model of the small-scale reproduction (results/small_scale/README.md), in two
# queues that share the machine's 2 cores. Run from the repository root after `make venv`:
#
#   bash results/small_scale/train.sh RUNS_ROOT
#
# Each model trains in RUNS_ROOT/<name>; a run started again resumes from its own checkpoints.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 RUNS_ROOT" >&2
  exit 2
fi
root="${1%/}"
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p "$root"

# The lambda ladder walks down: rate point 4 (lambda 0.0130) from scratch, then 3 and 2 each
# fine-tuned from the point above.
ladder_steps=(--first=4 --last=2 --first_steps=1000 --finetune_steps=400)

queue_jicd() {
  bash launch/ladder.sh configs/jicd.py:small "$root/jicd" "${ladder_steps[@]}"
  # The checkerboard twin of rate point 4, for the rate cost of parallel context decoding.
  python -m jdc_jax.main --config=configs/jicd.py:small --workdir="$root/jicd_checkerboard" \
    --config.rate_point=4 --config.context_model=checkerboard
}

queue_cascade_and_testolina() {
  bash launch/ladder.sh configs/codec.py:small "$root/codec" "${ladder_steps[@]}"
  python -m jdc_jax.main --config=configs/denoiser.py:small --workdir="$root/denoiser"
  python -m jdc_jax.main --config=configs/testolina.py:small --workdir="$root/testolina"
}

queue_jicd >"$root/queue_jicd.log" 2>&1 &
jicd=$!
queue_cascade_and_testolina >"$root/queue_cascade.log" 2>&1 &
cascade=$!
status=0
wait "$jicd" || status=$?
wait "$cascade" || status=$?
exit "$status"
