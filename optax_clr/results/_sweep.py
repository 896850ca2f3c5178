"""Result of a parallel sweep: K runs at fixed learning rates."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from optax_clr import suggestions as _sg
from optax_clr.results._base import choice
from optax_clr.results._base import column
from optax_clr.results._base import metrics
from optax_clr.results._base import Result
from optax_clr.results._base import summary

SWEEP_STOPS = ("completed", "data_exhausted", "interrupted")


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


def score_of(sweep: Any) -> tuple[np.ndarray, str, bool]:
  """``(score, name, higher_is_better)`` of a sweep's runs: final validation
  accuracy, else validation loss, else the final windowed training loss."""
  if "accuracy" in sweep.eval_metrics:
    return sweep.eval_metrics["accuracy"], "val_accuracy", True
  if "loss" in sweep.eval_metrics:
    return sweep.eval_metrics["loss"], "val_loss", False
  return sweep.mean_loss, "train_loss", False


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

  lrs: np.ndarray = column("k")
  losses: np.ndarray = column("k", "n")
  final_loss: np.ndarray = column("k")
  mean_loss: np.ndarray = column("k")
  diverged: np.ndarray = column("k", dtype=np.bool_)
  diverged_at: np.ndarray = column("k", dtype=np.int64)
  eval_metrics: dict[str, np.ndarray] = metrics("k")
  initial_metrics: dict[str, np.ndarray] = metrics("k")
  stop_reason: str = choice(*SWEEP_STOPS, default="completed")
  config: dict[str, Any] = dataclasses.field(default_factory=dict)

  DERIVED: ClassVar = ("status",)
  PLOT: ClassVar = "plot_sweep"

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

  def _csv(self):
    return [("lr", self.lrs), ("status", self.status),
            ("final_loss", self.final_loss), ("mean_loss", self.mean_loss),
            ("diverged", self.diverged), ("diverged_at", self.diverged_at)
            ] + [(f"{prefix}_{k}", v) for prefix, named in (
                ("eval", self.eval_metrics), ("initial", self.initial_metrics))
                 for k, v in named.items()]
