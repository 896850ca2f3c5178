"""Argument checks shared by every public constructor.

Every check runs at construction time, outside ``jit``. A value that is a JAX
tracer (the constructor is itself being traced, e.g. under ``jax.vmap`` over
hyperparameters) cannot be inspected, so value checks are skipped for it and
only its dtype is checked where that is possible.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np


def is_concrete(value: Any) -> bool:
  """True when ``value`` can be inspected on the host (not a tracer)."""
  return not isinstance(value, jax.core.Tracer)


def _as_scalar(name: str, value: Any) -> float | None:
  """Returns ``value`` as a Python float, or None when it is traced.

  Raises TypeError for non-numeric values and ValueError for arrays that are
  not scalars.
  """
  if isinstance(value, bool):
    raise TypeError(f"{name} must be a number, got bool {value!r}")
  if not is_concrete(value):
    return None
  if isinstance(value, numbers.Number):
    return float(value)
  if hasattr(value, "shape") and hasattr(value, "dtype"):
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.number)):
      raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.shape != ():
      raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    return float(arr)
  raise TypeError(
      f"{name} must be a number, got {type(value).__name__} {value!r}")


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float | None:
  """Checks a finite scalar in an interval; returns it as float (None if traced).

  The error names the argument, the value and the allowed range, e.g.
  ``gamma must be in (0, 1], got 1.5``.
  """
  x = _as_scalar(name, value)
  if x is None:
    return None
  lo = "-inf" if low is None else f"{low:g}"
  hi = "inf" if high is None else f"{high:g}"
  interval = (("[" if low_inclusive and low is not None else "(") + lo + ", "
              + hi + ("]" if high_inclusive and high is not None else ")"))
  if not math.isfinite(x):
    raise ValueError(f"{name} must be a finite number in {interval}, got {x!r}")
  too_low = low is not None and (x < low if low_inclusive else x <= low)
  too_high = high is not None and (x > high if high_inclusive else x >= high)
  if too_low or too_high:
    raise ValueError(f"{name} must be in {interval}, got {x!r}")
  return x


def check_int(name: str, value: Any, *, low: int = 1) -> int | None:
  """Checks an integer >= ``low`` (Python, NumPy or integral JAX scalar)."""
  if isinstance(value, bool):
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
        f"{name} must be an integer >= {low}, got {type(value).__name__} "
        f"{value!r}")
  if x < low:
    raise ValueError(f"{name} must be an integer >= {low}, got {x}")
  return x


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
  """Checks that ``value`` is one of ``choices``; the error lists them."""
  choices = tuple(choices)
  if not isinstance(value, str) or value not in choices:
    raise ValueError(
        f"{name} must be one of {', '.join(repr(c) for c in choices)}; "
        f"got {value!r}")
  return value


def check_callable(name: str, value: Any) -> Callable[..., Any]:
  """Checks that ``value`` is callable."""
  if not callable(value):
    raise TypeError(
        f"{name} must be callable, got {type(value).__name__} {value!r}")
  return value


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
