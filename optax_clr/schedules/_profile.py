"""Integer cycle and phase arithmetic shared by LR and momentum schedules.

A step is reduced to a cycle (phase) index and an offset with integer
arithmetic, so float32 values stay exact for every step an int32 counter
holds; ``t / step_size`` in float32 would drift above ``2**24``. The step and
dtype conventions are those of :mod:`optax_clr.schedules`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from optax_clr import _checks

MODES = ("triangular", "triangular2", "exp_range")
WAVEFORMS = ("triangular", "cosine", "welch")
SCALE_MODES = ("cycle", "iterations")
ANNEAL_STRATEGIES = ("cos", "linear")

INT32_MAX = _checks.INT32_MAX


def float_dtype(*values: Any) -> Any:
  """The values' float dtype, at least float32 (as optax's schedules)."""
  return jnp.promote_types(jnp.result_type(*values, float), jnp.float32)


def _check_concrete_step(step: Any) -> None:
  """Refuses non-real steps and integers beyond the step counter (a NumPy
  int64 would otherwise be truncated by ``jnp.asarray``)."""
  if isinstance(step, (bool, np.bool_)):
    raise TypeError(f"step must be an integer, got bool {step!r}")
  if isinstance(step, numbers.Integral):
    values = np.asarray([int(step)], dtype=object)
  else:
    try:
      values = np.asarray(step)
    except Exception as e:  # pylint: disable=broad-except
      raise TypeError(f"step must be a number or an array of numbers, got "
                      f"{_checks.describe(step)}") from e
    if values.dtype.kind not in "iuf":
      raise TypeError(f"step must be a real number or an integer array, got "
                      f"{_checks.describe(step)}")
    if values.dtype.kind == "f" or values.size == 0:
      return
  wide = jax.config.read("jax_enable_x64")
  limit = 2**63 - 1 if wide else INT32_MAX
  if int(values.max()) > limit:
    raise ValueError(
        f"step must be <= {limit} (the range of the "
        f"{'int64' if wide else 'int32'} step counter; enable jax_enable_x64 "
        f"for larger steps), got {int(values.max())}")


def as_int_step(step: chex.Numeric) -> jax.Array:
  """The step count as a signed integer array (int32, or int64 if 64-bit),
  floats rounded down and negative steps raised to 0."""
  if _checks.is_concrete(step):
    _check_concrete_step(step)
  step = jnp.asarray(step)
  if step.dtype == jnp.bool_:
    raise TypeError(f"step must be an integer, got dtype {step.dtype}")
  if jnp.issubdtype(step.dtype, jnp.floating):
    step = jnp.floor(step)
  elif not jnp.issubdtype(step.dtype, jnp.integer):
    raise TypeError(f"step must be a real number, got dtype {step.dtype}")
  int_dtype = jnp.int64 if step.dtype.itemsize == 8 else jnp.int32
  return jnp.maximum(step.astype(int_dtype), 0)


def _waveform_shape(u: jax.Array, waveform: str) -> jax.Array:
  """Maps the linear position ``u`` in [0, 1] to the waveform's height."""
  if waveform == "triangular":
    return u
  if waveform == "cosine":
    # sin^2 form of (1 - cos(pi u)) / 2: no cancellation near u = 0.
    return jnp.square(jnp.sin(0.5 * jnp.pi * u))
  # welch: 1 - (1 - u)**2, written so that u = 1 gives exactly 1.
  return u * (2.0 - u)


