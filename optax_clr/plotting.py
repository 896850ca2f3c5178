"""Plots of range tests, LR sweeps, schedules and training runs.

Figures are built on :class:`matplotlib.figure.Figure` with the
object-oriented API, never through ``pyplot``: no GUI backend or global figure
state is involved, so the functions work headless and in threads. matplotlib
is imported inside the functions, so importing this module is cheap; jax is
imported only by :func:`plot_schedules`, to evaluate schedules vectorised.

Artists carry a ``gid`` naming what they show (``"raw_loss"``,
``"smoothed_loss"``, ``"accuracy"``, ``"suggestion:steepest"``,
``"clr:base_lr"``, ``"diverged"``, ...), so callers and tests can find them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

_SUGGESTION_STYLE = {
    "steepest": dict(marker="v", color="tab:red"),
    "minimum": dict(marker="s", color="tab:purple"),
    "valley": dict(marker="o", color="tab:green"),
}
_PathLike = str | os.PathLike[str] | None


def _figure(figsize: tuple[float, float]) -> Any:
  from matplotlib.figure import Figure
  return Figure(figsize=figsize, layout="constrained")


def _axes(ax: Any, figsize: tuple[float, float] = (7.0, 4.5)) -> tuple[Any,
                                                                       Any]:
  if ax is None:
    fig = _figure(figsize)
    ax = fig.add_subplot()
  return ax.figure, ax


def _save(fig: Any, path: _PathLike) -> None:
  if path is not None:
    fig.savefig(path, dpi=100, format="png")


def _finite_or_nan(x: Any) -> np.ndarray:
  x = np.array(x, dtype=np.float64)
  x[~np.isfinite(x)] = np.nan
  return x


def _resolve_suggestions(result: Any, suggestions: Any) -> Any:
  """``True`` -> ``result.suggest()``; a Suggestions object is used as is."""
  if suggestions is True:
    return result.suggest()
  if not suggestions:
    return None
  return suggestions


def _limit_y(ax: Any, curve: np.ndarray) -> None:
  """Y range from the start of the curve down to its minimum, plus a margin.

  A range test ends with the loss shooting up; scaling to that tail would
  squash the part that matters, so the top is at most the first value plus
  the drop from it to the minimum.
  """
  finite = curve[np.isfinite(curve)]
  if finite.size < 2:
    return
  lo, hi, first = finite.min(), finite.max(), finite[0]
  if first > lo:
    hi = min(hi, first + (first - lo))
  span = hi - lo
  if span > 0:
    ax.set_ylim(lo - 0.05 * span, hi + 0.05 * span)


def _mark_suggestions(ax: Any, lrs: np.ndarray, curve: np.ndarray,
                      sugg: Any) -> None:
  """Markers on ``curve`` at the loss suggestions, vlines at the CLR pair."""
  keep = np.isfinite(curve)
  log_lrs, ys = np.log10(lrs[keep]), curve[keep]
  for name, style in _SUGGESTION_STYLE.items():
    s = getattr(sugg, name)
    if s is None or s.lr is None or ys.size == 0:
      continue
    y = np.interp(np.log10(s.lr), log_lrs, ys)
    ax.plot([s.lr], [y], linestyle="none", markersize=9, zorder=5,
            label=f"{name}: {s.lr:.2g}", gid=f"suggestion:{name}", **style)
  for name, lr, style in (("base_lr", sugg.base_lr, ":"),
                          ("max_lr", sugg.max_lr, "--")):
    if lr is not None:
      ax.axvline(lr, color="0.4", linestyle=style, linewidth=1.2,
                 label=f"CLR {name}: {lr:.2g}", gid=f"clr:{name}")


def _accuracy_twin(ax: Any, lrs: np.ndarray, acc: np.ndarray,
                   label: str) -> Any:
  twin = ax.twinx()
  twin.plot(lrs, _finite_or_nan(acc), color="tab:orange", marker=".",
            label=label, gid="accuracy")
  twin.set_ylabel("validation accuracy", color="tab:orange")
  # A twin is drawn over its host; lifting the host (with a transparent
  # background) keeps the loss curves and the legend above the accuracy.
  ax.set_zorder(twin.get_zorder() + 1)
  ax.patch.set_visible(False)
  return twin


def _legend(ax: Any, twin: Any) -> None:
  handles, labels = ax.get_legend_handles_labels()
  if twin is not None:
    h, lab = twin.get_legend_handles_labels()
    handles, labels = handles + h, labels + lab
  if handles:
    ax.legend(handles, labels, loc="best", fontsize="small")


def plot_range_test(result: Any, ax: Any = None, *, suggestions: Any = True,
                    path: _PathLike = None) -> Any:
  """Loss vs LR (log x) of a :class:`~optax_clr.results.RangeTestResult`.

  Draws the raw loss (faint) and the smoothed loss (bold); the validation
  accuracy on a twin y-axis when ``result.eval_metrics`` has ``"accuracy"``;
  the steepest, minimum and valley suggestions as markers on the smoothed
  curve; the CLR ``base_lr``/``max_lr`` as vertical lines; and, when the test
  diverged, a red vertical line at the last LR. Non-finite losses leave gaps.

  Args:
    result: a RangeTestResult.
    ax: Axes to draw on; a new Figure is made when None.
    suggestions: True to mark ``result.suggest()``, a precomputed
      :class:`~optax_clr.suggestions.Suggestions`, or False for none.
    path: if given, the figure is saved there as PNG.

  Returns:
    The Axes with the loss (the accuracy twin is ``ax.figure.axes[-1]``).
  """
  fig, ax = _axes(ax)
  lrs = np.asarray(result.lrs, dtype=np.float64)
  smoothed = _finite_or_nan(result.smoothed_losses)
  smoothed[~np.isfinite(np.asarray(result.losses, dtype=np.float64))] = np.nan
  ax.plot(lrs, _finite_or_nan(result.losses), color="tab:blue", alpha=0.3,
          linewidth=1.0, label="raw loss", gid="raw_loss")
  ax.plot(lrs, smoothed, color="tab:blue", linewidth=2.0,
          label="smoothed loss", gid="smoothed_loss")
  ax.set_xscale("log")
  ax.set_xlabel("learning rate")
  ax.set_ylabel("training loss")
  _limit_y(ax, smoothed)
  sugg = _resolve_suggestions(result, suggestions)
  if sugg is not None:
    _mark_suggestions(ax, lrs, smoothed, sugg)
  if result.diverged and lrs.size:
    ax.axvline(lrs[-1], color="red", linewidth=1.2,
               label=f"{result.stop_reason} at {lrs[-1]:.2g}", gid="diverged")
  twin = None
  acc = result.eval_metrics.get("accuracy")
  if acc is not None and len(acc):
    twin = _accuracy_twin(ax, np.asarray(result.eval_lrs), acc,
                          "val accuracy")
  _legend(ax, twin)
  ax.set_title(f"LR range test ({result.num_steps} steps, "
               f"{result.stop_reason})")
  _save(fig, path)
  return ax


def plot_sweep(result: Any, ax: Any = None, *, suggestions: Any = True,
               path: _PathLike = None) -> Any:
  """Mean and final loss vs LR (log x) of a ParallelSweepResult.

  Losses are drawn for the runs that did not diverge; each diverged LR gets an
  ``x`` at the top of the axes. Validation accuracy (``eval_metrics
  ["accuracy"]``) goes on a twin y-axis; suggestions are marked on the mean
  loss as in :func:`plot_range_test`.

  Args:
    result: a :class:`~optax_clr.results.ParallelSweepResult`.
    ax: Axes to draw on; a new Figure is made when None.
    suggestions: True, a precomputed Suggestions, or False.
    path: if given, the figure is saved there as PNG.

  Returns:
    The Axes with the losses.
  """
  fig, ax = _axes(ax)
  lrs = np.asarray(result.lrs, dtype=np.float64)
  diverged = np.asarray(result.diverged, dtype=bool)
  mean = _finite_or_nan(result.mean_loss)
  final = _finite_or_nan(result.final_loss)
  mean[diverged] = np.nan
  final[diverged] = np.nan
  ax.plot(lrs, final, color="tab:blue", alpha=0.4, marker=".",
          linestyle="--", label="final loss", gid="final_loss")
  ax.plot(lrs, mean, color="tab:blue", linewidth=2.0, marker="o",
          label="mean loss", gid="mean_loss")
  if diverged.any():
    # x in data coordinates, y in axes coordinates: the marks sit at the top
    # whatever the loss scale.
    ax.plot(lrs[diverged], np.full(int(diverged.sum()), 0.95),
            transform=ax.get_xaxis_transform(), linestyle="none", marker="x",
            color="red", markersize=9, label="diverged", gid="diverged")
  ax.set_xscale("log")
  ax.set_xlabel("learning rate")
  ax.set_ylabel("training loss")
  sugg = _resolve_suggestions(result, suggestions)
  if sugg is not None:
    first = np.flatnonzero(diverged)
    curve = mean.copy()
    if first.size:
      curve[first[0]:] = np.nan  # as in ParallelSweepResult.suggest
    _mark_suggestions(ax, lrs, curve, sugg)
  twin = None
  acc = result.eval_metrics.get("accuracy")
  if acc is not None and len(acc):
    twin = _accuracy_twin(ax, lrs, acc, "val accuracy")
  _legend(ax, twin)
  ax.set_title(f"LR sweep ({lrs.size} LRs x {result.num_steps} steps)")
  _save(fig, path)
  return ax


def _evaluate(fn: Callable[[Any], Any], num_steps: int) -> np.ndarray:
  """``[fn(0), ..., fn(num_steps - 1)]`` as float64.

  Tries ``jax.vmap`` over int32 steps first (what ``optax.inject_hyperparams``
  passes); falls back to a Python loop over ints for functions that do not
  trace (Python control flow on the step, NumPy-only code).
  """
  try:
    import jax
    import jax.numpy as jnp
    values = np.asarray(jax.vmap(fn)(jnp.arange(num_steps)), dtype=np.float64)
    if values.shape == (num_steps,):
      return values
  except Exception:  # noqa: BLE001 -- any failure to trace means "loop"
    pass
  return np.array([float(np.asarray(fn(i))) for i in range(num_steps)])


def plot_schedules(schedules: Mapping[str, Callable[[Any], Any]],
                   num_steps: int, *,
                   momentum: Mapping[str, Callable[[Any], Any]] | None = None,
                   path: _PathLike = None) -> Any:
  """Learning-rate schedules (and momentum schedules) over steps.

  All LR schedules are overlaid in one panel, labelled by name; momentum
  schedules, if given, in a second panel below sharing the step axis.

  Args:
    schedules: name -> schedule (step -> LR), e.g. an ``optax.Schedule``.
    num_steps: number of steps to draw, from 0.
    momentum: optional name -> momentum schedule.
    path: if given, the figure is saved there as PNG.

  Returns:
    The Figure.
  """
  from optax_clr import _checks
  num_steps = _checks.check_int("num_steps", num_steps, low=1)
  if not schedules:
    raise ValueError("schedules must name at least one schedule")
  for name, fn in {**schedules, **(momentum or {})}.items():
    _checks.check_callable(f"schedule {name!r}", fn)
  rows = 2 if momentum else 1
  fig = _figure((7.0, 3.0 * rows + 0.5))
  axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
  steps = np.arange(num_steps)
  panels = [(axes[0], schedules, "learning rate")]
  if momentum:
    panels.append((axes[1], momentum, "momentum"))
  for ax, fns, ylabel in panels:
    for name, fn in fns.items():
      ax.plot(steps, _evaluate(fn, num_steps), label=name, gid=name)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize="small")
  axes[-1].set_xlabel("step")
  _save(fig, path)
  return fig


_TRAINING_PANELS = (
    ("loss", "loss"),
    ("val_accuracy", "validation accuracy"),
    ("lr", "learning rate"),
    ("momentum", "momentum"),
)


def _x_for(name: str, run: Mapping[str, Any], key: str, n: int) -> np.ndarray:
  steps = run.get("step")
  if key.startswith("val_") and "val_step" in run:
    x = np.asarray(run["val_step"])
  elif steps is not None:
    x = np.asarray(steps)
  else:
    x = np.arange(n)
  if x.shape != (n,):
    raise ValueError(
        f"run {name!r}: {key!r} has {n} values but its steps have shape "
        f"{x.shape}; give 'val_step' for validation metrics evaluated at "
        f"other steps")
  return x


def plot_training(histories: Mapping[str, Mapping[str, Any]], *,
                  path: _PathLike = None) -> Any:
  """Training curves of several runs, e.g. a CLR run against a fixed LR.

  One panel per quantity any run records, in this order: ``loss`` (with
  ``val_loss`` dashed in the same colour), ``val_accuracy``, ``lr``,
  ``momentum``; each run keeps one colour across panels. The x-axis is
  ``step`` (default: 0, 1, ...); validation metrics use ``val_step`` when
  given, else ``step`` when they have one value per step.

  Args:
    histories: run name -> {"step": [n], "loss": [n], "val_accuracy": ...,
      "val_step": ..., "lr": [n], ...}.
    path: if given, the figure is saved there as PNG.

  Returns:
    The Figure.
  """
  if not histories:
    raise ValueError("histories must hold at least one run")
  for name, run in histories.items():
    if not isinstance(run, Mapping):
      raise TypeError(
          f"histories[{name!r}] must be a mapping of name -> array, got "
          f"{type(run).__name__}")
  present = lambda k: any(k in run for run in histories.values())  # noqa: E731
  panels = [(k, label) for k, label in _TRAINING_PANELS
            if present(k) or (k == "loss" and present("val_loss"))]
  if not panels:
    raise ValueError(
        "no run records any of "
        + ", ".join(k for k, _ in _TRAINING_PANELS) + " or val_loss")
  fig = _figure((7.0, 2.6 * len(panels) + 0.5))
  axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
  colors = [f"C{i % 10}" for i in range(len(histories))]
  for ax, (key, label) in zip(axes, panels):
    for color, (name, run) in zip(colors, histories.items()):
      series = [(key, "-", name)]
      if key == "loss":
        series.append(("val_loss", "--", f"{name} (val)"))
      for k, style, line_label in series:
        if k not in run:
          continue
        y = _finite_or_nan(run[k])
        ax.plot(_x_for(name, run, k, y.size), y, linestyle=style,
                color=color, label=line_label, gid=f"{name}:{k}")
    ax.set_ylabel(label)
    ax.legend(loc="best", fontsize="small")
  axes[-1].set_xlabel("step")
  _save(fig, path)
  return fig
