"""Points on a range test's curve: steepest, minimum, valley (loss) and
Smith's accuracy bounds. Each :class:`Suggestion` names the derivative it
uses, where the known implementations differ: fastai's ``steep`` takes it
w.r.t. log LR, torch-lr-finder w.r.t. the point index, Lightning the raw LR.

Shared rules: ``lrs`` must be 1-D, finite, > 0 and strictly increasing
(sort a sweep's grid together with its losses), else ``ValueError``. Loss
points first drop ``skip_start`` points at the start (default ``n // 10``)
and ``skip_end`` at the end (default 5), as fastai's ``lr_find`` does, then
everything from the first non-finite value on (accuracy bounds only the
latter). With fewer than :data:`MIN_POINTS` points left, or a curve that
never falls (rises, for accuracy), ``lr`` is None and ``reason`` says why.
``index`` always points into the arrays as passed in.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optax_clr import _checks
from optax_clr.suggestions._types import Suggestion

# Two points give one slope and no choice: three is the fewest with which
# "steepest" or "longest descent" means anything.
MIN_POINTS = 3


def validate_curve(lrs: Any, values: Any, values_name: str,
                   lrs_name: str = "lrs") -> tuple[np.ndarray, np.ndarray]:
  """Float64 copies of ``lrs`` and ``values``, checked (module docstring)."""
  arrays = []
  for name, value in ((lrs_name, lrs), (values_name, values)):
    try:
      arrays.append(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError) as e:
      raise TypeError(f"{name} must be a 1-D array of numbers: {e}") from e
    if arrays[-1].ndim != 1:
      raise ValueError(f"{name} must be 1-D, got shape {arrays[-1].shape}")
  lrs, values = arrays
  if lrs.shape != values.shape:
    raise ValueError(
        f"{lrs_name} and {values_name} must have the same length, got "
        f"{lrs.size} and {values.size}")
  bad = np.flatnonzero(~np.isfinite(lrs) | (lrs <= 0))
  if bad.size:
    i = int(bad[0])
    raise ValueError(
        f"{lrs_name} must be finite and > 0, got {lrs_name}[{i}]={lrs[i]!r}")
  bad = np.flatnonzero(np.diff(lrs) <= 0)
  if bad.size:
    i = int(bad[0])
    raise ValueError(
        f"{lrs_name} must be strictly increasing (sort a sweep's LRs together "
        f"with its values), got {lrs_name}[{i}]={lrs[i]!r} >= "
        f"{lrs_name}[{i + 1}]={lrs[i + 1]!r}")
  return lrs, values


def _usable(lrs: Any, values: Any, skip_start: int | None, skip_end: int,
            min_drop: float | None, name: str = "losses"):
  """``(lrs, y, start, i_min, onset, why)``: the usable points (module
  docstring) from index ``start``, their minimum (first on ties) and the
  onset of the descent (:func:`steepest`); ``why`` is set when too few
  points are usable or the fall is not more than ``min_drop`` (not checked
  when None)."""
  lrs, values = validate_curve(lrs, values, name)
  n = values.size
  skip_start = n // 10 if skip_start is None else _checks.check_int(
      "skip_start", skip_start, low=0)
  skip_end = _checks.check_int("skip_end", skip_end, low=0)
  start, stop = skip_start, n - skip_end
  notes = [f"{n} points", f"skipped {skip_start} at the start and "
           f"{skip_end} at the end"]
  nonfinite = np.flatnonzero(~np.isfinite(values))
  if nonfinite.size and nonfinite[0] < stop:
    stop = int(nonfinite[0])
    notes.append(f"dropped from the first non-finite value at index {stop} on")
  lrs, y = lrs[start:stop], values[start:stop]
  if stop - start < MIN_POINTS:
    return lrs, y, start, 0, 0, (
        f"too short: {max(0, stop - start)} usable point(s), need at least "
        f"{MIN_POINTS} (" + "; ".join(notes) + ")")
  if min_drop is None:
    return lrs, y, start, 0, 0, None
  i_min = int(np.argmin(y))
  drop = float(y[0] - y[i_min])
  why = None
  if not drop > 0:
    why = (f"no decrease: the loss never falls below its value at point "
           f"{start} ({y[0]:.4g}) over points {start}..{stop - 1}")
  elif not drop >= min_drop:
    why = (f"not enough signal: the loss falls by only {drop:.3g} over "
           f"points {start}..{stop - 1}, not more than the {min_drop:.3g} "
           "required")
  high = np.flatnonzero(y[:i_min + 1] >= y[0] - 0.1 * drop)
  return lrs, y, start, i_min, int(high[-1]) if why is None else 0, why


def steepest(lrs: Any, losses: Any, *, skip_start: int | None = None,
             skip_end: int = 5, min_drop: float = 0.0) -> Suggestion:
  """LR at the steepest descent of the loss w.r.t. log10(LR).

  ``lrs[i*]`` with ``i* = argmin_i g_i``, ``g = np.gradient(loss,
  log10(lr))`` (central differences), over the usable points from the onset
  of the descent -- the last point before the minimum within a tenth of the
  total fall ``y[0] - y[i_min]`` of the starting level -- to the minimum:
  noise on the flat start of a ramp is never the answer (Lightning #1767).
  fastai's ``steep`` takes forward differences w.r.t. ln(LR), the left point
  of the steepest segment; the log's base does not move the argmin, and
  central differences centre it on a point.

  Args:
    lrs: [n] strictly increasing learning rates.
    losses: [n] (smoothed) losses; pass the smoothed curve of a ramp test.
    skip_start: points dropped at the start; default ``n // 10`` (fastai).
    skip_end: points dropped at the end (fastai and torch-lr-finder: 5).
    min_drop: the loss must fall by more than this below its starting level
      (e.g. a few times its noise), else there is no signal.

  Returns:
    A Suggestion (``derivative="log_lr"``); ``lr`` None when fewer than
    MIN_POINTS points are usable or the loss does not fall by more than
    ``min_drop``.
  """
  lrs, y, start, i_min, onset, why = _usable(lrs, losses, skip_start,
                                             skip_end, min_drop)
  if why is None:
    grad = np.gradient(y, np.log10(lrs))
    i = onset + int(np.argmin(grad[onset:i_min + 1]))
    # Uneven log spacing leaves rounding-level slopes on an exactly flat
    # curve, so "decreasing" is decided on the values themselves.
    if not (grad[i] < 0 and np.any(np.diff(y) < 0)):
      why = (f"no decrease: the loss never falls over points {start}.."
             f"{start + y.size - 1} (least slope {grad[i]:.3g} per decade "
             "of LR)")
  if why is not None:
    return Suggestion("steepest", None, None, "log_lr", why)
  return Suggestion(
      "steepest", lrs[i], start + i, "log_lr",
      f"min d(loss)/d(log10 lr) = {grad[i]:.4g} over the descent, points "
      f"{start + onset}..{start + i_min}")


def minimum(lrs: Any, losses: Any, *, factor: float = 10.0,
            skip_start: int | None = None, skip_end: int = 5,
            min_drop: float = 0.0) -> Suggestion:
  """LR at the minimum loss divided by ``factor`` (fastai's ``minimum``):
  ``lrs[i*] / factor`` with ``i* = argmin_i loss_i`` over the usable points
  (first on ties); ``index`` is ``i*``, the minimum itself.

  Args:
    lrs, losses, skip_start, skip_end, min_drop: as in :func:`steepest`.
    factor: divisor, >= 1 (fastai: 10).

  Returns:
    A Suggestion (``derivative="none"``); ``lr`` None as for :func:`steepest`.
  """
  factor = _checks.check_number("factor", factor, low=1.0)
  lrs, y, start, i, _, why = _usable(lrs, losses, skip_start, skip_end,
                                     min_drop)
  if why is not None:
    return Suggestion("minimum", None, None, "none", why)
  return Suggestion(
      "minimum", lrs[i] / factor, start + i, "none",
      f"lr = lrs[{start + i}] / {factor:g}, the LR at the minimum loss "
      f"{y[i]:.4g} divided by {factor:g}")


def _longest_decreasing(y: np.ndarray) -> np.ndarray:
  """``lds[i] = 1 + max(lds[j] for j < i if y[j] > y[i])``: the length of
  the longest strictly decreasing subsequence ending at ``i`` (fastai's
  O(n^2) recurrence, the inner loop vectorised)."""
  lds = np.ones(y.size, dtype=np.int64)
  for i in range(1, y.size):
    higher = y[:i] > y[i]
    if higher.any():
      lds[i] = lds[:i][higher].max() + 1
  return lds


def valley(lrs: Any, losses: Any, *, skip_start: int | None = None,
           skip_end: int = 5, min_drop: float = 0.0) -> Suggestion:
  """fastai's ``valley`` (``fastai/callback/schedule.py``): a point about
  halfway down the longest descent.

  ``lds`` is the length of the longest strictly decreasing subsequence of
  the loss ending at each point, ``max_end`` the first point where it is
  longest, ``max_start = max_end - lds[max_end]``, ``sections = (max_end -
  max_start) / 3``; the point is ``max_start + int(sections) +
  int(sections / 2)`` (1/3 + 1/6 of the way). Where fastai returns index -1
  (a descent of the first two points: Python wraps to the last, most
  divergent point) this uses 0, and where it returns the first point of a
  curve with no descent, ``lr`` is None.

  Args:
    lrs, losses, skip_start, skip_end, min_drop: as in :func:`steepest`.

  Returns:
    A Suggestion (``derivative="index"``: positions set the point).
  """
  lrs, y, start, _, _, why = _usable(lrs, losses, skip_start, skip_end,
                                     min_drop if min_drop > 0 else None)
  if why is None:
    lds = _longest_decreasing(y)
    max_end = int(np.argmax(lds))
    if lds[max_end] < 2:
      why = (f"no decrease: the loss never falls over points {start}.."
             f"{start + y.size - 1}")
  if why is not None:
    return Suggestion("valley", None, None, "index", why)
  max_start = max_end - int(lds[max_end])
  sections = (max_end - max_start) / 3
  idx = max(0, max_start + int(sections) + int(sections / 2))
  return Suggestion(
      "valley", lrs[idx], start + idx, "index",
      f"longest descent ({lds[max_end]} points) ends at point "
      f"{start + max_end}; fastai's point about halfway down it")


def accuracy_bounds(lrs: Any, accuracies: Any, *, margin: float = 0.1,
                    window: int = 3) -> tuple[Suggestion, Suggestion]:
  """Smith's bounds: where the accuracy starts to rise, and where that stops.

  Smith (2017, "Cyclical Learning Rates for Training Neural Networks",
  sec. 3.3) sets base_lr where the accuracy of a ramp starts to increase and
  max_lr where it slows, turns ragged or falls. Made precise on ``a``, the
  accuracy smoothed by a centred running mean of ``window`` points:

  * ``a0 = a[0]``, ``peak = max(a)``, ``rise = peak - a0``; no bounds if
    ``rise <= 0``.
  * base: the first point with ``a >= a0 + margin * rise``.
  * max: the earlier of the first point with ``a >= peak - margin * rise``
    (a plateau) and, when after base ``a`` first falls more than ``margin *
    rise`` below its running maximum (ragged or falling), that maximum.
  * if base and max are one point (the whole rise between two evaluations),
    base moves back to the point before, so ``base.lr < max.lr``.

  Args:
    lrs: [m] strictly increasing LRs at which the accuracy was measured.
    accuracies: [m] validation accuracies (any scale; higher is better).
    margin: fraction of the total rise used by the thresholds, in (0, 0.5).
    window: odd number of points of the running mean (1 = no smoothing).

  Returns:
    ``(base, max)`` Suggestions ``"accuracy_base"`` and ``"accuracy_max"``.
  """
  margin = _checks.check_number("margin", margin, low=0.0, high=0.5,
                                low_inclusive=False, high_inclusive=False)
  window = _checks.check_int("window", window, low=1)
  if window % 2 == 0:
    raise ValueError(f"window must be an odd integer >= 1, got {window}")
  lrs, a, _, _, _, why = _usable(lrs, accuracies, 0, 0, None, "accuracies")
  if why is None:
    # A centred running mean (near the ends, of the points there are): an
    # EMA lags and would shift every threshold crossing to a larger LR.
    if window > 1:
      ones = np.ones(window)
      a = (np.convolve(a, ones, mode="same")
           / np.convolve(np.ones_like(a), ones, mode="same"))
    a0, peak = a[0], a.max()
    rise = peak - a0
    if not rise > 0:
      why = (f"flat: the smoothed accuracy never rises above its initial "
             f"level {a0:.4g} over points 0..{a.size - 1}")
  if why is not None:
    return tuple(Suggestion(name, None, None, "none", why)
                 for name in ("accuracy_base", "accuracy_max"))
  base = int(np.argmax(a >= a0 + margin * rise))
  top = int(np.argmax(a >= peak - margin * rise))
  how = f"reaches peak - {margin:g} * rise"
  running_max = np.maximum.accumulate(a)
  falls = np.flatnonzero(running_max[base + 1:top + 1] - a[base + 1:top + 1]
                         > margin * rise)
  if falls.size:
    fall = base + 1 + int(falls[0])
    top = int(np.argmax(a[:fall]))
    how = (f"peaks before falling more than {margin:g} * rise below that "
           f"peak (at point {fall})")
  base_note = f"smoothed accuracy first reaches initial + {margin:g} * rise"
  if top == base:
    base -= 1
    base_note = "last point before the accuracy jumps to its plateau"
  rise_note = f" (initial {a0:.4g}, peak {peak:.4g}, window {window})"
  return (Suggestion("accuracy_base", lrs[base], base, "none",
                     base_note + rise_note),
          Suggestion("accuracy_max", lrs[top], top, "none",
                     "smoothed accuracy " + how + rise_note))
