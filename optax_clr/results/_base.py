"""The one base of every result (:class:`Result`): fields that declare
their dtype and dimensions, strict JSON, CSV, plot."""

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
_DIM_WORDS = {"n": "step", "m": "evaluation", "k": "LR", "s": "seed",
              "e": "evaluation"}
_MISSING = dataclasses.MISSING


def column(*dims: str, dtype: Any = np.float64, default: Any = _MISSING
           ) -> Any:
  """A field holding an array of ``dtype`` with the named dimensions."""
  return dataclasses.field(default=default, metadata={
      "kind": "column", "dims": dims, "dtype": dtype})


def metrics(*dims: str, required: bool = False) -> Any:
  """A field mapping names to float arrays with the named dimensions."""
  return dataclasses.field(
      default_factory=_MISSING if required else dict,
      metadata={"kind": "metrics", "dims": dims, "dtype": np.float64})


def choice(*allowed: str, default: Any = _MISSING) -> Any:
  """A field holding one of the ``allowed`` strings."""
  return dataclasses.field(default=default, metadata={
      "kind": "choice", "allowed": allowed})


def _fields(cls: Any, kind: str) -> list[dataclasses.Field]:
  return [f for f in dataclasses.fields(cls) if f.metadata.get("kind") == kind]


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
                     f"{one_line(e)}") from e
  if raw.dtype == object or raw.dtype.kind in "USV":
    raise ValueError(f"{name} must hold numbers, got "
                     f"{_checks.describe(value)}")
  if raw.dtype.kind == "c":
    raise ValueError(f"{name} must hold real numbers, got dtype {raw.dtype}")
  if dtype is not np.bool_ and raw.dtype == np.bool_:
    raise ValueError(f"{name} must hold numbers, got booleans {_short(raw)}")
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
    raise ValueError(f"{name}: {one_line(e)}") from e
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


def one_line(e: Any) -> str:
  return " ".join(str(e).split())


def naming(name: str, e: Exception) -> ValueError:
  """``e`` as one line that starts with ``name`` (the file it is about)."""
  text = one_line(e)
  return ValueError(text if text.startswith(name) else f"{name}: {text}")


def arrays_equal(a: np.ndarray, b: np.ndarray) -> bool:
  return a.shape == b.shape and np.array_equal(
      a, b, equal_nan=a.dtype.kind == "f")


def pick(values: Any, index: list[int | None]) -> list[Any]:
  """``values[i]`` for each ``i`` of ``index``; None where ``i`` is None."""
  return [None if i is None else values[i] for i in index]


def summary(arr: np.ndarray) -> str:
  return f"[{arr[0]:.3g}..{arr[-1]:.3g}]" if arr.size else "[]"


def _check_dims(name: str, shape: tuple[int, ...], dims: tuple[str, ...],
                sizes: dict[str, tuple[int, str]]) -> None:
  for size, dim in zip(shape, dims):
    want, first = sizes.setdefault(dim, (size, name))
    if size != want:
      raise ValueError(
          f"{name} must have one entry per {_DIM_WORDS.get(dim, dim)} "
          f"({want}, as {first}), got shape {shape}")


class JsonFile:
  """``to_json``/``from_json`` over a class's ``to_dict``/``from_dict``."""

  def to_json(self, path: str | os.PathLike[str] | None = None, *,
              indent: int | None = None) -> str:
    """Strict JSON text of :meth:`to_dict`; also written (atomically) to
    ``path`` if given."""
    return _serialize.dump_json(self.to_dict(), path, indent)

  @classmethod
  def from_json(cls, source: str | os.PathLike[str]) -> Any:
    """From JSON text, or from the file at ``source``.

    Raises:
      ValueError: one line naming the file (or "JSON text") and what is
        wrong with it.
    """
    data = _serialize.load_json(source)
    try:
      return cls.from_dict(data)
    except ValueError as e:
      raise naming(_serialize.source_name(source), e) from e


