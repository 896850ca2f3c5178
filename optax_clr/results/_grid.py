"""Result of a sweep over any hyperparameters: one run per configuration."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from optax_clr.results._base import Column
from optax_clr.results._base import Result
from optax_clr.results._sweep import Statuses


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

  configs: dict[str, np.ndarray]
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
      Column("losses", np.float64, ("k", "n")),
      Column("final_loss", np.float64, ("k",)),
      Column("mean_loss", np.float64, ("k",)),
      Column("diverged", np.bool_, ("k",)),
      Column("diverged_at", np.int64, ("k",)),
  )
  METRICS: ClassVar = {"configs": ("k",), "eval_metrics": ("k",),
                       "initial_metrics": ("k",)}
  CHOICES: ClassVar = {"stop_reason": ("completed", "data_exhausted",
                                       "interrupted")}

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
    return _score_of(self)

  def best_index(self) -> int | None:
    """Index of the stable run with the best score (None if none)."""
    score, _, higher = self.score()
    ok = self.stable & np.isfinite(score)
    if not ok.any():
      return None
    value = np.where(ok, score if higher else -score, -np.inf)
    return int(np.argmax(value))

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
      index = tuple(int(np.searchsorted(a, self.configs[n][k]))
                    for a, n in zip(axes, names))
      out[index] = values[k]
    return axes, out

  def _derived(self, suggestions: bool) -> dict[str, Any]:
    return {"status": list(self.status), "best": self.best()}

  def _csv(self):
    """One row per configuration: the hyperparameters, ``status``,
    ``final_loss``, ``mean_loss``, ``diverged``, ``eval_<metric>...``."""
    names = list(self.configs)
    metrics = list(self.eval_metrics)
    header = names + ["status", "final_loss", "mean_loss", "diverged"] + [
        f"eval_{m}" for m in metrics]
    status = self.status
    rows = [[self.configs[n][k] for n in names]
            + [str(status[k]), self.final_loss[k], self.mean_loss[k],
               self.diverged[k]]
            + [self.eval_metrics[m][k] for m in metrics]
            for k in range(self.num_configs)]
    return header, rows

  def _plot(self, ax: Any, **kwargs: Any) -> Any:
    from optax_clr import plotting
    return plotting.plot_grid(self, ax, **kwargs)


@dataclasses.dataclass(frozen=True, eq=False)
class BatchSizeSweepResult:
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
      score, _, higher = _score_of(sweep)
      value = float(score[s.best.index])
      key = value if higher else -value
      if best is None or key > best[0]:
        best = (key, {"batch_size": bs, "learning_rate": s.best.lr,
                      "score": value})
    return None if best is None else best[1]

  def to_dict(self) -> dict[str, Any]:
    from optax_clr import _serialize
    from optax_clr.results._base import FORMAT_VERSION
    return _serialize.jsonable({
        "type": type(self).__name__, "format_version": FORMAT_VERSION,
        "batch_sizes": list(self.batch_sizes),
        "num_examples": self.num_examples,
        "sweeps": [s.to_dict() for s in self.sweeps], "best": self.best()})

  @classmethod
  def from_dict(cls, data: Any) -> BatchSizeSweepResult:
    from optax_clr import _serialize
    from optax_clr.results._sweep import ParallelSweepResult
    if not isinstance(data, dict):
      raise ValueError("expected a BatchSizeSweepResult JSON object")
    _serialize.check_type(cls, data)
    try:
      return cls(tuple(data["batch_sizes"]), tuple(
          ParallelSweepResult.from_dict(s) for s in data["sweeps"]),
                 int(data["num_examples"]))
    except (KeyError, TypeError) as e:
      raise ValueError(f"malformed BatchSizeSweepResult: {e}") from e

  def to_json(self, path: Any = None, *, indent: int | None = None) -> str:
    from optax_clr import _serialize
    return _serialize.dump_json(self.to_dict(), path, indent)

  @classmethod
  def from_json(cls, source: Any) -> BatchSizeSweepResult:
    from optax_clr import _serialize
    return cls.from_dict(_serialize.load_json(source))

  def plot(self, ax: Any = None, *, path: Any = None) -> Any:
    from optax_clr import plotting
    return plotting.plot_batch_sizes(self, ax, path=path)


def _score_of(sweep: Any) -> tuple[np.ndarray, str, bool]:
  if "accuracy" in sweep.eval_metrics:
    return sweep.eval_metrics["accuracy"], "val_accuracy", True
  if "loss" in sweep.eval_metrics:
    return sweep.eval_metrics["loss"], "val_loss", False
  return sweep.mean_loss, "train_loss", False
