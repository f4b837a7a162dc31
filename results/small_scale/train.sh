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
ladder_steps=(--first=4 --last=2 --first_steps=1000 --finetune_steps=250
              --config.keep_checkpoints=4)

queue_jicd() {
  bash launch/ladder.sh configs/jicd.py:small "$root/jicd" "${ladder_steps[@]}"
  # The rate cost of parallel context decoding: from rate point 4's step-500 checkpoint, 200
  # more steps at the paper's learning rate with the serial and with the checkerboard context
  # (the checkerboard's 5x5 context kernel starts from the serial one's, its mask opened).
  # Trained from scratch at 1e-3, the checkerboard model diverged (its IGDN synthesis output
  # grew without bound near step 250) in two runs, so both arms fine-tune from one start.
  if [[ ! -d "$root/jicd_serial_500/checkpoints/500" ]]; then
    mkdir -p "$root/jicd_serial_500/checkpoints"
    cp -r "$root/jicd/rate_point_4/checkpoints/500" "$root/jicd_serial_500/checkpoints/"
  fi
  for context in serial checkerboard; do
    python -m jdc_jax.main --config=configs/jicd.py:small --workdir="$root/context_$context" \
      --config.rate_point=4 --config.context_model="$context" --config.learning_rate=1e-4 \
      --config.num_train_steps=200 --config.init_from="$root/jicd_serial_500"
  done
}

queue_cascade_and_testolina() {
  bash launch/ladder.sh configs/codec.py:small "$root/codec" "${ladder_steps[@]}"
  # The denoiser works at full resolution (no downsampling), so its small form is also
  # shallower and trained on 64x64 crops (DnCNN itself used 40x40 patches).
  python -m jdc_jax.main --config=configs/denoiser.py:small --workdir="$root/denoiser" \
    --config.denoiser_depth=10 --config.denoiser_features=48 --config.crop_size=64 \
    --config.batch_size=16 --config.num_train_steps=400
  # At 1e-3 this model's IGDN synthesis output grew without bound within 100 steps.
  python -m jdc_jax.main --config=configs/testolina.py:small --workdir="$root/testolina" \
    --config.num_train_steps=600 --config.learning_rate=3e-4
}

queue_jicd >>"$root/queue_jicd.log" 2>&1 &
jicd=$!
queue_cascade_and_testolina >>"$root/queue_cascade.log" 2>&1 &
cascade=$!
status=0
wait "$jicd" || status=$?
wait "$cascade" || status=$?
exit "$status"
