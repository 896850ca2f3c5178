"""Result of ``train``: per-step losses, LRs and momenta, per-epoch metrics."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from optax_clr import _checks
from optax_clr.results._base import Column
from optax_clr.results._base import Result

STOP_REASONS = ("completed", "nonfinite", "data_exhausted", "interrupted")
STATUSES = ("trained", "diverged", "stalled")
# A run stalled when its last epoch's mean loss fell by less than this
# fraction of its first steps' mean loss (or its accuracy rose by less).
MIN_IMPROVEMENT = 0.02


@dataclasses.dataclass(frozen=True, eq=False)
class TrainHistory(Result):
  """Per-step and per-epoch record of a :func:`~optax_clr.train` run.

  Attributes:
    steps: ``[n]`` global index (from 0) of each training step.
    losses: ``[n]`` training loss of each step (before its update).
    lrs: ``[n]`` learning rate each step's update used; NaN when the
      optimizer state holds no injected ``learning_rate``.
    momenta: ``[n]`` momentum (``momentum``, else ``b1``) each step used;
      NaN when the optimizer has none.
    eval_steps: ``[e]`` number of steps completed when each evaluation ran
      (one per epoch, after step ``eval_steps[i] - 1``).
    eval_metrics: name -> ``[e]`` validation metric, e.g. ``"loss"`` and
      ``"accuracy"``; empty without validation data.
    wall_times: ``[e]`` seconds since the start of training at each
      evaluation (a resumed run continues from the checkpoint's time).
    initial_metrics: name -> ``[1]`` the validation metrics before the
      first step (empty without validation data).
    stop_reason: ``"completed"``, ``"nonfinite"`` (a loss turned NaN/inf:
      training stopped there), ``"data_exhausted"`` or ``"interrupted"``.
    config: the JSON-able configuration of the run.

  :attr:`status` says whether the run trained (``"trained"``), blew up
  (``"diverged"``) or never left its initial loss (``"stalled"``).
  """

  steps: np.ndarray
  losses: np.ndarray
  lrs: np.ndarray
  momenta: np.ndarray
  eval_steps: np.ndarray
  eval_metrics: dict[str, np.ndarray]
  wall_times: np.ndarray
  initial_metrics: dict[str, np.ndarray] = dataclasses.field(
      default_factory=dict)
  stop_reason: str = "completed"
  config: dict[str, Any] = dataclasses.field(default_factory=dict)

  COLUMNS: ClassVar = (
      Column("steps", np.int64, ("n",)),
      Column("losses", np.float64, ("n",)),
      Column("lrs", np.float64, ("n",)),
      Column("momenta", np.float64, ("n",)),
      Column("eval_steps", np.int64, ("e",)),
      Column("wall_times", np.float64, ("e",)),
  )
  METRICS: ClassVar = {"eval_metrics": ("e",), "initial_metrics": ("one",)}
  CHOICES: ClassVar = {"stop_reason": STOP_REASONS}

  @classmethod
  def _upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
    if version == 1:  # the first release wrote singular names
      for old, new in (("loss", "losses"), ("lr", "lrs"),
                       ("momentum", "momenta"), ("wall_time", "wall_times")):
        if old in data and new not in data:
          data[new] = data.pop(old)
    return data

  def __len__(self) -> int:
    return int(self.steps.shape[0])

  def __repr__(self) -> str:
    return (f"TrainHistory(steps={len(self)}, evaluations="
            f"{self.eval_steps.shape[0]}, metrics={sorted(self.eval_metrics)}"
            f", stop_reason={self.stop_reason!r}, status={self.status!r})")

  @property
  def status(self) -> str:
    """``"diverged"``: stopped on a NaN/inf loss, or the last validation
    loss is not finite. ``"stalled"``: it never left its initial level --
    judged as the sweep judges a run: the validation accuracy never rose
    ``MIN_IMPROVEMENT`` above its value before training (a model at chance),
    else the validation loss never fell ``MIN_IMPROVEMENT`` below its
    initial value, else (no validation) the last epoch's mean training loss
    is not ``MIN_IMPROVEMENT`` below the first steps'. Else ``"trained"``."""
    if self.stop_reason == "nonfinite":
      return "diverged"
    val = self.eval_metrics.get("loss")
    if val is not None and val.size and not np.isfinite(val[-1]):
      return "diverged"
    start, evals = self.initial_metrics, self.eval_metrics
    with np.errstate(invalid="ignore"):
      if "accuracy" in start and evals.get("accuracy", np.zeros(0)).size:
        best = np.nanmax(evals["accuracy"])
        return "trained" if best >= start["accuracy"][0] + (
            MIN_IMPROVEMENT) else "stalled"
      if "loss" in start and evals.get("loss", np.zeros(0)).size:
        a = start["loss"][0]
        return "trained" if np.nanmin(evals["loss"]) < a - (
            MIN_IMPROVEMENT * abs(a)) else "stalled"
    return self._status_from_training_loss()

  def _status_from_training_loss(self) -> str:
    finite = self.losses[np.isfinite(self.losses)]
    if finite.size < 2:
      return "trained" if finite.size else "stalled"
    # The first steps (before much training) against the last epoch.
    head = finite[:max(1, min(10, finite.size // 10))]
    per_epoch = int(self.config.get("steps_per_epoch") or 0)
    tail = finite[-max(1, min(per_epoch or finite.size // 4,
                              finite.size // 2)):]
    start, end = float(np.mean(head)), float(np.mean(tail))
    return "trained" if end < start - MIN_IMPROVEMENT * abs(start) else (
        "stalled")

  def final_metrics(self) -> dict[str, float]:
    """The last evaluation's metrics (``val_<name>``) and the last epoch's
    mean training loss."""
    out = {f"val_{k}": float(v[-1]) for k, v in self.eval_metrics.items()
           if v.size}
    if len(self):
      per_epoch = int(self.config.get("steps_per_epoch") or len(self))
      out["train_loss"] = float(np.nanmean(self.losses[-per_epoch:]))
    return out

  def best_metrics(self) -> dict[str, dict[str, float]]:
    """Per validation metric, the best value (max for accuracies, min
    otherwise) and the step it was reached at."""
    out = {}
    for name, values in self.eval_metrics.items():
      if not np.isfinite(values).any():
        continue
      pick = np.nanargmax if "acc" in name else np.nanargmin
      i = int(pick(values))
      out[name] = {"value": float(values[i]),
                   "step": int(self.eval_steps[i])}
    return out

  def steps_to_reach(self, metric: str, target: float, *,
                     mode: str = "max") -> int | None:
    """Steps completed at the first evaluation that reached ``target``.

    Args:
      metric: a key of ``eval_metrics``, e.g. ``"accuracy"``.
      target: the value to reach.
      mode: ``"max"``: reached when ``metric >= target`` (accuracy);
        ``"min"``: when ``metric <= target`` (loss).

    Returns:
      ``eval_steps`` of that evaluation, or None if it was never reached.
    """
    _checks.check_choice("mode", mode, ("max", "min"))
    if metric not in self.eval_metrics:
      raise ValueError(
          f"metric must be one of {sorted(self.eval_metrics)}, got {metric!r}")
    target = _checks.check_number("target", target, dtype=None)
    values = self.eval_metrics[metric]
    hit = values >= target if mode == "max" else values <= target
    index = np.flatnonzero(hit)  # NaN compares False: never "reached".
    return int(self.eval_steps[index[0]]) if index.size else None

  def _derived(self, suggestions: bool) -> dict[str, Any]:
    return {"status": self.status, "final_metrics": self.final_metrics(),
            "best_metrics": self.best_metrics()}

  def _csv(self):
    """One row per step; evaluation columns filled on each epoch's last
    step: ``step, loss, lr, momentum, wall_time, eval_<metric>...`` (the
    evaluation after ``eval_steps[i]`` steps is on the row of step
    ``eval_steps[i] - 1``)."""
    names = sorted(self.eval_metrics)
    row_of_eval = {int(s) - 1: i for i, s in enumerate(self.eval_steps)}
    rows = []
    for k in range(len(self)):
      step = int(self.steps[k])
      row = [step, self.losses[k], self.lrs[k], self.momenta[k]]
      i = row_of_eval.get(step)
      if i is None:
        row += [None] * (1 + len(names))
      else:
        row += [self.wall_times[i]] + [self.eval_metrics[m][i] for m in names]
      rows.append(row)
    header = (["step", "loss", "lr", "momentum", "wall_time"]
              + [f"eval_{k}" for k in names])
    return header, rows

  def _plot(self, ax: Any, **kwargs: Any) -> Any:
    from optax_clr import plotting
    return plotting.plot_training({kwargs.pop("label", "run"): self},
                                  **kwargs)
