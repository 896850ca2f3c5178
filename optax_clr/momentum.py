"""Momentum schedules cycled inversely to the learning rate.

Large learning rates go with small momentum and vice versa (Smith & Topin):
each schedule here is the reflection of its learning-rate counterpart in
:mod:`optax_clr.schedules` and shares its cycle and phase machinery, so the
two stay in lockstep step for step. Feed the value to e.g. ``optax.sgd``'s
``momentum`` or ``optax.adam``'s ``b1`` through ``optax.inject_hyperparams``.

Step conventions (integer arithmetic, float steps rounded down, negative steps
count as 0, float32 values, value checks skipped for traced hyperparameters)
are those of :mod:`optax_clr.schedules`.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import optax

from optax_clr import _checks
from optax_clr import schedules as _schedules


def _check_momentum_bounds(base_momentum, max_momentum) -> None:
  # Momentum 1 never forgets a gradient (the buffer grows without bound); the
  # optimizer helpers reject it too, so the schedule must not produce it.
  b = _checks.check_number("base_momentum", base_momentum, low=0.0, high=1.0,
                           high_inclusive=False)
  m = _checks.check_number("max_momentum", max_momentum, low=0.0, high=1.0,
                           high_inclusive=False)
  _checks.check_order("base_momentum", b, "max_momentum", m)


def cyclic_momentum_schedule(
    base_momentum: chex.Numeric = 0.8,
    max_momentum: chex.Numeric = 0.9,
    step_size_up: chex.Numeric = 2000,
    step_size_down: chex.Numeric | None = None,
    mode: str = "triangular",
    gamma: chex.Numeric = 1.0,
    scale_fn: Callable[[chex.Numeric], chex.Numeric] | None = None,
    scale_mode: str = "cycle",
    waveform: str = "triangular",
) -> optax.Schedule:
  r"""Cyclical momentum, the mirror image of :func:`cyclic_schedule`.

  .. math::
    m(t) = \max_m - (\max_m - \mathrm{base}_m) \cdot \mathrm{shape}(t) \cdot
    \mathrm{scale}(t)

  with the same ``shape`` (waveform of the linear position in the cycle) and
  ``scale`` (``mode`` or ``scale_fn``) as the learning rate built from the same
  cycle arguments, so momentum starts at ``max_momentum`` and reaches
  ``base_momentum`` when the learning rate peaks. These are the momentum
  values PyTorch's ``CyclicLR`` sets with ``cycle_momentum=True``.

  Value checks are skipped for hyperparameters that are JAX tracers.

  Args:
    base_momentum: momentum at the learning-rate peak, in [0, 1).
    max_momentum: momentum at the cycle boundaries, in [``base_momentum``, 1).
    step_size_up: integer steps from the cycle start to the peak.
    step_size_down: integer steps from the peak to the cycle end (``None``:
      same as up).
    mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
    gamma: per-step decay of ``"exp_range"``, in (0, 1].
    scale_fn: optional jittable amplitude scaling overriding ``mode``; called
      with the cycle number or the step as a float array.
    scale_mode: ``"cycle"`` or ``"iterations"`` (argument of ``scale_fn``).
    waveform: ``"triangular"``, ``"cosine"`` or ``"welch"``.

  Returns:
    schedule
      A function that maps step counts to momentum values.

  References:
    Smith, `Cyclical Learning Rates for Training Neural Networks
    <https://arxiv.org/abs/1506.01186>`_, 2017.

    Smith & Topin, `Super-Convergence <https://arxiv.org/abs/1708.07120>`_,
    2017.

    PyTorch, `torch.optim.lr_scheduler.CyclicLR
    <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.CyclicLR.html>`_.
  """
  _check_momentum_bounds(base_momentum, max_momentum)
  profile = _schedules._cyclic_profile(  # pylint: disable=protected-access
      step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode,
      waveform)
  dtype = _schedules._float_dtype(  # pylint: disable=protected-access
      base_momentum, max_momentum)

  def schedule(count: chex.Numeric) -> jax.Array:
    shape, scale = profile(count, dtype)
    base = jnp.asarray(base_momentum).astype(dtype)
    top = jnp.asarray(max_momentum).astype(dtype)
    return top - (top - base) * shape * scale

  return schedule


def one_cycle_momentum_schedule(
    total_steps: chex.Numeric,
    pct_start: chex.Numeric = 0.3,
    anneal_strategy: str = "cos",
    base_momentum: chex.Numeric = 0.85,
    max_momentum: chex.Numeric = 0.95,
    three_phase: bool = False,
) -> optax.Schedule:
  """One-cycle momentum, matching PyTorch's ``OneCycleLR`` momentum.

  Annealed over the same phases as :func:`one_cycle_schedule`, inversely to
  the learning rate: ``max_momentum -> base_momentum -> max_momentum``, or
  with ``three_phase`` ``max -> base -> max`` and then held at ``max`` during
  the final annealing. Steps beyond ``total_steps - 1`` hold the final value.

  Value checks are skipped for hyperparameters that are JAX tracers.

  Args:
    total_steps: integer number of steps in the cycle (>= 2).
    pct_start: fraction of the steps in the first phase, in (0, 1); see
      :func:`one_cycle_schedule` for the constraint on phase ends.
    anneal_strategy: ``"cos"`` or ``"linear"``.
    base_momentum: momentum at the learning-rate peak, in [0, 1).
    max_momentum: momentum at the start and end, in [``base_momentum``, 1).
    three_phase: use the three-phase schedule.

  Returns:
    schedule
      A function that maps step counts to momentum values.

  References:
    Smith & Topin, `Super-Convergence: Very Fast Training of Neural Networks
    Using Large Learning Rates <https://arxiv.org/abs/1708.07120>`_, 2017.

    PyTorch, `torch.optim.lr_scheduler.OneCycleLR
    <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.OneCycleLR.html>`_.
  """
  profile = _schedules._one_cycle_profile(  # pylint: disable=protected-access
      total_steps, pct_start, anneal_strategy, three_phase)
  _check_momentum_bounds(base_momentum, max_momentum)
  dtype = _schedules._float_dtype(  # pylint: disable=protected-access
      base_momentum, max_momentum)

  def schedule(count: chex.Numeric) -> jax.Array:
    base = jnp.asarray(base_momentum).astype(dtype)
    top = jnp.asarray(max_momentum).astype(dtype)
    knots = [top, base, top, top] if three_phase else [top, base, top]
    return profile(count, knots, dtype)

  return schedule
