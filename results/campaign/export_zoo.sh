#!/usr/bin/env bash
# Exports the latest checkpoint of every campaign ladder run to its zoo entry (committed, so a
# machine without RUNS_ROOT continues from it: campaign.sh). Zoo name = run name with "-" for
# "_" (jicd_sigma25 -> jicd-sigma25). Run from the repository root:
#
#   bash results/campaign/export_zoo.sh runs/campaign
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 RUNS_ROOT" >&2
  exit 2
fi
root="${1%/}"
export PATH="$PWD/.venv/bin:$PATH"
declare -A DESCRIPTIONS=(
  [jicd_sigma25]="JICD, N = M = 64 (60 base + 4 enhancement channels), CBSD432, AWGN sigma 25 (results/campaign)"
  [codec_clean]="Cheng2020-anchor codec without attention, N = M = 64, CBSD432, clean -> clean (results/campaign)"
  [jicd_sigma50]="JICD, N = M = 64 (53 base + 11 enhancement channels), CBSD432, AWGN sigma 50 (results/campaign)"
  [jicd_variable]="JICD, N = M = 64 (60 base + 4 enhancement channels), CBSD432, AWGN sigma in {15, 25, 50} (results/campaign)"
)
# The cascade's clean codec is a baseline: shipped without integer entropy networks (its float
# path codes), which keeps the whole campaign within the zoo's budget (README "Zoo budget").
declare -A INTEGER_CALIBRATION=([codec_clean]=none)
# Runs without rate points (denoisers): their entry is zoo:NAME.
declare -A DENOISERS=(
  [ffdnet_clip]="FFDNet-clip (10 layers of 64 channels), CBSD432, clipped and quantized AWGN of sigma uniform on [0, 75], told each image's sigma (results/campaign)"
)
for run in "${!DENOISERS[@]}"; do
  compgen -G "$root/$run/checkpoints/[0-9]*" > /dev/null || continue
  python -m jdc_jax.zoo.build --checkpoint "$root/$run" --name "${run//_/-}" \
    --description "${DENOISERS[$run]}" --overwrite
done
# Rate points whose committed entry stays as it is while their run goes on ("RUN/rate_point_K"
# -> why), as jicd_sigma25/rate_point_1 did while it was continued from 10,000 to 14,000 steps
# (README "Rate point 1 continued"): exported by hand once the run has ended and its real files
# beat the entry. None now.
declare -A HELD=()
# A JICD rate point's enhancement fine-tune (campaign.sh), once it has ended (its
# final_metrics.json), is exported in the rate point's place; a fine-tune under way is not (a
# fresh machine would start it again from the rate point's entry).
for run in "${!DESCRIPTIONS[@]}"; do
  mapfile -t points < <(compgen -G "$root/$run/rate_point_*" | sed 's/_enhancement$//' | sort -u)
  for workdir in "${points[@]}"; do
    point="$run/${workdir##*/}"
    if [[ -f "${workdir}_enhancement/final_metrics.json" ]]; then
      workdir="${workdir}_enhancement"
    fi
    compgen -G "$workdir/checkpoints/[0-9]*" > /dev/null || continue
    if [[ -n "${HELD[$point]:-}" ]]; then
      echo "$point not exported: ${HELD[$point]}"
      continue
    fi
    python -m jdc_jax.zoo.build --checkpoint "$workdir" --name "${run//_/-}" \
      --description "${DESCRIPTIONS[$run]}" --overwrite \
      --integer-calibration "${INTEGER_CALIBRATION[$run]:-builtin}"
  done
done
