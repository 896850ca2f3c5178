"""Schedules that say what they are when printed.

Every constructor returns a :class:`Schedule`: an ``optax.Schedule`` (a
callable of the step count, traceable by ``jit``/``vmap``/``grad``) whose
``repr`` is the call that made it, e.g.
``cyclic_schedule(base_value=0.001, max_value=0.1, step_size_up=500,
mode='triangular2')``, instead of ``<function ... at 0x...>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from optax_clr import _checks


def _value(x: Any) -> str:
  if isinstance(x, Schedule):
    return repr(x)
  if callable(x):
    return getattr(x, "__name__", type(x).__name__)
  if not _checks.is_concrete(x):
    return "<traced>"
  if isinstance(x, (bool, str, type(None))):
    return repr(x)
  if np.ndim(x) == 0:
    return f"{float(x):.6g}" if isinstance(x, float) or np.issubdtype(
        np.asarray(x).dtype, np.floating) else str(int(x))
  return f"array{list(np.shape(x))}"


class Schedule:
  """An ``optax.Schedule`` with a readable ``repr``.

  Args:
    fn: ``count -> value``.
    name: the constructor's name.
    **args: the arguments shown (those left at their default are omitted
      by the constructors).
  """

  __slots__ = ("_fn", "_text", "__weakref__")

  def __init__(self, fn: Callable[[Any], Any], name: str, **args: Any):
    self._fn = fn
    shown = ", ".join(f"{k}={_value(v)}" for k, v in args.items())
    self._text = f"{name}({shown})"

  def __call__(self, count: Any) -> Any:
    return self._fn(count)

  def __repr__(self) -> str:
    return self._text

  __str__ = __repr__


def named(fn: Callable[[Any], Any], name: str, args: dict[str, Any],
          defaults: dict[str, Any]) -> Schedule:
  """``fn`` as a :class:`Schedule` showing the arguments that differ from
  ``defaults``."""
  shown = {k: v for k, v in args.items()
           if k not in defaults or not _same(v, defaults[k])}
  return Schedule(fn, name, **shown)


def _same(a: Any, b: Any) -> bool:
  try:
    return bool(a is b or (_checks.is_concrete(a) and a == b))
  except Exception:  # pylint: disable=broad-except
    return False
