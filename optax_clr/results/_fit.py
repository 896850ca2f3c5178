"""What ``fit`` returns: the trained survivor, its schedule, the evidence.

:class:`Candidate` names one schedule ``fit`` tries; :class:`FitResult`
holds the survivor's model, schedules, ready optimizer and history, and the
evidence table of every candidate (printed by ``str()``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import optax

from optax_clr import _serialize
from optax_clr.results._range_test import RangeTestResult
from optax_clr.results._training import TrainHistory


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One schedule ``fit`` tries.

  Attributes:
    policy: ``"triangular"``, ``"one-cycle"`` or ``"fixed"``.
    base_lr: the low LR (a one-cycle's start, ``max_lr / 25``; a fixed LR's
      value).
    max_lr: the high LR (equal to ``base_lr`` for a fixed LR).
  """
  policy: str
  base_lr: float
  max_lr: float

  @property
  def name(self) -> str:
    if self.policy == "fixed":
      return f"fixed {self.max_lr:.3g}"
    if self.policy == "one-cycle":
      return f"one-cycle max {self.max_lr:.3g}"
    return f"CLR {self.base_lr:.3g}-{self.max_lr:.3g}"


@dataclasses.dataclass(frozen=True, eq=False)
class FitResult:
  """What :func:`fit` returns: the trained survivor and the evidence.

  Attributes:
    model: the survivor's trained model (a new module or pytree; with
      declared state, ``with_state(model, state)``).
    candidate: the survivor's schedule (policy, bounds).
    learning_rate, momentum: its schedules over the budget (``momentum``
      None when the optimizer has none).
    optimizer: a fresh optax transformation with those schedules around the
      optimizer factory: train with it to reproduce the run.
    history: the survivor's :class:`~optax_clr.TrainHistory` (every step;
      evaluations at cycle ends).
    table: one row per candidate: name, policy, bounds, the step it stopped
      at (None: it ran the whole budget), its metric at each cycle end, its
      status.
    metric: the metric candidates were ranked by (``"val_accuracy"`` or
      ``"val_loss"``).
    rule: how the survivor was chosen and how the scale was read.
    range_test: the range test that located the scale.
    cost: copy-steps of the range test and the candidates, and their sum
      in units of the budget (one training run = 1).
    config: the run's settings.
  """
  model: Any
  candidate: Candidate
  learning_rate: Any
  momentum: Any
  optimizer: optax.GradientTransformation
  history: TrainHistory
  table: tuple[dict[str, Any], ...]
  metric: str
  rule: str
  range_test: RangeTestResult | None
  cost: dict[str, float]
  config: dict[str, Any]

  @property
  def policy(self) -> str:
    return self.candidate.policy

  @property
  def base_lr(self) -> float:
    return self.candidate.base_lr

  @property
  def max_lr(self) -> float:
    return self.candidate.max_lr

  def __str__(self) -> str:
    rungs = len(self.table[0]["metrics"]) if self.table else 0
    head = (f"  {'candidate':<26} {'stopped':>8} " + " ".join(
        f"{'cycle ' + str(r + 1):>9}" for r in range(rungs)) + "  status")
    lines = [head]
    for row in self.table:
      stop = "-" if row["stopped_at"] is None else str(row["stopped_at"])
      vals = " ".join(f"{v:>9.4g}" if v is not None else f"{'':>9}"
                      for v in row["metrics"])
      mark = "  <- survivor" if row["survivor"] else ""
      lines.append(f"  {row['name']:<26} {stop:>8} {vals}  "
                   f"{row['status']}{mark}")
    # The metric's name without its "val_" prefix, as the history holds it.
    last = self.history.eval_metrics.get(self.metric[4:], [np.nan])[-1]
    lines.append(f"survivor: {self.candidate.name} ({self.metric} "
                 f"{last:.4g})")
    lines.append(f"  rule: {self.rule}")
    lines.append(f"  cost: {self.cost['run_equivalents']:.2f} training runs "
                 f"(range test {self.cost['range_test_steps']} steps, "
                 f"candidates {self.cost['candidate_steps']} copy-steps, "
                 f"budget {self.cost['budget_steps']} steps)")
    return "\n".join(lines)

  def to_dict(self) -> dict[str, Any]:
    return _serialize.jsonable({
        "survivor": dataclasses.asdict(self.candidate),
        "metric": self.metric, "rule": self.rule, "table": list(self.table),
        "cost": self.cost, "config": self.config})
