"""The one-cycle policy (Smith & Topin 2017) as PyTorch's ``OneCycleLR``:
the LR, and the momentum annealed inversely over the same phases."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_clr import _checks
from optax_clr.schedules import _profile
from optax_clr.schedules._cyclic import check_momentum_bounds
from optax_clr.schedules._named import named
from optax_clr.schedules._named import pytorch_names


@pytorch_names
@named()
def one_cycle_schedule(
    max_value: chex.Numeric,
    total_steps: chex.Numeric,
    pct_start: chex.Numeric = 0.3,
    anneal_strategy: str = "cos",
    div_factor: chex.Numeric = 25.0,
    final_div_factor: chex.Numeric = 1e4,
    three_phase: bool = False,
) -> optax.Schedule:
  r"""The one-cycle policy, matching PyTorch's ``OneCycleLR``.

  From ``initial = max_value / div_factor`` up to ``max_value`` over steps
  ``[0, e1]``, then down to ``minimum = initial / final_div_factor`` over
  ``[e1, total_steps - 1]``; with ``three_phase``, back to ``initial`` over
  ``[e1, e2]`` first and to ``minimum`` over ``[e2, total_steps - 1]``.
  PyTorch's (float) phase ends are ``e1 = pct_start * total_steps - 1`` (the
  peak; ``optax.cosine_onecycle_schedule`` peaks at
  ``int(pct_start * total_steps)``) and ``e2 = 2 * pct_start * total_steps -
  2``. Within a phase from ``start`` at step ``s`` to ``end`` at ``e``, with
  ``pct = (t - s) / (e - s)``:

  .. math::
    \mathrm{cos}: \; \mathrm{end} + \frac{\mathrm{start} - \mathrm{end}}{2}
    (1 + \cos(\pi \cdot \mathrm{pct})), \qquad
    \mathrm{linear}: \; (\mathrm{end} - \mathrm{start}) \cdot \mathrm{pct}
    + \mathrm{start}.

  Steps beyond ``total_steps - 1`` hold ``minimum`` (PyTorch extrapolates one
  step and then raises, which a jitted schedule cannot do). With traced
  hyperparameters the phase ends are computed in the schedule's dtype instead
  of float64.

  Args:
    max_value: peak value (>= 0).
    total_steps: integer number of steps in the cycle (>= 2).
    pct_start: fraction of the steps spent increasing, in (0, 1); the phases
      must have positive length: ``pct_start * total_steps > 1`` and, with
      ``three_phase``, ``pct_start < (total_steps + 1) / (2 * total_steps)``.
    anneal_strategy: ``"cos"`` or ``"linear"``.
    div_factor: ``initial = max_value / div_factor`` (> 0).
    final_div_factor: ``minimum = initial / final_div_factor`` (> 0).
    three_phase: the symmetric return to ``initial`` before the final
      annealing (fastai's original schedule).

  Returns:
    The schedule, ``step -> value``.

  Examples:
    >>> import optax_clr as clr
    >>> lr = clr.one_cycle_schedule(0.1, total_steps=10)
    >>> [round(float(lr(t)), 4) for t in (0, 1, 2, 5, 9)]  # peak: 0.3 * 10 - 1
    [0.004, 0.052, 0.1, 0.0611, 0.0]
    >>> f"{float(lr(9)):.3g}"  # max_value / div_factor / final_div_factor
    '4e-07'

  References:
    Smith & Topin, `Super-Convergence: Very Fast Training of Neural Networks
    Using Large Learning Rates <https://arxiv.org/abs/1708.07120>`_, 2017.

    PyTorch, `torch.optim.lr_scheduler.OneCycleLR
    <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.OneCycleLR.html>`_.
  """
  top = _checks.check_number("max_value", max_value, low=0.0)
  profile = _profile.one_cycle_profile(total_steps, pct_start,
                                       anneal_strategy, three_phase)
  div = _checks.check_number("div_factor", div_factor, low=0.0,
                             low_inclusive=False)
  final_div = _checks.check_number("final_div_factor", final_div_factor,
                                   low=0.0, low_inclusive=False)
  if None not in (top, div, final_div):
    _check_float32_range(top, div, final_div)
  dtype = _profile.float_dtype(max_value, div_factor, final_div_factor)

  def schedule(count: chex.Numeric) -> jax.Array:
    top = jnp.asarray(max_value).astype(dtype)
    initial = top / jnp.asarray(div_factor).astype(dtype)
    minimum = initial / jnp.asarray(final_div_factor).astype(dtype)
    knots = ([initial, top, initial, minimum] if three_phase
             else [initial, top, minimum])
    return profile(count, knots, dtype)

  return schedule


def _check_float32_range(top: float, div: float, final_div: float) -> None:
  """The initial and final values must not overflow float32."""
  with np.errstate(over="ignore", under="ignore", divide="ignore"):
    initial = np.float32(top) / np.float32(div)
    lowest = initial / np.float32(final_div)
  if not np.isfinite(initial):
    raise ValueError(
        f"div_factor={div!r}: the initial value max_value / div_factor = "
        f"{top / div:.4g} overflows float32; use div_factor >= "
        f"{top / _checks.FLOAT32_MAX:.3g}")
  if not np.isfinite(lowest):
    raise ValueError(
        f"final_div_factor={final_div!r}: the final value max_value / "
        f"div_factor / final_div_factor = {top / div / final_div:.4g} "
        f"overflows float32; use final_div_factor >= "
        f"{float(initial) / _checks.FLOAT32_MAX:.3g}")


@named()
def one_cycle_momentum_schedule(
    total_steps: chex.Numeric,
    pct_start: chex.Numeric = 0.3,
    anneal_strategy: str = "cos",
    base_momentum: chex.Numeric = 0.85,
    max_momentum: chex.Numeric = 0.95,
    three_phase: bool = False,
) -> optax.Schedule:
  """One-cycle momentum, matching PyTorch's ``OneCycleLR`` momentum.

  Annealed over the phases of :func:`one_cycle_schedule` (same
  ``total_steps``, ``pct_start``, ``anneal_strategy``, ``three_phase``),
  inversely to the LR: ``max_momentum -> base_momentum -> max_momentum``,
  held at ``max_momentum`` in a third phase and after the last step.

  Examples:
    >>> import optax_clr as clr
    >>> mom = clr.one_cycle_momentum_schedule(total_steps=10)
    >>> [round(float(mom(t)), 3) for t in (0, 2, 9)]  # 0.95 -> 0.85 -> 0.95
    [0.95, 0.85, 0.95]

  Args:
    base_momentum: momentum at the learning-rate peak, in [0, 1).
    max_momentum: momentum at the start and end, in [``base_momentum``, 1).

  Returns:
    The schedule, ``step -> momentum``.

  References:
    Smith & Topin, `Super-Convergence <https://arxiv.org/abs/1708.07120>`_,
    2017; PyTorch's ``OneCycleLR``.
  """
  profile = _profile.one_cycle_profile(
      total_steps, pct_start, anneal_strategy, three_phase)
  check_momentum_bounds(base_momentum, max_momentum)
  dtype = _profile.float_dtype(base_momentum, max_momentum)

  def schedule(count: chex.Numeric) -> jax.Array:
    base = jnp.asarray(base_momentum).astype(dtype)
    top = jnp.asarray(max_momentum).astype(dtype)
    knots = [top, base, top, top] if three_phase else [top, base, top]
    return profile(count, knots, dtype)

  return schedule
