#!/usr/bin/env bash
# GPU check of issue 16: on one GPU (H100/H200 class), in under 8 minutes,
# with no network, measures the parallel sweep at K = 8..1024 against one
# run, K sequential jitted runs and PyTorch (when importable with CUDA); the
# same sweep on the user-style models (nnx.Conv CNN, BatchNorm + Dropout
# CNN, char transformer, MLP, Linen CNN, bundled CNN) at K = 128 against one
# run and K runs of the user's own jitted loop; the classic range test, the
# multi-seed test, a bfloat16 sweep and a K = 4096 sweep that must not run
# out of memory; writes
# benchmarks/results/gpu_<device>.json and prints the ratios (ours ÷ theirs).
#
# Usage (from anywhere):   bash benchmarks/gpu_check.sh [bench_gpu.py flags]
#   CPU smoke test:        bash benchmarks/gpu_check.sh --smoke
# Environment: PYTHON (default: python3), GPU_CHECK_TIMEOUT_S (default 470).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# Keep the CPU autotuning cache out of the home directory of a lent machine.
export OPTAX_CLR_CACHE_DIR="${OPTAX_CLR_CACHE_DIR-}"

"$PYTHON" - <<'EOF'
import jax
print(f"jax {jax.__version__}: backend {jax.default_backend()}, "
      f"{jax.device_count()} x {jax.devices()[0].device_kind}", flush=True)
if jax.default_backend() == "cpu":
  print("WARNING: no GPU/TPU visible to jax: the results are labelled "
        "as a CPU run, not a GPU measurement", flush=True)
EOF

timeout "${GPU_CHECK_TIMEOUT_S:-470}" "$PYTHON" benchmarks/bench_gpu.py "$@"
