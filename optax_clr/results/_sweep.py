"""Results of sweeps: K runs at fixed learning rates, at any
hyperparameters, or at several batch sizes."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from optax_clr import _serialize
from optax_clr import suggestions as _sg
from optax_clr.results._base import choice
from optax_clr.results._base import column
from optax_clr.results._base import FORMAT_VERSION
from optax_clr.results._base import JsonFile
from optax_clr.results._base import metrics
from optax_clr.results._base import Result
from optax_clr.results._base import summary

SWEEP_STOPS = ("completed", "data_exhausted", "interrupted")


class Statuses:
  """Run statuses of a sweep (:func:`optax_clr.suggestions.classify`), for
  results with ``losses``, ``mean_loss``, ``initial_metrics``,
  ``eval_metrics`` and ``config``."""

  def classify(self, **kwargs: Any) -> np.ndarray:
    """Each run's status; ``kwargs`` override the thresholds (default: this
    run's ``diverge_threshold`` and the library's defaults)."""
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
  """``(score, name, higher_is_better)`` of each run: final validation
  accuracy, else validation loss, else the final windowed training loss."""
  if "accuracy" in sweep.eval_metrics:
    return sweep.eval_metrics["accuracy"], "val_accuracy", True
  if "loss" in sweep.eval_metrics:
    return sweep.eval_metrics["loss"], "val_loss", False
  return sweep.mean_loss, "train_loss", False


def _check_diverged_at(diverged: np.ndarray, diverged_at: np.ndarray) -> None:
  """Refuses a divergence step that contradicts the divergence flag."""
  bad = np.flatnonzero(np.where(diverged, diverged_at < 0, diverged_at != -1))
  if bad.size:
    i = int(bad[0])
    raise ValueError(
        f"diverged_at must be a step >= 0 where diverged and -1 elsewhere, "
        f"got diverged[{i}]={bool(diverged[i])}, "
        f"diverged_at[{i}]={int(diverged_at[i])}")


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
    _check_diverged_at(self.diverged, self.diverged_at)

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


@dataclasses.dataclass(frozen=True, eq=False)
class GridSweepResult(Statuses, Result):
  """K training runs, run ``k`` at the hyperparameters ``configs[name][k]``.

  Attributes:
    configs: name -> [K] value of that hyperparameter in each run (e.g.
      ``learning_rate``, ``weight_decay``); names without a schedule are the
      optimizer's injected hyperparameters.
    losses, final_loss, mean_loss, diverged, diverged_at, eval_metrics,
      initial_metrics, stop_reason, config: as in
      :class:`~optax_clr.ParallelSweepResult` (:attr:`status` judged alike).
  """

  configs: dict[str, np.ndarray] = metrics("k", required=True)
  losses: np.ndarray = column("k", "n")
  final_loss: np.ndarray = column("k")
  mean_loss: np.ndarray = column("k")
  diverged: np.ndarray = column("k", dtype=np.bool_)
  diverged_at: np.ndarray = column("k", dtype=np.int64)
  eval_metrics: dict[str, np.ndarray] = metrics("k")
  initial_metrics: dict[str, np.ndarray] = metrics("k")
  stop_reason: str = choice(*SWEEP_STOPS, default="completed")
  config: dict[str, Any] = dataclasses.field(default_factory=dict)

  DERIVED: ClassVar = ("status", "best")
  PLOT: ClassVar = "plot_grid"

  def _check(self) -> None:
    if not self.configs:
      raise ValueError("configs must name at least one hyperparameter")
    _check_diverged_at(self.diverged, self.diverged_at)

  @property
  def num_configs(self) -> int:
    return int(self.losses.shape[0])

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(self.configs)

  def __repr__(self) -> str:
    return (f"GridSweepResult(configs={self.num_configs}, "
            f"names={list(self.names)}, steps={self.losses.shape[1]}, "
            f"stable={int(self.stable.sum())})")

  score = score_of

  def best_index(self) -> int | None:
    """Index of the stable run with the best score (None if none)."""
    score, _, higher = self.score()
    ok = self.stable & np.isfinite(score)
    if not ok.any():
      return None
    return int(np.argmax(np.where(ok, score if higher else -score, -np.inf)))

  def best(self) -> dict[str, float] | None:
    """The best stable run's configuration (None if no run trained)."""
    i = self.best_index()
    if i is None:
      return None
    return {name: float(v[i]) for name, v in self.configs.items()}

  def grid(self, *names: str, metric: str | None = None
           ) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """A full grid as an N-D array: ``(axes, values)``.

    Args:
      *names: the swept names, in the order of the array's axes (default:
        all, in ``configs`` order).
      metric: ``"mean_loss"`` (default: the score of :meth:`score`),
        ``"final_loss"``, or a key of ``eval_metrics``; unstable runs are
        NaN.

    Returns:
      ``(axes, values)``: the sorted distinct values of each name, and the
      metric with one axis per name.

    Raises:
      ValueError: the configurations are not the full grid of ``names``.
    """
    names = names or self.names
    for n in names:
      if n not in self.configs:
        raise ValueError(f"names must be among {list(self.names)}, got "
                         f"{n!r}")
    table = {**self.eval_metrics, "mean_loss": self.mean_loss,
             "final_loss": self.final_loss, None: self.score()[0]}
    if metric not in table:
      raise ValueError(f"metric must be mean_loss, final_loss or one of "
                       f"{sorted(self.eval_metrics)}, got {metric!r}")
    values = table[metric]
    values = np.where(self.stable, values, np.nan)
    axes = tuple(np.unique(self.configs[n]) for n in names)
    if np.prod([a.size for a in axes]) != self.num_configs:
      raise ValueError(
          f"the {self.num_configs} configurations are not the full grid of "
          f"{list(names)} ({' x '.join(str(a.size) for a in axes)})")
    out = np.full(tuple(a.size for a in axes), np.nan)
    for k in range(self.num_configs):
      out[tuple(int(np.searchsorted(a, self.configs[n][k]))
                for a, n in zip(axes, names))] = values[k]
    return axes, out

  def _csv(self):
    return list(self.configs.items()) + [
        ("status", self.status), ("final_loss", self.final_loss),
        ("mean_loss", self.mean_loss), ("diverged", self.diverged)] + [
            (f"eval_{k}", v) for k, v in self.eval_metrics.items()]


