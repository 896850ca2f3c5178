"""Plots of the results: range tests (one ramp, several seeds, several
weight decays) and sweeps (loss vs LR with every run's status, grids of
hyperparameters as heat maps, batch sizes)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from optax_clr.plotting import _style


def plot_range_test(result: Any, ax: Any = None, *, suggestions: Any = True,
                    bounds: tuple[float, float] | None = None,
                    log_loss: bool | None = None,
                    path: _style.PathLike = None) -> Any:
  """Loss vs LR (log x) of a :class:`~optax_clr.RangeTestResult`.

  Draws the raw loss (faint) and the smoothed loss (bold); the validation
  accuracy on a twin axis when evaluated; the steepest, minimum and valley
  suggestions as markers where they were read; the CLR bounds (suggested,
  or ``bounds`` as "used"); a red line at the last LR when the test
  diverged.
  """
  fig, ax = _style.get_axes(ax)
  lrs = np.asarray(result.lrs, dtype=np.float64)
  smoothed = _style.trusted_smoothed(result)
  ax.plot(lrs, _style.finite_or_nan(result.losses), color="tab:blue",
          alpha=0.3, linewidth=1.0, label="raw loss", gid="raw_loss")
  ax.plot(lrs, smoothed, color="tab:blue", linewidth=2.0,
          label="smoothed loss", gid="smoothed_loss")
  _style.limit_y(ax, smoothed, _style.loss_axes(ax, smoothed, log_loss))
  sugg = _style.resolve_suggestions(result, suggestions)
  if sugg is not None:
    _style.mark_points(ax, lrs, smoothed, sugg)
  _style.mark_bounds(ax, bounds, sugg)
  if result.diverged and lrs.size:
    ax.axvline(lrs[-1], color="red", linewidth=1.2,
               label=f"{result.stop_reason} at {lrs[-1]:.2g}", gid="diverged")
  twin = _style.accuracy_twin(ax, np.asarray(result.eval_lrs),
                              result.eval_metrics.get("accuracy"))
  return _style.finish(fig, ax, f"LR range test: {result.num_steps} steps, "
                       f"{result.stop_reason}", path, twin)


def plot_multi_seed(result: Any, ax: Any = None, *, suggestions: Any = True,
                    log_loss: bool | None = None,
                    path: _style.PathLike = None) -> Any:
  """The smoothed loss of S seeds: median curve, band from the lowest to
  the highest seed, and the median suggestions with their spread."""
  fig, ax = _style.get_axes(ax)
  lrs = np.asarray(result.lrs, dtype=np.float64)
  curves = _style.trusted_smoothed(result)
  with np.errstate(all="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
    median = np.nanmedian(curves, 0)
    lo, hi = np.nanmin(curves, 0), np.nanmax(curves, 0)
  ax.fill_between(lrs, lo, hi, color="tab:blue", alpha=0.2,
                  label=f"seeds' range ({result.num_seeds} seeds)",
                  gid="seed_band")
  ax.plot(lrs, median, color="tab:blue", linewidth=2.0,
          label="median smoothed loss", gid="median_loss")
  _style.limit_y(ax, median, _style.loss_axes(ax, median, log_loss))
  sugg = _style.resolve_suggestions(result, suggestions)
  if sugg is not None:
    for name, spread in sugg.spreads.items():
      if name in ("base_lr", "max_lr") and spread.median is not None:
        ax.axvspan(spread.low, spread.high, color="0.5", alpha=0.12,
                   gid=f"spread:{name}")
    _style.mark_bounds(ax, None, sugg)
  return _style.finish(fig, ax, f"LR range test over {result.num_seeds} "
                       "seeds: median and spread", path)


def plot_weight_decay(result: Any, ax: Any = None, *, suggestions: Any = True,
                      path: _style.PathLike = None) -> Any:
  """A :class:`~optax_clr.WeightDecayRangeTestResult` as a heat map: the
  smoothed loss over LR (x, log) and weight decay (one row per ramp), the
  chosen ramp's bounds marked, and each ramp's suggested max_lr as a dot.
  """
  import matplotlib.colors as mcolors
  fig, ax = _style.get_axes(ax, 9.0)
  lrs = np.asarray(result.lrs, np.float64)
  curves = _style.trusted_smoothed(result)
  finite = curves[np.isfinite(curves)]
  one_momentum = np.unique(result.momenta).size == 1
  labels = [f"wd {w:g}" + ("" if one_momentum else f", m {m:g}")
            for w, m in zip(result.weight_decays, result.momenta)]
  edges = np.concatenate([[lrs[0]], np.sqrt(lrs[1:] * lrs[:-1]), [lrs[-1]]])
  vmin, vmax = (np.nanmin(finite), np.nanpercentile(finite, 95)) if (
      finite.size) else (0.0, 1.0)
  mesh = ax.pcolormesh(edges, np.arange(len(labels) + 1) - 0.5, curves,
                       shading="flat", cmap="viridis_r",
                       norm=mcolors.Normalize(vmin, vmax), gid="heat_map")
  ax.set_xscale("log")
  ax.set_yticks(range(len(labels)), labels)
  ax.set_xlabel("learning rate")
  fig.colorbar(mesh, ax=ax, label="smoothed training loss")
  sugg = _style.resolve_suggestions(result, suggestions)
  if sugg is not None:
    for i, row in enumerate(sugg.table):
      if row["max_lr"] is not None:
        ax.plot([row["max_lr"]], [i], "o", color="w", markeredgecolor="k",
                gid=f"max_lr:{i}", label="each ramp's max_lr" if i == 0
                else None)
    if sugg.max_lr is not None:
      chosen = next(i for i, r in enumerate(sugg.table) if r["chosen"])
      ax.plot([sugg.base_lr, sugg.max_lr], [chosen, chosen], "-|",
              color="red", markersize=14, linewidth=2, gid="chosen_bounds",
              label=f"chosen: wd {sugg.weight_decay:g}, LR "
              f"{sugg.base_lr:.2g}-{sugg.max_lr:.2g}")
  return _style.finish(fig, ax, "LR range tests over weight decay (Smith "
                       "2018)", path, legend=sugg is not None)


def plot_sweep(result: Any, ax: Any = None, *, suggestions: Any = True,
               bounds: tuple[float, float] | None = None,
               log_loss: bool | None = None,
               path: _style.PathLike = None) -> Any:
  """Final windowed loss vs LR (log x) of a ParallelSweepResult.

  Stable runs are joined by a line; every unstable run gets a marker of its
  status (stalled, spiked, diverged, non-finite: at the top of the axes).
  The best fixed LR is a star, the stable range a shaded band, the CLR
  bounds vertical lines (suggested, or ``bounds`` as "used"); validation
  accuracy goes on a twin axis.
  """
  fig, ax = _style.get_axes(ax)
  lrs = np.asarray(result.lrs, dtype=np.float64)
  status = np.asarray(result.status)
  stable = status == "trained"
  mean = _style.finite_or_nan(result.mean_loss)
  ax.plot(lrs[stable], mean[stable], color="tab:blue", linewidth=2.0,
          marker="o", label="final mean loss (stable runs)", gid="mean_loss")
  # The y-range is that of the stable runs; an unstable run far outside it
  # (a loss of 1e25) sits at the top of the axes instead of squashing it.
  shown = mean[stable & np.isfinite(mean)]
  ceiling = (shown.max() + (shown.max() - shown.min()) if shown.size
             else np.inf)
  for name, style in _style.STATUS_STYLE.items():
    hit = status == name
    y, label = mean[hit], f"{name} ({int(hit.sum())})"
    top = ~np.isfinite(y) | (y > ceiling)
    # Marks above the ceiling: data x, axes y (at the top); one label.
    for part, ys, where in ((~top, y, ax.transData), (top, np.full(
        y.shape, 0.95), ax.get_xaxis_transform())):
      if part.any():
        ax.plot(lrs[hit][part], ys[part], transform=where, linestyle="none",
                markersize=9, label=label, gid=f"status:{name}", **style)
        label = None
  log_y = _style.loss_axes(ax, mean[stable], log_loss,
                           "training loss (last steps' mean)")
  if shown.size and np.isfinite(ceiling) and shown.max() > shown.min():
    lo, hi = shown.min(), ceiling
    if log_y and lo > 0:  # pad by a factor: a log axis has no 0
      ax.set_ylim(lo / 1.1, hi * 1.1)
    else:
      pad = 0.05 * (hi - lo)
      ax.set_ylim(max(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad)
  sugg = _style.resolve_suggestions(result, suggestions)
  if sugg is not None and sugg.best.lr is not None:
    ax.plot([sugg.best.lr], [mean[sugg.best.index]], linestyle="none",
            marker="*", markersize=16, color="gold", markeredgecolor="k",
            zorder=6, label=f"best fixed LR {sugg.best.lr:.2g}",
            gid="best_lr")
    ax.axvspan(sugg.stable_low, sugg.stable_high, color="tab:green",
               alpha=0.08, label=f"stable range {sugg.stable_low:.2g} - "
               f"{sugg.stable_high:.2g}", gid="stable_range")
  _style.mark_bounds(ax, bounds, sugg)
  twin = _style.accuracy_twin(ax, lrs, result.eval_metrics.get("accuracy"))
  return _style.finish(fig, ax, f"LR sweep: {lrs.size} LRs x "
                       f"{result.num_steps} steps, {int(stable.sum())} "
                       "stable", path, twin)


def plot_grid(result: Any, ax: Any = None, *,
              names: tuple[str, ...] | None = None, metric: str | None = None,
              path: _style.PathLike = None) -> Any:
  """A :class:`~optax_clr.GridSweepResult`: a heat map over two swept names
  (log-spaced values shown by their ticks), a line over one.

  Unstable runs (diverged, spiked, stalled) are blank; the best run is
  marked with a star (a line) or an outline around its cell (a heat map,
  whose cells show their values).

  Args:
    result: a GridSweepResult whose runs form a full grid of ``names``.
    names: the one or two names to draw (default: the first two swept).
    metric: see :meth:`~optax_clr.GridSweepResult.grid` (default: the
      score: validation accuracy, else validation loss, else train loss).
  """
  names = tuple(names or result.names[:2])
  if len(names) not in (1, 2):
    raise ValueError(f"names must be one or two swept names, got {names}")
  axes, values = result.grid(*names, metric=metric)
  score_name = metric or result.score()[1]
  fig, ax = _style.get_axes(ax)
  best = result.best()
  # Where the best run sits on each axis.
  at = None if best is None else [int(np.searchsorted(a, best[n]))
                                  for a, n in zip(axes, names)]
  ax.set_xlabel(names[0])
  if len(names) == 1:
    ax.plot(axes[0], values, marker="o", gid="grid_line", label=score_name)
    ax.set_xscale("log" if axes[0].min() > 0 else "linear")
    ax.set_ylabel(score_name)
    if at is not None:
      ax.plot([axes[0][at[0]]], [values[at[0]]], "*", color="gold",
              markersize=16, markeredgecolor="k", gid="best", label="best")
  else:
    image = ax.imshow(values.T, origin="lower", aspect="auto",
                      cmap="viridis", gid="heat_map")
    ax.set_xticks(range(axes[0].size), [f"{v:.2g}" for v in axes[0]],
                  rotation=45)
    ax.set_yticks(range(axes[1].size), [f"{v:.2g}" for v in axes[1]])
    ax.set_ylabel(names[1])
    fig.colorbar(image, ax=ax, label=score_name)
    for (i, j), v in np.ndenumerate(values):
      if np.isfinite(v):
        ax.text(i, j, f"{v:.3g}", ha="center", va="center", fontsize=7,
                color="w")
    if at is not None:  # an outline: the cell's number stays readable
      from matplotlib.patches import Rectangle
      ax.add_patch(Rectangle((at[0] - 0.5, at[1] - 0.5), 1, 1, fill=False,
                             edgecolor="red", linewidth=2.5, gid="best",
                             label="best"))
  return _style.finish(
      fig, ax, f"sweep: {score_name} over {' x '.join(names)} "
      f"({int(result.stable.sum())} of {result.num_configs} stable)", path,
      legend=len(names) == 1)


def plot_batch_sizes(result: Any, ax: Any = None, *,
                     path: _style.PathLike = None) -> Any:
  """Loss vs examples seen of each batch size's best LR
  (:class:`~optax_clr.BatchSizeSweepResult`)."""
  fig, ax = _style.get_axes(ax)
  drawn = []
  for i, (bs, sweep) in enumerate(zip(result.batch_sizes, result.sweeps)):
    s = sweep.suggest()
    if s.best.lr is None:
      continue
    drawn.append(_style.finite_or_nan(sweep.losses[s.best.index]))
    ax.plot(result.examples_seen(i), drawn[-1], gid=f"batch_size:{bs}",
            label=f"batch {bs}, LR {s.best.lr:.2g}")
  if drawn and _style.log_wanted(np.concatenate(drawn), None):
    ax.set_yscale("log")
  ax.set_xlabel("examples seen")
  ax.set_ylabel("training loss")
  best = result.best()
  return _style.finish(fig, ax, "batch sizes at their best LR" + (
      "" if best is None else f" (best: batch {best['batch_size']}, LR "
      f"{best['learning_rate']:.2g})"), path)
