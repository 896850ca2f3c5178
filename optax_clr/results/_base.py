"""The one base of every result: typed read-only arrays, JSON, CSV, plot.

A result is a frozen dataclass whose array fields are declared once
(:class:`Column`: name, dtype, named dimensions such as ``("k", "n")``); the
base converts and checks them (dtype, number of dimensions, every use of a
dimension name the same length), checks the metrics dicts and the config,
and gives every result the same interface:

* ``to_dict()`` / ``from_dict()``: strict-JSON-able dicts with ``type`` and
  ``format_version`` (NaN and inf become ``null`` and come back as NaN);
* ``to_json(path)`` / ``from_json(text_or_path)`` (written atomically);
* ``to_csv(path)``: one row per step, LR or configuration;
* ``plot(ax=None, path=None)``: a matplotlib ``Figure`` (saved to ``path``);
* ``==`` compares every field (NaN equal to NaN).

Readers refuse malformed input with one ``ValueError`` that names the field
and what is wrong: a wrong type, a missing field, ragged or non-numeric
arrays, inconsistent lengths, an unknown format version.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from optax_clr import _checks
from optax_clr import _serialize

FORMAT_VERSION = 2
# Files written by the first release (format 1) are still read.
READABLE_VERSIONS = (1, 2)


@dataclasses.dataclass(frozen=True)
class Column:
  """An array field: its dtype and the names of its dimensions."""
  name: str
  dtype: Any
  dims: tuple[str, ...]
  required: bool = True


_DIM_WORDS = {"n": "step", "m": "evaluation", "k": "LR", "s": "seed",
              "e": "evaluation", "c": "configuration"}


def as_array(name: str, value: Any, dtype: Any, ndim: int) -> np.ndarray:
  """A read-only copy of ``value`` with ``dtype`` and ``ndim`` dimensions.

  ``None`` entries of float arrays become NaN (strict JSON has no NaN).
  """
  try:
    if dtype is np.float64 and isinstance(value, (list, tuple)):
      value = _none_to_nan(value)
    raw = np.asarray(value)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} must be a rectangular array of numbers: "
                     f"{_one_line(e)}") from e
  if raw.dtype == object or raw.dtype.kind in "USV":
    raise ValueError(f"{name} must hold numbers, got "
                     f"{_checks.describe(value)}")
  if raw.dtype.kind == "c":
    raise ValueError(f"{name} must hold real numbers, got dtype {raw.dtype}")
  if dtype is not np.bool_ and raw.dtype == np.bool_:
    raise ValueError(f"{name} must hold numbers, got booleans "
                     f"{_short(raw)}")
  if dtype is not np.float64 and raw.size and raw.dtype.kind == "f":
    if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
      raise ValueError(f"{name} must hold integers, got {_short(raw)}")
  if dtype is np.bool_ and raw.size and raw.dtype != np.bool_ and np.any(
      (raw != 0) & (raw != 1)):
    raise ValueError(f"{name} must hold booleans, got {_short(raw)}")
  try:
    with np.errstate(over="raise", invalid="raise"):
      arr = np.array(raw, dtype=dtype)
  except (TypeError, ValueError, OverflowError, FloatingPointError) as e:
    raise ValueError(f"{name}: {_one_line(e)}") from e
  if raw.size == 0 and ndim > 1 and arr.ndim == 1:
    arr = arr.reshape((0,) * ndim)
  if arr.ndim != ndim:
    raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
  arr.setflags(write=False)
  return arr


def _none_to_nan(value: Any) -> Any:
  if isinstance(value, (list, tuple)):
    return [_none_to_nan(v) for v in value]
  return np.nan if value is None else value


def _short(arr: np.ndarray) -> str:
  text = np.array2string(arr.reshape(-1)[:6], precision=4)
  return text + (" ..." if arr.size > 6 else "")


def _one_line(e: BaseException) -> str:
  return " ".join(str(e).split())


def arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
  return a.shape == b.shape and np.array_equal(
      a, b, equal_nan=a.dtype.kind == "f")


def summary(arr: np.ndarray) -> str:
  return f"[{arr[0]:.3g}..{arr[-1]:.3g}]" if arr.size else "[]"


class Result:
  """Base class of the result dataclasses (see the module docstring).

  Subclasses declare ``COLUMNS`` (array fields), ``METRICS`` (fields that map
  metric names to arrays, with their dimensions), ``CHOICES`` (string fields
  and their allowed values) and implement ``_check`` (rules across fields),
  ``_csv`` (header and rows) and ``_plot``.
  """

  COLUMNS: ClassVar[tuple[Column, ...]] = ()
  METRICS: ClassVar[dict[str, tuple[str, ...]]] = {}
  CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}

  # -- construction -----------------------------------------------------------

  def __post_init__(self):
    sizes: dict[str, tuple[int, str]] = {}
    for col in self.COLUMNS:
      arr = as_array(col.name, getattr(self, col.name), col.dtype,
                     len(col.dims))
      self._check_dims(col.name, arr.shape, col.dims, sizes)
      object.__setattr__(self, col.name, arr)
    for name, dims in self.METRICS.items():
      value = getattr(self, name)
      if not isinstance(value, Mapping):
        raise TypeError(
            f"{name} must be a mapping of name -> array, got "
            f"{type(value).__name__}")
      out = {}
      for key, v in value.items():
        if not isinstance(key, str):
          raise TypeError(f"{name} names must be str, got {key!r}")
        arr = as_array(f"{name}[{key!r}]", v, np.float64, len(dims))
        self._check_dims(f"{name}[{key!r}]", arr.shape, dims, sizes)
        out[key] = arr
      object.__setattr__(self, name, out)
    for name, choices in self.CHOICES.items():
      _checks.check_choice(name, getattr(self, name), choices)
    if not isinstance(self.config, Mapping):
      raise TypeError(
          f"config must be a mapping, got {type(self.config).__name__}")
    object.__setattr__(self, "config", dict(self.config))
    self._check()

  @staticmethod
  def _check_dims(name: str, shape: tuple[int, ...], dims: tuple[str, ...],
                  sizes: dict[str, tuple[int, str]]) -> None:
    for size, dim in zip(shape, dims):
      if dim not in sizes:
        sizes[dim] = (size, name)
        continue
      want, first = sizes[dim]
      if size != want:
        raise ValueError(
            f"{name} must have one entry per {_DIM_WORDS.get(dim, dim)} "
            f"({want}, as {first}), got shape {shape}")

  def _check(self) -> None:
    """Rules across fields; subclasses override."""

  # -- comparison and display -------------------------------------------------

  def __eq__(self, other: object) -> bool:
    if type(other) is not type(self):
      return NotImplemented
    for f in dataclasses.fields(self):
      a, b = getattr(self, f.name), getattr(other, f.name)
      if isinstance(a, np.ndarray):
        if not arrays_equal(a, b):
          return False
      elif f.name in self.METRICS:
        if a.keys() != b.keys() or not all(
            arrays_equal(a[k], b[k]) for k in a):
          return False
      elif a != b:
        return False
    return True

  __hash__ = None  # holds arrays; like np.ndarray, not hashable

  # -- serialization ----------------------------------------------------------

  def _derived(self, suggestions: bool) -> dict[str, Any]:
    """Extra JSON entries (derived values, suggestions); ignored on read."""
    return {}

  def to_dict(self, *, suggestions: bool = True) -> dict[str, Any]:
    """Strict-JSON-able dict: ``type``, ``format_version``, every field, and
    derived entries (e.g. the default suggestions) that :meth:`from_dict`
    ignores."""
    data = {"type": type(self).__name__, "format_version": FORMAT_VERSION}
    for f in dataclasses.fields(self):
      data[f.name] = getattr(self, f.name)
    data.update(self._derived(suggestions))
    return _serialize.jsonable(data, type(self).__name__)

  @classmethod
  def from_dict(cls, data: Mapping[str, Any]) -> Result:
    """Inverse of :meth:`to_dict`; ValueError naming what is malformed."""
    if not isinstance(data, Mapping):
      raise ValueError(f"expected a {cls.__name__} JSON object, got "
                       f"{type(data).__name__}")
    _serialize.check_type(cls, data)
    version = data.get("format_version", data.get("version", 1))
    if version not in READABLE_VERSIONS:
      raise ValueError(
          f"{cls.__name__} has format_version {version!r}; this version "
          f"reads {list(READABLE_VERSIONS)}")
    data = cls._upgrade(dict(data), version)
    kwargs = {}
    for f in dataclasses.fields(cls):
      if f.name in data:
        kwargs[f.name] = data[f.name]
      elif f.default is dataclasses.MISSING and (
          f.default_factory is dataclasses.MISSING):
        raise ValueError(f"{cls.__name__} is missing the field {f.name!r}")
    for name in cls.METRICS:
      if name in kwargs and not isinstance(kwargs[name], Mapping):
        raise ValueError(
            f"{cls.__name__}.{name} must be an object of name -> array, got "
            f"{type(kwargs[name]).__name__}")
    if "config" in kwargs and not isinstance(kwargs["config"], Mapping):
      raise ValueError(f"{cls.__name__}.config must be an object, got "
                       f"{type(kwargs['config']).__name__}")
    try:
      return cls(**kwargs)
    except TypeError as e:
      raise ValueError(f"malformed {cls.__name__}: {_one_line(e)}") from e

  @classmethod
  def _upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
    """Renames the fields of an older format; subclasses override."""
    return data

  def to_json(self, path: str | os.PathLike[str] | None = None, *,
              indent: int | None = None) -> str:
    """Strict JSON text of :meth:`to_dict`; also written (atomically) to
    ``path`` if given."""
    return _serialize.dump_json(self.to_dict(), path, indent)

  @classmethod
  def from_json(cls, source: str | os.PathLike[str]) -> Result:
    """From JSON text, or from the file at ``source``.

    Raises:
      ValueError: one line naming the file (or "JSON text") and what is
        wrong with it.
    """
    data = _serialize.load_json(source)
    try:
      return cls.from_dict(data)
    except ValueError as e:
      name = _serialize.source_name(source)
      text = _one_line(e)
      raise ValueError(text if text.startswith(name) else f"{name}: {text}"
                       ) from e

  def _csv(self) -> tuple[list[str], list[list[Any]]]:
    raise NotImplementedError

  def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
    """The CSV text (full float precision, blank for missing); also written
    (atomically) to ``path`` if given."""
    header, rows = self._csv()
    return _serialize.write_csv(header, rows, path)

  def _plot(self, ax: Any, **kwargs: Any) -> Any:
    raise NotImplementedError

  def plot(self, ax: Any = None, *, path: str | os.PathLike[str] | None = None,
           **kwargs: Any) -> Any:
    """Draws the result; returns the matplotlib ``Figure`` (also saved to
    ``path`` if given). See :mod:`optax_clr.plotting`."""
    return self._plot(ax, path=path, **kwargs)