@dataclasses.dataclass(frozen=True, eq=False)
class BatchSizeSweepResult(JsonFile):
  """LR sweeps at several batch sizes, each for the same number of
  examples (one compiled program per batch size).

  Attributes:
    batch_sizes: the batch sizes, ascending.
    sweeps: one :class:`~optax_clr.ParallelSweepResult` per batch size.
    num_examples: the examples each run trained on.
  """

  batch_sizes: tuple[int, ...]
  sweeps: tuple[Any, ...]
  num_examples: int

  def __post_init__(self):
    if len(self.batch_sizes) != len(self.sweeps) or not self.sweeps:
      raise ValueError("BatchSizeSweepResult needs one sweep per batch size")
    object.__setattr__(self, "batch_sizes", tuple(int(b) for b in
                                                  self.batch_sizes))
    object.__setattr__(self, "sweeps", tuple(self.sweeps))

  def examples_seen(self, i: int) -> np.ndarray:
    """Examples seen after each step of batch size ``batch_sizes[i]``."""
    steps = self.sweeps[i].num_steps
    return np.arange(1, steps + 1) * self.batch_sizes[i]

  def best(self) -> dict[str, float] | None:
    """The batch size and LR of the best stable run over all sweeps (by
    validation accuracy, else validation loss, else training loss)."""
    best = None
    for bs, sweep in zip(self.batch_sizes, self.sweeps):
      s = sweep.suggest()
      if s.best.lr is None:
        continue
      score, _, higher = score_of(sweep)
      value = float(score[s.best.index])
      key = value if higher else -value
      if best is None or key > best[0]:
        best = (key, {"batch_size": bs, "learning_rate": s.best.lr,
                      "score": value})
    return None if best is None else best[1]

  def to_dict(self) -> dict[str, Any]:
    return _serialize.jsonable({
        "type": type(self).__name__, "format_version": FORMAT_VERSION,
        "batch_sizes": list(self.batch_sizes),
        "num_examples": self.num_examples,
        "sweeps": [s.to_dict() for s in self.sweeps], "best": self.best()})

  @classmethod
  def from_dict(cls, data: Any) -> BatchSizeSweepResult:
    if not isinstance(data, dict):
      raise ValueError("expected a BatchSizeSweepResult JSON object")
    _serialize.check_type(cls, data)
    try:
      return cls(tuple(data["batch_sizes"]), tuple(
          ParallelSweepResult.from_dict(s) for s in data["sweeps"]),
                 int(data["num_examples"]))
    except (KeyError, TypeError) as e:
      raise ValueError(f"malformed BatchSizeSweepResult: {e}") from e

  def plot(self, ax: Any = None, *, path: Any = None) -> Any:
    from optax_clr import plotting
    return plotting.plot_batch_sizes(self, ax, path=path)
