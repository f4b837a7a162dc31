#!/usr/bin/env bash
# The CPU training campaign (results/campaign/README.md): every run, in order of importance, one
# after the other (the machine has 2 cores; one run uses both). Run from the repository root:
#
#   nohup nice -n 10 bash results/campaign/campaign.sh runs/campaign >> runs/campaign.log 2>&1 &
#
# Each run trains in RUNS_ROOT/<name>/rate_point_<k> and resumes from its own checkpoints, so the
# same command continues a stopped campaign. Without the runs/ folder (a fresh machine), see
# "Continuing on a new machine" in the README: the committed zoo entries are the starting points.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 RUNS_ROOT" >&2
  exit 2
fi
root="${1%/}"
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p "$root"
python results/campaign/split_cbsd432.py ../shared/datasets/cbsd432 runs/data

# Steps of the first (from-scratch) rate point and of each fine-tuned one.
FIRST_STEPS=10000
FINETUNE_STEPS=3000

# The lambda ladder, the paper's way: rate point 1 (lambda 0.0018) from scratch, each next point
# fine-tuned from the one before, with a lower peak learning rate and a short warm-up (the
# optimizer state starts afresh).
ladder() {
  local config="$1" name="$2"
  shift 2
  python -m jdc_jax.main --config="$config" --workdir="$root/$name/rate_point_1" \
    --config.rate_point=1 --config.num_train_steps="$FIRST_STEPS" "$@"
  for point in 2 3 4; do
    python -m jdc_jax.main --config="$config" --workdir="$root/$name/rate_point_$point" \
      --config.rate_point="$point" --config.num_train_steps="$FINETUNE_STEPS" \
      --config.init_from="$root/$name/rate_point_$((point - 1))" \
      --config.learning_rate=2e-4 --config.warmup_steps=100 "$@"
  done
}

# 1. JICD, AWGN sigma 25.
ladder configs/jicd.py:campaign_sigma25 jicd_sigma25