class Result(JsonFile):
  """Base class of the result dataclasses.

  A result is a frozen dataclass whose fields say what they hold:
  :func:`column` (an array of one dtype with named dimensions such as
  ``("k", "n")``), :func:`metrics` (name -> float array) or :func:`choice`
  (one of some strings). The base converts and checks them (dtype, number
  of dimensions, every use of a dimension name the same length) and gives
  every result the same interface:

  * ``to_dict()`` / ``from_dict()``: strict-JSON-able dicts with ``type``
    and ``format_version`` (NaN and inf become ``null``, read back as NaN);
  * ``to_json(path)`` / ``from_json(text_or_path)`` (written atomically);
  * ``to_csv(path)``: one row per step, LR or configuration;
  * ``plot(ax=None, path=None)``: a matplotlib ``Figure`` (saved to
    ``path``);
  * ``==`` compares every field (NaN equal to NaN).

  Readers refuse malformed input with one ``ValueError`` that names the
  field and what is wrong: a wrong type, a missing field, ragged or
  non-numeric arrays, inconsistent lengths, an unknown format version.

  Subclasses also name what ``to_dict`` adds (``DERIVED``: properties or
  methods; ``suggestions`` when they can ``suggest``) and their plotting
  function (``PLOT``), and implement ``_check`` (rules across fields) and
  ``_csv`` (the CSV's named columns).
  """

  DERIVED: ClassVar[tuple[str, ...]] = ()
  PLOT: ClassVar[str] = ""

  def __post_init__(self):
    sizes: dict[str, tuple[int, str]] = {}  # dimension -> (length, field)
    for f in _fields(self, "column"):  # the columns fix the dimensions first
      arr = as_array(f.name, getattr(self, f.name), f.metadata["dtype"],
                     len(f.metadata["dims"]))
      _check_dims(f.name, arr.shape, f.metadata["dims"], sizes)
      object.__setattr__(self, f.name, arr)
    for f in _fields(self, "metrics"):
      value, out = getattr(self, f.name), {}
      if not isinstance(value, Mapping):
        raise TypeError(f"{f.name} must be a mapping of name -> array, got "
                        f"{type(value).__name__}")
      for key, v in value.items():
        if not isinstance(key, str):
          raise TypeError(f"{f.name} names must be str, got {key!r}")
        name = f"{f.name}[{key!r}]"
        out[key] = as_array(name, v, np.float64, len(f.metadata["dims"]))
        _check_dims(name, out[key].shape, f.metadata["dims"], sizes)
      object.__setattr__(self, f.name, out)
    for f in _fields(self, "choice"):
      _checks.check_choice(f.name, getattr(self, f.name), f.metadata["allowed"])
    if not isinstance(self.config, Mapping):
      raise TypeError(
          f"config must be a mapping, got {type(self.config).__name__}")
    object.__setattr__(self, "config", dict(self.config))
    self._check()

  def _check(self) -> None:
    """Rules across fields; subclasses override."""

  def __eq__(self, other: object) -> bool:
    if type(other) is not type(self):
      return NotImplemented
    metric_fields = {f.name for f in _fields(self, "metrics")}
    for f in dataclasses.fields(self):
      a, b = getattr(self, f.name), getattr(other, f.name)
      if f.name in metric_fields:
        same = a.keys() == b.keys() and all(arrays_equal(a[k], b[k])
                                            for k in a)
      else:
        same = arrays_equal(a, b) if isinstance(a, np.ndarray) else a == b
      if not same:
        return False
    return True

  __hash__ = None  # holds arrays; like np.ndarray, not hashable

  def to_dict(self, *, suggestions: bool = True) -> dict[str, Any]:
    """Strict-JSON-able dict: ``type``, ``format_version``, every field, and
    derived entries (e.g. the default suggestions) that :meth:`from_dict`
    ignores."""
    data = {"type": type(self).__name__, "format_version": FORMAT_VERSION}
    data.update((f.name, getattr(self, f.name))
                for f in dataclasses.fields(self))
    for name in self.DERIVED:
      value = getattr(self, name)
      value = value() if callable(value) else value
      data[name] = value.tolist() if isinstance(value, np.ndarray) else value
    if suggestions and hasattr(self, "suggest"):
      data["suggestions"] = self.suggest().to_dict()
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
      elif f.default is _MISSING and f.default_factory is _MISSING:
        raise ValueError(f"{cls.__name__} is missing the field {f.name!r}")
    for name in [f.name for f in _fields(cls, "metrics")] + ["config"]:
      if name in kwargs and not isinstance(kwargs[name], Mapping):
        what = "an object" if name == "config" else (
            "an object of name -> array")
        raise ValueError(f"{cls.__name__}.{name} must be {what}, got "
                         f"{type(kwargs[name]).__name__}")
    try:
      return cls(**kwargs)
    except TypeError as e:
      raise ValueError(f"malformed {cls.__name__}: {one_line(e)}") from e

  @classmethod
  def _upgrade(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
    """Renames the fields of an older format; subclasses override."""
    return data

  def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
    """The CSV text (full float precision, blank for missing); also written
    (atomically) to ``path`` if given."""
    columns = self._csv()
    rows = list(zip(*(values for _, values in columns)))
    return _serialize.write_csv([name for name, _ in columns], rows, path)

  def plot(self, ax: Any = None, *, path: str | os.PathLike[str] | None = None,
           **kwargs: Any) -> Any:
    """Draws the result; returns the matplotlib ``Figure`` (also saved to
    ``path`` if given). See :mod:`optax_clr.plotting`."""
    from optax_clr import plotting  # matplotlib only when plotting
    return getattr(plotting, self.PLOT)(self, ax, path=path, **kwargs)
