"""Specification of the range-test result objects (optax_clr.results)."""

import csv
import dataclasses
import io
import json

import chex
import numpy as np
import pytest

from optax_clr import suggestions as sg
from optax_clr.results import (GridSweepResult, ParallelSweepResult,
                               RangeTestResult)

# Same curve as in test_suggestions: steepest at index 30 (lr 1e-3), minimum
# at index 50 (lr 0.1) on lrs = 10**(-6 + i/10), i = 0..60.
LRS = np.logspace(-6, 0, 61)
X = np.log10(LRS)
SMOOTH = -np.tanh(2 * (X + 3)) + 0.5 * np.maximum(0, X + 1) ** 2 + 3.0


def _noise():
  return np.random.default_rng(0).normal(0.0, 0.3, LRS.size)


def _range_result(**overrides):
  raw = SMOOTH + _noise()
  raw[-1] = np.nan
  smooth = SMOOTH.copy()
  smooth[-1] = np.nan
  kw = dict(
      lrs=LRS, losses=raw, smoothed_losses=smooth, stop_reason="nonfinite",
      eval_steps=[0, 10, 20, 30, 40, 50],
      eval_lrs=LRS[[0, 10, 20, 30, 40, 50]],
      eval_metrics={"accuracy": [0.1, 0.1, 0.3, 0.7, 0.9, 0.9],
                    "loss": [2.3, 2.3, 1.5, 0.8, 0.4, 0.5]},
      config={"start_lr": 1e-6, "end_lr": 1.0, "num_steps": 61,
              "mode": "exp", "beta": 0.98})
  kw.update(overrides)
  return RangeTestResult(**kw)


K = 8
SWEEP_LRS = np.logspace(-4, 0, K)


def _sweep_result(**overrides):
  mean = np.array([3.0, 2.0, 1.0, 0.5, 0.4, 0.6, np.nan, np.inf])
  losses = np.tile(np.linspace(3.0, 1.0, 5), (K, 1))
  losses[6, 2:] = np.nan
  losses[7, 3:] = np.inf
  kw = dict(
      lrs=SWEEP_LRS, losses=losses, final_loss=mean.copy(), mean_loss=mean,
      diverged=[False] * 6 + [True, True], diverged_at=[-1] * 6 + [2, 3],
      eval_metrics={"accuracy": np.linspace(0.1, 0.9, K)},
      config={"num_steps": 5, "window": 2})
  kw.update(overrides)
  return ParallelSweepResult(**kw)


# --- RangeTestResult: construction -------------------------------------------


def test_range_result_holds_read_only_float_arrays():
  r = _range_result(lrs=list(LRS.astype(np.float32)))
  chex.assert_shape([r.lrs, r.losses, r.smoothed_losses], (61,))
  chex.assert_type([r.lrs, r.losses, r.eval_lrs], np.float64)
  chex.assert_type(r.eval_steps, np.int64)
  with pytest.raises(ValueError, match="read-only"):
    r.losses[0] = 1.0
  with pytest.raises(dataclasses.FrozenInstanceError):
    r.stop_reason = "completed"


def test_range_result_derived_properties():
  assert _range_result().num_steps == 61
  for reason, diverged in [("completed", False), ("data_exhausted", False),
                           ("diverged", True), ("nonfinite", True)]:
    assert _range_result(stop_reason=reason).diverged is diverged


def test_range_result_eval_fields_default_to_empty():
  r = RangeTestResult(LRS, SMOOTH, SMOOTH, "completed")
  assert r.eval_steps.shape == (0,) and r.eval_lrs.shape == (0,)
  assert r.eval_metrics == {} and r.config == {}
  assert r.suggest().accuracy_base is None


@pytest.mark.parametrize("overrides, match", [
    (dict(losses=SMOOTH[:-1]), "losses must have one entry per"),
    (dict(smoothed_losses=SMOOTH[:5]), "smoothed_losses"),
    (dict(stop_reason="exploded"), "stop_reason"),
    (dict(lrs=LRS[::-1]), "strictly increasing"),
    (dict(eval_lrs=LRS[:3]), "eval_lrs must have one entry per"),
    (dict(eval_steps=[0, 10, 10, 30, 40, 50]), "eval_steps"),
    (dict(eval_metrics={"accuracy": [0.1]}), "eval_metrics"),
    (dict(eval_steps=[0.5, 10, 20, 30, 40, 50]), "integers"),
])
def test_range_result_rejects_inconsistent_fields(overrides, match):
  with pytest.raises(ValueError, match=match):
    _range_result(**overrides)


