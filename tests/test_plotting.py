"""Specification of the plots (optax_clr.plotting): the artists they draw,
their labels and positions (never pixels)."""

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


def _legend_texts(ax):
  legend = ax.get_legend()
  return [t.get_text() for t in legend.get_texts()] if legend else []


def _range_result(accuracy=True, **overrides):
  raw = SMOOTH + np.random.default_rng(0).normal(0.0, 0.1, LRS.size)
  raw[-1] = np.inf
  smooth = SMOOTH.copy()
  smooth[-1] = np.nan
  # 10 steps per decade: resolved for an EMA of factor 0.3 (a lag of 3
  # steps), as the rule book requires.
  kw = dict(lrs=LRS, losses=raw, smoothed_losses=smooth,
            stop_reason="diverged", config={"smoothing": 0.3})
  if accuracy:
    kw.update(eval_steps=[0, 10, 20, 30, 40, 50],
              eval_lrs=LRS[[0, 10, 20, 30, 40, 50]],
              eval_metrics={"accuracy": [0.1, 0.1, 0.3, 0.7, 0.9, 0.9]})
  kw.update(overrides)
  return RangeTestResult(**kw)


def _sweep_result(accuracy=True, unstable=True):
  k = 8
  mean = np.array([2.9, 2.0, 1.0, 0.5, 0.4, 0.6, 50.0, np.nan])
  losses = np.tile(np.linspace(3.0, 1.0, 4), (k, 1))
  losses[:, -1] = mean
  div = np.zeros(k, bool)
  if unstable:
    div[6:] = True
    losses[7, 2:] = np.nan
  else:
    mean[6:] = [0.9, 1.5]
    losses[6:, -1] = mean[6:]
  return ParallelSweepResult(
      lrs=np.logspace(-4, 0, k), losses=losses, final_loss=mean,
      mean_loss=mean, diverged=div,
      diverged_at=np.where(div, np.array([0] * 6 + [3, 2]), -1),
      eval_metrics=({"accuracy": np.linspace(0.1, 0.9, k)} if accuracy
                    else {}))


# --- plot_range_test -------------------------------------------------------------


def test_range_plot_draws_losses_suggestions_divergence_and_accuracy(tmp_path):
  path = tmp_path / "range.png"
  fig = plotting.plot_range_test(_range_result(), path=path)
  assert isinstance(fig, Figure) and _is_png(path)
  ax = fig.axes[0]
  lines = _lines(ax)
  assert set(lines) == {
      "raw_loss", "smoothed_loss", "suggestion:steepest",
      "suggestion:minimum", "suggestion:valley", "bound:base_lr",
      "bound:max_lr", "diverged"}
  assert ax.get_xscale() == "log"
  # The steepest marker sits on the smoothed curve at lr 1e-3.
  x, y = lines["suggestion:steepest"].get_data()
  assert x[0] == pytest.approx(1e-3) and y[0] == pytest.approx(SMOOTH[30])
  assert lines["diverged"].get_xdata()[0] == LRS[-1]
  acc = _lines(fig.axes[-1])["accuracy"]
  np.testing.assert_array_equal(acc.get_ydata(), [.1, .1, .3, .7, .9, .9])
  assert "LR range test" in ax.get_title()


def test_minimum_marker_sits_at_the_minimum_and_says_it_is_divided():
  fig = plotting.plot_range_test(_range_result())
  ax = fig.axes[0]
  x, _ = _lines(ax)["suggestion:minimum"].get_data()
  assert x[0] == pytest.approx(0.1)  # the minimum itself (index 50)
  label = next(t for t in _legend_texts(ax) if t.startswith("minimum"))
  assert label == "minimum 0.1 -> minimum/10 = 0.01"


def test_coinciding_markers_share_one_label_and_stay_visible():
  # Steepest and valley at the same point: both drawn (valley larger, under
  # steepest), one combined legend entry.
  s = sg.Suggestions(
      steepest=sg.Suggestion("steepest", LRS[30], 30, "log_lr"),
      minimum=sg.Suggestion("minimum", LRS[50] / 10, 50, "none"),
      valley=sg.Suggestion("valley", LRS[30], 30, "index"),
      accuracy_base=None, accuracy_max=None, base_lr=None, max_lr=None,
      rule="test")
  fig = plotting.plot_range_test(_range_result(accuracy=False),
                                 suggestions=s)
  ax = fig.axes[0]
  lines = _lines(ax)
  valley, steep = lines["suggestion:valley"], lines["suggestion:steepest"]
  assert valley.get_xdata()[0] == steep.get_xdata()[0]
  assert valley.get_markersize() > steep.get_markersize()
  texts = _legend_texts(ax)
  assert "valley 0.001 = steepest 0.001" in texts
  assert not any(t.startswith("steepest") for t in texts)


