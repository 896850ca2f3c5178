"""The rule book: how CLR bounds are read from a range test's ramp.

Every entry point (``RangeTestResult.suggest()``, the seeds' medians,
``fit``, the CLI, the demo) reads bounds here, by the rules of
:func:`clr_bounds`, after :func:`resolution`'s check; :func:`suggest_ramp`
adds the noise-aware signal threshold.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from optax_clr import _checks
from optax_clr.suggestions import _points
from optax_clr.suggestions._types import Suggestion
from optax_clr.suggestions._types import Suggestions

RULES = ("loss", "accuracy")
# The loss rule's constants, measured in clr_bounds' docstring: max_lr is
# the blow-up divided by MAX_DIVISOR[adaptive] (an optimizer with a second
# moment, Adam's nu, blows up far above its best LR).
_RISE_FRACTION, _BASE_DIVISOR = 0.5, 4.0
MAX_DIVISOR = {False: 4.0, True: 16.0}
MAX_LAG_DECADES = 1.0  # the most the EMA's lag may span (resolution())
MIN_DECREASE, NOISE_FACTOR = 0.05, 3.0  # signal_threshold()'s


def rise_point(lrs: Any, losses: Any, index_min: int, start: int = 0
               ) -> tuple[int | None, str]:
  """``(index, note)``: where the loss, past its minimum at ``index_min``,
  has climbed back half of its fall (None if never; finite points only,
  nothing skipped at the end: the blow-up is the end of a ramp). The fall is
  from the median of the first quarter of the points from ``start`` to the
  minimum (one noisy point does not set it)."""
  lrs = np.asarray(lrs, np.float64)
  y = np.asarray(losses, np.float64)
  head = y[start:start + max(1, (index_min - start) // 4)]
  head = head[np.isfinite(head)]
  level0 = float(np.median(head)) if head.size else float(y[index_min])
  level = y[index_min] + _RISE_FRACTION * (level0 - y[index_min])
  finite = np.flatnonzero(np.isfinite(y))
  after = finite[(finite > index_min) & (y[finite] > level)]
  if not after.size:
    return None, (f"the smoothed loss never climbs back above {level:.4g} "
                  f"(half its fall) after its minimum at LR "
                  f"{lrs[index_min]:.4g}")
  i = int(after[0])
  return i, (f"the smoothed loss climbs back to half its fall ({level:.4g}) "
             f"at LR {lrs[i]:.4g}")


def _loss_pair(lrs: np.ndarray, losses: np.ndarray, mini: Suggestion,
               start: int, adaptive: bool
               ) -> tuple[float | None, float | None, str]:
  """The loss rule's ``(base_lr, max_lr, text)``."""
  if mini.lr is None:
    return None, None, f"no CLR bounds: {mini.reason}"
  i, note = rise_point(lrs, losses, mini.index, start)
  # No blow-up within the ramp: the minimum itself is the highest LR seen to
  # train, and the safe choice is a factor below it.
  div = MAX_DIVISOR[bool(adaptive)]
  top = float(lrs[mini.index if i is None else i]) / div
  how = f"{note}; max_lr = that LR / {div:g} = {top:.4g}"
  if i is None:
    how = (f"{note}, so max_lr = LR at the minimum / {div:g} = "
           f"{top:.4g} (raise end_lr to see where the loss turns up)")
  if adaptive:
    how += f" (/ {div:g}: an adaptive optimizer, with a second moment)"
  base = top / _BASE_DIVISOR
  return base, top, (
      f"loss rule: {how}; base_lr = max_lr / {_BASE_DIVISOR:g} = {base:.4g} "
      "(Smith 2017: base = max/3 to max/4)")


