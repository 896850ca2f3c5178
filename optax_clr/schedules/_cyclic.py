"""Cyclical schedules (Smith 2017): the LR between two bounds, and the
momentum that mirrors it in lockstep (same cycle arguments, same profile);
:func:`optax_clr.cyclic_sgd` and :func:`optax_clr.cyclic_adam` feed both to
the optimizer."""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import optax

from optax_clr import _checks
from optax_clr.schedules import _profile
from optax_clr.schedules._named import named
from optax_clr.schedules._named import pytorch_names


@pytorch_names
@named("step_size_up")
def cyclic_schedule(
    base_value: chex.Numeric,
    max_value: chex.Numeric,
    step_size_up: chex.Numeric = 2000,
    step_size_down: chex.Numeric | None = None,
    mode: str = "triangular",
    gamma: chex.Numeric = 1.0,
    scale_fn: Callable[[chex.Numeric], chex.Numeric] | None = None,
    scale_mode: str = "cycle",
    waveform: str = "triangular",
    decay_bounds: bool = False,
) -> optax.Schedule:
  r"""Cyclical learning rate (CLR) between ``base_value`` and ``max_value``.

  With ``total = step_size_up + step_size_down``, the cycle number (from 1)
  ``cycle = t // total + 1`` and the offset ``r = t % total``, the linear
  position (PyTorch's ``sf``) is

  .. math::
    u = r / \mathrm{up} \;\; (r \le \mathrm{up}), \qquad
    u = (\mathrm{total} - r) / \mathrm{down} \;\; (\text{otherwise}),

  and ``shape`` is ``u`` (triangular), ``(1 - cos(pi u)) / 2`` (cosine, a
  Hann window) or ``1 - (1 - u)**2`` (welch): 0 at the cycle boundaries, 1 at
  the peak. Then

  .. math::
    \mathrm{lr}(t) = \mathrm{base} + (\max - \mathrm{base}) \cdot
    \mathrm{shape}(t) \cdot \mathrm{scale}(t)

  with ``scale = 1`` (``"triangular"``), ``1 / 2**(cycle - 1)``
  (``"triangular2"``) or ``gamma**t`` (``"exp_range"``: ``exp(t *
  log(gamma))``, ``log(gamma)`` in float64 when concrete). The paper's
  ``exp_range`` (``decay_bounds=True``) decays both bounds:
  ``lr(t) = gamma**t * (base + (max - base) * shape(t))``. With the
  triangular waveform the values are PyTorch's ``CyclicLR``'s (to float32
  rounding) for every step up to ``2**31 - 1``.

  Args:
    base_value: lower bound of the cycle (>= 0).
    max_value: upper bound of the cycle (>= ``base_value``).
    step_size_up: integer steps from ``base_value`` to the peak.
    step_size_down: integer steps from the peak back to ``base_value``
      (``None``: ``step_size_up``); the whole cycle must fit an int32.
    mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
    gamma: the per-step decay of ``"exp_range"``, in (0, 1].
    scale_fn: a jittable amplitude scaling that overrides ``mode``, called
      with the cycle number (1, 2, ...) or the step as a float array (as
      PyTorch's Python numbers, so ``2.0 ** -x`` works); returns a scalar.
    scale_mode: the argument of ``scale_fn``: ``"cycle"`` or
      ``"iterations"``.
    waveform: ``"triangular"``, ``"cosine"`` or ``"welch"``.
    decay_bounds: with ``"exp_range"``, decay both bounds instead of only the
      amplitude (PyTorch/Keras, the default).

  Returns:
    The schedule, ``step -> value``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import optax_clr as clr
    >>> lr = clr.cyclic_schedule(1e-3, 1e-1, step_size_up=500,
    ...                          mode="triangular2")
    >>> [round(float(lr(t)), 4) for t in (0, 250, 500, 1000, 1500, 2000)]
    [0.001, 0.0505, 0.1, 0.001, 0.0505, 0.001]
    >>> jax.jit(jax.vmap(lr))(jnp.arange(4000)).shape  # a whole run at once
    (4000,)

    A sweep of peaks, vmapped over ``max_value``:

    >>> peaks = jnp.array([0.1, 0.2, 0.4])
    >>> at_250 = jax.vmap(lambda m: clr.cyclic_schedule(1e-3, m, 500)(250))
    >>> [round(float(v), 4) for v in at_250(peaks)]
    [0.0505, 0.1005, 0.2005]

  References:
    Smith, `Cyclical Learning Rates for Training Neural Networks
    <https://arxiv.org/abs/1506.01186>`_, 2017 (WACV).

    PyTorch, `torch.optim.lr_scheduler.CyclicLR
    <https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.CyclicLR.html>`_.
  """
  b = _checks.check_number("base_value", base_value, low=0.0)
  m = _checks.check_number("max_value", max_value, low=0.0)
  _checks.check_order("base_value", b, "max_value", m)
  profile = _profile.cyclic_profile(step_size_up, step_size_down, mode, gamma,
                                    scale_fn, scale_mode, waveform)
  _checks.check_bool("decay_bounds", decay_bounds)
  if decay_bounds and (mode != "exp_range" or scale_fn is not None):
    raise ValueError(
        "decay_bounds=True is only defined for mode='exp_range' without "
        f"scale_fn, got mode={mode!r}, "
        f"scale_fn={'set' if scale_fn is not None else None}")
  return _between(base_value, max_value, profile, decay_bounds=decay_bounds)


