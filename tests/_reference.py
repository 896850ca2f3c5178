"""Independent float64 reference of the schedule formulas (tests only).

Written from the formulas of Smith (2017) and PyTorch's ``CyclicLR`` /
``OneCycleLR`` (see shared/reference/clr-facts.md), in plain Python floats
(IEEE float64) with Python's unbounded integers for the step. It deliberately
follows PyTorch's floating-point route (``x = 1 + t / total - cycle``) rather
than the library's integer one, so agreement is evidence, not tautology.

Spec choices of the library that PyTorch does not make (it raises or has no
such option) are encoded here too: negative steps count as step 0, one-cycle
steps past ``total_steps - 1`` hold the final value, the cosine and welch
waveforms, and ``decay_bounds``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np


def _waveform(sf: float, waveform: str) -> float:
  if waveform == "triangular":
    return sf
  if waveform == "cosine":
    return (1.0 - math.cos(math.pi * sf)) / 2.0
  if waveform == "welch":
    return 1.0 - (1.0 - sf) ** 2
  raise ValueError(waveform)


def cyclic_shape_scale(
    t: int,
    step_size_up: int,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable[[float], float] | None = None,
    scale_mode: str = "cycle",
    waveform: str = "triangular",
) -> tuple[float, float]:
  """(waveform height in [0, 1], amplitude scale) at step ``t``."""
  t = max(int(t), 0)
  up = float(step_size_up)
  down = up if step_size_down is None else float(step_size_down)
  total = up + down
  ratio = up / total
  cycle = math.floor(1 + t / total)
  x = 1.0 + t / total - cycle
  sf = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
  shape = _waveform(sf, waveform)
  if scale_fn is not None:
    scale = scale_fn(cycle if scale_mode == "cycle" else t)
  elif mode == "triangular":
    scale = 1.0
  elif mode == "triangular2":
    scale = 1 / (2.0 ** (cycle - 1)) if cycle < 1100 else 0.0
  elif mode == "exp_range":
    scale = gamma ** t
  else:
    raise ValueError(mode)
  return shape, float(scale)


def cyclic_lr(t: int, base: float, top: float, step_size_up: int,
              step_size_down: int | None = None, mode: str = "triangular",
              gamma: float = 1.0, scale_fn=None, scale_mode: str = "cycle",
              waveform: str = "triangular",
              decay_bounds: bool = False) -> float:
  shape, scale = cyclic_shape_scale(t, step_size_up, step_size_down, mode,
                                    gamma, scale_fn, scale_mode, waveform)
  if decay_bounds:
    return scale * (base + (top - base) * shape)
  return base + (top - base) * shape * scale


def cyclic_momentum(t: int, base_m: float, max_m: float, step_size_up: int,
                    step_size_down: int | None = None,
                    mode: str = "triangular", gamma: float = 1.0,
                    scale_fn=None, scale_mode: str = "cycle",
                    waveform: str = "triangular") -> float:
  shape, scale = cyclic_shape_scale(t, step_size_up, step_size_down, mode,
                                    gamma, scale_fn, scale_mode, waveform)
  return max_m - (max_m - base_m) * shape * scale


def _anneal(start: float, end: float, pct: float, strategy: str) -> float:
  if strategy == "cos":
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
  return (end - start) * pct + start


def _one_cycle(t: int, total_steps: int, pct_start: float, strategy: str,
               three_phase: bool, knots: list[float]) -> float:
  t = min(max(int(t), 0), total_steps - 1)
  if three_phase:
    ends = [float(pct_start * total_steps) - 1,
            float(2 * pct_start * total_steps) - 2, total_steps - 1]
  else:
    ends = [float(pct_start * total_steps) - 1, total_steps - 1]
  start_step = 0.0
  for i, end_step in enumerate(ends):
    if t <= end_step or i == len(ends) - 1:
      pct = (t - start_step) / (end_step - start_step)
      return _anneal(knots[i], knots[i + 1], pct, strategy)
    start_step = end_step
  raise AssertionError


def one_cycle_lr(t: int, max_lr: float, total_steps: int,
                 pct_start: float = 0.3, anneal_strategy: str = "cos",
                 div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False) -> float:
  initial = max_lr / div_factor
  minimum = initial / final_div_factor
  knots = ([initial, max_lr, initial, minimum] if three_phase
           else [initial, max_lr, minimum])
  return _one_cycle(t, total_steps, pct_start, anneal_strategy, three_phase,
                    knots)


def one_cycle_momentum(t: int, total_steps: int, pct_start: float = 0.3,
                       anneal_strategy: str = "cos",
                       base_momentum: float = 0.85,
                       max_momentum: float = 0.95,
                       three_phase: bool = False) -> float:
  b, m = base_momentum, max_momentum
  knots = [m, b, m, m] if three_phase else [m, b, m]
  return _one_cycle(t, total_steps, pct_start, anneal_strategy, three_phase,
                    knots)


def sequence(fn: Callable[..., float], steps: Iterable[int], *args,
             **kwargs) -> np.ndarray:
  """``fn(t, *args, **kwargs)`` for each step, as a float64 array."""
  return np.array([fn(int(t), *args, **kwargs) for t in steps], np.float64)


# --- test utility (not part of the reference formulas) ----------------------

_CHUNK = 512


def evaluate(schedule: Callable[..., object], steps) -> np.ndarray:
  """``schedule`` at int32 ``steps`` (1-D), as a float64 NumPy array.

  Runs op by op on fixed-size chunks (padded with the last step), so every
  configuration reuses the same compiled primitives instead of compiling a
  new ``jit`` program; ``test_schedule_transforms`` checks that ``jit`` gives
  identical values.
  """
  import jax.numpy as jnp  # local: the reference itself needs only NumPy

  steps = np.asarray(steps, np.int64).reshape(-1)
  n = len(steps)
  padded = np.concatenate(
      [steps, np.full(-n % _CHUNK, steps[-1] if n else 0, np.int64)])
  out = []
  for i in range(0, len(padded), _CHUNK):
    values = schedule(jnp.asarray(padded[i:i + _CHUNK], jnp.int32))
    assert values.shape == (_CHUNK,), values.shape
    assert values.dtype == jnp.float32, values.dtype
    out.append(np.asarray(values, np.float64))
  return np.concatenate(out)[:n] if out else np.zeros(0)


def config_id(value) -> str:
  """A test id that is the same in every process (pytest-xdist needs that).

  ``str`` of a dict holding a function includes its address, which differs
  between worker processes.
  """
  if callable(value):
    return getattr(value, "__name__", type(value).__name__)
  if isinstance(value, dict):
    return ",".join(f"{k}={config_id(v)}" for k, v in value.items())
  return str(value)
