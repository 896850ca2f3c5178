"""A policy name and bounds -> the (learning rate, momentum) pair, built one
way for the CLI, the examples and the suggestions' answers."""

from __future__ import annotations

from typing import Any, NamedTuple

from optax_clr import _checks
from optax_clr.schedules._cyclic import cyclic_momentum_schedule
from optax_clr.schedules._cyclic import cyclic_schedule
from optax_clr.schedules._one_cycle import one_cycle_momentum_schedule
from optax_clr.schedules._one_cycle import one_cycle_schedule

POLICIES = ("triangular", "triangular2", "exp_range", "one-cycle", "fixed")
CYCLIC_POLICIES = ("triangular", "triangular2", "exp_range")
# Default momentum bounds: PyTorch's CyclicLR (0.8, 0.9) and OneCycleLR
# (0.85, 0.95).
CYCLIC_MOMENTUM = (0.8, 0.9)
ONE_CYCLE_MOMENTUM = (0.85, 0.95)
# Without gamma, exp_range decays the amplitude to this fraction by the last
# step (gamma = EXP_RANGE_FINAL ** (1 / total_steps)).
EXP_RANGE_FINAL = 0.1


class PolicySchedules(NamedTuple):
  """What :func:`policy_schedules` returns.

  Attributes:
    learning_rate: a schedule (or a float for ``"fixed"``).
    momentum: a schedule, or a float (``"fixed"``, or without cycling).
    resolved: every hyperparameter, with the derived ones (JSON-able).
  """
  learning_rate: Any
  momentum: Any
  resolved: dict[str, Any]


def auto_gamma(total_steps: int, final: float = EXP_RANGE_FINAL) -> float:
  """``gamma`` with ``gamma ** total_steps == final``."""
  return float(final ** (1.0 / max(1, total_steps)))


def policy_schedules(
    policy: str, *, base_lr: float | None = None,
    max_lr: float | None = None, lr: float | None = None,
    step_size_up: int | None = None, step_size_down: int | None = None,
    total_steps: int | None = None, waveform: str = "triangular",
    gamma: float | None = None, decay_bounds: bool = False,
    cycle_momentum: bool = True, momentum: float = 0.9,
    base_momentum: float | None = None, max_momentum: float | None = None,
    pct_start: float = 0.3, anneal_strategy: str = "cos",
    div_factor: float | None = None, final_div_factor: float = 1e4,
    three_phase: bool = False) -> PolicySchedules:
  """The LR and momentum of a policy.

  * ``"triangular"``, ``"triangular2"``, ``"exp_range"``: a cyclic LR between
    ``base_lr`` and ``max_lr`` with momentum cycled inversely between
    ``max_momentum`` and ``base_momentum`` (PyTorch's ``CyclicLR`` defaults
    0.9 / 0.8); ``exp_range`` without ``gamma`` decays its amplitude to a
    tenth by the last step (:func:`auto_gamma`);
  * ``"one-cycle"``: Smith & Topin's policy peaking at ``max_lr``, starting at
    ``max_lr / div_factor`` (``div_factor = max_lr / base_lr`` when
    ``base_lr`` is given, else 25), momentum 0.95 -> 0.85 -> 0.95;
  * ``"fixed"``: the constant ``lr`` and ``momentum``.

  Examples:
    >>> import optax_clr as clr
    >>> p = clr.policy_schedules("triangular2", base_lr=0.01, max_lr=0.1,
    ...                          step_size_up=4)
    >>> round(float(p.learning_rate(4)), 4), round(float(p.momentum(4)), 4)
    (0.1, 0.8)
    >>> p.resolved["base_momentum"], p.resolved["max_momentum"]
    (0.8, 0.9)
    >>> clr.policy_schedules("fixed", lr=0.05).learning_rate
    0.05

  Args:
    policy: one of :data:`POLICIES`.
    base_lr, max_lr: the CLR bounds (one-cycle: ``max_lr``, and ``base_lr``
      as its starting LR if given).
    lr: the LR of ``"fixed"``.
    step_size_up, step_size_down: half cycles in steps (cyclic policies).
    total_steps: the run's length (one-cycle spans it; exp_range's default
      gamma decays over it).
    waveform, gamma, decay_bounds: of the cyclic policies.
    cycle_momentum: cycle the momentum inversely to the LR; else constant
      ``momentum``.
    momentum: the constant momentum (``"fixed"`` or no cycling).
    base_momentum, max_momentum: momentum bounds (default by policy).
    pct_start, anneal_strategy, div_factor, final_div_factor, three_phase:
      of one-cycle.

  Returns:
    A :class:`PolicySchedules`.
  """
  _checks.check_choice("policy", policy, POLICIES)
  resolved: dict[str, Any] = {"policy": policy}
  if policy == "fixed":
    if lr is None:
      raise ValueError("policy 'fixed' needs lr")
    resolved.update(lr=lr, momentum=momentum)
    return PolicySchedules(lr, momentum, resolved)
  if max_lr is None or (base_lr is None and policy != "one-cycle"):
    raise ValueError(f"policy {policy!r} needs base_lr and max_lr")
  lo, hi = ONE_CYCLE_MOMENTUM if policy == "one-cycle" else CYCLIC_MOMENTUM
  base_m = lo if base_momentum is None else base_momentum
  max_m = hi if max_momentum is None else max_momentum
  if policy == "one-cycle":
    if total_steps is None:
      raise ValueError("policy 'one-cycle' needs total_steps")
    if div_factor is None:
      div_factor = max_lr / base_lr if base_lr else 25.0
    lr_fn = one_cycle_schedule(
        max_lr, total_steps, pct_start=pct_start,
        anneal_strategy=anneal_strategy, div_factor=div_factor,
        final_div_factor=final_div_factor, three_phase=three_phase)
    mom_fn = one_cycle_momentum_schedule(
        total_steps, pct_start=pct_start, anneal_strategy=anneal_strategy,
        base_momentum=base_m, max_momentum=max_m, three_phase=three_phase)
    resolved.update(max_lr=max_lr, initial_lr=max_lr / div_factor,
                    final_lr=max_lr / div_factor / final_div_factor,
                    total_steps=total_steps, pct_start=pct_start,
                    anneal_strategy=anneal_strategy, div_factor=div_factor,
                    final_div_factor=final_div_factor,
                    three_phase=three_phase)
  else:
    if step_size_up is None:
      raise ValueError(f"policy {policy!r} needs step_size_up")
    if policy == "exp_range" and gamma is None:
      gamma = auto_gamma(total_steps or 2 * step_size_up)
    g = 1.0 if gamma is None else gamma
    lr_fn = cyclic_schedule(
        base_lr, max_lr, step_size_up, step_size_down, mode=policy, gamma=g,
        waveform=waveform, decay_bounds=decay_bounds)
    mom_fn = cyclic_momentum_schedule(
        base_m, max_m, step_size_up, step_size_down, mode=policy, gamma=g,
        waveform=waveform)
    resolved.update(base_lr=base_lr, max_lr=max_lr, step_size_up=step_size_up,
                    step_size_down=step_size_down or step_size_up,
                    waveform=waveform)
    if policy == "exp_range":
      resolved.update(gamma=g, decay_bounds=decay_bounds)
  if cycle_momentum:
    resolved.update(base_momentum=base_m, max_momentum=max_m)
    return PolicySchedules(lr_fn, mom_fn, resolved)
  resolved.update(momentum=momentum)
  return PolicySchedules(lr_fn, momentum, resolved)