def test_range_plot_draws_the_bounds_a_run_used():
  fig = plotting.plot_range_test(_range_result(), bounds=(0.002, 0.05))
  lines = _lines(fig.axes[0])
  assert lines["bound:base_lr"].get_xdata()[0] == 0.002
  assert lines["bound:max_lr"].get_xdata()[0] == 0.05
  assert "CLR max_lr (used) 0.05" in _legend_texts(fig.axes[0])


def test_legend_sits_outside_the_data():
  fig = plotting.plot_range_test(_range_result())
  legend = fig.axes[0].get_legend()
  assert legend.get_bbox_to_anchor().transformed(
      fig.axes[0].transAxes.inverted()).x0 > 1.0


def test_loss_axis_is_logarithmic_when_the_loss_spans_a_decade():
  loss = np.geomspace(10.0, 0.01, 61)
  r = RangeTestResult(LRS, loss, loss, "completed")
  assert plotting.plot_range_test(r, suggestions=False).axes[
      0].get_yscale() == "log"
  assert plotting.plot_range_test(r, suggestions=False,
                                  log_loss=False).axes[0].get_yscale() == (
                                      "linear")
  assert plotting.plot_range_test(_range_result(), suggestions=False).axes[
      0].get_yscale() == "linear"


def test_range_plot_leaves_gaps_for_nonfinite_losses():
  ax = plotting.plot_range_test(_range_result(), suggestions=False).axes[0]
  raw = _lines(ax)["raw_loss"].get_ydata()
  assert np.isnan(raw[-1]) and np.all(np.isfinite(raw[:-1]))
  assert np.isnan(_lines(ax)["smoothed_loss"].get_ydata()[-1])


def test_range_plot_without_accuracy_or_suggestions(tmp_path):
  r = _range_result(accuracy=False, stop_reason="completed",
                    losses=SMOOTH, smoothed_losses=SMOOTH)
  fig = plotting.plot_range_test(r, suggestions=False,
                                 path=tmp_path / "a.png")
  assert _is_png(tmp_path / "a.png")
  assert set(_lines(fig.axes[0])) == {"raw_loss", "smoothed_loss"}
  assert len(fig.axes) == 1


def test_range_plot_uses_precomputed_suggestions():
  r = _range_result()
  s = r.suggest(factor=3.0)
  ax = plotting.plot_range_test(r, suggestions=s).axes[0]
  label = next(t for t in _legend_texts(ax) if t.startswith("minimum"))
  assert label.endswith("minimum/10 = 0.033") or "0.033" in label


def test_range_plot_of_a_curve_too_short_for_suggestions(tmp_path):
  r = RangeTestResult(LRS[:2], [2.0, np.nan], [2.0, np.nan], "nonfinite")
  fig = plotting.plot_range_test(r, path=tmp_path / "short.png")
  assert _is_png(tmp_path / "short.png")
  assert set(_lines(fig.axes[0])) == {"raw_loss", "smoothed_loss", "diverged"}


def test_range_plot_draws_on_a_given_axes():
  fig = Figure()
  ax = fig.add_subplot()
  assert plotting.plot_range_test(_range_result(), ax) is fig
  assert "raw_loss" in _lines(ax)


def test_range_result_plot_delegates(tmp_path):
  fig = _range_result().plot(path=tmp_path / "r.png", suggestions=False)
  assert _is_png(tmp_path / "r.png")
  assert "suggestion:valley" not in _lines(fig.axes[0])


def test_range_plot_y_range_ignores_the_divergent_tail():
  loss = SMOOTH.copy()
  loss[-3:] = [10.0, 100.0, 1000.0]
  r = RangeTestResult(LRS, loss, loss, "diverged")
  lo, hi = plotting.plot_range_test(r, suggestions=False,
                                    log_loss=False).axes[0].get_ylim()
  # start ~4, minimum ~2: the top stays near start + (start - min) = 6.
  assert hi < 7 and lo < 2


# --- plot_sweep --------------------------------------------------------------------


def test_sweep_plot_marks_best_lr_stable_range_and_unstable_runs(tmp_path):
  path = tmp_path / "sweep.png"
  r = _sweep_result()
  fig = plotting.plot_sweep(r, path=path)
  assert _is_png(path)
  ax = fig.axes[0]
  lines = _lines(ax)
  assert {"mean_loss", "status:diverged", "status:nonfinite", "best_lr",
          "bound:base_lr", "bound:max_lr"} <= set(lines)
  s = r.suggest()
  assert lines["best_lr"].get_xdata()[0] == s.best.lr
  np.testing.assert_array_equal(lines["status:diverged"].get_xdata(),
                                r.lrs[6:7])
  np.testing.assert_array_equal(lines["status:nonfinite"].get_xdata(),
                                r.lrs[7:])
  # Unstable runs are not part of the loss line (50.0 would squash it).
  np.testing.assert_array_equal(lines["mean_loss"].get_xdata(),
                                r.lrs[r.stable])
  spans = [p for p in ax.patches if p.get_gid() == "stable_range"]
  assert len(spans) == 1
  assert any(t.startswith("best fixed LR") for t in _legend_texts(ax))
  assert "accuracy" in _lines(fig.axes[-1])
  assert "stable" in ax.get_title()


