#!/usr/bin/env bash
# Creates benchmarks/.peer-venv: PyTorch, CompressAI and this project in one virtualenv, so one
# process can time the CompressAI models and ours on the same machine
# (benchmarks/bench_vs_compressai.py). Torch is never a dependency of jdc_jax itself.
#
#   bash benchmarks/setup_peer_env.sh            # PYTHON=python3.11 by default
#
# CompressAI 1.2.8 ships a prebuilt cp311 manylinux_2_34 wheel (its C++ extensions `_CXX` and
# `ans` are pybind11 modules that use no NumPy C API), so nothing is compiled. Its metadata
# still pins numpy<2, which cannot co-install with this project's numpy 2.4 (jax needs NumPy 2),
# so CompressAI goes in with --no-deps and its import-time dependencies are listed here; the
# build-only ones (pybind11, setuptools, wheel, tomli) are left out.
set -euo pipefail

BENCHMARKS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$BENCHMARKS_DIR")"
PYTHON="${PYTHON:-python3.11}"
VENV="$BENCHMARKS_DIR/.peer-venv"
PIP=("$VENV/bin/pip" install --quiet -c "$REPO_DIR/requirements.lock")

start=$(date +%s)
"$PYTHON" -m venv "$VENV"
# The project (pinned by requirements.lock) together with torch, so one resolver run sees both.
"${PIP[@]}" torch==2.14.1 torchvision==0.29.1 -e "$REPO_DIR"
# What `import compressai` needs (compressai/__init__.py imports every subpackage).
"${PIP[@]}" einops matplotlib scipy tqdm typing_extensions \
    pandas==3.1.1 pytorch-msssim==1.0.0 torch-geometric==2.8.1
"${PIP[@]}" --no-deps compressai==1.2.8
"$VENV/bin/python" - <<'EOF'
import compressai, jax, numpy, torch
from compressai.zoo import mbt2018_mean
import jdc_jax.models
print(f"torch {torch.__version__}, compressai {compressai.__version__}, jax {jax.__version__}, "
      f"numpy {numpy.__version__}")
EOF
echo "peer environment: $VENV ($(du -sh "$VENV" | cut -f1), $(( $(date +%s) - start )) s)"
