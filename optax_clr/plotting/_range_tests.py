"""Plots of range tests: one ramp, several seeds, several weight decays."""

from __future__ import annotations

from typing import Any

import numpy as np

from optax_clr.plotting._style import accuracy_twin
from optax_clr.plotting._style import finite_or_nan
from optax_clr.plotting._style import get_axes
from optax_clr.plotting._style import limit_y
from optax_clr.plotting._style import log_wanted
from optax_clr.plotting._style import mark_bounds
from optax_clr.plotting._style import mark_points
from optax_clr.plotting._style import outside_legend
from optax_clr.plotting._style import PathLike
from optax_clr.plotting._style import resolve_suggestions
from optax_clr.plotting._style import save_png


def plot_range_test(result: Any, ax: Any = None, *, suggestions: Any = True,
                    bounds: tuple[float, float] | None = None,
                    log_loss: bool | None = None,
                    path: PathLike = None) -> Any:
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
  fig, ax = get_axes(ax)
  lrs = np.asarray(result.lrs, dtype=np.float64)
  smoothed = finite_or_nan(result.smoothed_losses)
  smoothed[~np.isfinite(np.asarray(result.losses, dtype=np.float64))] = np.nan
  ax.plot(lrs, finite_or_nan(result.losses), color="tab:blue", alpha=0.3,
          linewidth=1.0, label="raw loss", gid="raw_loss")
  ax.plot(lrs, smoothed, color="tab:blue", linewidth=2.0,
          label="smoothed loss", gid="smoothed_loss")
  ax.set_xscale("log")
  log = log_wanted(smoothed, log_loss)
  if log:
    ax.set_yscale("log")
  ax.set_xlabel("learning rate")
  ax.set_ylabel("training loss")
  limit_y(ax, smoothed, log)
  sugg = resolve_suggestions(result, suggestions)
  if sugg is not None:
    mark_points(ax, lrs, smoothed, sugg)
  if bounds is not None:
    mark_bounds(ax, bounds[0], bounds[1], used=True)
  elif sugg is not None:
    mark_bounds(ax, sugg.base_lr, sugg.max_lr, used=False)
  if result.diverged and lrs.size:
    ax.axvline(lrs[-1], color="red", linewidth=1.2,
               label=f"{result.stop_reason} at {lrs[-1]:.2g}", gid="diverged")
  twin = None
  acc = result.eval_metrics.get("accuracy")
  if acc is not None and len(acc):
    twin = accuracy_twin(ax, np.asarray(result.eval_lrs), acc,
                          "val accuracy")
  outside_legend(ax, twin)
  ax.set_title(f"LR range test: {result.num_steps} steps, "
               f"{result.stop_reason}")
  save_png(fig, path)
  return fig


def plot_multi_seed(result: Any, ax: Any = None, *, suggestions: Any = True,
                    log_loss: bool | None = None,
                    path: PathLike = None) -> Any:
  """The smoothed loss of S seeds: median curve, band from the lowest to
  the highest seed, and the median suggestions with their spread.

  Returns:
    The Figure.
  """
  fig, ax = get_axes(ax)
  lrs = np.asarray(result.lrs, dtype=np.float64)
  curves = finite_or_nan(result.smoothed_losses)
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
  log = log_wanted(median, log_loss)
  if log:
    ax.set_yscale("log")
  limit_y(ax, median, log)
  sugg = resolve_suggestions(result, suggestions)
  if sugg is not None:
    for name, spread in sugg.spreads.items():
      if name in ("base_lr", "max_lr") and spread.median is not None:
        ax.axvspan(spread.low, spread.high, color="0.5", alpha=0.12,
                   gid=f"spread:{name}")
    mark_bounds(ax, sugg.base_lr, sugg.max_lr, used=False)
  ax.set_xlabel("learning rate")
  ax.set_ylabel("training loss")
  outside_legend(ax)
  ax.set_title(f"LR range test over {result.num_seeds} seeds: median and "
               "spread")
  save_png(fig, path)
  return fig




def plot_weight_decay(result: Any, ax: Any = None, *, suggestions: Any = True,
                      path: PathLike = None) -> Any:
  """A :class:`~optax_clr.WeightDecayRangeTestResult` as a heat map: the
  smoothed loss over LR (x, log) and weight decay (one row per ramp), the
  chosen ramp's bounds marked, and each ramp's suggested max_lr as a dot.

  Returns:
    The Figure.
  """
  import matplotlib.colors as mcolors
  fig, ax = get_axes(ax, (9.0, 4.5))
  lrs = np.asarray(result.lrs, np.float64)
  curves = finite_or_nan(result.smoothed_losses)
  curves[~np.isfinite(np.asarray(result.losses))] = np.nan
  finite = curves[np.isfinite(curves)]
  labels = [f"wd {w:g}" + ("" if np.unique(result.momenta).size == 1
                            else f", m {m:g}")
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
  sugg = resolve_suggestions(result, suggestions)
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
    outside_legend(ax)
  ax.set_title("LR range tests over weight decay (Smith 2018)")
  save_png(fig, path)
  return fig
