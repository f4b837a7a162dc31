#!/usr/bin/env bash
# The CPU training campaign (results/campaign/README.md): every run, in order of importance, in
# two lanes that train side by side, each pinned (`taskset`) to its half of the cores this script
# may use: two pinned runs train more steps per second in all than one run on every core
# (README "Two lanes", `benchmarks/bench_lanes.py`). Run from the repository root:
#
#   nohup nice -n 10 bash results/campaign/campaign.sh runs/campaign >> runs/campaign.log 2>&1 &
#
# Lane K's training output goes to RUNS_ROOT/lane_K.log. LANES=1 runs the whole queue in one
# unpinned lane, in the same order: the default with a single core, and the choice on a machine
# with an accelerator (two runs would share it, each reserving most of its memory). Stopping the
# script (SIGTERM or SIGINT, e.g. `pkill -f results/campaign/campaign.sh`) stops its lanes and
# their runs: each run saves a checkpoint at the step it has reached, and the script ends once
# they have.
#
# Each run trains in RUNS_ROOT/<name>/rate_point_<k> (a JICD rate point's enhancement fine-tune
# in rate_point_<k>_enhancement) and resumes from its own checkpoints, so the same command
# continues a stopped campaign. On a machine without those checkpoints (a fresh
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

# allowed_cores: the cores this process may use (its affinity, e.g. "0-3,6"), one per line.
allowed_cores() {
  local part
  for part in $(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status | tr , ' '); do
    if [[ "$part" == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
  done
}
mapfile -t cores < <(allowed_cores)
LANES="${LANES:-$(( ${#cores[@]} >= 2 ? 2 : 1 ))}"
if [[ "$LANES" != 1 && "$LANES" != 2 ]]; then
  echo "LANES must be 1 or 2, got $LANES" >&2
  exit 2
elif [[ "$LANES" == 2 ]] && (( ${#cores[@]} < 2 )); then
  echo "LANES=2 needs at least 2 cores; this process may use ${#cores[@]} (LANES=1: one lane)" >&2
  exit 2
fi
root="${1%/}"
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p "$root"
python results/campaign/split_cbsd432.py ../shared/datasets/cbsd432 runs/data

# Steps of the first (from-scratch) rate point and of each fine-tuned one. JICD sigma 25's rate
# point 1 was planned for 10,000 steps and then continued to 14,000 (its cosine schedule re-planned
# for 14,000 at step 10,000: README "Rate point 1 continued"); every later ladder's rate point 1
# gets the same 14,000 steps from the start, so that the cascade has JICD's budget.
FIRST_STEPS=14000
FINETUNE_STEPS=3000

# run_training ARGS...: `python -m jdc_jax.main ARGS...` in the background, waited for, so that a
# stop reaches the lane's trap at once (bash holds a trap until a foreground child ends) and the
# trap passes it on to the run (`stop_run`).
run_training() {
  python -m jdc_jax.main "$@" &
  wait "$!"
}

# stop_run: a lane's trap. The run that trains saves a checkpoint at the step it has reached and
# ends (`jdc_jax.train.StopSignals`); the lane waits for that and ends, starting nothing more.
# (The lane's jobs, not a saved process id: a run started just before the signal is among them.)
stop_run() {
  set +e
  kill -TERM $(jobs -pr) 2> /dev/null
  wait
  exit 143
}

# zoo_steps SPEC: the training steps of the committed zoo entry zoo:NAME:RATE_POINT (zoo:NAME for
# a denoiser), 0 without one.
zoo_steps() {
  python -c 'import sys; from jdc_jax import zoo
name, point = zoo.split_spec(sys.argv[1])
try: print((zoo.denoiser_card(name) if point is None else zoo.card(name, point))["training_steps"])
except (zoo.UnknownModel, FileNotFoundError): print(0)' "$1"
}

has_checkpoint() {
  compgen -G "$1/checkpoints/[0-9]*" > /dev/null
}

# train_run CONFIG WORKDIR SPEC STEPS [ARGS...]: one run, resumed from its own checkpoints in
# WORKDIR, else warm-restarted from its committed zoo entry SPEC, else from ARGS (scratch or
# fine-tune); skipped when SPEC already has all its steps.
train_run() {
  local config="$1" workdir="$2" spec="$3" steps="$4"
  shift 4
  local restart=()
  if ! has_checkpoint "$workdir"; then
    local done_steps
    done_steps="$(zoo_steps "$spec")"
    if (( done_steps >= steps )); then
      echo "$spec has its $steps steps; skipped"
      return
    elif (( done_steps > 0 )); then
      restart=(--config.init_from="$spec" --config.init_step="$done_steps")
    fi
  fi
  run_training --config="$config" --workdir="$workdir" \
    --config.num_train_steps="$steps" "$@" "${restart[@]}"
}

# train_point CONFIG NAME POINT STEPS [ARGS...]: one rate point of a ladder (zoo:NAME:POINT, the
# name with "-" for "_").
train_point() {
  local config="$1" name="$2" point="$3" steps="$4"
  shift 4
  train_run "$config" "$root/$name/rate_point_$point" "zoo:${name//_/-}:$point" "$steps" \
    --config.rate_point="$point" "$@"
}

# JICD's enhancement fine-tune (README "The enhancement layer against the clean codec"): once a
# rate point is trained, its noisy-reconstruction synthesis (g_s_full) and enhancement entropy
# parameters train alone for ENHANCEMENT_STEPS more steps at a peak of 1e-3, everything else
# frozen (so the side and base bytes and the denoised image stay as they were). Its entry
# replaces the rate point's; the card keeps the rate point's steps and records the fine-tune
# ("partial_fine_tune").
ENHANCEMENT_STEPS=1500
ENHANCEMENT_FROZEN="g_a=0,h_a=0,side_prior=0,h_s=0,base_parameters=0,g_s_base=0"

# zoo_fine_tune_steps SPEC: the steps of the committed entry's partial fine-tune, 0 without one.
zoo_fine_tune_steps() {
  python -c 'import sys; from jdc_jax import zoo
name, point = zoo.split_spec(sys.argv[1])
try: print((zoo.card(name, point).get("partial_fine_tune") or {}).get("steps", 0))
except (zoo.UnknownModel, FileNotFoundError): print(0)' "$1"
}

# enhance_point CONFIG NAME POINT: the enhancement fine-tune of rate point POINT, resumed from
# its own checkpoints, else started from the rate point (its checkpoint, or its zoo entry on a
# fresh machine); skipped when the committed entry already has it.
enhance_point() {
  local config="$1" name="$2" point="$3"
  local workdir="$root/$name/rate_point_${point}_enhancement" spec="zoo:${name//_/-}:$3" tuned
  if ! has_checkpoint "$workdir"; then
    tuned="$(zoo_fine_tune_steps "$spec")"
    if (( tuned >= ENHANCEMENT_STEPS )); then
      echo "$spec has its $ENHANCEMENT_STEPS-step enhancement fine-tune; skipped"
      return
    fi
  fi
  local donor="$root/$name/rate_point_$point"
  has_checkpoint "$donor" || donor="$spec"
  run_training --config="$config" --workdir="$workdir" \
    --config.num_train_steps="$ENHANCEMENT_STEPS" --config.rate_point="$point" \
    --config.init_from="$donor" --config.learning_rate=1e-3 --config.warmup_steps=100 \
    --config.eval_every_steps=500 --config.module_lr_scales="$ENHANCEMENT_FROZEN"
}

# The lambda ladder, the paper's way: rate point 1 (lambda 0.0018) from scratch, each next point
# fine-tuned from the one before (its checkpoint, or its zoo entry on a fresh machine), with a
# lower peak learning rate and a short warm-up (the optimizer state starts afresh). A JICD rate
# point is followed by its enhancement fine-tune. (On a fresh machine the next point starts from
# the entry, whose enhancement modules are the fine-tuned ones; its own joint training moves
# them at once, so either start serves.)
ladder() {
  local config="$1" name="$2"
  shift 2
  train_point "$config" "$name" 1 "$FIRST_STEPS" "$@"
  [[ "$config" != configs/jicd.py:* ]] || enhance_point "$config" "$name" 1
  for point in 2 3 4; do
    local donor="$root/$name/rate_point_$((point - 1))"
    has_checkpoint "$donor" || donor="zoo:${name//_/-}:$((point - 1))"
    train_point "$config" "$name" "$point" "$FINETUNE_STEPS" --config.init_from="$donor" \
      --config.learning_rate=2e-4 --config.warmup_steps=100 "$@"
    [[ "$config" != configs/jicd.py:* ]] || enhance_point "$config" "$name" "$point"
  done
}

# The queue, in order of importance; the first field is the run's lane. Runs of one lane train
# one after the other; the lanes share nothing (each ladder's rate points stay in one lane).
QUEUE=(
  # JICD, AWGN sigma 25.
  "1 ladder configs/jicd.py:campaign_sigma25 jicd_sigma25"
  # The cascade (the JICD paper's baseline): a codec trained clean -> clean, whose one ladder
  # serves every noise level, and an FFDNet-clip denoiser told the noise level.
  "1 ladder configs/codec.py:campaign_clean codec_clean"
  "2 train_run configs/denoiser.py:campaign_ffdnet ffdnet_clip 6000"
  # JICD, AWGN sigma 50; then sigma variable over {15, 25, 50}.
  "1 ladder configs/jicd.py:campaign_sigma50 jicd_sigma50"
  "2 ladder configs/jicd.py:campaign_variable jicd_variable"
  # Testolina et al. and JDC at the same scale, AWGN sigma 25 (the same batches' noise, JICD's
  # lambdas). Not yet exported to the zoo (README "Zoo budget"): they continue from runs/ only.
  "1 ladder configs/testolina.py:campaign_sigma25 testolina_sigma25"
  "2 ladder configs/jdc.py:campaign_sigma25 jdc_sigma25"
)

# run_lane LANE: the queue's runs of LANE (every run with LANE 0), in order.
run_lane() {
  local item lane kind config name steps
  for item in "${QUEUE[@]}"; do
    read -r lane kind config name steps <<< "$item"
    (( $1 == 0 || $1 == lane )) || continue
    case "$kind" in
      ladder) ladder "$config" "$name" ;;
      train_run) train_run "$config" "$root/$name" "zoo:${name//_/-}" "$steps" ;;
      *) echo "unknown queue entry: $item" >&2; return 2 ;;
    esac
  done
}

# Stopping the script (SIGTERM, or SIGINT: Ctrl-C) stops the lanes (`stop_run`: each run saves
# a checkpoint at the step it has reached) and waits for them, so that the machine can go once
# the script has ended, and every run resumes where it stopped. A lane signalled directly (`pkill
# -f` matches the lanes too, as they are forks of the script) stops the same way.
# (errexit off: a lane that has already ended must not turn the exit status into kill's.)
pids=()
stop_lanes() {
  set +e
  kill -TERM $(jobs -pr) 2> /dev/null
  wait
  echo "$(date -u '+%F %T') campaign stopped"
  exit 143
}
trap stop_lanes TERM INT
if [[ "$LANES" == 1 ]]; then
  # In the background, so that a stop reaches the trap at once; a failed run ends the script
  # with its status (errexit).
  ( trap stop_run TERM INT; run_lane 0 ) &
  pids+=($!)
  wait "${pids[0]}"
  echo "$(date -u '+%F %T') campaign ended"
  exit
fi
# Lane 1 gets the first half of the allowed cores, lane 2 the rest (the subshell pins itself, and
# its runs inherit the pinning); each lane logs to its own file.
half=$(( ${#cores[@]} / 2 ))
lane_cores=("$(IFS=,; echo "${cores[*]:0:half}")" "$(IFS=,; echo "${cores[*]:half}")")
for lane in 1 2; do
  echo "$(date -u '+%F %T') lane $lane on cores ${lane_cores[lane - 1]}: log $root/lane_$lane.log"
  (
    trap stop_run TERM INT
    taskset -pc "${lane_cores[lane - 1]}" "$BASHPID" > /dev/null
    run_lane "$lane"
  ) >> "$root/lane_$lane.log" 2>&1 &
  pids+=($!)
done
status=0
for lane in 1 2; do
  if ! wait "${pids[lane - 1]}"; then
    status=1
    echo "$(date -u '+%F %T') lane $lane failed: see $root/lane_$lane.log"
  fi
done
echo "$(date -u '+%F %T') campaign ended"
exit "$status"
