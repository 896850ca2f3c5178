"""benchmarks/gpu_check.sh: its pure parts, and (slow) the whole script in
its CPU smoke mode, the only way to run it without a GPU."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import bench_gpu  # noqa: E402


def test_goals_at_k128_sweep_within_2x_one_run_and_50x_sequential():
  rows = [{"K": 8, "sweep_warm_s": 1.0, "sweep_vs_one_run": 9.0,
           "sweep_vs_sequential": 0.5},
          {"K": 128, "sweep_warm_s": 1.0, "sweep_vs_one_run": 1.8,
           "sweep_vs_sequential": 0.025}]
  g = bench_gpu.goals(rows)
  assert g["sweep_vs_one_run"]["met"]  # 1.8 <= 2
  assert not g["sweep_vs_sequential"]["met"]  # 40x, not 50x
  assert g["sweep_vs_sequential"]["goal"] == "<= 0.02"


def test_goals_unmeasured_without_k128():
  assert bench_gpu.goals([{"K": 128, "skipped": "time budget spent"}]) == {
      "K": 128, "measured": False}


def test_max_rel_diff_over_finite_steps_of_the_timed_lrs():
  sweep = np.array([[1.0, 2.0, 4.0], [1.0, np.nan, np.nan]])
  user = {0: np.array([1.0, 2.2, 4.0]), 1: np.array([1.1, 5.0, 9.0])}
  # copy 0: |2 - 2.2| / 2.2; copy 1: only step 0 is finite, 0.1 / 1.1
  assert bench_gpu.max_rel_diff(sweep, user) == pytest.approx(0.2 / 2.2)


def test_cpu_numbers_are_never_labelled_as_gpu_measurements():
  args = bench_gpu.parse([])
  assert "not a GPU measurement" in bench_gpu.label(
      args, {"backend": "cpu", "device_kind": "cpu"})
  assert "not an estimate" in bench_gpu.label(
      args, {"backend": "gpu", "device_kind": "NVIDIA H200"})


def test_default_run_covers_k_8_to_1024_and_4096_copies():
  args = bench_gpu.parse([])
  assert args.ks == [8, 32, 128, 512, 1024] and args.steps == 100
  assert args.many == 4096 and args.budget_s < 470  # gpu_check.sh timeout


def test_default_run_measures_every_user_model_at_k128():
  args = bench_gpu.parse([])
  assert args.user_models == list("abcdef")
  assert args.user_ks == [128] and args.user_steps == 100
  assert bench_gpu.parse(["--user-models", "none"]).user_models == []
  assert bench_gpu.parse(["--smoke"]).user_ks == [2]


@pytest.mark.slow  # ~40-90 s on 2 cores
def test_smoke_run_writes_every_part(tmp_path):
  out = tmp_path / "gpu_smoke.json"
  env = {**os.environ, "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu",
         "OPTAX_CLR_CACHE_DIR": ""}
  proc = subprocess.run(
      ["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--smoke",
       "--no-torch", "--out", str(out)], env=env, capture_output=True,
      text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  data = json.loads(out.read_text())
  assert data["label"].startswith("SMOKE RUN")
  assert data["device"]["jax"] and data["device"]["device_kind"]
  row = data["rows"][0]
  assert row["K"] == 2 and row["sequential_timed_runs"] == 2
  assert row["loss_max_rel_diff_vs_user_loop"] < 1e-5  # same batches
  for part in ("classic", "multi_seed", "bf16_sweep", "many_copies"):
    assert "error" not in data[part] and "skipped" not in data[part], part
  # Every user-style model: sweep vs one run vs the user's own loop.
  users = data["user_models"]["rows"]
  assert sorted(r["model"] for r in users) == list("abcdef")
  for r in users:
    assert "error" not in r and "skipped" not in r, r
    assert r["K"] == 2 and r["sweep_warm_s"] > 0 and r["sequential_s"] > 0
    if r["loss_max_rel_diff_vs_user_loop"] is not None:  # not dropout
      assert r["loss_max_rel_diff_vs_user_loop"] < 1e-4, r
  assert data["multi_seed"]["seeds"] == 3
  assert data["classic"]["steps_recorded"] == data["classic"]["N"]
