"""Plots of sweeps: loss vs LR with every run's status, and grids of
hyperparameters as heat maps."""

from __future__ import annotations

from typing import Any

import numpy as np

from optax_clr.plotting._style import accuracy_twin
from optax_clr.plotting._style import finite_or_nan
from optax_clr.plotting._style import get_axes
from optax_clr.plotting._style import log_wanted
from optax_clr.plotting._style import mark_bounds
from optax_clr.plotting._style import outside_legend
from optax_clr.plotting._style import PathLike
from optax_clr.plotting._style import resolve_suggestions
from optax_clr.plotting._style import save_png
from optax_clr.plotting._style import STATUS_STYLE


def plot_sweep(result: Any, ax: Any = None, *, suggestions: Any = True,
               bounds: tuple[float, float] | None = None,
               log_loss: bool | None = None, path: PathLike = None) -> Any:
  """Final windowed loss vs LR (log x) of a ParallelSweepResult.

  Stable runs are joined by a line; every unstable run gets a marker of its
  status (stalled, spiked, diverged, non-finite: at the top of the axes).
  The best fixed LR is a star, the stable range a shaded band, the CLR
  bounds vertical lines (suggested, or ``bounds`` as "used"); validation
  accuracy goes on a twin axis.

  Returns:
    The Figure.
  """
  fig, ax = get_axes(ax)
  lrs = np.asarray(result.lrs, dtype=np.float64)
  status = np.asarray(result.status)
  stable = status == "trained"
  mean = finite_or_nan(result.mean_loss)
  ax.plot(lrs[stable], mean[stable], color="tab:blue", linewidth=2.0,
          marker="o", label="final mean loss (stable runs)", gid="mean_loss")
  # The y-range is that of the stable runs; an unstable run far outside it
  # (a loss of 1e25) sits at the top of the axes instead of squashing it.
  shown = mean[stable & np.isfinite(mean)]
  ceiling = (shown.max() + (shown.max() - shown.min()) if shown.size
             else np.inf)
  for name, style in STATUS_STYLE.items():
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
  log_y = log_wanted(mean[stable], log_loss)
  if log_y:
    ax.set_yscale("log")
  if shown.size and np.isfinite(ceiling) and shown.max() > shown.min():
    lo, hi = shown.min(), ceiling
    if log_y and lo > 0:  # pad by a factor: a log axis has no 0
      ax.set_ylim(lo / 1.1, hi * 1.1)
    else:
      pad = 0.05 * (hi - lo)
      ax.set_ylim(max(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad)
  ax.set_xlabel("learning rate")
  ax.set_ylabel("training loss (last steps' mean)")
  sugg = resolve_suggestions(result, suggestions)
  if sugg is not None and sugg.best.lr is not None:
    i = sugg.best.index
    ax.plot([sugg.best.lr], [mean[i]], linestyle="none", marker="*",
            markersize=16, color="gold", markeredgecolor="k", zorder=6,
            label=f"best fixed LR {sugg.best.lr:.2g}", gid="best_lr")
    ax.axvspan(sugg.stable_low, sugg.stable_high, color="tab:green",
               alpha=0.08, label=f"stable range {sugg.stable_low:.2g} - "
               f"{sugg.stable_high:.2g}", gid="stable_range")
  if bounds is not None:
    mark_bounds(ax, bounds[0], bounds[1], used=True)
  elif sugg is not None:
    mark_bounds(ax, sugg.base_lr, sugg.max_lr, used=False)
  twin = None
  acc = result.eval_metrics.get("accuracy")
  if acc is not None and len(acc):
    twin = accuracy_twin(ax, lrs, acc, "val accuracy")
  outside_legend(ax, twin)
  ax.set_title(f"LR sweep: {lrs.size} LRs x {result.num_steps} steps, "
               f"{int(stable.sum())} stable")
  save_png(fig, path)
  return fig


def plot_grid(result: Any, ax: Any = None, *,
              names: tuple[str, ...] | None = None, metric: str | None = None,
              path: PathLike = None) -> Any:
  """A :class:`~optax_clr.GridSweepResult`: a heat map over two swept names
  (log-spaced values shown by their ticks), a line over one.

  Unstable runs (diverged, spiked, stalled) are blank; the best run is
  marked with a star (a line) or an outline around its cell (a heat map,
  whose cells show their values).

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
  fig, ax = get_axes(ax)
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
    outside_legend(ax)
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
    if best is not None:  # an outline: the cell's number stays readable
      from matplotlib.patches import Rectangle
      i = int(np.searchsorted(axes[0], best[names[0]]))
      j = int(np.searchsorted(axes[1], best[names[1]]))
      ax.add_patch(Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False,
                             edgecolor="red", linewidth=2.5, gid="best",
                             label="best"))
  ax.set_title(f"sweep: {score_name} over {' x '.join(names)} "
               f"({int(result.stable.sum())} of {result.num_configs} stable)")
  save_png(fig, path)
  return fig


def plot_batch_sizes(result: Any, ax: Any = None, *,
                     path: PathLike = None) -> Any:
  """Loss vs examples seen of each batch size's best LR
  (:class:`~optax_clr.BatchSizeSweepResult`).

  Returns:
    The Figure.
  """
  fig, ax = get_axes(ax)
  drawn = []
  for i, (bs, sweep) in enumerate(zip(result.batch_sizes, result.sweeps)):
    s = sweep.suggest()
    if s.best.lr is None:
      continue
    y = finite_or_nan(sweep.losses[s.best.index])
    drawn.append(y)
    ax.plot(result.examples_seen(i), y, gid=f"batch_size:{bs}",
            label=f"batch {bs}, LR {s.best.lr:.2g}")
  if drawn and log_wanted(np.concatenate(drawn), None):
    ax.set_yscale("log")
  ax.set_xlabel("examples seen")
  ax.set_ylabel("training loss")
  best = result.best()
  ax.set_title("batch sizes at their best LR" + (
      "" if best is None else f" (best: batch {best['batch_size']}, LR "
      f"{best['learning_rate']:.2g})"))
  outside_legend(ax)
  save_png(fig, path)
  return fig