def test_range_result_rejects_a_config_that_is_not_a_mapping():
  with pytest.raises(TypeError, match="config"):
    _range_result(config=[1, 2])


# --- RangeTestResult: suggestions -------------------------------------------------


def test_range_suggest_uses_the_smoothed_loss():
  r = _range_result()
  s = r.suggest()
  expected = sg.suggest(LRS[:-1], SMOOTH[:-1])
  # The raw loss is noisy (sd 0.3) and would give another steepest point.
  assert sg.steepest(LRS[:-1], r.losses[:-1]).index != 30
  assert s.steepest.index == expected.steepest.index == 30
  assert s.minimum.index == 50 and s.valley == expected.valley


def test_range_suggest_drops_points_where_the_raw_loss_is_not_finite():
  raw = SMOOTH.copy()
  raw[40] = np.inf  # the smoothed value there is finite but not trusted
  r = _range_result(losses=raw, smoothed_losses=SMOOTH)
  assert r.suggest().minimum.index == 39


def test_range_suggest_gives_accuracy_bounds_against_eval_lrs():
  s = _range_result().suggest(rule="accuracy", window=1)
  # accuracy [.1 .1 .3 .7 .9 .9]: rise .8, base first >= .18 (eval 2),
  # max first >= .82 (eval 4).
  assert s.accuracy_base.lr == LRS[20] and s.accuracy_max.lr == LRS[40]
  assert (s.base_lr, s.max_lr) == (LRS[20], LRS[40])
  default = _range_result().suggest(window=1)
  assert default.chosen == "loss" and "accuracy" in default.readings


def test_range_suggest_forwards_keyword_arguments():
  s = _range_result().suggest(skip_start=0, skip_end=0, factor=3.0)
  assert s.minimum.lr == pytest.approx(0.1 / 3)


# --- RangeTestResult: JSON and CSV ----------------------------------------------------


def test_range_to_dict_is_strict_json_with_null_for_nan():
  d = _range_result().to_dict()
  text = json.dumps(d, allow_nan=False)
  assert d["losses"][-1] is None and d["smoothed_losses"][-1] is None
  assert d["type"] == "RangeTestResult" and d["num_steps"] == 61
  assert d["diverged"] is True
  assert d["suggestions"]["steepest"]["index"] == 30
  assert "NaN" not in text and "Infinity" not in text


def test_range_json_round_trip_through_text_and_file(tmp_path):
  r = _range_result()
  assert RangeTestResult.from_json(r.to_json()) == r
  path = tmp_path / "range.json"
  text = r.to_json(path)
  assert path.read_text().strip() == text
  back = RangeTestResult.from_json(path)
  assert back == r
  assert np.isnan(back.losses[-1])
  assert back.config["start_lr"] == 1e-6


def test_range_json_turns_inf_into_nan():
  raw = SMOOTH.copy()
  raw[-1] = np.inf
  back = RangeTestResult.from_json(_range_result(losses=raw).to_json())
  assert np.isnan(back.losses[-1])
  np.testing.assert_array_equal(back.losses[:-1], raw[:-1])


def test_range_json_round_trip_with_no_evaluations():
  r = RangeTestResult(LRS[:3], [1.0, 0.5, np.nan], [1.0, 0.9, np.nan],
                      "nonfinite")
  assert RangeTestResult.from_json(r.to_json()) == r


def test_equality_compares_values():
  r = _range_result()
  assert r == _range_result()
  assert r != _range_result(stop_reason="diverged")
  assert r != _range_result(eval_metrics={"accuracy": np.zeros(6)})


def test_from_dict_rejects_another_result_type():
  with pytest.raises(ValueError, match="expected a RangeTestResult"):
    RangeTestResult.from_dict(_sweep_result().to_dict())


def test_to_json_rejects_a_config_value_json_cannot_hold():
  with pytest.raises(TypeError, match="config.*not JSON-able"):
    _range_result(config={"loss_fn": object()}).to_json()