def _between(low, high, profile, *, reflect=False, decay_bounds=False):
  """``low + (high - low) * shape * scale``; ``reflect``: from ``high`` down
  (momentum); ``decay_bounds``: ``scale * (low + (high - low) * shape)``."""
  dtype = _profile.float_dtype(low, high)

  def schedule(count: chex.Numeric) -> jax.Array:
    shape, scale = profile(count, dtype)
    lo, hi = (jnp.asarray(v).astype(dtype) for v in (low, high))
    if reflect:
      return hi - (hi - lo) * shape * scale
    if decay_bounds:
      return scale * (lo + (hi - lo) * shape)
    return lo + (hi - lo) * shape * scale

  return schedule


# The three modes by name; they print as the cyclic_schedule call they make.


@pytorch_names
def triangular_schedule(
    base_value: chex.Numeric,
    max_value: chex.Numeric,
    step_size_up: chex.Numeric = 2000,
    step_size_down: chex.Numeric | None = None,
    waveform: str = "triangular",
) -> optax.Schedule:
  """Triangular CLR: constant amplitude between ``base_value`` and ``max_value``.

  ``lr(t) = base + (max - base) * shape(t)``: :func:`cyclic_schedule` with
  ``mode="triangular"`` (same arguments, conventions and references).

  Examples:
    >>> import optax_clr as clr
    >>> lr = clr.triangular_schedule(0.01, 0.1, step_size_up=4)
    >>> [round(float(lr(t)), 4) for t in range(9)]
    [0.01, 0.0325, 0.055, 0.0775, 0.1, 0.0775, 0.055, 0.0325, 0.01]
  """
  return cyclic_schedule(base_value, max_value, step_size_up, step_size_down,
                         mode="triangular", waveform=waveform)


@pytorch_names
def triangular2_schedule(
    base_value: chex.Numeric,
    max_value: chex.Numeric,
    step_size_up: chex.Numeric = 2000,
    step_size_down: chex.Numeric | None = None,
    waveform: str = "triangular",
) -> optax.Schedule:
  """Triangular2 CLR: the amplitude halves after every cycle.

  ``lr(t) = base + (max - base) * shape(t) / 2**(cycle - 1)``:
  :func:`cyclic_schedule` with ``mode="triangular2"`` (same arguments,
  conventions and references; ``max_value`` is the first cycle's peak).

  Examples:
    >>> import optax_clr as clr
    >>> lr = clr.triangular2_schedule(0.01, 0.1, step_size_up=2)
    >>> [round(float(lr(t)), 4) for t in range(9)]  # peaks 0.1, then 0.055
    [0.01, 0.055, 0.1, 0.055, 0.01, 0.0325, 0.055, 0.0325, 0.01]
  """
  return cyclic_schedule(base_value, max_value, step_size_up, step_size_down,
                         mode="triangular2", waveform=waveform)


