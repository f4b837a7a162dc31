#!/usr/bin/env bash
# Ships the JICD rate points into the model zoo, then evaluates every small-scale model on
# Kodak with three noises and writes the results, plots and BD-rate tables next to this script.
# Run from the repository root after results/small_scale/train.sh RUNS_ROOT:
#
#   bash results/small_scale/evaluate.sh RUNS_ROOT [KODAK_DIR]
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 RUNS_ROOT [KODAK_DIR]" >&2
  exit 2
fi
root="${1%/}"
kodak="${2:-../shared/testsets/kodak24}"
out=results/small_scale
export PATH="$PWD/.venv/bin:$PATH"
# Every method runs on all 24 images, except CBM3D, which takes over a minute per Kodak image
# on this machine (first 4 images), and the two context-model arms (first 8 images).
bm3d_images=4
context_images=8

for point in 2 3 4; do
  if [[ ! -d "jdc_jax/zoo/weights/jicd-small-sigma25/rate_point_$point" ]]; then
    python -m jdc_jax.zoo.build --checkpoint "$root/jicd/rate_point_$point" \
      --name jicd-small-sigma25 \
      --description "JICD, N = M = 64 (60 base + 4 enhancement channels), trained on AWGN sigma 25"
  fi
done

# A results file that exists is kept (a stopped evaluation resumes); delete it to redo it.
evaluate() {  # NOISE_DIR NOISE NAME OUT_NAME ARGS...
  local dir="$out/$1" noise="$2" name="$3" file="$4"
  shift 4
  if [[ -f "$dir/$file.json" ]]; then
    echo "keeping $dir/$file.json"
    return
  fi
  mkdir -p "$dir"
  python -m jdc_jax.evaluate --dataset "folder:$kodak" --noise "$noise" --seed 0 \
    --name "$name" --out "$dir/$file.json" "$@"
}

for pair in awgn25:awgn:25 awgn50:awgn:50 practical:practical; do
  dir="${pair%%:*}"
  noise="${pair#*:}"
  evaluate "$dir" "$noise" "JICD (base layer)" jicd \
    --checkpoints zoo:jicd-small-sigma25:2 zoo:jicd-small-sigma25:3 zoo:jicd-small-sigma25:4
  evaluate "$dir" "$noise" "Cascade: codec + denoiser" cascade \
    --checkpoints "$root/codec/rate_point_2" "$root/codec/rate_point_3" \
    "$root/codec/rate_point_4" --denoiser "$root/denoiser"
  evaluate "$dir" "$noise" "Testolina" testolina --checkpoints "$root/testolina"
  evaluate "$dir" "$noise" "Denoiser on raw noisy" denoiser --method denoiser \
    --denoiser "$root/denoiser"
  evaluate "$dir" "$noise" "CBM3D on raw noisy (first $bm3d_images images)" bm3d \
    --method bm3d --limit "$bm3d_images"
  python -m jdc_jax.plot "$out/$dir"/{jicd,cascade,testolina,denoiser,bm3d}.json \
    --task denoising --metric psnr --out "$out/$dir/denoising_psnr.png"
  # Only JICD's file and the cascade's codec reconstruct the noisy input.
  python -m jdc_jax.plot "$out/$dir"/{jicd,cascade}.json \
    --task noisy_reconstruction --metric psnr --out "$out/$dir/noisy_reconstruction_psnr.png"
  # A curve whose quality does not rise with its rate has no BD-rate: the table file then
  # holds the reason instead.
  if ! python -m jdc_jax.bdrate "$out/$dir/cascade.json" "$out/$dir/jicd.json" \
      --metric psnr ssim ms-ssim --out "$out/$dir/bdrate_jicd_vs_cascade.json" \
      > "$out/$dir/bdrate_jicd_vs_cascade.md" 2> "$out/$dir/bdrate.err"; then
    echo "No BD-rate: $(tail -n 1 "$out/$dir/bdrate.err" | sed 's/^[^:]*: error: //')" \
      > "$out/$dir/bdrate_jicd_vs_cascade.md"
  fi
  rm -f "$out/$dir/bdrate.err"
done

# The rate cost of the checkerboard context: the two arms fine-tuned from one checkpoint.
for context in serial checkerboard; do
  evaluate awgn25 awgn:25 "JICD rate point 4, $context context" "context_$context" \
    --limit "$context_images" --checkpoints "$root/context_$context"
done

python results/campaign/side_by_side.py --model jicd-small-sigma25 --kodak "$kodak" \
  --out "$out/side_by_side.png"
