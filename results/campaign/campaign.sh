#!/usr/bin/env bash
# The CPU training campaign (results/campaign/README.md): every run, in order of importance, one
# after the other (the machine has 2 cores; one run uses both). Run from the repository root:
#
#   nohup nice -n 10 bash results/campaign/campaign.sh runs/campaign >> runs/campaign.log 2>&1 &
#
# Each run trains in RUNS_ROOT/<name>/rate_point_<k> and resumes from its own checkpoints, so the
# same command continues a stopped campaign. On a machine without those checkpoints (a fresh
# clone), a run whose zoo entry is committed (`export_zoo.sh`, zoo name = run name with "-" for
# "_") continues from it: a warm restart at the entry's training steps (`--config.init_step`:
# the same schedule, a fresh optimizer ramped up over 100 steps, the weights as shipped);
# an entry that already has all its steps is skipped. See "Continuing on a new machine" in the
# README.
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

# zoo_steps NAME [RATE_POINT]: the training steps of the committed zoo entry (a denoiser's
# without RATE_POINT), 0 without one.
zoo_steps() {
  python -c 'import sys; from jdc_jax import zoo
try: print((zoo.card(sys.argv[1], int(sys.argv[2])) if len(sys.argv) > 2
           else zoo.denoiser_card(sys.argv[1]))["training_steps"])
except (zoo.UnknownModel, FileNotFoundError): print(0)' "$@"
}

has_checkpoint() {
  compgen -G "$1/checkpoints/[0-9]*" > /dev/null
}

# train_point CONFIG NAME POINT STEPS [ARGS...]: one rate point of a ladder, resumed from its own
# checkpoints, else warm-restarted from its zoo entry, else from ARGS (scratch or fine-tune).
train_point() {
  local config="$1" name="$2" point="$3" steps="$4"
  shift 4
  local workdir="$root/$name/rate_point_$point" entry="${name//_/-}" restart=()
  if ! has_checkpoint "$workdir"; then
    local done_steps
    done_steps="$(zoo_steps "$entry" "$point")"
    if (( done_steps >= steps )); then
      echo "zoo:$entry:$point has its $steps steps; skipped"
      return
    elif (( done_steps > 0 )); then
      restart=(--config.init_from="zoo:$entry:$point" --config.init_step="$done_steps")
    fi
  fi
  python -m jdc_jax.main --config="$config" --workdir="$workdir" --config.rate_point="$point" \
    --config.num_train_steps="$steps" "$@" "${restart[@]}"
}

# train_denoiser CONFIG NAME STEPS: a run without rate points (the cascade's denoiser), resumed
# from its checkpoints, else warm-restarted from its zoo entry (zoo:NAME), else from scratch.
train_denoiser() {
  local config="$1" name="$2" steps="$3" restart=()
  local workdir="$root/$name" entry="${name//_/-}"
  if ! has_checkpoint "$workdir"; then
    local done_steps
    done_steps="$(zoo_steps "$entry")"
    if (( done_steps >= steps )); then
      echo "zoo:$entry has its $steps steps; skipped"
      return
    elif (( done_steps > 0 )); then
      restart=(--config.init_from="zoo:$entry" --config.init_step="$done_steps")
    fi
  fi
  python -m jdc_jax.main --config="$config" --workdir="$workdir" \
    --config.num_train_steps="$steps" "${restart[@]}"
}

# The lambda ladder, the paper's way: rate point 1 (lambda 0.0018) from scratch, each next point
# fine-tuned from the one before (its checkpoint, or its zoo entry on a fresh machine), with a
# lower peak learning rate and a short warm-up (the optimizer state starts afresh).
ladder() {
  local config="$1" name="$2"
  shift 2
  train_point "$config" "$name" 1 "$FIRST_STEPS" "$@"
  for point in 2 3 4; do
    local donor="$root/$name/rate_point_$((point - 1))"
    has_checkpoint "$donor" || donor="zoo:${name//_/-}:$((point - 1))"
    train_point "$config" "$name" "$point" "$FINETUNE_STEPS" --config.init_from="$donor" \
      --config.learning_rate=2e-4 --config.warmup_steps=100 "$@"
  done
}

# 1. JICD, AWGN sigma 25.
ladder configs/jicd.py:campaign_sigma25 jicd_sigma25

# 2. The cascade (the JICD paper's baseline): a codec trained clean -> clean, whose one ladder
#    serves every noise level, and an FFDNet-clip denoiser told the noise level.
ladder configs/codec.py:campaign_clean codec_clean
train_denoiser configs/denoiser.py:campaign_ffdnet ffdnet_clip 6000

# 3. JICD, AWGN sigma 50; then sigma variable over {15, 25, 50}.
ladder configs/jicd.py:campaign_sigma50 jicd_sigma50
ladder configs/jicd.py:campaign_variable jicd_variable
