"""A hint for PyTorch's argument names.

``torch.optim.lr_scheduler.CyclicLR(base_lr=..., max_lr=...)`` users reach
for the same keywords here; optax-clr follows optax's naming
(``base_value``/``max_value``: a schedule may drive any hyperparameter).
Instead of Python's bare "unexpected keyword argument 'base_lr'", the error
names the argument to use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

PYTORCH_NAMES = {
    "base_lr": "base_value", "max_lr": "max_value",
    "step_size": "step_size_up", "base_momentum": "base_momentum",
    "total_iters": "total_steps", "epochs": "total_steps",
    "steps_per_epoch": "total_steps",
}
# The example call in the error, by constructor (default: the cyclic ones').
EXAMPLES = {"one_cycle_schedule": "max_value=0.1, total_steps=10000"}
CYCLIC_EXAMPLE = "base_value=1e-3, max_value=0.1, step_size_up=2000"


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
