"""Argument checks shared by every public function.

Every check runs before anything is traced or compiled, and its error names
the argument, the value and the allowed range, e.g. ``gamma must be in
(0, 1], got 1.5``. Numbers are checked in the dtype they will be used in:
a float hyperparameter must survive the cast to float32 (``1e39`` overflows
to ``inf``; ``1e-50`` underflows to 0) and an integer step count must fit an
int32 step counter. Booleans, complex numbers, strings and object arrays are
refused by name wherever a real number is expected.

A value that is a JAX tracer (the constructor is itself being traced, e.g.
under ``jax.vmap`` over hyperparameters) cannot be inspected: its value
checks are skipped and only its dtype is checked.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np

INT32_MAX = 2**31 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)


def is_concrete(value: Any) -> bool:
  """True when ``value`` can be inspected on the host (not a tracer)."""
  return not isinstance(value, jax.core.Tracer)


def is_real_number(value: Any) -> bool:
  """True for a real number or real array (not a bool, not complex): what
  ``optax.inject_hyperparams`` stores in the state."""
  if isinstance(value, (bool, np.bool_)):
    return False
  if isinstance(value, numbers.Real):
    return True
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
      return False
    return bool(np.issubdtype(value.dtype, np.integer)
                or np.issubdtype(value.dtype, np.floating))
  return False


def describe(value: Any, limit: int = 60) -> str:
  """A short description of ``value`` for error messages (never a long
  repr: arrays give their shape and dtype, long reprs are cut)."""
  if hasattr(value, "shape") and hasattr(value, "dtype") and np.ndim(
      value) > 0:
    return f"an array of shape {tuple(value.shape)} {value.dtype}"
  try:
    text = repr(value)
  except Exception:  # pylint: disable=broad-except
    text = object.__repr__(value)
  text = " ".join(text.split())
  if len(text) > limit:
    text = text[:limit - 3] + "..."
  return f"{type(value).__name__} {text}"


def check_real_dtype(name: str, dtype: Any) -> None:
  """Refuses bool, complex and non-numeric dtypes (e.g. of a tracer)."""
  dtype = np.dtype(dtype) if not jax.dtypes.issubdtype(
      dtype, jax.dtypes.prng_key) else dtype
  if dtype == np.bool_:
    raise TypeError(f"{name} must be a real number, got dtype bool")
  if jax.dtypes.issubdtype(dtype, np.complexfloating):
    raise TypeError(f"{name} must be a real number, got dtype {dtype}")
  if not (jax.dtypes.issubdtype(dtype, np.integer)
          or jax.dtypes.issubdtype(dtype, np.floating)):
    raise TypeError(f"{name} must be a real number, got dtype {dtype}")


def _as_scalar(name: str, value: Any) -> float | None:
  """Returns ``value`` as a Python float, or None when it is traced.

  Raises TypeError for non-real values and ValueError for arrays that are
  not scalars.
  """
  if isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be a number, got bool {value!r}")
  if not is_concrete(value):
    check_real_dtype(name, value.dtype)
    return None
  if isinstance(value, numbers.Number):
    if isinstance(value, numbers.Complex) and not isinstance(
        value, numbers.Real):
      raise TypeError(f"{name} must be a real number, got complex {value!r}")
    return float(value)
  if hasattr(value, "shape") and hasattr(value, "dtype"):
    arr = np.asarray(value)
    check_real_dtype(name, arr.dtype)
    if arr.shape != ():
      raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    return float(arr)
  raise TypeError(f"{name} must be a number, got {describe(value)}")


def _interval(low, high, low_inclusive, high_inclusive) -> str:
  lo = "-inf" if low is None else f"{low:g}"
  hi = "inf" if high is None else f"{high:g}"
  return (("[" if low_inclusive and low is not None else "(") + lo + ", "
          + hi + ("]" if high_inclusive and high is not None else ")"))


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    dtype: Any = np.float32,
) -> float | None:
  """Checks a finite real scalar in an interval; returns it as a float.

  Args:
    name: the argument's name, used in the error.
    value: a Python, NumPy or JAX real scalar (or a tracer).
    low, high: bounds of the interval (None: unbounded).
    low_inclusive, high_inclusive: whether the bounds are allowed.
    dtype: the dtype the value will be used in (default float32): the value
      must stay finite and inside the interval after the cast. None skips
      that check.

  Returns:
    The value as a Python float, or None when it is traced.
  """
  x = _as_scalar(name, value)
  if x is None:
    return None
  interval = _interval(low, high, low_inclusive, high_inclusive)
  if not math.isfinite(x):
    raise ValueError(f"{name} must be a finite number in {interval}, got {x!r}")
  for v, where in ((x, ""), (_cast(x, dtype), f" (as {np.dtype(dtype)})")):
    if v is None:
      continue
    if not math.isfinite(v):
      raise ValueError(
          f"{name} must be a finite number in {interval}, got {x!r}, which "
          f"overflows {np.dtype(dtype)} (largest {FLOAT32_MAX:.4g})")
    too_low = low is not None and (v < low if low_inclusive else v <= low)
    too_high = high is not None and (v > high if high_inclusive else v >= high)
    if too_low or too_high:
      raise ValueError(f"{name} must be in {interval}, got {x!r}{where}")
  return x


def _cast(x: float, dtype: Any) -> float | None:
  if dtype is None:
    return None
  with np.errstate(over="ignore", under="ignore"):
    return float(np.asarray(x, dtype=dtype))


def check_int(name: str, value: Any, *, low: int = 1,
              high: int | None = INT32_MAX) -> int | None:
  """Checks an integer in ``[low, high]`` (Python, NumPy or JAX scalar).

  ``high`` defaults to the int32 maximum, the range of a compiled step
  counter; pass None for host-only integers (seeds, sizes).
  """
  if isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be an integer >= {low}, got bool {value!r}")
  if not is_concrete(value):
    if not np.issubdtype(value.dtype, np.integer):
      raise TypeError(f"{name} must be an integer, got dtype {value.dtype}")
    return None
  if isinstance(value, numbers.Integral):
    x = int(value)
  elif hasattr(value, "dtype") and np.issubdtype(
      np.asarray(value).dtype, np.integer) and np.ndim(value) == 0:
    x = int(np.asarray(value))
  else:
    raise TypeError(
        f"{name} must be an integer >= {low}, got {describe(value)}")
  if x < low:
    raise ValueError(f"{name} must be an integer >= {low}, got {x}")
  if high is not None and x > high:
    raise ValueError(
        f"{name} must be an integer in [{low}, {high}], got {x}")
  return x


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
  """Checks that ``value`` is one of ``choices``; the error lists them."""
  choices = tuple(choices)
  if not isinstance(value, str) or value not in choices:
    raise ValueError(
        f"{name} must be one of {', '.join(repr(c) for c in choices)}; "
        f"got {value!r}")
  return value


def check_bool(name: str, value: Any) -> bool:
  """Checks a Python or NumPy bool."""
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be a bool, got {describe(value)}")
  return bool(value)


def check_callable(name: str, value: Any) -> Callable[..., Any]:
  """Checks that ``value`` is callable."""
  if not callable(value):
    raise TypeError(f"{name} must be callable, got {describe(value)}")
  return value


def check_optional_callable(name: str, value: Any) -> Any:
  """None, or a callable."""
  return None if value is None else check_callable(name, value)


def check_order(low_name: str, low: float | None, high_name: str,
                high: float | None, *, strict: bool = False) -> None:
  """Checks ``low <= high`` (``<`` when strict) when both are concrete."""
  if low is None or high is None:
    return
  if (low >= high) if strict else (low > high):
    op = "<" if strict else "<="
    raise ValueError(
        f"{low_name} must be {op} {high_name}, got {low_name}={low!r}, "
        f"{high_name}={high!r}")


def check_real_array(name: str, value: Any, *, ndim: int | None = None,
                     positive: bool = False, finite: bool = True
                     ) -> np.ndarray:
  """A float64 copy of a real array (e.g. a list of LRs), checked.

  Refuses strings, bools, complex numbers and ragged nesting by name, and
  (``positive``) values <= 0, which are reported with their index.
  """
  try:
    raw = np.asarray(value)
  except ValueError as e:  # ragged nesting
    raise ValueError(f"{name} must be a rectangular array of numbers: "
                     f"{e}") from e
  if raw.dtype == object or raw.dtype.kind in "USV":
    raise TypeError(
        f"{name} must hold real numbers, got {describe(value)}")
  check_real_dtype(name, raw.dtype)
  arr = raw.astype(np.float64)
  if ndim is not None and arr.ndim != ndim:
    raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
  bad = np.zeros(arr.shape, bool)
  what = []
  if finite:
    bad |= ~np.isfinite(arr)
    what.append("finite")
  if positive:
    with np.errstate(over="ignore", under="ignore"):
      bad |= ~(arr.astype(np.float32) > 0) | (arr <= 0)
      bad |= ~np.isfinite(arr.astype(np.float32))
    what.append("> 0 (and representable in float32)")
  if bad.any():
    i = tuple(int(j) for j in np.argwhere(bad)[0])
    index = i[0] if len(i) == 1 else i
    raise ValueError(
        f"{name} must be {' and '.join(what)}, got {name}[{index}]="
        f"{arr[i]!r}")
  return arr