def cyclic_profile(
    step_size_up: chex.Numeric, step_size_down: chex.Numeric | None,
    mode: str, gamma: chex.Numeric,
    scale_fn: Callable[[chex.Numeric], chex.Numeric] | None, scale_mode: str,
    waveform: str) -> Callable[..., tuple[jax.Array, jax.Array]]:
  """Checks the cycle arguments; returns ``(step, dtype) -> (shape, scale)``.

  ``shape`` is the waveform's height in [0, 1] (0 at the cycle boundaries, 1
  at the peak) and ``scale`` the amplitude factor of ``mode`` or
  ``scale_fn``; the LR and momentum schedules map ``shape * scale`` onto
  their bounds in opposite directions.
  """
  up = _checks.check_int("step_size_up", step_size_up)
  if step_size_down is None:
    step_size_down, down = step_size_up, up
  else:
    down = _checks.check_int("step_size_down", step_size_down)
  if up is not None and down is not None and up + down > INT32_MAX:
    raise ValueError(
        "step_size_up + step_size_down must be <= 2**31 - 1 (one cycle must "
        f"fit an int32 step counter), got step_size_up={up}, "
        f"step_size_down={down}")
  _checks.check_choice("mode", mode, MODES)
  g = _checks.check_number("gamma", gamma, low=0.0, high=1.0,
                           low_inclusive=False)
  if scale_fn is not None:
    _checks.check_callable("scale_fn", scale_fn)
  _checks.check_choice("scale_mode", scale_mode, SCALE_MODES)
  _checks.check_choice("waveform", waveform, WAVEFORMS)
  # Concrete sizes enter the graph as Python ints (weakly typed), so they
  # never widen or narrow the step's integer dtype.
  up_v = step_size_up if up is None else up
  down_v = step_size_down if down is None else down
  total_v = up_v + down_v

  def profile(step, dtype):
    t = as_int_step(step)
    # Integer cycle index and offset: exact for every representable step,
    # and neither can overflow (k * total <= t, total - r <= total).
    k = jnp.floor_divide(t, total_v)
    r = jnp.remainder(t, total_v)
    # PyTorch's sf: x / ratio on the way up, (x - 1) / (ratio - 1) on the way
    # down, which reduce to r / up and (total - r) / down.
    u = jnp.where(
        r <= up_v,
        r.astype(dtype) / jnp.asarray(up_v).astype(dtype),
        (total_v - r).astype(dtype) / jnp.asarray(down_v).astype(dtype))
    shape = _waveform_shape(u, waveform)
    if scale_fn is not None:
      # Passed as floats, like the Python numbers PyTorch passes, so that
      # e.g. ``2.0 ** -x`` or ``x * x`` behave as they do there.
      arg = (k + 1) if scale_mode == "cycle" else t
      scale = jnp.asarray(scale_fn(arg.astype(dtype))).astype(dtype)
    elif mode == "triangular":
      scale = jnp.ones((), dtype)
    elif mode == "triangular2":
      # 1 / 2**(cycle - 1) with cycle = k + 1, exactly.
      scale = jnp.ldexp(jnp.ones((), dtype), -k)
    else:
      # gamma**t as exp(t * log(gamma)) with log(gamma) taken in float64 on
      # the host when possible: rounding gamma to float32 first would change
      # gamma**t by a factor exp(t * 6e-8) at large t (and turn 1 - 1e-9
      # into 1).
      log_gamma = (math.log(g) if g is not None
                   else jnp.log(jnp.asarray(gamma).astype(dtype)))
      scale = jnp.exp(t.astype(dtype) * jnp.asarray(log_gamma, dtype))
    return shape, scale

  return profile


def _split_float(x: Any, int_dtype: Any) -> tuple[Any, Any]:
  """``x = whole + frac`` with an integer ``whole`` and ``0 <= frac < 1``."""
  if isinstance(x, (int, float)):
    whole = math.floor(x)
    return whole, float(x - whole)
  whole = jnp.floor(x)
  return whole.astype(int_dtype), x - whole


def _phase_ends(p: Any, n: Any, three_phase: bool) -> list[Any]:
  """PyTorch's OneCycleLR phase ends: the same expressions and, for Python
  floats, the same float64 rounding."""
  ends = [p * n - 1] + ([2 * p * n - 2] if three_phase else [])
  return ends + [n - 1]