def resolution(lrs: Any, smoothing: float | None) -> str | None:
  """Why a ramp is too coarse for its smoothing, or None when it is fine:
  the EMA of the loss lags ``1 / smoothing`` steps behind the ramp, and
  where that spans more than :data:`MAX_LAG_DECADES` of LR at the ramp's top
  (80 steps over seven decades at smoothing 0.05: 1.75 decades), the
  blow-up is read a decade or more too late -- bounds that kill the model.
  """
  lrs = np.asarray(lrs, np.float64)
  if smoothing is None or lrs.size < 3 or not (lrs > 0).all():
    return None
  tail = lrs[-max(3, lrs.size // 3):]
  decades = np.log10(tail[-1] / tail[0])
  if decades <= 0:
    return None
  per_decade = (tail.size - 1) / decades
  lag = (1.0 / float(smoothing)) / per_decade
  if lag <= MAX_LAG_DECADES:
    return None
  total = np.log10(lrs[-1] / lrs[0])
  # steps - 1 intervals per ramp: one more step than decades * lag / a.
  need = int(np.ceil(total / MAX_LAG_DECADES / float(smoothing))) + 1
  return (f"not enough resolution: {per_decade:.0f} steps per decade of LR, "
          f"so the smoothed loss (smoothing {smoothing:g}) lags "
          f"{lag:.2f} decades behind the ramp and would put max_lr too "
          f"high; run at least {need} steps over these {total:.1f} decades "
          f"(the default: {int(np.ceil(40 * total))})")


def suggest(lrs: Any, losses: Any, accuracies: Any = None, *,
            accuracy_lrs: Any = None, skip_start: int | None = None,
            skip_end: int = 5, factor: float = 10.0, margin: float = 0.1,
            window: int = 3, min_drop: float = 0.0, rule: str = "loss",
            smoothing: float | None = None,
            adaptive: bool = False) -> Suggestions:
  """Every suggestion for one range test, and :func:`clr_bounds`' pair.

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
    rule: which rule answers (:data:`RULES`); every available rule's
      reading is in ``readings``.
    smoothing: the EMA factor of ``losses``, for :func:`resolution` (None:
      not checked; a ramp too coarse gets no loss-rule bounds).
    adaptive: the ramp's optimizer keeps a second moment (Adam, RMSProp):
      the loss rule divides the blow-up by 16 instead of 4.
  """
  _checks.check_choice("rule", rule, RULES)
  lrs_arr, _ = _points.validate_curve(lrs, losses, "losses")
  kw = dict(skip_start=skip_start, skip_end=skip_end, min_drop=min_drop)
  steep = _points.steepest(lrs, losses, **kw)
  mini = _points.minimum(lrs, losses, factor=factor, **kw)
  vall = _points.valley(lrs, losses, **kw)
  start = lrs_arr.size // 10 if skip_start is None else int(skip_start)
  readings = {"loss": _loss_pair(lrs_arr, np.asarray(losses, np.float64),
                                 mini, start, adaptive)}
  acc_base = acc_max = None
  if accuracies is not None:
    acc_base, acc_max = _points.accuracy_bounds(
        lrs if accuracy_lrs is None else accuracy_lrs, accuracies,
        margin=margin, window=window)
    readings["accuracy"] = (
        None, None, f"accuracy rule: no bounds ({acc_base.reason})")
    if acc_base.lr is not None:
      readings["accuracy"] = (acc_base.lr, acc_max.lr, (
          f"accuracy rule (Smith 2017, sec. 3.3): base_lr = "
          f"{acc_base.lr:.4g}, where the accuracy starts to rise "
          f"({acc_base.reason}); max_lr = {acc_max.lr:.4g}, where the rise "
          f"stops ({acc_max.reason})"))
  base_lr, max_lr, text = readings.get(rule) or (
      None, None, "accuracy rule: no validation accuracy was evaluated "
      "(pass val_data)")
  others = [f"{name} rule reads " + ("no bounds" if r[0] is None else
                                     f"{r[0]:.3g} to {r[1]:.3g}")
            for name, r in readings.items() if name != rule]
  if others:
    text += (f". Answered by the {rule} rule (rule={rule!r}; "
             + "; ".join(others) + ")")
  coarse = resolution(lrs_arr, smoothing)
  if coarse is not None and rule == "loss":
    base_lr = max_lr = None
    text = coarse
    readings["loss"] = (None, None, coarse)
  readings = {name: dict(zip(("base_lr", "max_lr", "rule"), r))
              for name, r in readings.items()}
  return Suggestions(steep, mini, vall, acc_base, acc_max, base_lr, max_lr,
                     text, readings, rule)


def clr_bounds(lrs: Any, losses: Any, accuracies: Any = None, *,
               accuracy_lrs: Any = None, skip_start: int | None = None,
               skip_end: int = 5, margin: float = 0.1, window: int = 3,
               rule: str = "loss", adaptive: bool = False,
               ) -> tuple[float | None, float | None, str]:
  """A (base_lr, max_lr) pair for a cyclic schedule, and the rule used.

  * ``rule="loss"`` (the default, always): ``max_lr = lr_up / 4`` (``/ 16``
    for an adaptive optimizer: Adam, RMSProp) with ``lr_up`` the LR where
    the smoothed loss, past its minimum, has climbed back half of its fall
    (:func:`rise_point`: the blow-up, seen through the EMA's lag; Smith
    2017: max_lr where the loss turns up or ragged), else (no blow-up in the
    ramp) the LR at the minimum; ``base_lr = max_lr / 4`` (Smith 2017: base
    = max/3 to max/4). The divisors were chosen on the "tune" half of
    benchmarks/bench_suggestions.py's ten tasks (conv nets with and without
    BatchNorm, a tabular MLP, a regression, a character LM; SGD and Adam):
    one divisor cannot serve both, Adam's max_lr at /4 was a median 7x its
    best fixed LR, SGD's 3x; 4 / 16 kept the most seeds within 0.95 of a
    dense fixed-LR grid on both halves (benchmarks/README.md, section 6).
    The steepest point is not used: on a short ramp it sits right below
    the minimum, a "cycle" of almost constant LR.
  * ``rule="accuracy"``: Smith's (2017) accuracy rule, when validation
    accuracy was evaluated: ``accuracy_base.lr`` to ``accuracy_max.lr``.
  * No bounds without a minimum, or a rise of the accuracy.

  Both readings are shown whenever both exist (``Suggestions.readings``);
  ``rule`` chooses which one answers, so adding validation data never
  changes the answer by itself. ``base_lr < max_lr`` whenever both are set;
  the text (``rule``) states the rule and the numbers, and any fallback.

  Args:
    lrs, losses, accuracies, accuracy_lrs: as in :func:`suggest`.
    skip_start, skip_end, margin, window, rule, adaptive: as in
      :func:`suggest`.
  """
  s = suggest(lrs, losses, accuracies, accuracy_lrs=accuracy_lrs,
              skip_start=skip_start, skip_end=skip_end, margin=margin,
              window=window, rule=rule, adaptive=adaptive)
  return s.base_lr, s.max_lr, s.rule


def signal_threshold(losses: Any, smoothed: Any, smoothing: float, *,
                     min_decrease: float = MIN_DECREASE,
                     noise_factor: float = NOISE_FACTOR,
                     skip_start: int | None = None) -> float:
  """The fall of the smoothed loss that counts as a signal (0 when the
  curve is too short to tell).

  ``max(min_decrease * |level|, noise_factor * sigma_s)``: ``level`` is the
  smoothed loss at the first usable point, ``sigma_s`` the noise left in the
  smoothed curve, ``sigma_raw * sqrt(a / (2 - a))`` for an EMA of factor
  ``a`` on white noise, with ``sigma_raw`` a robust (MAD) estimate from the
  step-to-step differences of the raw loss (insensitive to the trend).

  Args:
    losses, smoothed: [n] raw losses of the ramp, their bias-corrected EMA.
    smoothing: the EMA factor ``a`` in (0, 1].
    min_decrease, noise_factor: see above.
    skip_start: points skipped at the start (default ``n // 10``).
  """
  raw = np.asarray(losses, np.float64)
  smooth = np.asarray(smoothed, np.float64)
  start = raw.size // 10 if skip_start is None else int(skip_start)
  finite = np.flatnonzero(~np.isfinite(raw) | ~np.isfinite(smooth))
  stop = int(finite[0]) if finite.size else raw.size
  if stop - start < _points.MIN_POINTS:
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
  """A recorded ramp's suggestions (a range-test result's ``suggest()``):
  :func:`suggest` on the smoothed loss (NaN where the raw loss is not
  finite: a divergent tail is dropped) with ``min_drop`` from
  :func:`signal_threshold`; without a signal, the reasons say how much
  longer a ramp would give one.

  Args:
    lrs, losses, smoothed: the ramp's LRs, raw and smoothed losses.
    smoothing: the EMA factor used by the ramp.
    accuracies, accuracy_lrs: validation accuracies and their LRs.
    stop_reason: why the ramp ended (for the advice).
    min_decrease, noise_factor: see :func:`signal_threshold`.
    **kwargs: forwarded to :func:`suggest` (``skip_start``, ``skip_end``,
      ``factor``, ``margin``, ``window``, ``rule``, ``adaptive``,
      ``min_drop``).
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
              min_drop=min_drop, smoothing=smoothing, **kwargs)
  if s.minimum.lr is not None or "too short" in (s.minimum.reason or ""):
    return s
  n = raw.size
  advice = (f"; run {n} more steps (a ramp of {2 * n} steps gives the loss "
            "twice as long per decade of LR)")
  if stop_reason == "completed":
    advice += ", or raise end_lr if the loss never turned up"
  return dataclasses.replace(s, rule=s.rule + advice, **{
      name: dataclasses.replace(p, reason=(p.reason or "") + advice)
      for name, p in (("steepest", s.steepest), ("minimum", s.minimum),
                      ("valley", s.valley))})
