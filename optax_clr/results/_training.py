"""Result of ``train``: per-step losses, LRs and momenta, per-epoch metrics."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from optax_clr import _checks
from optax_clr import suggestions as _sg
from optax_clr.results._base import choice
from optax_clr.results._base import column
from optax_clr.results._base import metrics
from optax_clr.results._base import pick
from optax_clr.results._base import Result

STOP_REASONS = ("completed", "nonfinite", "data_exhausted", "interrupted")


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
  """

  steps: np.ndarray = column("n", dtype=np.int64)
  losses: np.ndarray = column("n")
  lrs: np.ndarray = column("n")
  momenta: np.ndarray = column("n")
  eval_steps: np.ndarray = column("e", dtype=np.int64)
  eval_metrics: dict[str, np.ndarray] = metrics("e", required=True)
  wall_times: np.ndarray = column("e")
  initial_metrics: dict[str, np.ndarray] = metrics("one")
  stop_reason: str = choice(*STOP_REASONS, default="completed")
  config: dict[str, Any] = dataclasses.field(default_factory=dict)

  DERIVED: ClassVar = ("status", "final_metrics", "best_metrics")

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
    """The run's status by the one rule (:func:`optax_clr.suggestions.
    classify`): ``"nonfinite"``, ``"diverged"``, ``"spiked"``,
    ``"stalled"`` or ``"trained"``, judged from the per-step losses and
    the validation metrics before training and at their best."""
    best = {}
    for name, values in self.eval_metrics.items():
      finite = values[np.isfinite(values)]
      if finite.size:
        best[name] = np.array([finite.max() if "acc" in name
                               else finite.min()])
      elif values.size:
        best[name] = np.array([np.nan])
    losses = self.losses[None, :]
    mean = (_sg.windowed_mean(losses, _sg.DEFAULT_WINDOW)[:, -1]
            if losses.size else np.array([np.nan]))
    return str(_sg.classify(losses, mean, initial_metrics=self.initial_metrics,
                            final_metrics=best)[0])

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
      i = int(np.nanargmax(values) if "acc" in name else np.nanargmin(values))
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

  def _csv(self):
    # The evaluation after eval_steps[i] steps (with its wall time) sits on
    # the row of step eval_steps[i] - 1.
    at = {int(s) - 1: i for i, s in enumerate(self.eval_steps)}
    evals = [at.get(int(step)) for step in self.steps]
    return [("step", self.steps), ("loss", self.losses), ("lr", self.lrs),
            ("momentum", self.momenta),
            ("wall_time", pick(self.wall_times, evals))] + [
                (f"eval_{k}", pick(self.eval_metrics[k], evals))
                for k in sorted(self.eval_metrics)]

  def plot(self, ax: Any = None, *, path: Any = None, **kwargs: Any) -> Any:
    """The run's curves by :func:`optax_clr.plotting.plot_training` (``ax``
    is not used: the figure has one panel per quantity); ``label`` names
    the run."""
    from optax_clr import plotting
    return plotting.plot_training({kwargs.pop("label", "run"): self},
                                  path=path, **kwargs)
