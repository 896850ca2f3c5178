"""The suggestion objects: one point, a ramp's set, a sweep's set, the same
over seeds, Smith's weight-decay choice. ``str()`` of a set is the table
the CLI prints, ``_repr_html_`` the same in a notebook, ``to_dict()`` its
JSON form (with a ``kind``)."""

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


def _plain(x: Any) -> Any:
  """``x`` as JSON-able data: suggestion objects as their ``to_dict()``."""
  if hasattr(x, "to_dict"):
    return x.to_dict()
  if isinstance(x, dict):
    return {k: _plain(v) for k, v in x.items()}
  return [_plain(v) for v in x] if isinstance(x, tuple) else x


class _Record:
  """``to_dict()``: the ``KIND`` and every field, nested objects as dicts."""

  KIND = ""

  def to_dict(self) -> dict[str, Any]:
    return {"kind": self.KIND, **{f.name: _plain(getattr(self, f.name))
                                  for f in dataclasses.fields(self)}}


@dataclasses.dataclass(frozen=True)
class Suggestion:
  """One suggested learning rate.

  Attributes:
    method: the rule, e.g. ``"steepest"``, ``"minimum"``, ``"valley"``,
      ``"accuracy_base"``, ``"accuracy_max"``, ``"best"``.
    lr: the suggested learning rate, or None when none can be made.
    index: the point it is read from, into the arrays as passed in.
    derivative: what the rule differentiates against (:data:`DERIVATIVES`).
    reason: why ``lr`` is None, or how it was obtained.
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


def _pair(base_lr: float | None, max_lr: float | None) -> str:
  return ("none" if base_lr is None else
          f"base_lr={base_lr:.3e}  max_lr={max_lr:.3e}")


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
  return ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths))
          + "  " + r[-1] for r in rows]


def _html_row(tag: str, cells: Sequence[str]) -> str:
  return "<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>"
                          for c in cells) + "</tr>"


class _Bounds(_Record, Answer):
  """A suggestion set's table (a row per named point in ``LABELS``), its
  bounds and rule; schedules and an optimizer from it (:class:`Answer`)."""

  LABELS: dict[str, str] = {}

  def rows(self) -> list[tuple[str, ...]]:
    rows = [("method", "lr", "derivative", "note")]
    for name, label in self.LABELS.items():
      s = getattr(self, name)
      rows.append((label, "-", "-", "not evaluated") if s is None else
                  (label, _fmt(s.lr), s.derivative, _one_line(s.reason)))
    return rows

  def __str__(self) -> str:
    return "\n".join(_table(self.rows()) + [
        f"CLR bounds: {_pair(self.base_lr, self.max_lr)}",
        f"  rule: {_one_line(self.rule)}"])

  def _repr_html_(self) -> str:
    head, *body = self.rows()
    bounds = ("none" if self.base_lr is None else
              f"base_lr = {self.base_lr:.3e}, max_lr = {self.max_lr:.3e}")
    return ("<table>" + _html_row("th", head)
            + "".join(_html_row("td", r) for r in body)
            + f"</table><p><b>CLR bounds:</b> {html.escape(bounds)}<br>"
            f"<small>{html.escape(self.rule)}</small></p>")


@dataclasses.dataclass(frozen=True)
class Suggestions(_Bounds):
  """All suggestions for one LR ramp, and the CLR bounds derived from them.

  Attributes:
    steepest, minimum, valley: loss-based suggestions.
    accuracy_base, accuracy_max: Smith's accuracy bounds (None without
      accuracies).
    base_lr, max_lr: the pair for a cyclic schedule (None when none can be
      made); ``base_lr < max_lr``.
    rule: how they were chosen, with the numbers.
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

  KIND = "ramp"
  LABELS = {"steepest": "steepest", "minimum": "minimum/10",
            "valley": "valley", "accuracy_base": "accuracy_base",
            "accuracy_max": "accuracy_max"}

  def __str__(self) -> str:
    lines = [super().__str__()]
    for name, r in self.readings.items() if len(self.readings) > 1 else ():
      mark = " (answers)" if name == self.chosen else ""
      lines.append(f"  {name} rule{mark}: {_pair(r['base_lr'], r['max_lr'])}")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class SweepSuggestions(_Bounds):
  """What a sweep of fixed LRs suggests (:func:`suggest_sweep`).

  Attributes:
    best: the best stable run (``best.lr`` is the sweep's best LR).
    stable_low, stable_high: the contiguous range of stable LRs around it.
    base_lr, max_lr: CLR bounds read from the sweep; ``max_lr >= best.lr``.
    rule: how they were chosen, with the numbers.
  """

  best: Suggestion
  stable_low: float | None
  stable_high: float | None
  base_lr: float | None
  max_lr: float | None
  rule: str

  KIND = "sweep"
  LABELS = {"best": "best fixed LR"}

  def rows(self) -> list[tuple[str, ...]]:
    rows = super().rows()
    if self.stable_low is not None:
      rows.append(("stable range", f"{self.stable_low:.3e}", "none",
                   f"to {self.stable_high:.3e}"))
    return rows

  best_lr = fixed_lr = property(lambda self: self.best.lr,
                                doc="The sweep's best LR (``best.lr``).")


