"""Suggestions over several seeds: each value as a median with its spread.

A range test's answer depends on the data order and the initial weights
(neutral_prophet #892: "unstable and strongly dependent on range + seed";
fastai #3295, Lightning #9704). Running S ramps (``multi_seed_range_test``,
one compiled program) and reporting each suggestion as the median over the
seeds with the smallest and largest seed's value shows how far one ramp can
be trusted; the medians are the suggestion.
"""

from __future__ import annotations

from collections.abc import Sequence

from optax_clr.suggestions._types import SeedSuggestions
from optax_clr.suggestions._types import Spread
from optax_clr.suggestions._types import Suggestions


def aggregate(per_seed: Sequence[Suggestions]) -> SeedSuggestions:
  """Medians and spreads of S seeds' suggestions.

  ``base_lr`` and ``max_lr`` are the medians of the seeds that gave bounds,
  when at least half of the seeds did; if the median base is not below the
  median max, base becomes max / 4 (Smith 2017).
  """
  per_seed = tuple(per_seed)
  spreads = {name: Spread.of([getattr(s, name).lr for s in per_seed])
             for name in ("steepest", "minimum", "valley")}
  spreads.update({name: Spread.of([getattr(s, name) for s in per_seed])
                  for name in ("base_lr", "max_lr")})
  lows, highs = spreads["base_lr"], spreads["max_lr"]
  given = sum(v is not None for v in highs.values)
  if given * 2 < len(per_seed) or highs.median is None:
    why = (f"only {given} of {len(per_seed)} seeds gave CLR bounds: "
           + "; ".join(sorted({s.rule.split(';')[0] for s in per_seed
                               if s.max_lr is None})))
    return SeedSuggestions(per_seed, spreads, None, None, why)
  base, top = lows.median, highs.median
  note = ""
  if not base < top:
    base = top / 4.0
    note = " (median base_lr not below median max_lr, so base = max / 4)"
  rule = (f"medians over {given} of {len(per_seed)} seeds: max_lr "
          f"{highs.text()}, base_lr {lows.text()}{note}")
  return SeedSuggestions(per_seed, spreads, base, top, rule)