def test_range_csv_has_one_row_per_step_and_eval_columns(tmp_path):
  r = _range_result()
  path = tmp_path / "range.csv"
  text = r.to_csv(path)
  assert path.read_text() == text
  rows = list(csv.DictReader(io.StringIO(text)))
  assert list(rows[0]) == ["step", "lr", "loss", "smoothed_loss",
                           "eval_accuracy", "eval_loss"]
  assert len(rows) == 61
  assert float(rows[30]["lr"]) == LRS[30]  # full precision
  assert float(rows[30]["smoothed_loss"]) == SMOOTH[30]
  assert rows[30]["eval_accuracy"] == "0.7" and rows[30]["eval_loss"] == "0.8"
  assert rows[31]["eval_accuracy"] == "" and rows[31]["eval_loss"] == ""
  assert rows[60]["loss"] == "nan"


def test_range_csv_adds_a_row_for_an_evaluation_after_the_last_step():
  r = _range_result(eval_steps=[10, 61], eval_lrs=[LRS[10], 2.0],
                    eval_metrics={"accuracy": [0.2, 0.1]})
  rows = list(csv.reader(io.StringIO(r.to_csv())))
  assert len(rows) == 1 + 61 + 1
  assert rows[-1] == ["61", "2.0", "", "", "0.1"]


# --- ParallelSweepResult ---------------------------------------------------------


def test_sweep_result_holds_typed_read_only_arrays():
  r = _sweep_result()
  chex.assert_shape(r.losses, (K, 5))
  chex.assert_shape([r.lrs, r.final_loss, r.mean_loss, r.diverged,
                     r.diverged_at], (K,))
  chex.assert_type([r.diverged, r.diverged_at], [np.bool_, np.int64])
  assert (r.num_lrs, r.num_steps) == (K, 5)
  with pytest.raises(ValueError, match="read-only"):
    r.mean_loss[0] = 0.0


@pytest.mark.parametrize("overrides, match", [
    (dict(losses=np.ones(K)), "losses must be 2-D"),
    (dict(losses=np.ones((K - 1, 5))), "losses must have one entry per LR"),
    (dict(mean_loss=np.ones(K - 1)), "mean_loss"),
    (dict(lrs=SWEEP_LRS[::-1]), "strictly increasing"),
    (dict(diverged_at=[-1] * 7 + [3]), r"diverged\[6\]=True"),
    (dict(diverged_at=[0] + [-1] * 5 + [2, 3]), r"diverged\[0\]=False"),
    (dict(eval_metrics={"accuracy": [0.5]}), "eval_metrics"),
])
def test_sweep_result_rejects_inconsistent_fields(overrides, match):
  with pytest.raises(ValueError, match=match):
    _sweep_result(**overrides)


@pytest.mark.parametrize("diverged_at, match", [
    ([-1, -1, -1, 3], r"diverged\[2\]=True, diverged_at\[2\]=-1"),
    ([-1, 0, 2, 3], r"diverged\[1\]=False, diverged_at\[1\]=0"),
])
def test_grid_result_refuses_a_divergence_step_against_its_flag(diverged_at,
                                                                match):
  final = np.array([1.0, 0.9, np.nan, np.inf])
  with pytest.raises(ValueError, match=match):
    GridSweepResult(
        configs={"learning_rate": np.array([0.01, 0.03, 0.1, 0.3])},
        losses=np.ones((4, 5)), final_loss=final, mean_loss=final,
        diverged=[False, False, True, True], diverged_at=diverged_at)


def _spiky_sweep(mean, spike_at=None, **overrides):
  """A sweep whose runs all fall from 3.0 to ``mean``; run ``spike_at``
  spikes to 1e17 mid-run and recovers (finite, not diverged)."""
  losses = np.tile(np.linspace(3.0, 1.0, 5), (K, 1))
  losses[:, -1] = mean
  if spike_at is not None:
    losses[spike_at, 2] = 1e17
  kw = dict(lrs=SWEEP_LRS, losses=losses, final_loss=np.asarray(mean),
            mean_loss=np.asarray(mean), diverged=[False] * K,
            diverged_at=[-1] * K, config={"num_steps": 5, "window": 2})
  kw.update(overrides)
  return ParallelSweepResult(**kw)


