"""Result of a parallel sweep: K runs at fixed learning rates."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from optax_clr import suggestions as _sg
from optax_clr.results._base import Column
from optax_clr.results._base import Result
from optax_clr.results._base import summary


class Statuses:
  """Run statuses of a sweep (:func:`optax_clr.suggestions.classify`), for
  results with ``losses``, ``mean_loss``, ``initial_metrics``,
  ``eval_metrics`` and ``config``."""

  def classify(self, **kwargs: Any) -> np.ndarray:
    """Each run's status; ``kwargs`` override the thresholds of
    :func:`optax_clr.suggestions.classify` (default: this run's
    ``diverge_threshold`` and the library's defaults)."""
    kwargs.setdefault("diverge_threshold", self.config.get(
        "diverge_threshold", _sg.DIVERGE_THRESHOLD))
    return _sg.classify(self.losses, self.mean_loss,
                        initial_metrics=self.initial_metrics,
                        final_metrics=self.eval_metrics, **kwargs)

  @property
  def status(self) -> np.ndarray:
    """[K] status strings with the default thresholds."""
    return self.classify()

  @property
  def stable(self) -> np.ndarray:
    """[K] True for the runs that trained."""
    return self.status == "trained"


@dataclasses.dataclass(frozen=True, eq=False)
class ParallelSweepResult(Statuses, Result):
  """K training runs at fixed LRs, trained side by side.

  Attributes:
    lrs: [K] LRs, positive and strictly increasing.
    losses: [K, N] per-step training loss (non-finite where diverged).
    final_loss: [K] loss at the last step.
    mean_loss: [K] mean of the finite losses of the last ``window`` steps.
    diverged: [K] True where a loss turned NaN/inf or the final mean loss
      exceeds ``diverge_threshold`` times the initial loss.
    diverged_at: [K] step of divergence, -1 when not diverged.
    eval_metrics: name -> [K] validation metric after training.
    initial_metrics: name -> [K] the same metrics before training (each
      copy's starting point), when evaluated.
    stop_reason: ``"completed"``, ``"data_exhausted"`` or ``"interrupted"``.
    config: JSON-able arguments of the run.

  Every run also has a :attr:`status` (``trained``, ``stalled``,
  ``spiked``, ``diverged``, ``nonfinite``; see
  :func:`optax_clr.suggestions.classify`); only ``trained`` runs are
  :attr:`stable` and enter :meth:`suggest` and :attr:`best_lr`.
  """

  lrs: np.ndarray
  losses: np.ndarray
  final_loss: np.ndarray
  mean_loss: np.ndarray
  diverged: np.ndarray
  diverged_at: np.ndarray
  eval_metrics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  initial_metrics: dict[str, np.ndarray] = dataclasses.field(
      default_factory=dict)
  stop_reason: str = "completed"
  config: dict[str, Any] = dataclasses.field(default_factory=dict)

  COLUMNS: ClassVar = (
      Column("lrs", np.float64, ("k",)),
      Column("losses", np.float64, ("k", "n")),
      Column("final_loss", np.float64, ("k",)),
      Column("mean_loss", np.float64, ("k",)),
      Column("diverged", np.bool_, ("k",)),
      Column("diverged_at", np.int64, ("k",)),
  )
  METRICS: ClassVar = {"eval_metrics": ("k",), "initial_metrics": ("k",)}
  CHOICES: ClassVar = {"stop_reason": ("completed", "data_exhausted",
                                       "interrupted")}

  def _check(self) -> None:
    _sg.validate_curve(self.lrs, self.lrs, "lrs")
    bad = np.flatnonzero(np.where(self.diverged, self.diverged_at < 0,
                                  self.diverged_at != -1))
    if bad.size:
      i = int(bad[0])
      raise ValueError(
          f"diverged_at must be a step >= 0 where diverged and -1 elsewhere, "
          f"got diverged[{i}]={bool(self.diverged[i])}, "
          f"diverged_at[{i}]={int(self.diverged_at[i])}")

  @property
  def num_lrs(self) -> int:
    return int(self.lrs.size)

  @property
  def num_steps(self) -> int:
    """Training steps per LR."""
    return int(self.losses.shape[1])

  def __repr__(self) -> str:
    return (f"ParallelSweepResult(num_lrs={self.num_lrs}, "
            f"num_steps={self.num_steps}, lrs={summary(self.lrs)}, "
            f"stable={int(self.stable.sum())}, "
            f"eval_metrics={sorted(self.eval_metrics)})")

  def suggest(self, *, tolerance: float = _sg.TOLERANCE,
              **kwargs: Any) -> _sg.SweepSuggestions:
    """Best LR, stable range and CLR bounds by the sweep-native rules of
    :func:`optax_clr.suggestions.suggest_sweep`.

    Args:
      tolerance: ``max_lr`` is the largest stable LR within this fraction of
        the best run's improvement.
      **kwargs: thresholds for :meth:`classify`.
    """
    initial = (self.losses[:, 0] if self.num_steps
               else np.full(self.num_lrs, np.nan))
    return _sg.suggest_sweep(
        self.lrs, self.classify(**kwargs), self.mean_loss, initial,
        final_metrics=self.eval_metrics,
        initial_metrics=self.initial_metrics, tolerance=tolerance)

  @property
  def best_lr(self) -> float | None:
    """The sweep's best LR (``suggest().best.lr``), None if none trained."""
    return self.suggest().best.lr

  def _derived(self, suggestions: bool) -> dict[str, Any]:
    data = {"status": list(self.status)}
    if suggestions:
      data["suggestions"] = self.suggest().to_dict()
    return data

  def _csv(self):
    """One row per LR: ``lr, status, final_loss, mean_loss, diverged,
    diverged_at, eval_<metric>..., initial_<metric>...``."""
    names = list(self.eval_metrics)
    initial = list(self.initial_metrics)
    header = (["lr", "status", "final_loss", "mean_loss", "diverged",
               "diverged_at"] + [f"eval_{k}" for k in names]
              + [f"initial_{k}" for k in initial])
    status = self.status
    rows = [[self.lrs[i], str(status[i]), self.final_loss[i],
             self.mean_loss[i], self.diverged[i], self.diverged_at[i]]
            + [self.eval_metrics[k][i] for k in names]
            + [self.initial_metrics[k][i] for k in initial]
            for i in range(self.num_lrs)]
    return header, rows

  def _plot(self, ax: Any, **kwargs: Any) -> Any:
    from optax_clr import plotting
    return plotting.plot_sweep(self, ax, **kwargs)
