"""Every answer (a ramp's suggestions, a sweep's, the seeds' medians) is an
:class:`Answer`: schedules and a ready optax optimizer for a budget."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax

from optax_clr import _checks
from optax_clr import optimizers
from optax_clr import schedules
from optax_clr.optimizers import _inject
from optax_clr.schedules import _named


class Answer:
  """Schedules and an optimizer from ``base_lr``, ``max_lr`` and
  ``fixed_lr`` (the subclass's fields)."""

  base_lr: float | None
  max_lr: float | None
  rule: str

  @property
  def fixed_lr(self) -> float | None:
    """The LR of policy ``"fixed"`` (a sweep's best LR); None otherwise."""
    return None

  def schedules(self, *, num_steps: int | None = None,
                num_epochs: int | None = None,
                steps_per_epoch: int | None = None,
                policy: str = "triangular", cycles: int = 4) -> Any:
    """The :class:`~optax_clr.schedules.PolicySchedules` of ``policy`` for
    the budget (:func:`~optax_clr.policy_schedules`). A cyclical schedule
    ends at a cycle end: ``cycles`` cycles of ``2 * (N // (2 * cycles))``
    steps, the few steps left over held at ``base_lr``.

    Args:
      num_steps: the budget in steps; or ``num_epochs`` x
        ``steps_per_epoch``.
      num_epochs, steps_per_epoch: the budget in epochs.
      policy: ``"triangular"``, ``"triangular2"``, ``"exp_range"``,
        ``"one-cycle"`` (peaking at ``max_lr``, from ``base_lr``) or
        ``"fixed"`` (a sweep's best LR).
      cycles: cycles of a cyclical policy over the budget (>= 1).
    """
    if num_steps is not None:
      if num_epochs is not None:
        raise ValueError("give num_steps or num_epochs (with "
                         "steps_per_epoch), not both")
      total = _checks.check_int("num_steps", num_steps, low=2)
    elif num_epochs is None or steps_per_epoch is None:
      raise ValueError("the budget is needed: num_steps, or num_epochs and "
                       "steps_per_epoch")
    else:
      total = (_checks.check_int("num_epochs", num_epochs, low=1)
               * _checks.check_int("steps_per_epoch", steps_per_epoch, low=1))
    _checks.check_choice("policy", policy, schedules.POLICIES)
    cycles = _checks.check_int("cycles", cycles, low=1)
    if policy == "fixed":
      if self.fixed_lr is None:
        raise ValueError(
            "policy='fixed' needs a fixed LR, which a sweep gives "
            "(parallel_range_test(...).suggest()); this answer gives CLR "
            "bounds: use a cyclical policy or 'one-cycle'")
      return schedules.policy_schedules("fixed", lr=self.fixed_lr)
    if self.max_lr is None:
      raise ValueError(f"no bounds to build a schedule from: {self.rule}")
    if policy == "one-cycle":
      return schedules.policy_schedules(
          policy, base_lr=self.base_lr, max_lr=self.max_lr,
          total_steps=max(2, total))
    step = total // (2 * cycles)
    if step < 1:
      raise ValueError(f"cycles={cycles}: a budget of {total} steps holds "
                       f"at most {max(1, total // 2)} cycles")
    out = schedules.policy_schedules(
        policy, base_lr=self.base_lr, max_lr=self.max_lr, step_size_up=step,
        total_steps=total)
    end = 2 * step * cycles
    if end >= total:
      return out
    # The steps past the last whole cycle stay at its end value.
    hold = lambda f: f if not callable(f) else _named.Schedule(  # noqa: E731
        lambda t, f=f: f(jnp.minimum(t, end)), "held", schedule=f,
        from_step=end)
    return out._replace(learning_rate=hold(out.learning_rate),
                        momentum=hold(out.momentum),
                        resolved={**out.resolved, "held_from_step": end})

  def optimizer(self, factory: Any = None, **budget: Any) -> Any:
    """A ready ``optax.GradientTransformation``: ``factory`` (default
    ``optax.sgd``) with :meth:`schedules`' LR and momentum (cycled inversely
    to the LR: SGD's ``momentum``, Adam's ``b1``;
    :func:`~optax_clr.cyclic_optimizer`); ``budget`` as :meth:`schedules`
    takes it."""
    sched = self.schedules(**budget)
    factory = optax.sgd if factory is None else factory
    takes_momentum = _inject.momentum_parameter(
        _inject.factory_parameters(factory)) is not None
    return optimizers.cyclic_optimizer(
        factory, learning_rate=sched.learning_rate,
        momentum=sched.momentum if takes_momentum else None)
