#!/usr/bin/env bash
# Runs every benchmark with its defaults; results go to benchmarks/results/.
# Usage (from the repository root): bash benchmarks/run_all.sh
# Timing benchmarks run one after another so they do not disturb each other.
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/bench_schedule_parity.py "$@"
python benchmarks/bench_schedule_cost.py
python benchmarks/bench_range_test.py
python benchmarks/bench_parallel_sweep.py
python benchmarks/bench_suggestions.py
