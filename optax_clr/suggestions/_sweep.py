"""Rules native to a sweep of fixed learning rates (:func:`suggest_sweep`).

In a sweep every point is a finished run at one LR, not a step of a ramp:
the corrections a ramp needs for its lag (``minimum / 10``, ``max = LR at
the minimum / 3``) do not apply, and only the runs that trained (status
``"trained"``, :func:`~optax_clr.suggestions.classify`) count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from optax_clr import _checks
from optax_clr.suggestions._status import STATUSES
from optax_clr.suggestions._types import Suggestion
from optax_clr.suggestions._types import SweepSuggestions

TOLERANCE = 0.1
PLATEAU = 0.01


def _score(mean_loss: np.ndarray, final: Mapping[str, Any],
           initial: Mapping[str, Any], initial_loss: np.ndarray
           ) -> tuple[Any, Any, str, bool]:
  """``(score, initial score, what, higher_is_better)``."""
  if "accuracy" in final:
    init = initial.get("accuracy")
    return (final["accuracy"], np.full(mean_loss.shape, np.nan)
            if init is None else init, "final validation accuracy", True)
  if "loss" in final:
    return (final["loss"], initial.get("loss", initial_loss),
            "final validation loss", False)
  return mean_loss, initial_loss, "final windowed training loss", False


def _run(mask: np.ndarray, i: int) -> tuple[int, int]:
  """``(lo, hi)``: the contiguous run of True in ``mask`` around ``i``."""
  lo = hi = i
  while lo > 0 and mask[lo - 1]:
    lo -= 1
  while hi < mask.size - 1 and mask[hi + 1]:
    hi += 1
  return lo, hi


def _best(score: np.ndarray, init: np.ndarray, stable: np.ndarray,
          sign: float) -> int:
  """The best run by :func:`suggest_sweep`'s rule (``sign`` 1: higher
  scores are better, -1: lower)."""
  worst = (np.nanmin if sign > 0 else np.nanmax)(score[stable])
  none = np.where(np.isfinite(init), init, worst)  # no improvement
  if score.size >= 5:
    value = np.where(stable, score, none)
    score = np.array([np.mean(value[max(0, i - 1):i + 2])
                      for i in range(value.size)])
  gain = np.where(stable & np.isfinite(sign * score), sign * score,
                  -np.inf) - sign * none
  best = int(np.flatnonzero(gain == gain.max())[0])
  if gain[best] > 0:
    lo, hi = _run(gain >= (1.0 - PLATEAU) * gain[best], best)
    best = (lo + hi) // 2
  return best


def suggest_sweep(lrs: Any, status: Any, mean_loss: Any, initial_loss: Any,
                  *, final_metrics: Mapping[str, Any] | None = None,
                  initial_metrics: Mapping[str, Any] | None = None,
                  tolerance: float = TOLERANCE) -> SweepSuggestions:
  """Best LR, stable range and CLR bounds of a sweep (None, with the
  reason, when no run trained).

  * **Best LR**: the stable run with the best score -- the highest final
    validation accuracy, else the lowest final validation loss, else the
    lowest final windowed training loss -- averaged with its neighbours on
    the LR grid (from 5 runs on; unstable neighbours count as no
    improvement), so that no single run at the edge of stability decides;
    where neighbouring LRs come within ``PLATEAU`` (1 %) of the best
    improvement, the middle one (a flat optimum's argmax is decided by float
    rounding: measured on digits, the best of 12 LRs moved 0.043 <-> 0.081
    between library versions, both within one validation example).
  * **CLR bounds** from the stable range around it: with ``q_i`` the
    fraction of the best run's improvement (over the initial score) that run
    ``i`` achieved, ``max_lr`` is the largest stable LR with ``q >= 1 -
    tolerance`` (never below the best LR), ``base_lr`` the smallest with
    ``q >= 0.5``, kept within ``[max_lr / 10, max_lr / 3]`` (Smith 2017:
    base = max/3 to max/4 when only max is known).

  Args:
    lrs: [K] strictly increasing LRs.
    status: [K] run statuses (:func:`classify`).
    mean_loss, initial_loss: [K] final windowed and first training loss.
    final_metrics, initial_metrics: validation metrics after and before
      training (name -> [K]), if evaluated.
    tolerance: in (0, 1), see above.
  """
  lrs = _checks.check_real_array("lrs", lrs, ndim=1, positive=True)
  tolerance = _checks.check_number("tolerance", tolerance, low=0.0, high=1.0,
                                   low_inclusive=False, high_inclusive=False)
  status = np.asarray(status).astype(str)
  stable = status == "trained"
  summary = ", ".join(f"{int((status == s).sum())} {s}" for s in STATUSES
                      if (status == s).any())
  if not stable.any():
    why = (f"no stable run among {lrs.size} ({summary}); widen the LR "
           "range (lower min_lr if all diverged, raise max_lr or num_steps "
           "if all stalled)")
    return SweepSuggestions(Suggestion("best", None, None, "none", why),
                            None, None, None, None, why)
  score, init, what, higher = _score(
      np.asarray(mean_loss, np.float64), dict(final_metrics or {}),
      dict(initial_metrics or {}), np.asarray(initial_loss, np.float64))
  score, init = np.asarray(score, np.float64), np.asarray(init, np.float64)
  sign = 1.0 if higher else -1.0
  best = _best(score, init, stable, sign)
  lo, hi = _run(stable, best)
  gain = sign * (score - init)  # improvement over the initial score
  gain = np.where(np.isfinite(gain), gain, -np.inf)
  q = gain / gain[best] if gain[best] > 0 else np.where(
      np.arange(lrs.size) == best, 1.0, 0.0)
  top = max(i for i in range(best, hi + 1) if q[i] >= 1 - tolerance)
  half = min((i for i in range(lo, best + 1) if q[i] >= 0.5), default=best)
  max_lr = float(lrs[top])
  base_lr = float(np.clip(lrs[half], max_lr / 10.0, max_lr / 3.0))
  averaged = ", averaged with its grid neighbours" if lrs.size >= 5 else ""
  best_s = Suggestion(
      "best", lrs[best], best, "none",
      f"best {what} ({score[best]:.4g}{averaged}) of {int(stable.sum())} "
      f"stable runs ({summary})")
  rule = (f"sweep rule: max_lr = {max_lr:.4g}, the largest stable LR within "
          f"{tolerance:g} of the best run's improvement (q = {q[top]:.3f}); "
          f"base_lr = {base_lr:.4g}: the smallest stable LR with half of it "
          f"({lrs[half]:.4g}), kept within [max_lr/10, max_lr/3]")
  return SweepSuggestions(best_s, float(lrs[lo]), float(lrs[hi]), base_lr,
                          max_lr, rule)
