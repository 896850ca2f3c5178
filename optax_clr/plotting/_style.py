"""What every plot shares: figures without pyplot, atomic PNGs, legends
outside the data, log scales when the loss spans a decade, markers that
say what they show."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

PathLike = str | os.PathLike[str] | None
# Loss suggestions, largest marker first so that coinciding ones stay
# visible (and share one label).
POINTS = (
    ("valley", dict(marker="o", color="tab:green", markersize=11)),
    ("minimum", dict(marker="s", color="tab:purple", markersize=9)),
    ("steepest", dict(marker="v", color="tab:red", markersize=7)),
)
STATUS_STYLE = {
    "stalled": dict(marker="s", color="0.5"),
    "spiked": dict(marker="^", color="tab:orange"),
    "diverged": dict(marker="x", color="red"),
    "nonfinite": dict(marker="x", color="darkred"),
}
# Markers closer than this (in decades of LR) count as the same point.
SAME_POINT = 0.02


def stacked(rows: int, height: float, width: float = 8.5
            ) -> tuple[Any, Any]:
  """A new figure of ``rows`` panels, one above the other, sharing x."""
  from matplotlib.figure import Figure
  fig = Figure(figsize=(width, height * rows + 0.6), layout="constrained")
  return fig, fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]


def get_axes(ax: Any, width: float = 8.5) -> tuple[Any, Any]:
  """``ax`` and its figure, or a new figure's one panel."""
  if ax is None:
    ax = stacked(1, 3.9, width)[1][0]
  return ax.figure, ax


def finish(fig: Any, ax: Any, title: str, path: PathLike, *twins: Any,
           legend: bool = True) -> Any:
  """Legend outside the data, title, PNG at ``path``; returns ``fig``."""
  if legend:
    outside_legend(ax, *twins)
  ax.set_title(title)
  return save(fig, path)


def save(fig: Any, path: PathLike) -> Any:
  """Writes ``fig`` to ``path`` (if given) as PNG, atomically; returns it."""
  if path is not None:
    from optax_clr import _serialize
    with _serialize.atomic_open(path, "wb") as f:
      fig.savefig(f, dpi=100, format="png")
  return fig


def resolve_suggestions(result: Any, suggestions: Any) -> Any:
  """What a plot marks: ``result.suggest()`` for True, the suggestions
  given, or None for False/None."""
  return result.suggest() if suggestions is True else suggestions or None


def finite_or_nan(x: Any) -> np.ndarray:
  x = np.array(x, dtype=np.float64)
  x[~np.isfinite(x)] = np.nan
  return x


def trusted_smoothed(result: Any) -> np.ndarray:
  """The smoothed losses, NaN where the raw loss is not finite (the EMA
  there is not to be trusted)."""
  curves = finite_or_nan(result.smoothed_losses)
  curves[~np.isfinite(np.asarray(result.losses, dtype=np.float64))] = np.nan
  return curves


def log_wanted(values: np.ndarray, log_loss: bool | None) -> bool:
  """Log scale when asked, or (None) when the positive loss spans more than
  a decade."""
  if log_loss is not None:
    return bool(log_loss)
  v = values[np.isfinite(values)]
  return bool(v.size and v.min() > 0 and v.max() / v.min() > 10.0)


def loss_axes(ax: Any, curve: np.ndarray, log_loss: bool | None,
              ylabel: str = "training loss") -> bool:
  """Log LR axis, loss axis (log when :func:`log_wanted`), labels; returns
  whether the loss axis is logarithmic."""
  ax.set_xscale("log")
  log = log_wanted(curve, log_loss)
  if log:
    ax.set_yscale("log")
  ax.set_xlabel("learning rate")
  ax.set_ylabel(ylabel)
  return log


def outside_legend(ax: Any, *extra_axes: Any) -> None:
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


def limit_y(ax: Any, curve: np.ndarray, log: bool) -> None:
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


def mark_points(ax: Any, lrs: np.ndarray, curve: np.ndarray,
                sugg: Any) -> None:
  """Markers on the curve at the loss suggestions, where they were read."""
  keep = np.isfinite(curve)
  if not keep.any():
    return
  log_lrs, ys = np.log10(lrs[keep]), curve[keep]
  points = []  # (name, LR where it was read, label, style)
  for name, style in POINTS:
    s = getattr(sugg, name, None)
    if s is None or s.lr is None or s.index is None:
      continue
    at = float(lrs[s.index])  # minimum: its marker sits at the minimum
    points.append((name, at, f"minimum {at:.2g} -> minimum/10 = {s.lr:.2g}"
                   if name == "minimum" else f"{name} {s.lr:.2g}", style))
  done: set[str] = set()
  for name, at, _, style in points:
    same = [p for p in points if abs(np.log10(p[1]) - np.log10(at))
            < SAME_POINT]
    gid = "+".join(p[0] for p in same)
    y = float(np.interp(np.log10(at), log_lrs, ys))
    ax.plot([at], [y], linestyle="none", zorder=5, markeredgecolor="k",
            label=None if gid in done else " = ".join(p[2] for p in same),
            gid=f"suggestion:{name}", **style)
    done.add(gid)


def mark_bounds(ax: Any, bounds: tuple[float, float] | None,
                sugg: Any) -> None:
  """The CLR bounds as vertical lines: ``bounds`` (those a run used), else
  the suggested ones."""
  if bounds is None and sugg is None:
    return
  base, top = bounds if bounds is not None else (sugg.base_lr, sugg.max_lr)
  what = "used" if bounds is not None else "suggested"
  for name, lr, style in (("base_lr", base, ":"), ("max_lr", top, "--")):
    if lr is not None:
      ax.axvline(lr, color="0.3", linestyle=style, linewidth=1.3,
                 label=f"CLR {name} ({what}) {lr:.2g}", gid=f"bound:{name}")


def accuracy_twin(ax: Any, lrs: np.ndarray, acc: Any) -> Any:
  """The validation accuracy on a twin axis (None when not evaluated)."""
  if acc is None or not len(acc):
    return None
  twin = ax.twinx()
  twin.plot(lrs, finite_or_nan(acc), color="tab:orange", marker=".",
            label="val accuracy", gid="accuracy")
  twin.set_ylabel("validation accuracy", color="tab:orange")
  # A twin is drawn over its host; lifting the host (with a transparent
  # background) keeps the loss curves above the accuracy.
  ax.set_zorder(twin.get_zorder() + 1)
  ax.patch.set_visible(False)
  return twin