def test_sweep_plot_on_a_log_axis_pads_by_a_factor(recwarn):
  k = 8
  mean = np.array([5.0, 2.0, 1.0, 0.5, 0.2, 0.3, 0.6, 0.9])  # 25x: log
  losses = np.tile(np.linspace(6.0, 1.0, 4), (k, 1))
  losses[:, -1] = mean
  r = ParallelSweepResult(lrs=np.logspace(-4, 0, k), losses=losses,
                          final_loss=mean, mean_loss=mean,
                          diverged=np.zeros(k, bool),
                          diverged_at=np.full(k, -1))
  ax = plotting.plot_sweep(r, suggestions=False).axes[0]
  lo, hi = ax.get_ylim()
  assert ax.get_yscale() == "log"
  assert 0.2 / 1.2 < lo < 0.2 and hi > 0.9
  assert not [w for w in recwarn if "non-positive ylim" in str(w.message)]


def test_sweep_plot_without_instability_or_accuracy():
  fig = _sweep_result(accuracy=False, unstable=False).plot(suggestions=False)
  assert set(_lines(fig.axes[0])) == {"mean_loss"}
  assert len(fig.axes) == 1


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
  assert fig.get_suptitle() == "learning-rate schedules"


def test_schedules_plot_has_one_panel_without_momentum_and_takes_constants():
  fig = plotting.plot_schedules({"c": 0.1}, 4, title="constant")
  assert len(fig.axes) == 1
  np.testing.assert_allclose(_lines(fig.axes[0])["c"].get_ydata(), [0.1] * 4)
  assert fig.get_suptitle() == "constant"


def test_schedules_plot_validates_arguments():
  with pytest.raises(ValueError, match="num_steps"):
    plotting.plot_schedules({"c": lambda t: t}, 0)
  with pytest.raises(ValueError, match="at least one"):
    plotting.plot_schedules({}, 10)
  with pytest.raises(TypeError, match="schedule value"):
    plotting.plot_schedules({"c": "fast"}, 10)


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
  fig = plotting.plot_training(_histories(), path=path, title="runs")
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
  # The loss falls from 2.0 to 0.1: more than a decade, so a log axis.
  assert loss_ax.get_yscale() == "log"
  assert fig.get_suptitle() == "runs"


def test_training_plot_takes_train_histories():
  from optax_clr.results import TrainHistory
  h = TrainHistory(steps=np.arange(4), losses=[2.0, 1.5, 1.2, 1.0],
                   lrs=[0.1] * 4, momenta=[0.9] * 4, eval_steps=[4],
                   eval_metrics={"accuracy": [0.6]}, wall_times=[1.0])
  fig = h.plot(label="clr")
  assert {"clr:loss"} == set(_lines(fig.axes[0]))
  assert fig.axes[0].get_yscale() == "linear"  # 2.0 -> 1.0: one panel, lin


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
  assert set(_lines(plotting.plot_range_test(r).axes[0])) == {
      "raw_loss", "smoothed_loss"}


def test_grid_heat_map_outlines_the_best_cell_and_keeps_its_number():
  from matplotlib.patches import Rectangle
  from optax_clr.results import GridSweepResult
  lr = np.array([0.01, 0.01, 0.1, 0.1])
  wd = np.array([0.0, 1e-4, 0.0, 1e-4])
  final = np.array([1.0, 0.9, 0.5, 0.7])  # the best: lr 0.1, wd 0
  grid = GridSweepResult(
      configs={"learning_rate": lr, "weight_decay": wd},
      losses=np.tile(np.linspace(2.3, 1.0, 5), (4, 1)), final_loss=final,
      mean_loss=final, diverged=np.zeros(4, bool),
      diverged_at=np.full(4, -1))
  ax = plotting.plot_grid(grid).axes[0]
  best = [a for a in ax.get_children() if a.get_gid() == "best"]
  assert len(best) == 1
  # An outline around cell (1, 0), not a filled marker over its number.
  assert isinstance(best[0], Rectangle) and not best[0].get_fill()
  assert best[0].get_xy() == (0.5, -0.5)
  assert (best[0].get_width(), best[0].get_height()) == (1, 1)
  numbers = {(t.get_position(), t.get_text()) for t in ax.texts}
  assert ((1, 0), "0.5") in numbers
