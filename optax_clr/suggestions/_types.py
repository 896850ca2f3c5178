"""The suggestion objects: one point, a ramp's set, a sweep's set, and the
same over several seeds.

Every set has ``base_lr``, ``max_lr`` (the pair for a cyclical schedule,
None when none can be made) and ``rule`` (how they were chosen, with the
numbers); ``str()`` gives the table the CLI prints and ``_repr_html_`` the
same table in a notebook.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from optax_clr import _checks
from optax_clr.suggestions._answer import Answer

DERIVATIVES = ("log_lr", "index", "raw_lr", "none")


@dataclasses.dataclass(frozen=True)
class Suggestion:
  """One suggested learning rate.

  Attributes:
    method: name of the rule, e.g. ``"steepest"``, ``"minimum"``,
      ``"valley"``, ``"accuracy_base"``, ``"accuracy_max"``, ``"best"``.
    lr: the suggested learning rate, or None when no suggestion can be made.
    index: index of the point the suggestion is read from, into the arrays
      as passed in (before skipping and dropping); None when ``lr`` is None.
    derivative: what the rule differentiates against: ``"log_lr"``,
      ``"index"``, ``"raw_lr"`` or ``"none"``.
    reason: why ``lr`` is None, or a note on how it was obtained.
  """

  method: str
  lr: float | None
  index: int | None
  derivative: str
  reason: str | None = None

  def __post_init__(self):
    _checks.check_choice("derivative", self.derivative, DERIVATIVES)
    # Plain Python scalars keep the object hashable and JSON-able.
    if self.lr is not None:
      object.__setattr__(self, "lr", float(self.lr))
    if self.index is not None:
      object.__setattr__(self, "index", int(self.index))

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _fmt(x: float | None) -> str:
  return "-" if x is None else f"{x:.3e}"


def _one_line(text: str | None) -> str:
  return " ".join(str(text or "").split())


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
  return ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths))
          + "  " + r[-1] for r in rows]


class _Bounds(Answer):
  """Shared display of a suggestion set (``base_lr``, ``max_lr``, ``rule``
  and named points); schedules and an optimizer from it (:class:`Answer`)."""

  LABELS: dict[str, str] = {}

  def points(self) -> list[tuple[str, Suggestion | None]]:
    return [(self.LABELS.get(name, name), getattr(self, name))
            for name in self.LABELS]

  def rows(self) -> list[tuple[str, str, str, str]]:
    rows = [("method", "lr", "derivative", "note")]
    for label, sug in self.points():
      if sug is None:
        rows.append((label, "-", "-", "not evaluated"))
      else:
        rows.append((label, _fmt(sug.lr), sug.derivative,
                     _one_line(sug.reason)))
    return rows

  def __str__(self) -> str:
    lines = _table(self.rows())
    if self.base_lr is not None:
      lines.append(f"CLR bounds: base_lr={self.base_lr:.3e}  max_lr="
                   f"{self.max_lr:.3e}")
    else:
      lines.append("CLR bounds: none")
    lines.append(f"  rule: {_one_line(self.rule)}")
    return "\n".join(lines)

  def _repr_html_(self) -> str:
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in self.rows()[1:])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in self.rows()[0])
    bounds = ("none" if self.base_lr is None else
              f"base_lr = {self.base_lr:.3e}, max_lr = {self.max_lr:.3e}")
    return (f"<table><tr>{head}</tr>{cells}</table><p><b>CLR bounds:</b> "
            f"{html.escape(bounds)}<br><small>{html.escape(self.rule)}"
            "</small></p>")


@dataclasses.dataclass(frozen=True)
class Suggestions(_Bounds):
  """All suggestions for one LR ramp, and the CLR bounds derived from them.

  Attributes:
    steepest, minimum, valley: loss-based suggestions.
    accuracy_base, accuracy_max: Smith's accuracy-based bounds, or None when
      no accuracies were given.
    base_lr, max_lr: the pair for a cyclic schedule (None when none can be
      made); ``base_lr < max_lr`` whenever both are set.
    rule: how ``base_lr`` and ``max_lr`` were chosen, with the numbers.
    readings: every rule's reading, ``{"loss": {"base_lr", "max_lr",
      "rule"}, "accuracy": {...}}`` (accuracy only when evaluated).
    chosen: the rule that answered (``"loss"`` unless asked otherwise).

  Examples:
    A synthetic curve that falls around LR 1e-2 and blows up near 1:

    >>> import numpy as np
    >>> import optax_clr as clr
    >>> lrs = np.geomspace(1e-4, 10, 101)
    >>> loss = 2.3 - 2 * lrs / (lrs + 0.01) + (lrs / 0.5) ** 2
    >>> s = clr.suggest(lrs, loss)
    >>> f"{s.steepest.lr:.3g}", f"{s.minimum.lr:.3g}", s.minimum.index
    ('0.01', '0.0126', 62)
    >>> f"base_lr={s.base_lr:.3g} max_lr={s.max_lr:.3g}"
    'base_lr=0.0351 max_lr=0.141'
  """

  steepest: Suggestion
  minimum: Suggestion
  valley: Suggestion
  accuracy_base: Suggestion | None
  accuracy_max: Suggestion | None
  base_lr: float | None
  max_lr: float | None
  rule: str
  readings: dict[str, dict[str, Any]] = dataclasses.field(
      default_factory=dict)
  chosen: str = "loss"

  LABELS = {"steepest": "steepest", "minimum": "minimum/10",
            "valley": "valley", "accuracy_base": "accuracy_base",
            "accuracy_max": "accuracy_max"}

  def to_dict(self) -> dict[str, Any]:
    def sub(s):
      return None if s is None else s.to_dict()
    return {"kind": "ramp", "steepest": sub(self.steepest),
            "minimum": sub(self.minimum), "valley": sub(self.valley),
            "accuracy_base": sub(self.accuracy_base),
            "accuracy_max": sub(self.accuracy_max), "base_lr": self.base_lr,
            "max_lr": self.max_lr, "rule": self.rule,
            "readings": self.readings, "chosen": self.chosen}

  def __str__(self) -> str:
    lines = super().__str__().splitlines()
    if len(self.readings) > 1:
      for name, r in self.readings.items():
        mark = " (answers)" if name == self.chosen else ""
        pair = ("none" if r["base_lr"] is None else
                f"base_lr={r['base_lr']:.3e}  max_lr={r['max_lr']:.3e}")
        lines.append(f"  {name} rule{mark}: {pair}")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class SweepSuggestions(_Bounds):
  """What a sweep of fixed LRs suggests (rules native to finished runs).

  Attributes:
    best: the best stable run (``best.lr`` is the sweep's best LR).
    stable_low, stable_high: the contiguous range of stable LRs around the
      best one (runs that trained: not diverged, spiked or stalled).
    base_lr, max_lr: CLR bounds read from the sweep; ``max_lr >= best.lr``.
    rule: how they were chosen, with the numbers.
  """

  best: Suggestion
  stable_low: float | None
  stable_high: float | None
  base_lr: float | None
  max_lr: float | None
  rule: str

  LABELS = {"best": "best fixed LR"}

  def rows(self) -> list[tuple[str, str, str, str]]:
    rows = super().rows()
    if self.stable_low is not None:
      rows.append(("stable range", f"{self.stable_low:.3e}", "none",
                   f"to {self.stable_high:.3e}"))
    return rows

  @property
  def best_lr(self) -> float | None:
    return self.best.lr

  @property
  def fixed_lr(self) -> float | None:
    return self.best.lr

  def to_dict(self) -> dict[str, Any]:
    return {"kind": "sweep", "best": self.best.to_dict(),
            "stable_low": self.stable_low, "stable_high": self.stable_high,
            "base_lr": self.base_lr, "max_lr": self.max_lr,
            "rule": self.rule}


@dataclasses.dataclass(frozen=True)
class Spread:
  """One suggested value over seeds: the median and how far seeds differ.

  Attributes:
    median: geometric median-like centre (the median of the seeds' values).
    low, high: the smallest and largest seed's value.
    values: each seed's value (None where that seed gave none).
  """

  median: float | None
  low: float | None
  high: float | None
  values: tuple[float | None, ...]

  @property
  def ratio(self) -> float | None:
    """``high / low`` (1.0: every seed agrees)."""
    if self.low is None or not self.low > 0:
      return None
    return self.high / self.low

  @classmethod
  def of(cls, values: Sequence[float | None]) -> Spread:
    got = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not got:
      return cls(None, None, None, tuple(values))
    return cls(float(np.median(got)), min(got), max(got),
               tuple(None if v is None else float(v) for v in values))

  def to_dict(self) -> dict[str, Any]:
    return {"median": self.median, "low": self.low, "high": self.high,
            "ratio": self.ratio, "values": list(self.values)}

  def text(self) -> str:
    if self.median is None:
      return "-"
    return (f"{self.median:.3e} [{self.low:.3e} .. {self.high:.3e}, "
            f"x{self.ratio:.2f}]")


@dataclasses.dataclass(frozen=True)
class SeedSuggestions(Answer):
  """Suggestions of S ramps (one per seed) and their spread.

  Attributes:
    per_seed: each seed's :class:`Suggestions`.
    spreads: method name (``steepest``, ``minimum``, ``valley``,
      ``base_lr``, ``max_lr``) -> :class:`Spread` over the seeds.
    base_lr, max_lr: the medians over seeds (None when fewer than half of
      the seeds give bounds); ``base_lr < max_lr``.
    rule: how they were chosen.
  """

  per_seed: tuple[Suggestions, ...]
  spreads: dict[str, Spread]
  base_lr: float | None
  max_lr: float | None
  rule: str

  def __str__(self) -> str:
    rows = [("method", "median [min .. max, spread] over "
             f"{len(self.per_seed)} seeds")]
    for name, spread in self.spreads.items():
      rows.append((name, spread.text()))
    width = max(len(r[0]) for r in rows)
    lines = ["  " + r[0].ljust(width) + "  " + r[1] for r in rows]
    lines.append("CLR bounds: none" if self.base_lr is None else
                 f"CLR bounds: base_lr={self.base_lr:.3e}  max_lr="
                 f"{self.max_lr:.3e}")
    lines.append(f"  rule: {_one_line(self.rule)}")
    return "\n".join(lines)

  def to_dict(self) -> dict[str, Any]:
    return {"kind": "seeds", "spreads": {k: v.to_dict() for k, v in
                                         self.spreads.items()},
            "per_seed": [s.to_dict() for s in self.per_seed],
            "base_lr": self.base_lr, "max_lr": self.max_lr,
            "rule": self.rule}


@dataclasses.dataclass(frozen=True)
class DisciplinedSuggestions:
  """Smith's (2018) choice from LR range tests at several weight decays.

  Attributes:
    weight_decay, momentum: the chosen ramp's.
    base_lr, max_lr: its CLR bounds (None when no ramp gave bounds).
    base_momentum, max_momentum: the cyclical momentum to use with them.
    rule: how the choice was made, with the numbers.
    table: one row per ramp: weight_decay, momentum, min_loss, max_lr,
      eligible, chosen.
  """

  weight_decay: float | None
  momentum: float | None
  base_lr: float | None
  max_lr: float | None
  base_momentum: float
  max_momentum: float
  rule: str
  table: tuple[dict[str, Any], ...]

  def __str__(self) -> str:
    lines = [f"  {'weight decay':>12}  {'momentum':>8}  {'min loss':>9}  "
             f"{'max_lr':>10}"]
    for r in self.table:
      mark = "  <- chosen" if r["chosen"] else (
          "" if r["eligible"] else "  (loss too high)")
      lines.append(f"  {r['weight_decay']:>12.3g}  {r['momentum']:>8.3g}  "
                   f"{r['min_loss']:>9.4g}  {_fmt(r['max_lr']):>10}{mark}")
    if self.max_lr is None:
      lines.append("choice: none")
    else:
      lines.append(
          f"choice: weight_decay={self.weight_decay:g}, base_lr="
          f"{self.base_lr:.3e}, max_lr={self.max_lr:.3e}, momentum "
          f"{self.max_momentum:g} -> {self.base_momentum:g}")
    lines.append(f"  rule: {_one_line(self.rule)}")
    return "\n".join(lines)

  def to_dict(self) -> dict[str, Any]:
    return {"kind": "disciplined", **{
        f.name: getattr(self, f.name) for f in dataclasses.fields(self)
        if f.name != "table"}, "table": list(self.table)}
