"""Results of classic LR range tests: one ramp, or S ramps over seeds or
weight decays."""

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
from optax_clr.results._base import summary

STOP_REASONS = ("completed", "diverged", "nonfinite", "data_exhausted",
                "interrupted")


def _check_eval_steps(steps: np.ndarray) -> None:
  if steps.size and (steps[0] < 0 or np.any(np.diff(steps) <= 0)):
    raise ValueError(
        f"eval_steps must be >= 0 and strictly increasing, got {steps}")


@dataclasses.dataclass(frozen=True, eq=False)
class RangeTestResult(Result):
  """A classic LR range test: one run whose LR increases every step.

  Attributes:
    lrs: [n] LR used at each recorded step (positive, strictly increasing).
    losses: [n] raw training loss per step; the last may be NaN/inf.
    smoothed_losses: [n] bias-corrected EMA of the loss.
    stop_reason: ``"completed"``, ``"diverged"``, ``"nonfinite"``,
      ``"data_exhausted"`` or ``"interrupted"`` (Ctrl-C: the steps run so
      far are kept).
    eval_steps: [m] steps (row indices of ``lrs``) at which validation
      metrics were evaluated, strictly increasing; may be empty.
    eval_lrs: [m] LR at each evaluation (strictly increasing).
    eval_metrics: name -> [m] metric, e.g. ``{"accuracy": ..., "loss": ...}``.
    config: JSON-able arguments of the run.
  """

  lrs: np.ndarray = column("n")
  losses: np.ndarray = column("n")
  smoothed_losses: np.ndarray = column("n")
  stop_reason: str = choice(*STOP_REASONS)
  eval_steps: np.ndarray = column("m", dtype=np.int64, default=())
  eval_lrs: np.ndarray = column("m", default=())
  eval_metrics: dict[str, np.ndarray] = metrics("m")
  config: dict[str, Any] = dataclasses.field(default_factory=dict)

  DERIVED: ClassVar = ("num_steps", "diverged")
  PLOT: ClassVar = "plot_range_test"

  def _check(self) -> None:
    _sg.validate_curve(self.lrs, self.losses, "losses")
    if self.eval_lrs.size:
      _sg.validate_curve(self.eval_lrs, self.eval_lrs, "eval_lrs",
                         "eval_lrs")
    _check_eval_steps(self.eval_steps)

  @property
  def num_steps(self) -> int:
    """Number of recorded steps."""
    return int(self.lrs.size)

  @property
  def diverged(self) -> bool:
    """True when the test stopped on divergence or a non-finite loss."""
    return self.stop_reason in ("diverged", "nonfinite")

  @property
  def adaptive(self) -> bool:
    """True when the ramp's optimizer keeps a second moment (Adam, RMSProp;
    ``config["adaptive"]``): the loss rule divides its blow-up by more."""
    return bool(self.config.get("adaptive", False))

  def __repr__(self) -> str:
    return (f"RangeTestResult(num_steps={self.num_steps}, "
            f"lrs={summary(self.lrs)}, stop_reason={self.stop_reason!r}, "
            f"eval_metrics={sorted(self.eval_metrics)})")

  def suggest(self, rule: str = "loss", **kwargs: Any) -> _sg.Suggestions:
    """Suggestions read by the rule book (:mod:`optax_clr.suggestions.
    _rules`): the loss rule answers unless ``rule="accuracy"``; with
    validation accuracy both readings are shown. ``kwargs`` go to
    :func:`~optax_clr.suggestions.suggest_ramp` (``skip_start``,
    ``skip_end``, ``factor``, ``margin``, ``window``, ``min_decrease``,
    ``noise_factor``, ``min_drop``); the ramp's optimizer (adaptive or
    not, :attr:`adaptive`) sets the loss rule's divisor."""
    acc = self.eval_metrics.get("accuracy")
    kwargs.setdefault("adaptive", self.adaptive)
    return _sg.suggest_ramp(
        self.lrs, self.losses, self.smoothed_losses,
        smoothing=float(self.config.get("smoothing", 0.05)),
        accuracies=acc, accuracy_lrs=None if acc is None else self.eval_lrs,
        stop_reason=self.stop_reason, rule=rule, **kwargs)

  def _csv(self):
    # An evaluation sits on its step's row; one past the last step gets a
    # row of its own (eval_steps increase: those rows come last, in order).
    n, past = self.num_steps, self.eval_steps >= self.num_steps
    rows = np.where(past, n + np.cumsum(past) - 1, self.eval_steps)
    at = {int(r): j for j, r in enumerate(rows)}
    blank = [None] * int(past.sum())
    evals = [at.get(r) for r in range(n + len(blank))]
    return [("step", [*range(n), *self.eval_steps[past]]),
            ("lr", [*self.lrs, *self.eval_lrs[past]]),
            ("loss", [*self.losses, *blank]),
            ("smoothed_loss", [*self.smoothed_losses, *blank])] + [
                (f"eval_{k}", pick(v, evals))
                for k, v in self.eval_metrics.items()]


