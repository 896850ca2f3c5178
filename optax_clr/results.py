"""Results of LR range tests: containers, suggestions, JSON/CSV and plots.

:class:`RangeTestResult` holds a classic range test (one run, LR ramped per
step); :class:`ParallelSweepResult` holds K runs at fixed LRs trained side by
side. Both are frozen, hold read-only NumPy arrays, and convert to strict JSON
(NaN and inf become ``null`` and come back as NaN) and to CSV.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from optax_clr import _checks
from optax_clr._serialize import check_type as _check_type
from optax_clr._serialize import dump_json as _dump_json
from optax_clr._serialize import jsonable as _jsonable
from optax_clr._serialize import load_json as _load_json
from optax_clr._serialize import write_csv as _write_csv
from optax_clr import suggestions as _sg

STOP_REASONS = ("completed", "diverged", "nonfinite", "data_exhausted")
_FORMAT_VERSION = 1


# ----------------------------------------------------------------------------
# Array and JSON helpers.


def _array(name: str, value: Any, dtype: Any, ndim: int) -> np.ndarray:
  """A read-only copy of ``value`` with ``dtype`` and ``ndim`` dimensions."""
  try:
    raw = np.asarray(value)
    if dtype is not np.float64 and raw.size and np.issubdtype(
        raw.dtype, np.floating):
      if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
        raise ValueError(f"{name} must hold integers, got {raw!r}")
    arr = np.array(raw, dtype=dtype)
  except (TypeError, ValueError) as e:
    raise type(e)(f"{name}: {e}") from e
  if arr.ndim != ndim:
    raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
  arr.setflags(write=False)
  return arr


def _check_length(name: str, arr: np.ndarray, n: int, of: str) -> None:
  if arr.shape[0] != n:
    raise ValueError(
        f"{name} must have one entry per {of} ({n}), got shape {arr.shape}")


def _metrics(value: Any, n: int, of: str) -> dict[str, np.ndarray]:
  if not isinstance(value, Mapping):
    raise TypeError(
        f"eval_metrics must be a mapping of name -> array, got "
        f"{type(value).__name__}")
  out = {}
  for name, v in value.items():
    if not isinstance(name, str):
      raise TypeError(f"eval_metrics names must be str, got {name!r}")
    arr = _array(f"eval_metrics[{name!r}]", v, np.float64, 1)
    _check_length(f"eval_metrics[{name!r}]", arr, n, of)
    out[name] = arr
  return out


def _arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
  return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def _metrics_equal(a: Mapping[str, np.ndarray],
                   b: Mapping[str, np.ndarray]) -> bool:
  return a.keys() == b.keys() and all(_arrays_equal(a[k], b[k]) for k in a)


def _nan_from(x: np.ndarray, first: int | None) -> np.ndarray:
  """A float copy of ``x`` with every entry from ``first`` on set to NaN."""
  y = np.array(x, dtype=np.float64)
  if first is not None:
    y[first:] = np.nan
  return y


def _summary(arr: np.ndarray) -> str:
  return f"[{arr[0]:.3g}..{arr[-1]:.3g}]" if arr.size else "[]"


# ----------------------------------------------------------------------------
# Classic range test.


@dataclasses.dataclass(frozen=True, eq=False)
class RangeTestResult:
  """A classic LR range test: one run whose LR increases every step.

  Attributes:
    lrs: [n] LR used at each recorded step (positive, strictly increasing).
    losses: [n] raw training loss per step; the last may be NaN/inf.
    smoothed_losses: [n] bias-corrected EMA of the loss.
    stop_reason: one of ``"completed"``, ``"diverged"``, ``"nonfinite"``,
      ``"data_exhausted"``.
    eval_steps: [m] steps (row indices of ``lrs``) at which validation
      metrics were evaluated, strictly increasing; may be empty.
    eval_lrs: [m] LR at each evaluation (strictly increasing).
    eval_metrics: name -> [m] metric, e.g. ``{"accuracy": ..., "loss": ...}``.
    config: JSON-able arguments of the run.
  """

  lrs: np.ndarray
  losses: np.ndarray
  smoothed_losses: np.ndarray
  stop_reason: str
  eval_steps: np.ndarray = ()
  eval_lrs: np.ndarray = ()
  eval_metrics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  config: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
    lrs = _array("lrs", self.lrs, np.float64, 1)
    n = lrs.size
    losses = _array("losses", self.losses, np.float64, 1)
    smoothed = _array("smoothed_losses", self.smoothed_losses, np.float64, 1)
    _check_length("losses", losses, n, "entry of lrs")
    _check_length("smoothed_losses", smoothed, n, "entry of lrs")
    _sg._validate(lrs, losses, "losses")
    _checks.check_choice("stop_reason", self.stop_reason, STOP_REASONS)
    steps = _array("eval_steps", self.eval_steps, np.int64, 1)
    m = steps.size
    eval_lrs = _array("eval_lrs", self.eval_lrs, np.float64, 1)
    _check_length("eval_lrs", eval_lrs, m, "entry of eval_steps")
    if m:
      _sg._validate(eval_lrs, eval_lrs, "eval_lrs", "eval_lrs")
      if steps[0] < 0 or np.any(np.diff(steps) <= 0):
        raise ValueError(
            f"eval_steps must be >= 0 and strictly increasing, got {steps}")
    put("lrs", lrs)
    put("losses", losses)
    put("smoothed_losses", smoothed)
    put("eval_steps", steps)
    put("eval_lrs", eval_lrs)
    put("eval_metrics", _metrics(self.eval_metrics, m, "entry of eval_steps"))
    if not isinstance(self.config, Mapping):
      raise TypeError(
          f"config must be a mapping, got {type(self.config).__name__}")
    put("config", dict(self.config))

  @property
  def num_steps(self) -> int:
    """Number of recorded steps."""
    return int(self.lrs.size)

  @property
  def diverged(self) -> bool:
    """True when the test stopped on divergence or a non-finite loss."""
    return self.stop_reason in ("diverged", "nonfinite")

  def __eq__(self, other: object) -> bool:
    if type(other) is not type(self):
      return NotImplemented
    return (all(_arrays_equal(getattr(self, k), getattr(other, k)) for k in
                ("lrs", "losses", "smoothed_losses", "eval_steps", "eval_lrs"))
            and self.stop_reason == other.stop_reason
            and _metrics_equal(self.eval_metrics, other.eval_metrics)
            and self.config == other.config)

  __hash__ = None  # holds arrays; like np.ndarray, not hashable

  def __repr__(self) -> str:
    return (f"RangeTestResult(num_steps={self.num_steps}, "
            f"lrs={_summary(self.lrs)}, stop_reason={self.stop_reason!r}, "
            f"eval_metrics={sorted(self.eval_metrics)})")

  def suggest(self, **kwargs: Any) -> _sg.Suggestions:
    """Suggestions from the smoothed loss, and accuracy bounds if evaluated.

    The smoothed loss is used where the raw loss is finite (NaN elsewhere, so
    the divergent tail is dropped); ``skip_start`` defaults to a tenth of the
    recorded steps. Accuracy bounds use ``eval_metrics["accuracy"]`` against
    ``eval_lrs`` when present.

    Args:
      **kwargs: forwarded to :func:`optax_clr.suggestions.suggest`
        (``skip_start``, ``skip_end``, ``factor``, ``margin``, ``window``).
    """
    losses = np.where(np.isfinite(self.losses), self.smoothed_losses, np.nan)
    acc = self.eval_metrics.get("accuracy")
    return _sg.suggest(self.lrs, losses, acc,
                       accuracy_lrs=None if acc is None else self.eval_lrs,
                       **kwargs)

  def to_dict(self, *, suggestions: bool = True) -> dict[str, Any]:
    """Strict-JSON-able dict; NaN/inf become None.

    Besides the fields it holds ``type``, ``format_version``, the derived
    ``num_steps`` and ``diverged``, and (``suggestions=True``) the default
    :meth:`suggest` output; :meth:`from_dict` ignores those.
    """
    data = {
        "type": type(self).__name__,
        "format_version": _FORMAT_VERSION,
        "lrs": self.lrs,
        "losses": self.losses,
        "smoothed_losses": self.smoothed_losses,
        "stop_reason": self.stop_reason,
        "eval_steps": self.eval_steps,
        "eval_lrs": self.eval_lrs,
        "eval_metrics": self.eval_metrics,
        "config": self.config,
        "num_steps": self.num_steps,
        "diverged": self.diverged,
    }
    if suggestions:
      data["suggestions"] = self.suggest().to_dict()
    return _jsonable(data, "RangeTestResult")

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]) -> RangeTestResult:
    """Inverse of :meth:`to_dict` (None in float arrays becomes NaN)."""
    _check_type(cls, data)
    return cls(
        lrs=np.array(data["lrs"], dtype=np.float64),
        losses=np.array(data["losses"], dtype=np.float64),
        smoothed_losses=np.array(data["smoothed_losses"], dtype=np.float64),
        stop_reason=data["stop_reason"],
        eval_steps=np.array(data.get("eval_steps", []), dtype=np.int64),
        eval_lrs=np.array(data.get("eval_lrs", []), dtype=np.float64),
        eval_metrics={k: np.array(v, dtype=np.float64)
                      for k, v in data.get("eval_metrics", {}).items()},
        config=dict(data.get("config", {})),
    )

  def to_json(self, path: str | os.PathLike[str] | None = None, *,
              indent: int | None = None) -> str:
    """Strict JSON text of :meth:`to_dict`; also written to ``path`` if given."""
    return _dump_json(self.to_dict(), path, indent)

  @classmethod
  def from_json(cls, source: str | os.PathLike[str]) -> RangeTestResult:
    """From JSON text, or from the file at ``source``."""
    return cls.from_dict(_load_json(source))

  def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
    """One row per recorded step: ``step, lr, loss, smoothed_loss,
    eval_<metric>...``.

    Evaluation columns are blank except at ``eval_steps``. An evaluation at a
    step past the recorded ones gets its own row with its LR and blank losses.
    Returns the CSV text; also writes it to ``path`` if given.
    """
    names = list(self.eval_metrics)
    header = ["step", "lr", "loss", "smoothed_loss"] + [
        f"eval_{k}" for k in names]
    rows = [[i, self.lrs[i], self.losses[i], self.smoothed_losses[i]]
            + [None] * len(names) for i in range(self.num_steps)]
    for j, step in enumerate(self.eval_steps):
      values = [self.eval_metrics[k][j] for k in names]
      if step < self.num_steps:
        rows[step][4:] = values
      else:
        rows.append([int(step), self.eval_lrs[j], None, None] + values)
    return _write_csv(header, rows, path)

  def plot(self, ax: Any = None, *, suggestions: Any = True,
           path: str | os.PathLike[str] | None = None) -> Any:
    """Plots loss vs LR; see :func:`optax_clr.plotting.plot_range_test`."""
    from optax_clr import plotting  # matplotlib only when plotting
    return plotting.plot_range_test(self, ax, suggestions=suggestions,
                                    path=path)


# ----------------------------------------------------------------------------
# Parallel sweep.


@dataclasses.dataclass(frozen=True, eq=False)
class ParallelSweepResult:
  """K training runs at fixed LRs, trained side by side.

  Attributes:
    lrs: [K] LRs, positive and strictly increasing.
    losses: [K, N] per-step training loss (non-finite where diverged).
    final_loss: [K] loss at the last step.
    mean_loss: [K] mean of the last steps' finite losses.
    diverged: [K] bool.
    diverged_at: [K] step of divergence, -1 when not diverged.
    eval_metrics: name -> [K] final validation metric.
    config: JSON-able arguments of the run.
  """

  lrs: np.ndarray
  losses: np.ndarray
  final_loss: np.ndarray
  mean_loss: np.ndarray
  diverged: np.ndarray
  diverged_at: np.ndarray
  eval_metrics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  config: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
    lrs = _array("lrs", self.lrs, np.float64, 1)
    k = lrs.size
    _sg._validate(lrs, lrs, "lrs")
    losses = _array("losses", self.losses, np.float64, 2)
    _check_length("losses", losses, k, "LR")
    final = _array("final_loss", self.final_loss, np.float64, 1)
    mean = _array("mean_loss", self.mean_loss, np.float64, 1)
    diverged = _array("diverged", self.diverged, np.bool_, 1)
    diverged_at = _array("diverged_at", self.diverged_at, np.int64, 1)
    for name, arr in (("final_loss", final), ("mean_loss", mean),
                      ("diverged", diverged), ("diverged_at", diverged_at)):
      _check_length(name, arr, k, "LR")
    bad = np.flatnonzero(np.where(diverged, diverged_at < 0,
                                  diverged_at != -1))
    if bad.size:
      i = int(bad[0])
      raise ValueError(
          f"diverged_at must be a step >= 0 where diverged and -1 elsewhere, "
          f"got diverged[{i}]={bool(diverged[i])}, "
          f"diverged_at[{i}]={int(diverged_at[i])}")
    put("lrs", lrs)
    put("losses", losses)
    put("final_loss", final)
    put("mean_loss", mean)
    put("diverged", diverged)
    put("diverged_at", diverged_at)
    put("eval_metrics", _metrics(self.eval_metrics, k, "LR"))
    if not isinstance(self.config, Mapping):
      raise TypeError(
          f"config must be a mapping, got {type(self.config).__name__}")
    put("config", dict(self.config))

  @property
  def num_lrs(self) -> int:
    return int(self.lrs.size)

  @property
  def num_steps(self) -> int:
    """Training steps per LR."""
    return int(self.losses.shape[1])

  def __eq__(self, other: object) -> bool:
    if type(other) is not type(self):
      return NotImplemented
    return (all(_arrays_equal(getattr(self, k), getattr(other, k)) for k in
                ("lrs", "losses", "final_loss", "mean_loss", "diverged",
                 "diverged_at"))
            and _metrics_equal(self.eval_metrics, other.eval_metrics)
            and self.config == other.config)

  __hash__ = None

  def __repr__(self) -> str:
    return (f"ParallelSweepResult(num_lrs={self.num_lrs}, "
            f"num_steps={self.num_steps}, lrs={_summary(self.lrs)}, "
            f"diverged={int(self.diverged.sum())}, "
            f"eval_metrics={sorted(self.eval_metrics)})")

  def _first_diverged(self) -> int | None:
    idx = np.flatnonzero(self.diverged)
    return int(idx[0]) if idx.size else None

  def suggest(self, **kwargs: Any) -> _sg.Suggestions:
    """Suggestions from ``mean_loss`` vs ``lrs``.

    Every LR from the first diverged one on counts as non-finite (like the NaN
    tail of a ramp test), for the loss and for ``eval_metrics["accuracy"]``
    (which, if present, gives the accuracy bounds). Nothing is skipped at the
    ends unless ``skip_start``/``skip_end`` say so: each point is a whole run,
    not a noisy step.

    Args:
      **kwargs: forwarded to :func:`optax_clr.suggestions.suggest`.
    """
    first = self._first_diverged()
    kwargs.setdefault("skip_start", 0)
    kwargs.setdefault("skip_end", 0)
    acc = self.eval_metrics.get("accuracy")
    if acc is not None:
      acc = _nan_from(acc, first)
    return _sg.suggest(self.lrs, _nan_from(self.mean_loss, first), acc,
                       **kwargs)

  def to_dict(self, *, suggestions: bool = True) -> dict[str, Any]:
    """Strict-JSON-able dict; NaN/inf become None (see RangeTestResult)."""
    data = {
        "type": type(self).__name__,
        "format_version": _FORMAT_VERSION,
        "lrs": self.lrs,
        "losses": self.losses,
        "final_loss": self.final_loss,
        "mean_loss": self.mean_loss,
        "diverged": self.diverged,
        "diverged_at": self.diverged_at,
        "eval_metrics": self.eval_metrics,
        "config": self.config,
    }
    if suggestions:
      data["suggestions"] = self.suggest().to_dict()
    return _jsonable(data, "ParallelSweepResult")

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]) -> ParallelSweepResult:
    """Inverse of :meth:`to_dict` (None in float arrays becomes NaN)."""
    _check_type(cls, data)
    k = len(data["lrs"])
    losses = np.array(data["losses"], dtype=np.float64)
    if losses.size == 0:
      losses = losses.reshape(k, 0)  # [K, 0] and [0, N] lose N or K in JSON
    return cls(
        lrs=np.array(data["lrs"], dtype=np.float64),
        losses=losses,
        final_loss=np.array(data["final_loss"], dtype=np.float64),
        mean_loss=np.array(data["mean_loss"], dtype=np.float64),
        diverged=np.array(data["diverged"], dtype=np.bool_),
        diverged_at=np.array(data["diverged_at"], dtype=np.int64),
        eval_metrics={name: np.array(v, dtype=np.float64)
                      for name, v in data.get("eval_metrics", {}).items()},
        config=dict(data.get("config", {})),
    )

  def to_json(self, path: str | os.PathLike[str] | None = None, *,
              indent: int | None = None) -> str:
    """Strict JSON text of :meth:`to_dict`; also written to ``path`` if given."""
    return _dump_json(self.to_dict(), path, indent)

  @classmethod
  def from_json(cls, source: str | os.PathLike[str]) -> ParallelSweepResult:
    """From JSON text, or from the file at ``source``."""
    return cls.from_dict(_load_json(source))

  def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
    """One row per LR: ``lr, final_loss, mean_loss, diverged, diverged_at,
    eval_<metric>...``. Returns the text; also writes it to ``path``."""
    names = list(self.eval_metrics)
    header = ["lr", "final_loss", "mean_loss", "diverged", "diverged_at"] + [
        f"eval_{k}" for k in names]
    rows = [[self.lrs[i], self.final_loss[i], self.mean_loss[i],
             self.diverged[i], self.diverged_at[i]]
            + [self.eval_metrics[k][i] for k in names]
            for i in range(self.num_lrs)]
    return _write_csv(header, rows, path)

  def plot(self, ax: Any = None, *, suggestions: Any = True,
           path: str | os.PathLike[str] | None = None) -> Any:
    """Plots loss vs LR; see :func:`optax_clr.plotting.plot_sweep`."""
    from optax_clr import plotting
    return plotting.plot_sweep(self, ax, suggestions=suggestions, path=path)
