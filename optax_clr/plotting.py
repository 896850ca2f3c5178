"""Plots of range tests, sweeps, schedules and training runs.

Figures are built on :class:`matplotlib.figure.Figure` with the
object-oriented API, never through ``pyplot``: no GUI backend or global
figure state is involved, so the functions work headless and in threads.
matplotlib is imported inside the functions; jax only by
:func:`plot_schedules`. Every function returns the ``Figure`` (and saves it
to ``path`` as PNG when given).

Plots explain themselves: every marker's legend label says what the value is
(``"minimum 0.22 -> minimum/10 = 0.022"``), markers that coincide share one
label instead of hiding each other, sweeps mark the best fixed LR, the stable
range and every unstable run by its status, the bounds a run actually used
can be drawn (``bounds=``), every figure has a title, the loss axis is
logarithmic when the loss spans more than a decade (``log_loss=``), and
legends sit outside the axes.

Artists carry a ``gid`` naming what they show (``"raw_loss"``,
``"smoothed_loss"``, ``"accuracy"``, ``"suggestion:steepest"``,
``"bound:base_lr"``, ``"best_lr"``, ``"stable_range"``, ``"status:spiked"``,
...), so callers and tests can find them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

_PathLike = str | os.PathLike[str] | None
# Loss suggestions, largest marker first so that coinciding ones stay
# visible (and share one label).
_POINTS = (
    ("valley", dict(marker="o", color="tab:green", markersize=11)),
    ("minimum", dict(marker="s", color="tab:purple", markersize=9)),
    ("steepest", dict(marker="v", color="tab:red", markersize=7)),
)
_STATUS_STYLE = {
    "stalled": dict(marker="s", color="0.5"),
    "spiked": dict(marker="^", color="tab:orange"),
    "diverged": dict(marker="x", color="red"),
    "nonfinite": dict(marker="x", color="darkred"),
}
# Markers closer than this (in decades of LR) count as the same point.
_SAME_POINT = 0.02


def _figure(figsize: tuple[float, float]) -> Any:
  from matplotlib.figure import Figure
  return Figure(figsize=figsize, layout="constrained")


def _axes(ax: Any, figsize: tuple[float, float] = (8.5, 4.5)
          ) -> tuple[Any, Any]:
  if ax is None:
    fig = _figure(figsize)
    ax = fig.add_subplot()
  return ax.figure, ax


def _save(fig: Any, path: _PathLike) -> None:
  if path is not None:
    from optax_clr import _serialize
    with _serialize.atomic_open(path, "wb") as f:
      fig.savefig(f, dpi=100, format="png")


def _finite_or_nan(x: Any) -> np.ndarray:
  x = np.array(x, dtype=np.float64)
  x[~np.isfinite(x)] = np.nan
  return x


def _log_wanted(values: np.ndarray, log_loss: bool | None) -> bool:
  """Log scale when asked, or (None) when the positive loss spans more than
  a decade."""
  if log_loss is not None:
    return bool(log_loss)
  v = values[np.isfinite(values)]
  return bool(v.size and v.min() > 0 and v.max() / v.min() > 10.0)


def _legend(ax: Any, *extra_axes: Any) -> None:
  """One legend for the axes (and twins), outside, right of the data (and
  right of a twin axis's labels)."""
  handles, labels = ax.get_legend_handles_labels()
  twins = [other for other in extra_axes if other is not None]
  for other in twins:
    h, lab = other.get_legend_handles_labels()
    handles, labels = handles + h, labels + lab
  if handles:
    ax.legend(handles, labels, loc="upper left",
              bbox_to_anchor=(1.16 if twins else 1.02, 1.0),
              fontsize="small", borderaxespad=0.0)


def _limit_y(ax: Any, curve: np.ndarray, log: bool) -> None:
  """Y range from the start of the curve down to its minimum, plus a margin
  (a range test ends with the loss shooting up: scaling to that tail would
  squash the part that matters)."""
  finite = curve[np.isfinite(curve)]
  if finite.size < 2:
    return
  lo, hi, first = finite.min(), finite.max(), finite[0]
  if first > lo:
    hi = min(hi, first + (first - lo))
  if log and lo > 0:
    ax.set_ylim(lo / 1.2, hi * 1.2)
  elif hi > lo:
    span = hi - lo
    ax.set_ylim(lo - 0.05 * span, hi + 0.05 * span)


def _point_label(name: str, s: Any, lrs: np.ndarray) -> str:
  if name == "minimum" and s.index is not None:
    at = float(lrs[s.index])
    return f"minimum {at:.2g} -> minimum/10 = {s.lr:.2g}"
  return f"{name} {s.lr:.2g}"


def _mark_points(ax: Any, lrs: np.ndarray, curve: np.ndarray,
                 sugg: Any) -> None:
  """Markers on the curve at the loss suggestions, where they were read."""
  keep = np.isfinite(curve)
  if not keep.any():
    return
  log_lrs, ys = np.log10(lrs[keep]), curve[keep]
  points = []
  for name, style in _POINTS:
    s = getattr(sugg, name, None)
    if s is None or s.lr is None or s.index is None:
      continue
    at = float(lrs[s.index])  # minimum: its marker sits at the minimum
    points.append((name, s, at, style))
  done: set[str] = set()
  for name, s, at, style in points:
    same = [p for p in points if abs(np.log10(p[2]) - np.log10(at))
            < _SAME_POINT]
    label = " = ".join(_point_label(p[0], p[1], lrs) for p in same)
    gid = "+".join(p[0] for p in same)
    y = float(np.interp(np.log10(at), log_lrs, ys))
    ax.plot([at], [y], linestyle="none", zorder=5, markeredgecolor="k",
            label=None if gid in done else label,
            gid=f"suggestion:{name}", **style)
    done.add(gid)


def _mark_bounds(ax: Any, base: float | None, top: float | None,
                 used: bool) -> None:
  what = "used" if used else "suggested"
  for name, lr, style in (("base_lr", base, ":"), ("max_lr", top, "--")):
    if lr is not None:
      ax.axvline(lr, color="0.3", linestyle=style, linewidth=1.3,
                 label=f"CLR {name} ({what}) {lr:.2g}", gid=f"bound:{name}")


def _accuracy_twin(ax: Any, lrs: np.ndarray, acc: Any, label: str) -> Any:
  twin = ax.twinx()
  twin.plot(lrs, _finite_or_nan(acc), color="tab:orange", marker=".",
            label=label, gid="accuracy")
  twin.set_ylabel("validation accuracy", color="tab:orange")
  # A twin is drawn over its host; lifting the host (with a transparent
  # background) keeps the loss curves above the accuracy.
  ax.set_zorder(twin.get_zorder() + 1)
  ax.patch.set_visible(False)
  return twin


def _suggestions(result: Any, suggestions: Any) -> Any:
  """``True`` -> ``result.suggest()``; a suggestion set is used as is."""
  if suggestions is True:
    return result.suggest()
  return suggestions or None


def plot_range_test(result: Any, ax: Any = None, *, suggestions: Any = True,
                    bounds: tuple[float, float] | None = None,
                    log_loss: bool | None = None,
                    path: _PathLike = None) -> Any:
  """Loss vs LR (log x) of a :class:`~optax_clr.RangeTestResult`.

  Draws the raw loss (faint) and the smoothed loss (bold); the validation
  accuracy on a twin axis when evaluated; the steepest, minimum and valley
  suggestions as markers where they were read; the CLR bounds (the
  suggested ones, or ``bounds`` -- e.g. those a run was trained with -- as
  "used"); a red line at the last LR when the test diverged.

  Args:
    result: a RangeTestResult.
    ax: Axes to draw on; a new Figure is made when None.
    suggestions: True to mark ``result.suggest()``, a precomputed
      suggestion set, or False for none.
    bounds: ``(base_lr, max_lr)`` to draw instead of the suggested ones.
    log_loss: log-scale loss axis; None: when the loss spans a decade.
    path: if given, the figure is saved there as PNG.

  Returns:
    The Figure.
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
  log = _log_wanted(smoothed, log_loss)
  if log:
    ax.set_yscale("log")
  ax.set_xlabel("learning rate")
  ax.set_ylabel("training loss")
  _limit_y(ax, smoothed, log)
  sugg = _suggestions(result, suggestions)
  if sugg is not None:
    _mark_points(ax, lrs, smoothed, sugg)
  if bounds is not None:
    _mark_bounds(ax, bounds[0], bounds[1], used=True)
  elif sugg is not None:
    _mark_bounds(ax, sugg.base_lr, sugg.max_lr, used=False)
  if result.diverged and lrs.size:
    ax.axvline(lrs[-1], color="red", linewidth=1.2,
               label=f"{result.stop_reason} at {lrs[-1]:.2g}", gid="diverged")
  twin = None
  acc = result.eval_metrics.get("accuracy")
  if acc is not None and len(acc):
    twin = _accuracy_twin(ax, np.asarray(result.eval_lrs), acc,
                          "val accuracy")
  _legend(ax, twin)
  ax.set_title(f"LR range test: {result.num_steps} steps, "
               f"{result.stop_reason}")
  _save(fig, path)
  return fig


def plot_multi_seed(result: Any, ax: Any = None, *, suggestions: Any = True,
                    log_loss: bool | None = None,
                    path: _PathLike = None) -> Any:
  """The smoothed loss of S seeds: median curve, band from the lowest to
  the highest seed, and the median suggestions with their spread.

  Returns:
    The Figure.
  """
  fig, ax = _axes(ax)
  lrs = np.asarray(result.lrs, dtype=np.float64)
  curves = _finite_or_nan(result.smoothed_losses)
  curves[~np.isfinite(np.asarray(result.losses))] = np.nan
  with np.errstate(all="ignore"):
    import warnings
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)
      median = np.nanmedian(curves, 0)
      lo, hi = np.nanmin(curves, 0), np.nanmax(curves, 0)
  ax.fill_between(lrs, lo, hi, color="tab:blue", alpha=0.2,
                  label=f"seeds' range ({result.num_seeds} seeds)",
                  gid="seed_band")
  ax.plot(lrs, median, color="tab:blue", linewidth=2.0,
          label="median smoothed loss", gid="median_loss")
  ax.set_xscale("log")
  log = _log_wanted(median, log_loss)
  if log:
    ax.set_yscale("log")
  _limit_y(ax, median, log)
  sugg = _suggestions(result, suggestions)
  if sugg is not None:
    for name, spread in sugg.spreads.items():
      if name in ("base_lr", "max_lr") and spread.median is not None:
        ax.axvspan(spread.low, spread.high, color="0.5", alpha=0.12,
                   gid=f"spread:{name}")
    _mark_bounds(ax, sugg.base_lr, sugg.max_lr, used=False)
  ax.set_xlabel("learning rate")
  ax.set_ylabel("training loss")
  _legend(ax)
  ax.set_title(f"LR range test over {result.num_seeds} seeds: median and "
               "spread")
  _save(fig, path)
  return fig


def plot_sweep(result: Any, ax: Any = None, *, suggestions: Any = True,
               bounds: tuple[float, float] | None = None,
               log_loss: bool | None = None, path: _PathLike = None) -> Any:
  """Final windowed loss vs LR (log x) of a ParallelSweepResult.

  Stable runs are joined by a line; every unstable run gets a marker of its
  status (stalled, spiked, diverged, non-finite: at the top of the axes).
  The best fixed LR is a star, the stable range a shaded band, the CLR
  bounds vertical lines (suggested, or ``bounds`` as "used"); validation
  accuracy goes on a twin axis.

  Returns:
    The Figure.
  """
  fig, ax = _axes(ax)
  lrs = np.asarray(result.lrs, dtype=np.float64)
  status = np.asarray(result.status)
  stable = status == "trained"
  mean = _finite_or_nan(result.mean_loss)
  ax.plot(lrs[stable], mean[stable], color="tab:blue", linewidth=2.0,
          marker="o", label="final mean loss (stable runs)", gid="mean_loss")
  # The y-range is that of the stable runs; an unstable run far outside it
  # (a loss of 1e25) sits at the top of the axes instead of squashing it.
  shown = mean[stable & np.isfinite(mean)]
  ceiling = (shown.max() + (shown.max() - shown.min()) if shown.size
             else np.inf)
  for name, style in _STATUS_STYLE.items():
    hit = status == name
    if not hit.any():
      continue
    y = mean[hit]
    top = ~np.isfinite(y) | (y > ceiling)
    if (~top).any():
      ax.plot(lrs[hit][~top], y[~top], linestyle="none", markersize=9,
              label=f"{name} ({int(hit.sum())})", gid=f"status:{name}",
              **style)
    if top.any():  # data x, axes y: the marks sit at the top
      ax.plot(lrs[hit][top], np.full(int(top.sum()), 0.95),
              transform=ax.get_xaxis_transform(), linestyle="none",
              markersize=9, label=None if (~top).any() else
              f"{name} ({int(hit.sum())})", gid=f"status:{name}", **style)
  ax.set_xscale("log")
  if _log_wanted(mean[stable], log_loss):
    ax.set_yscale("log")
  if shown.size and np.isfinite(ceiling) and shown.max() > shown.min():
    lo, hi = shown.min(), ceiling
    pad = 0.05 * (hi - lo)
    ax.set_ylim(max(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad)
  ax.set_xlabel("learning rate")
  ax.set_ylabel("training loss (last steps' mean)")
  sugg = _suggestions(result, suggestions)
  if sugg is not None and sugg.best.lr is not None:
    i = sugg.best.index
    ax.plot([sugg.best.lr], [mean[i]], linestyle="none", marker="*",
            markersize=16, color="gold", markeredgecolor="k", zorder=6,
            label=f"best fixed LR {sugg.best.lr:.2g}", gid="best_lr")
    ax.axvspan(sugg.stable_low, sugg.stable_high, color="tab:green",
               alpha=0.08, label=f"stable range {sugg.stable_low:.2g} - "
               f"{sugg.stable_high:.2g}", gid="stable_range")
  if bounds is not None:
    _mark_bounds(ax, bounds[0], bounds[1], used=True)
  elif sugg is not None:
    _mark_bounds(ax, sugg.base_lr, sugg.max_lr, used=False)
  twin = None
  acc = result.eval_metrics.get("accuracy")
  if acc is not None and len(acc):
    twin = _accuracy_twin(ax, lrs, acc, "val accuracy")
  _legend(ax, twin)
  ax.set_title(f"LR sweep: {lrs.size} LRs x {result.num_steps} steps, "
               f"{int(stable.sum())} stable")
  _save(fig, path)
  return fig


def evaluate_schedule(fn: Callable[[Any], Any], num_steps: int
                      ) -> np.ndarray:
  """``[fn(0), ..., fn(num_steps - 1)]`` as float64 (vmapped over int32
  steps; a Python loop for functions that do not trace)."""
  try:
    import jax
    import jax.numpy as jnp
    values = np.asarray(jax.vmap(fn)(jnp.arange(num_steps)),
                        dtype=np.float64)
    if values.shape == (num_steps,):
      return values
  except Exception:  # noqa: BLE001 -- any failure to trace means "loop"
    pass
  return np.array([float(np.asarray(fn(i))) for i in range(num_steps)])


def _constant(value: Any) -> Callable[[Any], Any]:
  return lambda t: np.full(np.shape(t), float(value))


def plot_schedules(schedules: Mapping[str, Any], num_steps: int, *,
                   momentum: Mapping[str, Any] | None = None,
                   title: str | None = None, path: _PathLike = None) -> Any:
  """Learning-rate schedules (and momentum schedules) over steps.

  All LR schedules are overlaid in one panel, labelled by name; momentum
  schedules, if given, in a second panel below sharing the step axis. A
  number stands for a constant schedule.

  Args:
    schedules: name -> schedule (step -> LR) or constant.
    num_steps: number of steps to draw, from 0.
    momentum: optional name -> momentum schedule or constant.
    title: the figure's title (default: "learning-rate schedules").
    path: if given, the figure is saved there as PNG.

  Returns:
    The Figure.
  """
  from optax_clr import _checks
  num_steps = _checks.check_int("num_steps", num_steps, low=1)
  if not schedules:
    raise ValueError("schedules must name at least one schedule")
  as_fn = lambda f: f if callable(f) else _constant(  # noqa: E731
      _checks.check_number("schedule value", f, dtype=None))
  schedules = {k: as_fn(v) for k, v in schedules.items()}
  momentum = {k: as_fn(v) for k, v in (momentum or {}).items()}
  rows = 2 if momentum else 1
  fig = _figure((8.5, 3.0 * rows + 0.6))
  axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
  steps = np.arange(num_steps)
  panels = [(axes[0], schedules, "learning rate")]
  if momentum:
    panels.append((axes[1], momentum, "momentum"))
  for ax, fns, ylabel in panels:
    for name, fn in fns.items():
      ax.plot(steps, evaluate_schedule(fn, num_steps), label=name, gid=name)
    ax.set_ylabel(ylabel)
    _legend(ax)
  axes[-1].set_xlabel("step")
  fig.suptitle(title or "learning-rate schedules")
  _save(fig, path)
  return fig


_TRAINING_PANELS = (
    ("loss", "loss"),
    ("val_accuracy", "validation accuracy"),
    ("lr", "learning rate"),
    ("momentum", "momentum"),
)


def history_arrays(history: Any) -> dict[str, np.ndarray]:
  """A :class:`~optax_clr.TrainHistory` as the arrays
  :func:`plot_training` draws (a mapping is returned as it is)."""
  if isinstance(history, Mapping):
    return dict(history)
  out = {"step": np.asarray(history.steps),
         "loss": np.asarray(history.losses), "lr": np.asarray(history.lrs)}
  if np.isfinite(np.asarray(history.momenta)).any():
    out["momentum"] = np.asarray(history.momenta)
  if len(history.eval_steps):
    out["val_step"] = np.asarray(history.eval_steps)
    for name, values in history.eval_metrics.items():
      out[f"val_{name}"] = np.asarray(values)
  return out


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


def plot_training(histories: Mapping[str, Any], *,
                  log_loss: bool | None = None, title: str | None = None,
                  path: _PathLike = None) -> Any:
  """Training curves of several runs, e.g. a CLR run against a fixed LR.

  One panel per quantity any run records, in this order: ``loss`` (with
  ``val_loss`` dashed in the same colour), ``val_accuracy``, ``lr``,
  ``momentum``; each run keeps one colour across panels. The loss axis is
  logarithmic when the loss spans more than a decade (``log_loss``).

  Args:
    histories: run name -> a :class:`~optax_clr.TrainHistory`, or a mapping
      ``{"step": [n], "loss": [n], "val_accuracy": ..., "val_step": ...,
      "lr": [n], ...}``.
    log_loss: log-scale loss panel; None: when the loss spans a decade.
    title: the figure's title (default: "training").
    path: if given, the figure is saved there as PNG.

  Returns:
    The Figure.
  """
  if not histories:
    raise ValueError("histories must hold at least one run")
  runs = {}
  for name, run in histories.items():
    if not isinstance(run, Mapping) and not hasattr(run, "losses"):
      raise TypeError(
          f"histories[{name!r}] must be a TrainHistory or a mapping of name "
          f"-> array, got {type(run).__name__}")
    runs[name] = history_arrays(run)
  present = lambda k: any(k in run for run in runs.values())  # noqa: E731
  panels = [(k, label) for k, label in _TRAINING_PANELS
            if present(k) or (k == "loss" and present("val_loss"))]
  if not panels:
    raise ValueError(
        "no run records any of "
        + ", ".join(k for k, _ in _TRAINING_PANELS) + " or val_loss")
  fig = _figure((8.5, 2.6 * len(panels) + 0.6))
  axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
  colors = [f"C{i % 10}" for i in range(len(runs))]
  for ax, (key, label) in zip(axes, panels):
    drawn = []
    for color, (name, run) in zip(colors, runs.items()):
      series = [(key, "-", name)]
      if key == "loss":
        series.append(("val_loss", "--", f"{name} (val)"))
      for k, style, line_label in series:
        if k not in run:
          continue
        y = _finite_or_nan(run[k])
        drawn.append(y)
        ax.plot(_x_for(name, run, k, y.size), y, linestyle=style,
                color=color, label=line_label, gid=f"{name}:{k}")
    if key == "loss" and drawn and _log_wanted(np.concatenate(drawn),
                                               log_loss):
      ax.set_yscale("log")
    ax.set_ylabel(label)
    _legend(ax)
  axes[-1].set_xlabel("step")
  fig.suptitle(title or "training")
  _save(fig, path)
  return fig


def plot_grid(result: Any, ax: Any = None, *,
              names: tuple[str, ...] | None = None, metric: str | None = None,
              path: _PathLike = None) -> Any:
  """A :class:`~optax_clr.GridSweepResult`: a heat map over two swept names
  (log-spaced values shown by their ticks), a line over one.

  Unstable runs (diverged, spiked, stalled) are blank; the best run is
  marked with a star.

  Args:
    result: a GridSweepResult whose runs form a full grid of ``names``.
    ax: Axes to draw on; a new Figure is made when None.
    names: the one or two names to draw (default: the first two swept).
    metric: see :meth:`~optax_clr.GridSweepResult.grid` (default: the
      score: validation accuracy, else validation loss, else train loss).
    path: if given, the figure is saved there as PNG.

  Returns:
    The Figure.
  """
  names = tuple(names or result.names[:2])
  if len(names) not in (1, 2):
    raise ValueError(f"names must be one or two swept names, got {names}")
  axes, values = result.grid(*names, metric=metric)
  score_name = metric or result.score()[1]
  fig, ax = _axes(ax)
  best = result.best()
  if len(names) == 1:
    ax.plot(axes[0], values, marker="o", gid="grid_line",
            label=score_name)
    ax.set_xscale("log" if axes[0].min() > 0 else "linear")
    ax.set_xlabel(names[0])
    ax.set_ylabel(score_name)
    if best is not None:
      i = int(np.searchsorted(axes[0], best[names[0]]))
      ax.plot([axes[0][i]], [values[i]], "*", color="gold", markersize=16,
              markeredgecolor="k", gid="best", label="best")
    _legend(ax)
  else:
    image = ax.imshow(values.T, origin="lower", aspect="auto",
                      cmap="viridis", gid="heat_map")
    ax.set_xticks(range(axes[0].size), [f"{v:.2g}" for v in axes[0]],
                  rotation=45)
    ax.set_yticks(range(axes[1].size), [f"{v:.2g}" for v in axes[1]])
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    fig.colorbar(image, ax=ax, label=score_name)
    for (i, j), v in np.ndenumerate(values):
      if np.isfinite(v):
        ax.text(i, j, f"{v:.3g}", ha="center", va="center", fontsize=7,
                color="w")
    if best is not None:
      i = int(np.searchsorted(axes[0], best[names[0]]))
      j = int(np.searchsorted(axes[1], best[names[1]]))
      ax.plot([i], [j], "*", color="gold", markersize=18,
              markeredgecolor="k", gid="best")
  ax.set_title(f"sweep: {score_name} over {' x '.join(names)} "
               f"({int(result.stable.sum())} of {result.num_configs} stable)")
  _save(fig, path)
  return fig