class RampSet:
  """What S ramps over one LR ramp share (a mixin): per-ramp stop reasons,
  the ramps as single results, CSV. Subclasses name each ramp (``_labels``)
  and say what its config adds (``_run_config``)."""

  def _check(self) -> None:
    if isinstance(self.stop_reasons, str) or not hasattr(
        self.stop_reasons, "__len__"):
      raise TypeError("stop_reasons must be a list of str, one per ramp")
    reasons = tuple(self.stop_reasons)
    if len(reasons) != self.num_ramps:
      raise ValueError(
          f"stop_reasons must have one entry per ramp ({self.num_ramps}), "
          f"got {len(reasons)}")
    for i, r in enumerate(reasons):
      _checks.check_choice(f"stop_reasons[{i}]", r, STOP_REASONS)
    object.__setattr__(self, "stop_reasons", reasons)
    _sg.validate_curve(self.lrs, self.lrs, "lrs")
    if np.any(self.num_recorded < 0) or np.any(
        self.num_recorded > self.lrs.size):
      raise ValueError(f"num_recorded must be in [0, {self.lrs.size}], got "
                       f"{self.num_recorded}")
    _check_eval_steps(self.eval_steps)

  @property
  def num_ramps(self) -> int:
    return int(self.losses.shape[0])

  def run(self, i: int) -> RangeTestResult:
    """Ramp ``i`` as a :class:`RangeTestResult`."""
    n = int(self.num_recorded[i])
    keep = self.eval_steps < n
    return RangeTestResult(
        lrs=self.lrs[:n], losses=self.losses[i, :n],
        smoothed_losses=self.smoothed_losses[i, :n],
        stop_reason=self.stop_reasons[i], eval_steps=self.eval_steps[keep],
        eval_lrs=self.eval_lrs[keep],
        eval_metrics={k: v[i][keep] for k, v in self.eval_metrics.items()},
        config={**self.config, **self._run_config(i)})

  @property
  def runs(self) -> tuple[RangeTestResult, ...]:
    return tuple(self.run(i) for i in range(self.num_ramps))

  def _csv(self):
    labels = self._labels()
    return [("step", range(self.lrs.size)), ("lr", self.lrs)] + [
        (f"{name}[{x}]", values) for name, curves in (
            ("loss", self.losses), ("smoothed_loss", self.smoothed_losses))
        for x, values in zip(labels, curves)]