def _check_phase_ends(p: float, n: int, three_phase: bool) -> None:
  """Each phase must have positive length (else PyTorch divides by zero or
  silently skips the warm-up)."""
  ends = _phase_ends(p, n, three_phase)
  if ends[0] <= 0:
    raise ValueError(
        "pct_start * total_steps must be > 1 so that the warm-up phase "
        "(step 0 to pct_start * total_steps - 1) has positive length, got "
        f"pct_start={p!r}, total_steps={n} (warm-up would end at step "
        f"{ends[0]!r})")
  if any(a >= b for a, b in zip(ends[:-1], ends[1:])):
    raise ValueError(
        "phase ends must increase strictly; with three_phase=True this "
        "needs 2 * pct_start * total_steps - 2 < total_steps - 1, i.e. "
        f"pct_start < (total_steps + 1) / (2 * total_steps) = "
        f"{(n + 1) / (2 * n):g}; got pct_start={p!r}, total_steps={n} "
        f"(phase ends {ends})")


def one_cycle_profile(
    total_steps: chex.Numeric, pct_start: chex.Numeric, anneal_strategy: str,
    three_phase: bool) -> Callable[..., jax.Array]:
  """Checks the phase arguments; returns ``(step, knots, dtype) -> value``.

  ``knots`` are the values at step 0 and at the end of each phase (3 for two
  phases, 4 for three); within phase ``i`` the value is annealed from
  ``knots[i]`` to ``knots[i + 1]``. The phase ends are PyTorch's floats
  ``pct_start * total_steps - 1`` (``2 * pct_start * total_steps - 2``) and
  ``total_steps - 1``, and must increase strictly from step 0.
  """
  n = _checks.check_int("total_steps", total_steps, low=2)
  p = _checks.check_number("pct_start", pct_start, low=0.0, high=1.0,
                           low_inclusive=False, high_inclusive=False)
  _checks.check_choice("anneal_strategy", anneal_strategy, ANNEAL_STRATEGIES)
  _checks.check_bool("three_phase", three_phase)
  concrete = n is not None and p is not None
  if concrete:
    _check_phase_ends(p, n, three_phase)
  p_v = pct_start if p is None else p
  n_v = total_steps if n is None else n

  def profile(step, knots, dtype):
    t = as_int_step(step)
    ends = (_phase_ends(p_v, n_v, three_phase) if concrete else _phase_ends(
        jnp.asarray(p_v).astype(dtype), jnp.asarray(n_v).astype(dtype),
        three_phase))
    # Boundaries as integer + fraction: t <= end is decided exactly on the
    # integer part, and (t - start) is formed in integers before the float
    # division, which keeps float32 exact at large step counts.
    whole, frac = zip(*[_split_float(0.0, t.dtype)]
                      + [_split_float(e, t.dtype) for e in ends[:-1]]
                      + [(n_v - 1, 0.0)])
    whole = jnp.stack([jnp.asarray(w).astype(t.dtype) for w in whole])
    frac = jnp.stack([jnp.asarray(f).astype(dtype) for f in frac])
    knots = jnp.stack([jnp.asarray(v).astype(dtype) for v in knots])
    # Steps past the end hold the final value (PyTorch raises instead).
    t = jnp.clip(t, 0, whole[-1])
    # Phase index: the number of inner phase ends strictly before t.
    phase = jnp.zeros(t.shape, jnp.int32)
    for i in range(1, len(ends)):
      phase = phase + (t > whole[i]).astype(jnp.int32)
    # Distances to both phase ends, each formed in integers first: the
    # weights below then keep full relative precision near either end.
    done = (t - whole[phase]).astype(dtype) - frac[phase]
    left = (whole[phase + 1] - t).astype(dtype) + frac[phase + 1]
    pct, rest_pct = done / (done + left), left / (done + left)
    start, end = knots[phase], knots[phase + 1]
    # weight of ``end``: (1 - cos(pi pct)) / 2 = sin^2(pi pct / 2) for
    # "cos", pct for "linear"; ``rest`` = 1 - weight, from the other end.
    if anneal_strategy == "cos":
      weight = jnp.square(jnp.sin(0.5 * jnp.pi * pct))
      rest = jnp.square(jnp.sin(0.5 * jnp.pi * rest_pct))
    else:
      weight, rest = pct, rest_pct
    # PyTorch's forms, interpolating from the nearer end: exact at both phase
    # ends and for constant phases (from ``end`` alone the small final value
    # of the schedule would be lost to cancellation in float32).
    return jnp.where(weight <= 0.5, start + (end - start) * weight,
                     end + (start - end) * rest)

  return profile
