"""Result of a sweep over any hyperparameters: one run per configuration."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from optax_clr import _serialize
from optax_clr.results._base import choice
from optax_clr.results._base import column
from optax_clr.results._base import FORMAT_VERSION
from optax_clr.results._base import JsonFile
from optax_clr.results._base import metrics
from optax_clr.results._base import Result
from optax_clr.results._sweep import ParallelSweepResult
from optax_clr.results._sweep import score_of
from optax_clr.results._sweep import Statuses
from optax_clr.results._sweep import SWEEP_STOPS


@dataclasses.dataclass(frozen=True, eq=False)
class GridSweepResult(Statuses, Result):
  """K training runs, run ``k`` at the hyperparameters ``configs[name][k]``.

  Attributes:
    configs: name -> [K] value of that hyperparameter in each run (e.g.
      ``learning_rate``, ``weight_decay``); names without a schedule are the
      optimizer's injected hyperparameters.
    losses, final_loss, mean_loss, diverged, diverged_at, eval_metrics,
      initial_metrics, stop_reason, config: as in
      :class:`~optax_clr.ParallelSweepResult`.

  :attr:`status` (trained, stalled, spiked, diverged, nonfinite) is judged
  as in the LR sweep; :meth:`best` is the stable run with the best score.
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

  def score(self) -> tuple[np.ndarray, str, bool]:
    """``(score, name, higher_is_better)``: final validation accuracy, else
    validation loss, else the final windowed training loss."""
    return score_of(self)

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
    if metric is None:
      values = self.score()[0]
    elif metric in ("mean_loss", "final_loss"):
      values = getattr(self, metric)
    elif metric in self.eval_metrics:
      values = self.eval_metrics[metric]
    else:
      raise ValueError(f"metric must be mean_loss, final_loss or one of "
                       f"{sorted(self.eval_metrics)}, got {metric!r}")
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
