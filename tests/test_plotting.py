"""Specification of the plots (optax_clr.plotting)."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from matplotlib.figure import Figure

from optax_clr import plotting
from optax_clr import suggestions as sg
from optax_clr.results import ParallelSweepResult, RangeTestResult

LRS = np.logspace(-6, 0, 61)
X = np.log10(LRS)
SMOOTH = -np.tanh(2 * (X + 3)) + 0.5 * np.maximum(0, X + 1) ** 2 + 3.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
  data = path.read_bytes()
  return len(data) > 1000 and data.startswith(PNG_SIGNATURE)


def _lines(ax):
  return {line.get_gid(): line for line in ax.get_lines()}


def _range_result(accuracy=True, **overrides):
  raw = SMOOTH + np.random.default_rng(0).normal(0.0, 0.1, LRS.size)
  raw[-1] = np.inf
  smooth = SMOOTH.copy()
  smooth[-1] = np.nan
  kw = dict(lrs=LRS, losses=raw, smoothed_losses=smooth,
            stop_reason="diverged")
  if accuracy:
    kw.update(eval_steps=[0, 10, 20, 30, 40, 50],
              eval_lrs=LRS[[0, 10, 20, 30, 40, 50]],
              eval_metrics={"accuracy": [0.1, 0.1, 0.3, 0.7, 0.9, 0.9]})
  kw.update(overrides)
  return RangeTestResult(**kw)


def _sweep_result(accuracy=True, diverged=True):
  k = 8
  mean = np.array([3.0, 2.0, 1.0, 0.5, 0.4, 0.6, 50.0, np.nan])
  div = np.array([False] * 6 + [diverged, diverged])
  if not diverged:
    mean[6:] = [0.9, 1.5]
  return ParallelSweepResult(
      lrs=np.logspace(-4, 0, k), losses=np.ones((k, 4)), final_loss=mean,
      mean_loss=mean, diverged=div, diverged_at=np.where(div, 1, -1),
      eval_metrics=({"accuracy": np.linspace(0.1, 0.9, k)} if accuracy
                    else {}))


# --- plot_range_test -------------------------------------------------------------


def test_range_plot_draws_losses_suggestions_divergence_and_accuracy(tmp_path):
  path = tmp_path / "range.png"
  ax = plotting.plot_range_test(_range_result(), path=path)
  assert _is_png(path)
  lines = _lines(ax)
  assert set(lines) == {
      "raw_loss", "smoothed_loss", "suggestion:steepest",
      "suggestion:minimum", "suggestion:valley", "clr:base_lr", "clr:max_lr",
      "diverged"}
  assert ax.get_xscale() == "log"
  # The steepest marker sits on the smoothed curve at lr 1e-3.
  x, y = lines["suggestion:steepest"].get_data()
  assert x[0] == pytest.approx(1e-3) and y[0] == pytest.approx(SMOOTH[30])
  assert lines["diverged"].get_xdata()[0] == LRS[-1]
  twin = ax.figure.axes[-1]
  assert twin is not ax
  acc = _lines(twin)["accuracy"]
  np.testing.assert_array_equal(acc.get_ydata(), [.1, .1, .3, .7, .9, .9])
  assert len(ax.get_legend().get_texts()) == 9


def test_range_plot_leaves_gaps_for_nonfinite_losses():
  ax = plotting.plot_range_test(_range_result(), suggestions=False)
  raw = _lines(ax)["raw_loss"].get_ydata()
  assert np.isnan(raw[-1]) and np.all(np.isfinite(raw[:-1]))
  assert np.isnan(_lines(ax)["smoothed_loss"].get_ydata()[-1])


def test_range_plot_without_accuracy_or_suggestions(tmp_path):
  r = _range_result(accuracy=False, stop_reason="completed",
                    losses=SMOOTH, smoothed_losses=SMOOTH)
  ax = plotting.plot_range_test(r, suggestions=False, path=tmp_path / "a.png")
  assert _is_png(tmp_path / "a.png")
  assert set(_lines(ax)) == {"raw_loss", "smoothed_loss"}
  assert ax.figure.axes == [ax]


def test_range_plot_uses_precomputed_suggestions():
  r = _range_result()
  s = r.suggest(factor=3.0)
  ax = plotting.plot_range_test(r, suggestions=s)
  x, _ = _lines(ax)["suggestion:minimum"].get_data()
  assert x[0] == pytest.approx(0.1 / 3)


def test_range_plot_of_a_curve_too_short_for_suggestions(tmp_path):
  r = RangeTestResult(LRS[:2], [2.0, np.nan], [2.0, np.nan], "nonfinite")
  ax = plotting.plot_range_test(r, path=tmp_path / "short.png")
  assert _is_png(tmp_path / "short.png")
  assert set(_lines(ax)) == {"raw_loss", "smoothed_loss", "diverged"}


def test_range_plot_draws_on_a_given_axes():
  fig = Figure()
  ax = fig.add_subplot()
  assert plotting.plot_range_test(_range_result(), ax) is ax


def test_range_result_plot_delegates(tmp_path):
  ax = _range_result().plot(path=tmp_path / "r.png", suggestions=False)
  assert _is_png(tmp_path / "r.png")
  assert "suggestion:valley" not in _lines(ax)


def test_range_plot_y_range_ignores_the_divergent_tail():
  loss = SMOOTH.copy()
  loss[-3:] = [10.0, 100.0, 1000.0]
  r = RangeTestResult(LRS, loss, loss, "diverged")
  lo, hi = plotting.plot_range_test(r, suggestions=False).get_ylim()
  # start ~4, minimum ~2: the top stays near start + (start - min) = 6.
  assert hi < 7 and lo < 2


# --- plot_sweep --------------------------------------------------------------------


def test_sweep_plot_marks_diverged_lrs_and_accuracy(tmp_path):
  path = tmp_path / "sweep.png"
  r = _sweep_result()
  ax = plotting.plot_sweep(r, path=path)
  assert _is_png(path)
  lines = _lines(ax)
  assert {"mean_loss", "final_loss", "diverged", "suggestion:minimum",
          "clr:base_lr", "clr:max_lr"} <= set(lines)
  np.testing.assert_array_equal(lines["diverged"].get_xdata(), r.lrs[6:])
  # Diverged runs are not drawn as losses (50.0 would squash the axis).
  assert np.all(np.isnan(lines["mean_loss"].get_ydata()[6:]))
  assert np.all(np.isfinite(lines["mean_loss"].get_ydata()[:6]))
  assert "accuracy" in _lines(ax.figure.axes[-1])


def test_sweep_plot_without_divergence_or_accuracy():
  ax = _sweep_result(accuracy=False, diverged=False).plot(suggestions=False)
  assert set(_lines(ax)) == {"mean_loss", "final_loss"}
  assert ax.figure.axes == [ax]


# --- plot_schedules ------------------------------------------------------------------


def _python_branch(step):
  # Python control flow on the step cannot be traced: needs the loop fallback.
  return 0.5 if step < 5 else 0.2


def test_schedules_plot_evaluates_jax_and_python_schedules(tmp_path):
  path = tmp_path / "sched.png"
  cosine = optax.cosine_decay_schedule(1.0, 10)
  fig = plotting.plot_schedules(
      {"cosine": cosine, "branch": _python_branch,
       "tri": lambda t: jnp.abs(t - 5) / 5},
      10, momentum={"mom": lambda t: 0.9 - 0.01 * t}, path=path)
  assert _is_png(path)
  lr_ax, mom_ax = fig.axes
  lines = _lines(lr_ax)
  np.testing.assert_allclose(lines["cosine"].get_ydata(),
                             [cosine(i) for i in range(10)], rtol=1e-6)
  np.testing.assert_array_equal(lines["branch"].get_ydata(), [0.5] * 5 +
                                [0.2] * 5)
  np.testing.assert_allclose(lines["tri"].get_ydata()[[0, 5, 9]],
                             [1.0, 0.0, 0.8])
  np.testing.assert_allclose(_lines(mom_ax)["mom"].get_ydata()[[0, 9]],
                             [0.9, 0.81])


def test_schedules_plot_has_one_panel_without_momentum():
  fig = plotting.plot_schedules({"c": lambda t: 0.1 + 0 * t}, 4)
  assert len(fig.axes) == 1
  np.testing.assert_allclose(_lines(fig.axes[0])["c"].get_ydata(), [0.1] * 4)


def test_schedules_plot_validates_arguments():
  with pytest.raises(ValueError, match="num_steps"):
    plotting.plot_schedules({"c": lambda t: t}, 0)
  with pytest.raises(ValueError, match="at least one"):
    plotting.plot_schedules({}, 10)
  with pytest.raises(TypeError, match="'c'"):
    plotting.plot_schedules({"c": 0.1}, 10)


# --- plot_training -------------------------------------------------------------------


def _histories():
  steps = np.arange(20)
  return {
      "CLR": {"step": steps, "loss": 2.0 / (1 + steps), "lr": 0.1 + 0 * steps,
              "val_accuracy": [0.5, 0.8], "val_step": [9, 19]},
      "fixed": {"step": steps, "loss": 2.0 / (1 + 0.5 * steps),
                "val_loss": 2.2 / (1 + 0.5 * steps),
                "val_accuracy": np.linspace(0.1, 0.7, 20)},
  }


def test_training_plot_has_loss_accuracy_and_lr_panels(tmp_path):
  path = tmp_path / "train.png"
  fig = plotting.plot_training(_histories(), path=path)
  assert _is_png(path)
  loss_ax, acc_ax, lr_ax = fig.axes
  assert set(_lines(loss_ax)) == {"CLR:loss", "fixed:loss", "fixed:val_loss"}
  acc = _lines(acc_ax)
  np.testing.assert_array_equal(acc["CLR:val_accuracy"].get_xdata(), [9, 19])
  assert len(acc["fixed:val_accuracy"].get_xdata()) == 20
  assert set(_lines(lr_ax)) == {"CLR:lr"}
  # One colour per run across panels.
  assert (_lines(loss_ax)["CLR:loss"].get_color()
          == acc["CLR:val_accuracy"].get_color())


def test_training_plot_tolerates_nan_and_missing_panels():
  fig = plotting.plot_training(
      {"run": {"loss": [1.0, 0.5, np.nan, np.inf]}})
  (ax,) = fig.axes
  y = _lines(ax)["run:loss"].get_ydata()
  assert np.isnan(y[2]) and np.isnan(y[3])
  np.testing.assert_array_equal(_lines(ax)["run:loss"].get_xdata(),
                                [0, 1, 2, 3])


def test_training_plot_rejects_validation_metrics_without_their_steps():
  bad = {"run": {"step": np.arange(10), "loss": np.ones(10),
                 "val_accuracy": [0.1, 0.2]}}
  with pytest.raises(ValueError, match="val_step"):
    plotting.plot_training(bad)
  with pytest.raises(ValueError, match="at least one"):
    plotting.plot_training({})
  with pytest.raises(ValueError, match="no run records"):
    plotting.plot_training({"run": {"step": [0, 1]}})


def test_suggestions_of_none_are_not_drawn():
  r = RangeTestResult(LRS, np.ones(61), np.ones(61), "completed")
  s = r.suggest()
  assert s.steepest.lr is None and s.base_lr is None
  assert isinstance(s, sg.Suggestions)
  assert set(_lines(plotting.plot_range_test(r))) == {"raw_loss",
                                                      "smoothed_loss"}