def test_sweep_status_marks_spiked_stalled_and_diverged_runs():
  mean = np.array([3.0, 2.0, 1.0, 0.5, 0.4, 0.6, np.nan, 0.1])
  r = _spiky_sweep(mean, spike_at=7, diverged=[False] * 6 + [True, False],
                   diverged_at=[-1] * 6 + [2, -1])
  r.losses  # noqa: B018
  # Run 0 ends where it started (3.0 -> 3.0): stalled; run 6 has NaN; run 7
  # spiked to 1e17 although it ended at the lowest loss.
  assert list(r.status) == ["stalled"] + ["trained"] * 5 + [
      "nonfinite", "spiked"]
  np.testing.assert_array_equal(r.stable, [False] + [True] * 5 + [False] * 2)


def test_sweep_suggest_ignores_a_run_that_survived_a_spike():
  # The spiked run has the lowest final loss (0.1); the best stable run is
  # index 4 (0.4), which also wins after averaging with its neighbours.
  mean = np.array([3.0, 2.0, 1.0, 0.5, 0.4, 0.6, 0.8, 0.1])
  s = _spiky_sweep(mean, spike_at=7).suggest()
  assert s.best.index == 4 and s.best.lr == SWEEP_LRS[4]
  assert (s.stable_low, s.stable_high) == (SWEEP_LRS[1], SWEEP_LRS[6])
  assert s.max_lr >= s.best.lr
  assert _spiky_sweep(mean, spike_at=7).best_lr == SWEEP_LRS[4]


def test_sweep_suggest_uses_accuracy_of_stable_runs_only():
  acc = np.array([0.1, 0.3, 0.5, 0.9, 0.92, 0.9, 0.2, 1.0])
  mean = np.array([3.0, 2.0, 1.0, 0.5, 0.4, 0.6, 0.8, 0.1])
  r = _spiky_sweep(mean, spike_at=7, eval_metrics={"accuracy": acc})
  s = r.suggest()
  # The spiked run's 1.0 does not count; index 4 has the best accuracy.
  assert s.best.index == 4
  assert "validation accuracy" in s.best.reason


def test_sweep_json_round_trip(tmp_path):
  r = _sweep_result()
  back = ParallelSweepResult.from_json(r.to_json(tmp_path / "sweep.json"))
  # inf is not JSON: it comes back as NaN, like NaN itself.
  assert np.isnan(back.mean_loss[7]) and np.isnan(back.losses[7, 4])
  expected = _sweep_result(
      mean_loss=np.where(np.isinf(r.mean_loss), np.nan, r.mean_loss),
      final_loss=np.where(np.isinf(r.final_loss), np.nan, r.final_loss),
      losses=np.where(np.isinf(r.losses), np.nan, r.losses))
  assert back == expected
  assert ParallelSweepResult.from_json(tmp_path / "sweep.json") == back
  d = json.loads(r.to_json())
  assert d["diverged"][-1] is True and d["diverged_at"][-1] == 3


def test_sweep_json_round_trip_keeps_zero_steps():
  r = _sweep_result(losses=np.zeros((K, 0)))
  assert ParallelSweepResult.from_json(r.to_json()).losses.shape == (K, 0)


def test_sweep_csv_has_one_row_per_lr():
  rows = list(csv.DictReader(io.StringIO(_sweep_result().to_csv())))
  assert list(rows[0]) == ["lr", "status", "final_loss", "mean_loss",
                           "diverged", "diverged_at", "eval_accuracy"]
  assert len(rows) == K
  assert float(rows[3]["lr"]) == SWEEP_LRS[3]
  assert rows[3]["mean_loss"] == "0.5" and rows[3]["diverged"] == "False"
  assert rows[3]["diverged_at"] == "-1"
  assert rows[7]["mean_loss"] == "inf" and rows[7]["diverged"] == "True"
  assert rows[6]["diverged_at"] == "2"


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600),
                                        (0o002, 0o664)])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, mask, mode):
  import os
  import stat
  result = _range_result()
  old = os.umask(mask)
  try:
    result.to_json(tmp_path / "r.json")       # JSON, CSV, PNG: the three
    result.to_csv(tmp_path / "r.csv")         # kinds every run writes, all
    result.plot(path=tmp_path / "r.png")      # through one atomic write
  finally:
    os.umask(old)
  for name in ("r.json", "r.csv", "r.png"):
    got = stat.S_IMODE((tmp_path / name).stat().st_mode)
    assert got == mode, (name, oct(got))