@dataclasses.dataclass(frozen=True)
class Spread:
  """One suggested value over seeds: the median of the seeds' values, the
  smallest and largest (``low``, ``high``) and each seed's (``values``, None
  where a seed gave none)."""

  median: float | None
  low: float | None
  high: float | None
  values: tuple[float | None, ...]

  @property
  def ratio(self) -> float | None:
    """``high / low`` (1.0: every seed agrees)."""
    return None if self.low is None or not self.low > 0 else (
        self.high / self.low)

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
    return "-" if self.median is None else (
        f"{self.median:.3e} [{self.low:.3e} .. {self.high:.3e}, "
        f"x{self.ratio:.2f}]")


@dataclasses.dataclass(frozen=True)
class SeedSuggestions(_Bounds):
  """Suggestions of S ramps (one per seed) and their spread.

  Attributes:
    per_seed: each seed's :class:`Suggestions`.
    spreads: ``steepest``, ``minimum``, ``valley``, ``base_lr``, ``max_lr``
      -> :class:`Spread` over the seeds.
    base_lr, max_lr: the medians over seeds; ``base_lr < max_lr``.
    rule: how they were chosen.
  """

  per_seed: tuple[Suggestions, ...]
  spreads: dict[str, Spread]
  base_lr: float | None
  max_lr: float | None
  rule: str

  KIND = "seeds"

  def rows(self) -> list[tuple[str, ...]]:
    return [("method", "median [min .. max, spread] over "
             f"{len(self.per_seed)} seeds")] + [
                 (name, s.text()) for name, s in self.spreads.items()]


@dataclasses.dataclass(frozen=True)
class DisciplinedSuggestions(_Record):
  """Smith's (2018) choice from LR range tests at several weight decays
  (:func:`disciplined`).

  Attributes:
    weight_decay, momentum, base_lr, max_lr: the chosen ramp's (None when
      no ramp gave bounds).
    base_momentum, max_momentum: the cyclical momentum to use with them.
    rule: how the choice was made, with the numbers.
    table: per ramp: weight_decay, momentum, min_loss, max_lr, eligible,
      chosen.
  """

  weight_decay: float | None
  momentum: float | None
  base_lr: float | None
  max_lr: float | None
  base_momentum: float
  max_momentum: float
  rule: str
  table: tuple[dict[str, Any], ...]

  KIND = "disciplined"

  def __str__(self) -> str:
    lines = [f"  {'weight decay':>12}  {'momentum':>8}  {'min loss':>9}  "
             f"{'max_lr':>10}"]
    for r in self.table:
      mark = "  <- chosen" if r["chosen"] else (
          "" if r["eligible"] else "  (loss too high)")
      lines.append(f"  {r['weight_decay']:>12.3g}  {r['momentum']:>8.3g}  "
                   f"{r['min_loss']:>9.4g}  {_fmt(r['max_lr']):>10}{mark}")
    lines.append("choice: none" if self.max_lr is None else
                 f"choice: weight_decay={self.weight_decay:g}, base_lr="
                 f"{self.base_lr:.3e}, max_lr={self.max_lr:.3e}, momentum "
                 f"{self.max_momentum:g} -> {self.base_momentum:g}")
    lines.append(f"  rule: {_one_line(self.rule)}")
    return "\n".join(lines)
