"""benchmarks/bench_suggestions.py: its pure parts, the task split, and (slow)
the whole script with ``--quick``."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import _tasks  # noqa: E402
import bench_suggestions as bench  # noqa: E402


def test_the_halves_are_fixed_and_cover_every_kind_and_optimizer():
  tasks = _tasks.all_tasks()
  assert len(tasks) >= 8
  for half in (_tasks.TUNE, _tasks.REPORT):
    mine = _tasks.tasks_of(half)
    assert {t.kind for t in mine} == {"conv", "bn-conv", "tabular",
                                      "regression", "char-lm"}
    assert {t.optimizer_name for t in mine} == {"sgd", "adam"}
    assert len({t.batch_size for t in mine}) >= 2
  for t in tasks:
    assert t.budget % 24 == 0 and t.budget <= 300
    assert len(t.grid) >= 12
    assert np.allclose(np.diff(np.log(t.grid)), np.log(t.grid[1] /
                                                       t.grid[0]))


def test_quality_is_one_at_the_grid_best_and_zero_without_a_metric():
  acc = _tasks.by_name("conv-sgd-b32")
  lm = _tasks.by_name("char-lm-adam-b32")
  reg = _tasks.by_name("regression-sgd-b32")
  assert bench.quality(acc, 0.9, 0.9) == 1.0
  assert bench.quality(acc, 0.45, 0.9) == 0.5
  assert bench.quality(reg, 2.0, 1.0) == 0.5          # MSE: grid / answer
  assert bench.quality(lm, 1.0 + np.log(2), 1.0) == pytest.approx(0.5)
  assert bench.quality(acc, float("nan"), 0.9) == 0.0
  assert bench.best_of([0.5, np.nan, 0.7], True) == 0.7
  assert bench.best_of([0.5, np.nan, 0.7], False) == 0.5
  assert np.isnan(bench.best_of([], True))


def test_variants_parse_and_goals_read_the_worst_seed():
  assert bench.parse_variants("cycles=4;eta=3,scale=0.25") == [
      {"cycles": 4}, {"eta": 3, "scale": 0.25}]
  assert bench.parse_variants("") == []
  rows = [{"task": "a", "kind": "conv", "half": "tune", "optimizer": "sgd",
           "batch_size": 32, "budget": 192, "seed": s,
           "grid_best_interior": True, "fit_quality": q,
           "fit_max_lr": 0.1, "fit_cost": 4.0, "default_quality": 0.97,
           "default_max_lr": lr, "default_cost": 2.5,
           "quality_kind": "accuracy", "grid_best": max(g),
           "grid_values": g}
          for s, (q, lr, g) in enumerate([(1.0, 0.1, [0.5, 0.8, 0.9]),
                                          (0.98, 0.3, [0.6, 0.9, 0.8])])]
  summary = bench.summarize(rows)
  m = summary["a"]["methods"]
  assert m["fit"]["quality_min"] == 0.98
  assert m["default"]["max_lr_spread"] == pytest.approx(3.0)
  # The grid's LR tuned on the other seed: seed 0 gets LR 1 (0.8 / 0.9),
  # seed 1 gets LR 2 (0.8 / 0.9).
  assert m["grid-tuned LR"]["quality_min"] == pytest.approx(0.8 / 0.9)
  g = bench.goals(summary, "tune")
  assert not g["fit_goal_met"] and g["default_goal_met"]
  assert not g["spread_goal_met"]
  assert bench.goals(summary, "report") == {}


@pytest.mark.slow
def test_quick_run_writes_its_results(tmp_path):
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks",
                                    "bench_suggestions.py"), "--quick",
       "--name", "suggestions_quick_test"],
      capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-2000:]
  path = os.path.join(ROOT, "benchmarks", "results",
                      "suggestions_quick_test.json")
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
    assert len(data["rows"]) == 2
    assert set(data["summary"]["goals"]) == {"all", "tune", "report"}
    assert "goals (tune)" in out.stdout and "goals (report)" in out.stdout
  finally:
    for ext in (".json", ".csv", "_rows.json"):
      p = os.path.join(ROOT, "benchmarks", "results",
                       "suggestions_quick_test" + ext)
      if os.path.exists(p):
        os.remove(p)
