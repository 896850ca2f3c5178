"""Reading any results file, or the results of a run directory.

Every command of the CLI writes ``results.json`` into its run directory: a
typed result or, for commands that produce several (``demo``, ``train
--auto-bounds``), a :class:`RunSummary` that names the files of its parts
and the bounds the run chose.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from typing import Any, NamedTuple

from optax_clr import _serialize
from optax_clr.results._base import FORMAT_VERSION
from optax_clr.results._base import naming
from optax_clr.results._base import one_line
from optax_clr.results._base import Result
from optax_clr.results._sweep import BatchSizeSweepResult
from optax_clr.results._sweep import GridSweepResult
from optax_clr.results._range_test import MultiSeedRangeTestResult
from optax_clr.results._range_test import RangeTestResult
from optax_clr.results._range_test import WeightDecayRangeTestResult
from optax_clr.results._sweep import ParallelSweepResult
from optax_clr.results._training import TrainHistory

RESULT_TYPES: dict[str, type[Result]] = {
    cls.__name__: cls for cls in (RangeTestResult, MultiSeedRangeTestResult,
                                  ParallelSweepResult, GridSweepResult,
                                  WeightDecayRangeTestResult, TrainHistory,
                                  BatchSizeSweepResult)}
RESULTS_NAME = "results.json"


@dataclasses.dataclass(frozen=True)
class RunSummary:
  """The ``results.json`` of a command with several results.

  Attributes:
    command: the command that wrote it (``"demo"``, ...).
    parts: part name -> file name in the same directory, e.g.
      ``{"range_test": "range_test.json", "sweep": "sweep.json"}``.
    bounds: what the run chose: ``base_lr``, ``max_lr`` (CLR), ``lr`` (the
      best fixed LR), ``policy``, ``source`` (how).
    summary: anything else worth keeping (JSON-able).
  """

  command: str
  parts: dict[str, str]
  bounds: dict[str, Any]
  summary: dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_dict(self) -> dict[str, Any]:
    return _serialize.jsonable({
        "type": "RunSummary", "format_version": FORMAT_VERSION,
        **dataclasses.asdict(self)})

  def to_json(self, path: str | os.PathLike[str] | None = None, *,
              indent: int | None = 2) -> str:
    return _serialize.dump_json(self.to_dict(), path, indent)

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
    """Inverse of :meth:`to_dict`; ValueError naming what is malformed.

    A part must be a file name in the run directory (no path), and a bound
    (``base_lr``, ``max_lr``, ``lr``) null or a finite number > 0.
    """
    for key, kind in (("command", str), ("parts", Mapping),
                      ("bounds", Mapping)):
      if not isinstance(data.get(key), kind):
        raise ValueError(f"RunSummary.{key} must be a "
                         f"{'string' if kind is str else 'JSON object'}")
    summary = data.get("summary") or {}
    if not isinstance(summary, Mapping):
      raise ValueError("RunSummary.summary must be a JSON object, got "
                       f"{type(summary).__name__}")
    for name, file in data["parts"].items():
      if not isinstance(file, str) or not file or file != pathlib.PurePath(
          file).name or file in (".", ".."):
        raise ValueError(f"RunSummary.parts[{name!r}] must be a file name "
                         f"in the run directory, got {file!r}")
    for key in ("base_lr", "max_lr", "lr"):
      value = data["bounds"].get(key)
      if value is not None and (
          isinstance(value, bool) or not isinstance(value, (int, float))
          or not 0 < value < float("inf")):
        raise ValueError(f"RunSummary.bounds[{key!r}] must be null or a "
                         f"finite number > 0, got {value!r}")
    return cls(data["command"], dict(data["parts"]), dict(data["bounds"]),
               dict(summary))


def _resolve(source: str | os.PathLike[str]) -> pathlib.Path:
  path = pathlib.Path(source).expanduser()
  if path.is_dir():
    candidate = path / RESULTS_NAME
    if not candidate.exists():
      raise ValueError(f"{path}: a directory without {RESULTS_NAME} (not an "
                       "optax-clr run directory)")
    return candidate
  return path


def load_results(source: str | os.PathLike[str], *,
                 part: str | None = None) -> Result | RunSummary:
  """Reads a results file, or ``results.json`` of a run directory.

  Args:
    source: a ``.json`` file written by ``to_json`` or the CLI, or a run
      directory.
    part: for a :class:`RunSummary`, the name of the part to read instead
      (e.g. ``"range_test"``).

  Returns:
    The typed result, or the :class:`RunSummary`.

  Raises:
    ValueError: one line naming the file and what is wrong with it.
    OSError: it cannot be read.
  """
  path = _resolve(source)
  data = _serialize.load_json(path)
  if not isinstance(data, Mapping):
    raise ValueError(f"{path}: not an optax-clr results file (a JSON "
                     f"{type(data).__name__}, expected an object)")
  kind = data.get("type")
  try:
    if kind == "RunSummary":
      summary = RunSummary.from_dict(data)
      if part is None:
        return summary
      if part not in summary.parts:
        raise ValueError(f"has no part {part!r}; its parts are "
                         f"{sorted(summary.parts)}")
      found = load_results(path.parent / summary.parts[part])
      if isinstance(found, RunSummary):
        raise ValueError(f"part {part!r} ({summary.parts[part]}) is itself "
                         "a RunSummary, not a result")
      return found
    if not isinstance(kind, str) or kind not in RESULT_TYPES:
      raise ValueError(
          f"not an optax-clr results file (\"type\" is {kind!r}; expected "
          f"one of {', '.join(sorted(RESULT_TYPES))} or RunSummary)")
    return RESULT_TYPES[kind].from_dict(data)
  except (TypeError, ValueError, KeyError, IndexError, RecursionError) as e:
    raise naming(str(path), e) from e


class Bounds(NamedTuple):
  """LR bounds read from a result: ``base_lr``/``max_lr`` for a cyclical
  policy, ``lr`` for a fixed one, and where they came from."""
  base_lr: float | None
  max_lr: float | None
  lr: float | None
  source: str


def bounds_of(result: Result | RunSummary | str | os.PathLike[str],
              policy: str = "triangular") -> Bounds:
  """The bounds a result (or a results file, or a run directory) suggests
  for ``policy``.

  * a range test (one seed or several): its suggested ``base_lr``/``max_lr``;
  * a sweep: its sweep-native bounds, or its best LR for ``"fixed"``;
  * a run summary (``demo``, ``train --auto-bounds``): the bounds it chose;
  * one-cycle takes only ``max_lr`` (it starts at ``max_lr / div_factor``).

  Raises:
    ValueError: the result gives no bounds for the policy (why is said;
      for a file, naming the file).
  """
  if isinstance(result, (str, os.PathLike)):
    path = _resolve(result)
    try:
      return bounds_of(load_results(path), policy)
    except ValueError as e:
      raise naming(str(path), e) from e
  if isinstance(result, RunSummary):
    b = result.bounds
    base, top, lr = b.get("base_lr"), b.get("max_lr"), b.get("lr")
    source = f"the bounds {result.command} chose ({b.get('source', '?')})"
  elif not hasattr(result, "suggest"):  # training, grids, batch sizes
    raise ValueError(f"a {type(result).__name__} holds no LR bounds; give "
                     "the results of a range test, an LR sweep or the demo")
  else:
    s = result.suggest()
    base, top = s.base_lr, s.max_lr
    lr = getattr(s, "best_lr", None)
    source = one_line(s.rule)
    if policy == "fixed" and lr is not None:
      source = one_line(s.best.reason)
  if policy == "fixed":
    if lr is None:
      raise ValueError(
          "a fixed LR needs the results of a sweep (its best LR) or of the "
          "demo; a range test suggests bounds, not one LR")
    return Bounds(None, None, float(lr), f"best fixed LR: {source}")
  if base is None or top is None:  # a rule's text may say so already
    raise ValueError(source if source.startswith("no CLR bounds")
                     else f"no CLR bounds: {source}")
  if policy == "one-cycle":
    return Bounds(None, float(top), None, source + "; one-cycle uses its "
                  "max_lr")
  return Bounds(float(base), float(top), None, source)