@pytorch_names
def exp_range_schedule(
    base_value: chex.Numeric,
    max_value: chex.Numeric,
    step_size_up: chex.Numeric = 2000,
    step_size_down: chex.Numeric | None = None,
    gamma: chex.Numeric = 1.0,
    decay_bounds: bool = False,
    waveform: str = "triangular",
) -> optax.Schedule:
  """Exp-range CLR: the amplitude (or both bounds) decays as ``gamma**t``.

  ``lr(t) = base + (max - base) * shape(t) * gamma**t`` (PyTorch/Keras), or
  with ``decay_bounds=True`` the paper's
  ``lr(t) = gamma**t * (base + (max - base) * shape(t))``:
  :func:`cyclic_schedule` with ``mode="exp_range"`` (same arguments,
  conventions and references). ``gamma=1`` (the default, as in PyTorch) gives
  the triangular policy; values such as 0.99994 are typical.

  Examples:
    >>> import optax_clr as clr
    >>> lr = clr.exp_range_schedule(0.01, 0.1, step_size_up=2, gamma=0.9)
    >>> [round(float(lr(t)), 4) for t in range(5)]
    [0.01, 0.0505, 0.0829, 0.0428, 0.01]
  """
  return cyclic_schedule(base_value, max_value, step_size_up, step_size_down,
                         mode="exp_range", gamma=gamma, waveform=waveform,
                         decay_bounds=decay_bounds)


def check_momentum_bounds(base_momentum, max_momentum) -> None:
  # Momentum 1 never forgets a gradient (the buffer grows without bound); the
  # optimizer helpers reject it too, so the schedule must not produce it.
  b = _checks.check_number("base_momentum", base_momentum, low=0.0, high=1.0,
                           high_inclusive=False)
  m = _checks.check_number("max_momentum", max_momentum, low=0.0, high=1.0,
                           high_inclusive=False)
  _checks.check_order("base_momentum", b, "max_momentum", m)


@named("base_momentum", "max_momentum", "step_size_up")
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

  with the same ``shape`` and ``scale`` as the learning rate built from the
  same cycle arguments (``step_size_up`` to ``waveform``, as there), so
  momentum starts at ``max_momentum`` and reaches ``base_momentum`` when the
  learning rate peaks: the values PyTorch's ``CyclicLR`` sets with
  ``cycle_momentum=True``.

  Examples:
    >>> import optax_clr as clr
    >>> lr = clr.cyclic_schedule(0.01, 0.1, step_size_up=2)
    >>> mom = clr.cyclic_momentum_schedule(0.8, 0.9, step_size_up=2)
    >>> [(round(float(lr(t)), 4), round(float(mom(t)), 4)) for t in range(3)]
    [(0.01, 0.9), (0.055, 0.85), (0.1, 0.8)]

  Args:
    base_momentum: momentum at the learning-rate peak, in [0, 1).
    max_momentum: momentum at the cycle boundaries, in [``base_momentum``, 1).

  Returns:
    The schedule, ``step -> momentum``.

  References:
    Smith & Topin, `Super-Convergence <https://arxiv.org/abs/1708.07120>`_,
    2017; PyTorch's ``CyclicLR`` (see :func:`cyclic_schedule`).
  """
  check_momentum_bounds(base_momentum, max_momentum)
  profile = _profile.cyclic_profile(step_size_up, step_size_down, mode, gamma,
                                    scale_fn, scale_mode, waveform)
  return _between(base_momentum, max_momentum, profile, reflect=True)
