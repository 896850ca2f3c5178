"""Learning-rate suggestions from an LR range test.

Pure NumPy functions on the recorded curve (LR ascending, loss or accuracy per
point). Each returns a :class:`Suggestion` that names the derivative it uses,
because the three well-known implementations differ there: fastai's ``steep``
differentiates w.r.t. log LR, torch-lr-finder w.r.t. the point index and
Lightning w.r.t. the raw LR.

Rules shared by every suggester:

* ``lrs`` must be 1-D, finite, > 0 and strictly increasing (a range test's ramp
  increases by construction; sort a sweep's grid together with its losses).
  Anything else raises ``ValueError``.
* Loss suggesters first drop ``skip_start`` points at the start (default
  ``n // 10``) and ``skip_end`` at the end (default 5), as fastai's ``lr_find``
  does before all its suggesters, and then everything from the first
  non-finite value (NaN or inf) on. Accuracy bounds skip nothing but drop the
  non-finite tail the same way.
* With fewer than :data:`MIN_POINTS` points left, or with a curve that never
  decreases (never rises, for accuracy), ``lr`` is None and ``reason`` says why.
* ``index`` always points into the arrays as passed in, before any dropping.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optax_clr import _checks
from optax_clr.suggestions._types import Suggestion
from optax_clr.suggestions._types import Suggestions

# Two points give a single slope and hence no choice; three is the fewest with
# which "steepest" or "longest descent" can mean anything.
MIN_POINTS = 3

# CLR loss rule. max_lr = the LR where the smoothed loss, past its minimum,
# has climbed back half of its total fall (the blow-up, seen through the
# EMA's lag), divided by _MAX_DIVISOR. Measured on four tasks of different
# kinds (benchmarks/bench_suggestions.py: a CNN with SGD and with Adam, a
# regression MLP, a character transformer), CLR between these bounds trained
# for a fixed budget reaches >= 0.99 of the best of a dense fixed-LR grid;
# the older "LR at the minimum / 3" fell to 0.72 (the regression MLP) and
# 0.87 (the CNN with SGD), whose minima sit far below their blow-up.
_RISE_FRACTION = 0.5
_MAX_DIVISOR = 4.0
# Smith (2017, sec. 3.3): with only max_lr known, base_lr = max_lr / 3 or / 4.
_BASE_DIVISOR = 4.0


# ----------------------------------------------------------------------------
# Input handling.


def _as_1d(name: str, value: Any) -> np.ndarray:
  try:
    arr = np.asarray(value, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise TypeError(f"{name} must be a 1-D array of numbers: {e}") from e
  if arr.ndim != 1:
    raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
  return arr


def validate_curve(lrs: Any, values: Any, values_name: str,
                   lrs_name: str = "lrs") -> tuple[np.ndarray, np.ndarray]:
  """Returns float64 copies of ``lrs`` and ``values`` after checking them."""
  lrs = _as_1d(lrs_name, lrs)
  values = _as_1d(values_name, values)
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


def _usable_range(values: np.ndarray, skip_start: int | None,
                  skip_end: int) -> tuple[int, int, str | None]:
  """The half-open range [start, stop) a suggester may use.

  Same order as fastai's ``lr_find``: slice off ``skip_start`` and
  ``skip_end`` points, then stop at the first non-finite value. Returns the
  reason the range is too short as the third item (None when it is usable).
  """
  n = values.size
  if skip_start is None:
    skip_start = n // 10
  else:
    skip_start = _checks.check_int("skip_start", skip_start, low=0)
  skip_end = _checks.check_int("skip_end", skip_end, low=0)
  start, stop = skip_start, n - skip_end
  notes = [f"{n} points", f"skipped {skip_start} at the start and "
           f"{skip_end} at the end"]
  nonfinite = np.flatnonzero(~np.isfinite(values))
  if nonfinite.size and nonfinite[0] < stop:
    stop = int(nonfinite[0])
    notes.append(f"dropped from the first non-finite value at index {stop} on")
  kept = max(0, stop - start)
  if kept < MIN_POINTS:
    return start, max(start, stop), (
        f"too short: {kept} usable point(s), need at least {MIN_POINTS} ("
        + "; ".join(notes) + ")")
  return start, stop, None


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
  """Centred running mean; near the ends it averages the points available.

  Centred rather than an EMA because an EMA lags and would shift every
  threshold crossing to a larger LR.
  """
  if window == 1:
    return values.copy()
  kernel = np.ones(window)
  sums = np.convolve(values, kernel, mode="same")
  counts = np.convolve(np.ones_like(values), kernel, mode="same")
  return sums / counts


# ----------------------------------------------------------------------------
# Loss-based suggestions.


def _descent(y: np.ndarray, min_drop: float, first: int, last: int
             ) -> tuple[int, int, str | None]:
  """``(i_min, onset, why)`` of the usable curve ``y`` (points first..last).

  ``i_min`` is the minimum (first on ties); ``onset`` the last point before it
  that is still within a tenth of the total fall ``y[0] - y[i_min]`` of the
  starting level, i.e. where the real descent begins. ``why`` is set when the
  fall is not more than ``min_drop`` (no signal).
  """
  i_min = int(np.argmin(y))
  drop = float(y[0] - y[i_min])
  if not drop > 0 or not drop >= min_drop:
    if not drop > 0:
      return i_min, 0, (f"no decrease: the loss never falls below its value "
                        f"at point {first} ({y[0]:.4g}) over points "
                        f"{first}..{last}")
    return i_min, 0, (f"not enough signal: the loss falls by only "
                      f"{drop:.3g} over points {first}..{last}, not more "
                      f"than the {min_drop:.3g} required")
  high = np.flatnonzero(y[:i_min + 1] >= y[0] - 0.1 * drop)
  return i_min, int(high[-1]), None


def steepest(lrs: Any, losses: Any, *, skip_start: int | None = None,
             skip_end: int = 5, min_drop: float = 0.0) -> Suggestion:
  """LR at the steepest descent of the loss w.r.t. log10(LR).

  ``i* = argmin_i g_i`` with ``g = np.gradient(loss, log10(lr))`` (central
  differences inside, one-sided at the ends), searched from the onset of the
  descent to the minimum of the points left after skipping and dropping (see
  the module docstring); the suggestion is ``lrs[i*]``. The onset is the last
  point before the minimum whose loss is within a tenth of the total fall of
  the starting level: noise on the flat start of a ramp, where the loss has
  not moved yet, is never the answer (Lightning #1767). fastai's ``steep``
  takes forward differences w.r.t. ln(LR) and returns the left point of the
  steepest segment; the base of the logarithm does not move the argmin, and
  central differences centre it on a point instead of a segment.

  Args:
    lrs: [n] strictly increasing learning rates.
    losses: [n] (smoothed) losses; pass the smoothed curve of a ramp test.
    skip_start: points dropped at the start; default ``n // 10`` (fastai).
    skip_end: points dropped at the end (fastai and torch-lr-finder: 5).
    min_drop: the loss must fall by more than this below its starting level
      (e.g. a few times its noise), else there is no signal.

  Returns:
    A Suggestion with ``derivative="log_lr"``; ``lr`` is None when fewer than
    MIN_POINTS points are usable, or when the loss does not fall (by more
    than ``min_drop``).
  """
  lrs, losses = validate_curve(lrs, losses, "losses")
  start, stop, why = _usable_range(losses, skip_start, skip_end)
  if why is not None:
    return Suggestion("steepest", None, None, "log_lr", why)
  y = losses[start:stop]
  grad = np.gradient(y, np.log10(lrs[start:stop]))
  i_min, onset, why = _descent(y, min_drop, start, stop - 1)
  if why is not None:
    return Suggestion("steepest", None, None, "log_lr", why)
  i = onset + int(np.argmin(grad[onset:i_min + 1]))
  # Uneven log spacing leaves rounding-level slopes on an exactly flat curve,
  # so "decreasing" is decided on the values themselves.
  if not (grad[i] < 0 and np.any(np.diff(y) < 0)):
    return Suggestion(
        "steepest", None, None, "log_lr",
        f"no decrease: the loss never falls over points {start}..{stop - 1} "
        f"(least slope {grad[i]:.3g} per decade of LR)")
  return Suggestion(
      "steepest", lrs[start + i], start + i, "log_lr",
      f"min d(loss)/d(log10 lr) = {grad[i]:.4g} over the descent, points "
      f"{start + onset}..{start + i_min}")


def minimum(lrs: Any, losses: Any, *, factor: float = 10.0,
            skip_start: int | None = None, skip_end: int = 5,
            min_drop: float = 0.0) -> Suggestion:
  """LR at the minimum loss divided by ``factor`` (fastai's ``minimum``).

  ``i* = argmin_i loss_i`` over the usable points (first one on ties); the
  suggestion is ``lrs[i*] / factor`` and ``index`` is ``i*`` (the minimum
  itself, not the suggested LR).

  Args:
    lrs: [n] strictly increasing learning rates.
    losses: [n] (smoothed) losses.
    factor: divisor, >= 1 (fastai: 10).
    skip_start: points dropped at the start; default ``n // 10``.
    skip_end: points dropped at the end.
    min_drop: the loss must fall by more than this (see :func:`steepest`).

  Returns:
    A Suggestion with ``derivative="none"``; ``lr`` is None when fewer than
    MIN_POINTS points are usable or the loss never falls (by more than
    ``min_drop``) below its first usable value.
  """
  factor = _checks.check_number("factor", factor, low=1.0)
  lrs, losses = validate_curve(lrs, losses, "losses")
  start, stop, why = _usable_range(losses, skip_start, skip_end)
  if why is not None:
    return Suggestion("minimum", None, None, "none", why)
  y = losses[start:stop]
  i, _, why = _descent(y, min_drop, start, stop - 1)
  if why is not None:
    return Suggestion("minimum", None, None, "none", why)
  return Suggestion(
      "minimum", lrs[start + i] / factor, start + i, "none",
      f"lr = lrs[{start + i}] / {factor:g}, the LR at the minimum loss "
      f"{y[i]:.4g} divided by {factor:g}")


def _longest_decreasing(y: np.ndarray) -> np.ndarray:
  """lds[i] = length of the longest strictly decreasing subsequence ending at i.

  The O(n^2) recurrence of fastai's ``valley``, with the inner loop over j
  vectorised: ``lds[i] = 1 + max(lds[j] for j < i if y[j] > y[i])``.
  """
  lds = np.ones(y.size, dtype=np.int64)
  for i in range(1, y.size):
    higher = y[:i] > y[i]
    if higher.any():
      lds[i] = lds[:i][higher].max() + 1
  return lds


def valley(lrs: Any, losses: Any, *, skip_start: int | None = None,
           skip_end: int = 5, min_drop: float = 0.0) -> Suggestion:
  """fastai's ``valley``: a point about halfway down the longest descent.

  Follows ``valley`` in fastai's ``fastai/callback/schedule.py``:
  ``lds`` is the length of the longest strictly decreasing subsequence of the
  loss ending at each point, ``max_end`` the first point where it is longest,
  ``max_start = max_end - lds[max_end]``, ``sections = (max_end -
  max_start) / 3`` and the suggestion is the point ``max_start +
  int(sections) + int(sections / 2)`` -- about 1/2 of the way from
  ``max_start`` to ``max_end`` (1/3 + 1/6), not 2/3. For a descent made of
  the first two points, ``max_start = -1`` and fastai returns index -1
  (Python wraps around to the last, most divergent point); this function
  uses index 0 instead.
  fastai does not guard against a curve with no descent (it returns the first
  point); here ``lr`` is None then.

  Args:
    lrs: [n] strictly increasing learning rates.
    losses: [n] (smoothed) losses.
    skip_start: points dropped at the start; default ``n // 10``.
    skip_end: points dropped at the end.
    min_drop: the loss must fall by more than this (see :func:`steepest`).

  Returns:
    A Suggestion with ``derivative="index"`` (positions, not LR values, set
    the point).
  """
  lrs, losses = validate_curve(lrs, losses, "losses")
  start, stop, why = _usable_range(losses, skip_start, skip_end)
  if why is not None:
    return Suggestion("valley", None, None, "index", why)
  if min_drop > 0:
    _, _, why = _descent(losses[start:stop], min_drop, start, stop - 1)
    if why is not None:
      return Suggestion("valley", None, None, "index", why)
  lds = _longest_decreasing(losses[start:stop])
  max_end = int(np.argmax(lds))
  if lds[max_end] < 2:
    return Suggestion(
        "valley", None, None, "index",
        f"no decrease: the loss never falls over points {start}..{stop - 1}")
  max_start = max_end - int(lds[max_end])
  sections = (max_end - max_start) / 3
  idx = max(0, max_start + int(sections) + int(sections / 2))
  return Suggestion(
      "valley", lrs[start + idx], start + idx, "index",
      f"longest descent ({lds[max_end]} points) ends at point "
      f"{start + max_end}; fastai's point about halfway down it")


# ----------------------------------------------------------------------------
# Accuracy-based bounds (Smith 2017, sec. 3.3).


def accuracy_bounds(lrs: Any, accuracies: Any, *, margin: float = 0.1,
                    window: int = 3) -> tuple[Suggestion, Suggestion]:
  """Smith's bounds: where the accuracy starts to rise, and where that stops.

  Smith (2017, "Cyclical Learning Rates for Training Neural Networks",
  sec. 3.3) raises the LR while recording accuracy and sets base_lr where the
  accuracy starts to increase and max_lr where it slows, turns ragged or falls.
  Made precise here, on ``a`` = the accuracy smoothed by a centred running
  mean of ``window`` points (non-finite tail dropped first):

  * ``a0 = a[0]``, ``peak = max(a)``, ``rise = peak - a0``; if ``rise <= 0``
    there are no bounds (the accuracy never rises).
  * base: the first point with ``a >= a0 + margin * rise``.
  * max: the earlier of (i) the first point with ``a >= peak - margin * rise``
    (the rise has slowed to a plateau) and (ii) when, after base, ``a`` first
    falls more than ``margin * rise`` below its running maximum (ragged or
    falling), the point of that running maximum.
  * if base and max are the same point (the whole rise happened between two
    evaluations), base moves one point back, to the last one before the rise.

  Hence ``base.index < max.index`` and ``base.lr < max.lr`` whenever both
  are set.

  Args:
    lrs: [m] strictly increasing LRs at which the accuracy was measured.
    accuracies: [m] validation accuracies (any scale; higher is better).
    margin: fraction of the total rise used by the thresholds, in (0, 0.5).
    window: odd number of points of the running mean (1 = no smoothing).

  Returns:
    ``(base, max)`` Suggestions named ``"accuracy_base"`` and
    ``"accuracy_max"`` with ``derivative="none"``; indices point into ``lrs``.
  """
  margin = _checks.check_number("margin", margin, low=0.0, high=0.5,
                                low_inclusive=False, high_inclusive=False)
  window = _checks.check_int("window", window, low=1)
  if window % 2 == 0:
    raise ValueError(f"window must be an odd integer >= 1, got {window}")
  lrs, acc = validate_curve(lrs, accuracies, "accuracies")

  def none(why):
    return (Suggestion("accuracy_base", None, None, "none", why),
            Suggestion("accuracy_max", None, None, "none", why))

  _, stop, why = _usable_range(acc, 0, 0)
  if why is not None:
    return none(why)
  a = _smooth(acc[:stop], window)
  a0, peak = a[0], a.max()
  rise = peak - a0
  if not rise > 0:
    return none(f"flat: the smoothed accuracy never rises above its initial "
                f"level {a0:.4g} over points 0..{stop - 1}")
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


# ----------------------------------------------------------------------------
# CLR bounds.


def rise_point(lrs: Any, losses: Any, index_min: int, start: int = 0
               ) -> tuple[int | None, str]:
  """Where the loss, past its minimum at ``index_min``, has climbed back
  ``_RISE_FRACTION`` of its fall (finite points only; nothing skipped at the
  end: the blow-up is the end of a ramp).

  The fall is measured from the starting level, the median of the first
  quarter of the points from ``start`` to the minimum (one noisy point does
  not set it).

  Returns:
    ``(index, note)``; index None when the loss never climbs that far.
  """
  lrs = np.asarray(lrs, np.float64)
  y = np.asarray(losses, np.float64)
  head = y[start:start + max(1, (index_min - start) // 4)]
  head = head[np.isfinite(head)]
  level0 = float(np.median(head)) if head.size else float(y[index_min])
  drop = level0 - y[index_min]
  level = y[index_min] + _RISE_FRACTION * drop
  finite = np.flatnonzero(np.isfinite(y))
  after = finite[(finite > index_min) & (y[finite] > level)]
  if not after.size:
    return None, (f"the smoothed loss never climbs back above {level:.4g} "
                  f"(half its fall) after its minimum at LR "
                  f"{lrs[index_min]:.4g}")
  i = int(after[0])
  return i, (f"the smoothed loss climbs back to half its fall ({level:.4g}) "
             f"at LR {lrs[i]:.4g}")


def _clr_pair(lrs: np.ndarray, losses: np.ndarray, mini: Suggestion,
              acc_base: Suggestion | None, acc_max: Suggestion | None,
              start: int) -> tuple[float | None, float | None, str]:
  prefix = ""
  if acc_base is not None and acc_max is not None:
    if acc_base.lr is not None and acc_max.lr is not None:
      return acc_base.lr, acc_max.lr, (
          f"accuracy rule (Smith 2017, sec. 3.3): base_lr = "
          f"{acc_base.lr:.4g}, where the accuracy starts to rise "
          f"({acc_base.reason}); max_lr = {acc_max.lr:.4g}, where the rise "
          f"stops ({acc_max.reason})")
    prefix = f"accuracy bounds unavailable ({acc_base.reason}); "
  if mini.lr is None:
    return None, None, prefix + f"no CLR bounds: {mini.reason}"
  i, note = rise_point(lrs, losses, mini.index, start)
  if i is None:
    # No blow-up within the ramp: the minimum itself is the highest LR seen
    # to train, and the safe choice is a factor below it.
    top = float(lrs[mini.index]) / _MAX_DIVISOR
    how = (f"{note}, so max_lr = LR at the minimum / {_MAX_DIVISOR:g} = "
           f"{top:.4g} (raise end_lr to see where the loss turns up)")
  else:
    top = float(lrs[i]) / _MAX_DIVISOR
    how = f"{note}; max_lr = that LR / {_MAX_DIVISOR:g} = {top:.4g}"
  base = top / _BASE_DIVISOR
  return base, top, prefix + (
      f"loss rule: {how}; base_lr = max_lr / {_BASE_DIVISOR:g} = {base:.4g} "
      "(Smith 2017: base = max/3 to max/4)")


def suggest(lrs: Any, losses: Any, accuracies: Any = None, *,
            accuracy_lrs: Any = None, skip_start: int | None = None,
            skip_end: int = 5, factor: float = 10.0, margin: float = 0.1,
            window: int = 3, min_drop: float = 0.0) -> Suggestions:
  """Every suggestion for one range test, plus a (base_lr, max_lr) pair.

  The pair follows :func:`clr_bounds`.

  Args:
    lrs: [n] strictly increasing learning rates.
    losses: [n] (smoothed) losses.
    accuracies: optional [m] validation accuracies.
    accuracy_lrs: [m] LRs of ``accuracies``; default ``lrs`` (then m = n).
    skip_start, skip_end: see :func:`steepest` (loss suggestions only).
    factor: divisor of :func:`minimum`.
    margin, window: see :func:`accuracy_bounds`.
    min_drop: the fall of the loss required for a signal (see
      :func:`steepest`); :func:`suggest_ramp` derives it from the noise.

  Returns:
    A Suggestions; its accuracy fields are None without ``accuracies``.
  """
  lrs_arr, _ = validate_curve(lrs, losses, "losses")
  kw = dict(skip_start=skip_start, skip_end=skip_end, min_drop=min_drop)
  steep = steepest(lrs, losses, **kw)
  mini = minimum(lrs, losses, factor=factor, **kw)
  vall = valley(lrs, losses, **kw)
  acc_base = acc_max = None
  if accuracies is not None:
    acc_base, acc_max = accuracy_bounds(
        lrs if accuracy_lrs is None else accuracy_lrs, accuracies,
        margin=margin, window=window)
  start = lrs_arr.size // 10 if skip_start is None else int(skip_start)
  base_lr, max_lr, rule = _clr_pair(lrs_arr, np.asarray(losses, np.float64),
                                    mini, acc_base, acc_max, start)
  return Suggestions(steep, mini, vall, acc_base, acc_max, base_lr, max_lr,
                     rule)


def clr_bounds(lrs: Any, losses: Any, accuracies: Any = None, *,
               accuracy_lrs: Any = None, skip_start: int | None = None,
               skip_end: int = 5, margin: float = 0.1, window: int = 3,
               ) -> tuple[float | None, float | None, str]:
  """A (base_lr, max_lr) pair for a cyclic schedule, and the rule used.

  * With accuracies whose :func:`accuracy_bounds` exist: Smith's accuracy
    rule, ``base_lr = accuracy_base.lr`` and ``max_lr = accuracy_max.lr``.
  * Otherwise the loss rule: ``max_lr = lr_up / 4`` with ``lr_up`` the LR
    where the smoothed loss, past its minimum, has climbed back half of its
    fall (:func:`rise_point`: the blow-up, seen through the EMA's lag; Smith
    2017: max_lr where the loss turns up or ragged); when the loss never
    turns up within the ramp, ``max_lr = lr_min / 4`` with ``lr_min`` the LR
    at the minimum. ``base_lr = max_lr / 4`` (Smith 2017: base = max/3 to
    max/4). The steepest point is reported but not used: on a short ramp it
    sits right below the minimum and makes a "cycle" of almost constant
    LR.
  * Without a minimum (curve too short or never decreasing): ``(None, None)``.

  ``base_lr < max_lr`` whenever both are set. The returned text states the
  rule and the numbers, and why a fallback was taken.

  Args:
    lrs, losses, accuracies, accuracy_lrs, skip_start, skip_end, margin,
      window: as in :func:`suggest`.

  Returns:
    ``(base_lr, max_lr, rule)``.
  """
  s = suggest(lrs, losses, accuracies, accuracy_lrs=accuracy_lrs,
              skip_start=skip_start, skip_end=skip_end, margin=margin,
              window=window)
  return s.base_lr, s.max_lr, s.rule


# ----------------------------------------------------------------------------
# A ramp's default rule: noise-aware signal threshold.

# The loss must fall by at least this fraction of its starting level...
MIN_DECREASE = 0.05
# ... and by more than this many standard deviations of the smoothed loss.
NOISE_FACTOR = 3.0


def signal_threshold(losses: Any, smoothed: Any, smoothing: float, *,
                     min_decrease: float = MIN_DECREASE,
                     noise_factor: float = NOISE_FACTOR,
                     skip_start: int | None = None) -> float:
  """The fall of the smoothed loss that counts as a signal.

  ``max(min_decrease * |level|, noise_factor * sigma_s)``: ``level`` is the
  smoothed loss at the first usable point, ``sigma_s`` the noise left in the
  smoothed curve, ``sigma_raw * sqrt(a / (2 - a))`` for an EMA of factor
  ``a`` on white noise, with ``sigma_raw`` a robust (MAD) estimate from the
  step-to-step differences of the raw loss (insensitive to the trend).

  Args:
    losses: [n] raw losses of the ramp.
    smoothed: [n] their bias-corrected EMA.
    smoothing: the EMA factor ``a`` in (0, 1].
    min_decrease, noise_factor: see above.
    skip_start: points skipped at the start (default ``n // 10``).

  Returns:
    The threshold (0 when the curve is too short to estimate it).
  """
  raw = np.asarray(losses, np.float64)
  smooth = np.asarray(smoothed, np.float64)
  start = raw.size // 10 if skip_start is None else int(skip_start)
  finite = np.flatnonzero(~np.isfinite(raw) | ~np.isfinite(smooth))
  stop = int(finite[0]) if finite.size else raw.size
  if stop - start < MIN_POINTS:
    return 0.0
  diffs = np.diff(raw[start:stop])
  sigma_raw = 1.4826 * float(np.median(np.abs(diffs))) / np.sqrt(2.0)
  a = float(smoothing)
  sigma_s = sigma_raw * np.sqrt(a / (2.0 - a))
  level = abs(float(smooth[start]))
  return float(max(min_decrease * level, noise_factor * sigma_s))


def suggest_ramp(lrs: Any, losses: Any, smoothed: Any, *,
                 smoothing: float, accuracies: Any = None,
                 accuracy_lrs: Any = None, stop_reason: str = "completed",
                 min_decrease: float = MIN_DECREASE,
                 noise_factor: float = NOISE_FACTOR,
                 **kwargs: Any) -> Suggestions:
  """The default suggestions of a recorded ramp (what ``suggest()`` of a
  range-test result gives).

  :func:`suggest` on the smoothed loss (NaN where the raw loss is not
  finite, so a divergent tail is dropped), with ``min_drop`` from
  :func:`signal_threshold`. Without a signal every loss suggestion is None
  and its reason says how much longer a ramp would give one.

  Args:
    lrs, losses, smoothed: the ramp's LRs, raw and smoothed losses.
    smoothing: the EMA factor used by the ramp.
    accuracies, accuracy_lrs: validation accuracies and their LRs.
    stop_reason: why the ramp ended (for the advice).
    min_decrease, noise_factor: see :func:`signal_threshold`.
    **kwargs: forwarded to :func:`suggest` (``skip_start``, ``skip_end``,
      ``factor``, ``margin``, ``window``).
  """
  raw = np.asarray(losses, np.float64)
  curve = np.where(np.isfinite(raw), np.asarray(smoothed, np.float64),
                   np.nan)
  min_drop = kwargs.pop("min_drop", None)
  if min_drop is None:
    min_drop = signal_threshold(raw, curve, smoothing,
                                min_decrease=min_decrease,
                                noise_factor=noise_factor,
                                skip_start=kwargs.get("skip_start"))
  s = suggest(lrs, curve, accuracies, accuracy_lrs=accuracy_lrs,
              min_drop=min_drop, **kwargs)
  if s.minimum.lr is not None or "too short" in (s.minimum.reason or ""):
    return s
  n = raw.size
  advice = (f"; run {n} more steps (a ramp of {2 * n} steps gives the loss "
            "twice as long per decade of LR)")
  if stop_reason == "completed":
    advice += ", or raise end_lr if the loss never turned up"
  fix = lambda x: None if x is None else Suggestion(  # noqa: E731
      x.method, x.lr, x.index, x.derivative, (x.reason or "") + advice)
  return Suggestions(fix(s.steepest), fix(s.minimum), fix(s.valley),
                     s.accuracy_base, s.accuracy_max, s.base_lr, s.max_lr,
                     s.rule + advice)
