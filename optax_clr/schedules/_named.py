"""How schedule constructors present themselves: a :class:`Schedule` prints
as the call that made it (``cyclic_schedule(base_value=0.001, ...)``, not
``<function ...>``), and PyTorch's keyword names (``base_lr=``) raise a
TypeError naming optax's (``base_value=``: a schedule may drive any
hyperparameter) instead of Python's bare "unexpected keyword argument"."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from optax_clr import _checks

PYTORCH_NAMES = {
    "base_lr": "base_value", "max_lr": "max_value",
    "step_size": "step_size_up", "base_momentum": "base_momentum",
    "total_iters": "total_steps", "epochs": "total_steps",
    "steps_per_epoch": "total_steps",
}
# The example call in the error, by constructor (default: the cyclic ones').
EXAMPLES = {"one_cycle_schedule": "max_value=0.1, total_steps=10000"}
CYCLIC_EXAMPLE = "base_value=1e-3, max_value=0.1, step_size_up=2000"


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
  """``fn`` (``count -> value``) printed as ``name(**args)``."""

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


def _same(a: Any, b: Any) -> bool:
  try:
    return bool(a is b or (_checks.is_concrete(a) and a == b))
  except Exception:  # pylint: disable=broad-except
    return False


def named(*always: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
  """Decorates a constructor: its schedule becomes a :class:`Schedule` that
  shows the arguments given, those left at their default omitted (except
  ``always``)."""
  def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
    sig = inspect.signature(fn)
    params = sig.parameters

    @functools.wraps(fn)
    def constructor(*args: Any, **kwargs: Any) -> Schedule:
      schedule = fn(*args, **kwargs)  # Python's own TypeError for bad calls
      bound = sig.bind(*args, **kwargs)
      bound.apply_defaults()
      return Schedule(schedule, fn.__name__, **{
          k: v for k, v in bound.arguments.items()
          if k in always or params[k].default is inspect.Parameter.empty
          or not _same(v, params[k].default)})
    return constructor
  return decorate


def pytorch_names(fn: Callable[..., Any]) -> Callable[..., Any]:
  """Wraps a schedule constructor: a PyTorch keyword raises a TypeError
  that names the optax-clr argument instead."""
  @functools.wraps(fn)
  def wrapper(*args: Any, **kwargs: Any) -> Any:
    for name in kwargs:
      new = PYTORCH_NAMES.get(name)
      if new is not None and new != name:
        raise TypeError(
            f"{fn.__name__}() has no argument {name!r} (PyTorch's name); "
            f"use {new}=... (optax's naming), e.g. "
            f"{fn.__name__}({EXAMPLES.get(fn.__name__, CYCLIC_EXAMPLE)})")
    return fn(*args, **kwargs)
  return wrapper
