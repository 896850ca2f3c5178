"""Smith's (2018) rule for choosing a weight decay from LR range tests
(:func:`disciplined`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from optax_clr.suggestions._types import DisciplinedSuggestions
from optax_clr.suggestions._types import Suggestions

TOLERANCE = 0.1
SMITH_MOMENTUM = (0.85, 0.95)


def disciplined(weight_decays: Any, momenta: Any,
                suggestions: Sequence[Suggestions],
                smoothed: Sequence[Any], *,
                tolerance: float = TOLERANCE) -> DisciplinedSuggestions:
  """The weight decay, LR bounds and momentum of Smith's recipe.

  "A disciplined approach to neural network hyper-parameters" (Smith 2018,
  sec. 4.3): run the LR range test at a few weight decays and use the one
  that lets the largest learning rate train while reaching (about) the
  lowest loss; use cyclical momentum, high (0.95) when the LR is low and low
  (0.85) when it peaks. Made precise here:

  * each ramp's CLR bounds come from its own curve (:func:`suggest_ramp`),
    its ``min_loss`` is the lowest smoothed loss it reached;
  * a ramp is *eligible* when it gave bounds and its ``min_loss`` is within
    ``tolerance`` (a fraction of the best ramp's fall from its start) of the
    lowest ``min_loss``;
  * the choice is the eligible ramp with the largest ``max_lr``; ramps
    within 10 % of it count as tied, and the tie goes to the larger weight
    decay (it regularises more), then the larger momentum;
  * momentum: with one momentum tested, Smith's 0.95 -> 0.85; with several,
    the chosen one as the maximum and 0.1 below it as the minimum.

  Args:
    weight_decays, momenta: [S] each ramp's weight decay and momentum.
    suggestions: each ramp's :class:`Suggestions`.
    smoothed: each ramp's smoothed loss curve (its recorded steps).
    tolerance: see above.
  """
  wds = np.asarray(weight_decays, np.float64)
  moms = np.asarray(momenta, np.float64)
  curves = [np.asarray(c, np.float64) for c in smoothed]
  mins = np.array([np.nanmin(c) if np.isfinite(c).any() else np.inf
                   for c in curves])
  starts = np.array([np.nanmedian(c[:max(1, c.size // 10)]) if c.size
                     else np.nan for c in curves])
  tops = np.array([np.nan if s.max_lr is None else s.max_lr
                   for s in suggestions])
  best_min = float(np.min(mins))
  fall = float(np.nanmedian(starts) - best_min)
  eligible = np.isfinite(tops) & (mins <= best_min + tolerance * max(
      fall, 0.0))
  chosen = None
  if eligible.any():
    largest = np.nanmax(np.where(eligible, tops, np.nan))
    tied = np.flatnonzero(eligible & (tops >= largest / 1.1))
    chosen = int(max(tied, key=lambda i: (wds[i], moms[i])))
  rows = tuple({"weight_decay": float(wds[i]), "momentum": float(moms[i]),
                "min_loss": float(mins[i]),
                "max_lr": float(tops[i]) if np.isfinite(tops[i]) else None,
                "eligible": bool(eligible[i]), "chosen": i == chosen}
               for i in range(wds.size))
  if chosen is None:
    return DisciplinedSuggestions(
        None, None, None, None, *SMITH_MOMENTUM,
        f"no ramp gave CLR bounds ({suggestions[0].rule})", rows)
  m = float(moms[chosen])
  several = np.unique(moms).size > 1
  base_m, max_m = (max(0.0, m - 0.1), m) if several else SMITH_MOMENTUM
  s = suggestions[chosen]
  rule = (f"Smith 2018: of {int(eligible.sum())} ramps whose lowest loss is "
          f"within {tolerance:g} of the best fall ({best_min:.4g}), the one "
          f"allowing the largest max_lr ({s.max_lr:.4g}; ties within 10 % to "
          f"the larger weight decay): weight_decay={wds[chosen]:g}, "
          f"momentum={m:g}; its bounds: {s.rule}")
  return DisciplinedSuggestions(float(wds[chosen]), m, s.base_lr, s.max_lr,
                                base_m, max_m, rule, rows)