@dataclasses.dataclass(frozen=True, eq=False)
class MultiSeedRangeTestResult(RampSet, Result):
  """S classic range tests over the same LR ramp, one per seed.

  Each seed trains its own copy of the model on its own data order (and,
  with ``init="independent"``, its own initial weights); each stops on its
  own. Steps a seed did not record are NaN.

  Attributes:
    seeds: [s] the seeds.
    lrs, eval_steps, eval_lrs, config: as in :class:`RangeTestResult`
      (``lrs`` shared by every seed).
    losses, smoothed_losses: [s, n] each seed's raw and smoothed loss.
    num_recorded: [s] how many steps each seed recorded.
    stop_reasons: each seed's stop reason (see :class:`RangeTestResult`).
    eval_metrics: name -> [s, m] validation metrics (NaN after a stop).
  """

  seeds: np.ndarray = column("s", dtype=np.int64)
  lrs: np.ndarray = column("n")
  losses: np.ndarray = column("s", "n")
  smoothed_losses: np.ndarray = column("s", "n")
  num_recorded: np.ndarray = column("s", dtype=np.int64)
  stop_reasons: tuple[str, ...]
  eval_steps: np.ndarray = column("m", dtype=np.int64, default=())
  eval_lrs: np.ndarray = column("m", default=())
  eval_metrics: dict[str, np.ndarray] = metrics("s", "m")
  config: dict[str, Any] = dataclasses.field(default_factory=dict)

  PLOT: ClassVar = "plot_multi_seed"

  @property
  def num_seeds(self) -> int:
    return int(self.seeds.size)

  def __repr__(self) -> str:
    return (f"MultiSeedRangeTestResult(seeds={self.num_seeds}, "
            f"num_steps={self.lrs.size}, lrs={summary(self.lrs)}, "
            f"stop_reasons={list(self.stop_reasons)})")

  def _run_config(self, i: int) -> dict[str, Any]:
    return {"seed": int(self.seeds[i])}

  def _labels(self) -> list[str]:
    return [str(int(s)) for s in self.seeds]

  def suggest(self, **kwargs: Any) -> _sg.SeedSuggestions:
    """Each seed's suggestions, and their medians and spreads."""
    return _sg.aggregate([r.suggest(**kwargs) for r in self.runs])


@dataclasses.dataclass(frozen=True, eq=False)
class WeightDecayRangeTestResult(RampSet, Result):
  """LR range tests at several weight decays (and momenta), one ramp each
  (Smith 2018); same batches and initial weights for every ramp.

  Attributes:
    weight_decays: [s] each ramp's weight decay.
    momenta: [s] each ramp's momentum (or Adam's b1).
    lrs, losses, smoothed_losses, num_recorded, stop_reasons, eval_steps,
      eval_lrs, eval_metrics, config: as in
      :class:`MultiSeedRangeTestResult`, one row per ramp.
  """

  weight_decays: np.ndarray = column("s")
  momenta: np.ndarray = column("s")
  lrs: np.ndarray = column("n")
  losses: np.ndarray = column("s", "n")
  smoothed_losses: np.ndarray = column("s", "n")
  num_recorded: np.ndarray = column("s", dtype=np.int64)
  stop_reasons: tuple[str, ...]
  eval_steps: np.ndarray = column("m", dtype=np.int64, default=())
  eval_lrs: np.ndarray = column("m", default=())
  eval_metrics: dict[str, np.ndarray] = metrics("s", "m")
  config: dict[str, Any] = dataclasses.field(default_factory=dict)

  PLOT: ClassVar = "plot_weight_decay"

  def __repr__(self) -> str:
    return (f"WeightDecayRangeTestResult(ramps={self.num_ramps}, "
            f"weight_decays={sorted(set(self.weight_decays.tolist()))}, "
            f"momenta={sorted(set(self.momenta.tolist()))})")

  def _run_config(self, i: int) -> dict[str, Any]:
    return {"weight_decay": float(self.weight_decays[i]),
            "momentum": float(self.momenta[i])}

  def _labels(self) -> list[str]:
    return [f"wd={w:g},m={m:g}" for w, m in zip(self.weight_decays,
                                                 self.momenta)]

  def suggest(self, **kwargs: Any) -> _sg.DisciplinedSuggestions:
    """Smith's choice (:func:`optax_clr.suggestions.disciplined`)."""
    return _sg.disciplined(self.weight_decays, self.momenta,
                           [r.suggest(**kwargs) for r in self.runs],
                           [r.smoothed_losses for r in self.runs])
