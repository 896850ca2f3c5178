"""From nothing to bounds that were tested: range test, then a confirmation
sweep of candidate schedules.

A range test's suggestion is a guess read off one curve. :func:`find_bounds`
runs it, then trains a few candidate schedules around the suggestion side by
side (one compiled program, :func:`optax_clr.drivers._sweep.run_sweep`) for
about one cycle, and picks the candidate with the best validation metric
among the stable ones:

* CLR (triangular, momentum cycled 0.9 -> 0.8 -> 0.9) with ``max_lr`` at
  1/2, 1, 2 and 3 times the suggested one and ``base_lr`` at the suggested
  ratio (and at ``max_lr / 4``);
* one-cycle (Smith & Topin's super-convergence) peaking at 1, 2 and 3
  times the suggested ``max_lr``;
* six fixed LRs spread over ``[max_lr / 10, 3 max_lr]`` (their best is the
  "best fixed LR").

(A range test's ``max_lr`` is a safe factor below the blow-up; on the
benchmark's tasks the best CLR peak was between 1/2 and 3 times it.)

The result holds the chosen policy and bounds, the evidence table (every
candidate's schedule, validation metric and status) and both runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optax_clr import _checks
from optax_clr.drivers import _range_test
from optax_clr.drivers import _setup
from optax_clr.drivers import _sweep
from optax_clr.engine import _optimizer
from optax_clr.results import GridSweepResult
from optax_clr.results import RangeTestResult
from optax_clr.schedules import cyclic_momentum_schedule
from optax_clr.schedules import cyclic_schedule
from optax_clr.schedules import one_cycle_momentum_schedule
from optax_clr.schedules import one_cycle_schedule

# Candidate kinds, as the integer the compiled schedule switches on.
KINDS = ("triangular", "one-cycle", "fixed")


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One schedule tried by the confirmation sweep."""
  name: str
  policy: str
  base_lr: float
  max_lr: float


@dataclasses.dataclass(frozen=True)
class BoundsChoice:
  """What :func:`find_bounds` chose, and the evidence.

  Attributes:
    policy: ``"triangular"``, ``"one-cycle"`` or ``"fixed"``.
    base_lr, max_lr: the chosen bounds (``base_lr == max_lr`` for fixed).
    candidates: every candidate tried.
    table: one row per candidate: name, policy, base_lr, max_lr, status,
      the validation metric and the final training loss.
    metric: the metric compared (``"val_accuracy"``, ``"val_loss"`` or
      ``"train_loss"``).
    rule: how the choice was made, with the numbers.
    range_test: the range test the candidates were built from.
    sweep: the confirmation sweep (one copy per candidate, its
      ``configs`` the candidates' kind, base and max).
  """
  policy: str
  base_lr: float
  max_lr: float
  candidates: tuple[Candidate, ...]
  table: tuple[dict[str, Any], ...]
  metric: str
  rule: str
  range_test: RangeTestResult
  sweep: GridSweepResult

  def __str__(self) -> str:
    head = f"  {'candidate':<28} {'status':<9} {self.metric:>12}  loss"
    lines = [head]
    for row in self.table:
      mark = " <- chosen" if row["chosen"] else ""
      lines.append(f"  {row['name']:<28} {row['status']:<9} "
                   f"{row['metric']:>12.4g}  {row['final_loss']:.4g}{mark}")
    lines.append(f"chosen: {self.policy} base_lr={self.base_lr:.3e} "
                 f"max_lr={self.max_lr:.3e}")
    lines.append(f"  rule: {self.rule}")
    return "\n".join(lines)

  def to_dict(self) -> dict[str, Any]:
    return {"policy": self.policy, "base_lr": self.base_lr,
            "max_lr": self.max_lr, "metric": self.metric, "rule": self.rule,
            "table": list(self.table)}


def candidates_around(base_lr: float, max_lr: float,
                      num_fixed: int = 6) -> list[Candidate]:
  """The default candidates around suggested bounds (module docstring)."""
  ratio = base_lr / max_lr
  out = []
  for scale in (0.5, 1.0, 2.0, 3.0):
    top = max_lr * scale
    out.append(Candidate(f"CLR {top * ratio:.2e}-{top:.2e}", "triangular",
                         top * ratio, top))
  if abs(ratio - 0.25) > 0.05:
    out.append(Candidate(f"CLR {max_lr / 4:.2e}-{max_lr:.2e}", "triangular",
                         max_lr / 4, max_lr))
  for scale in (1.0, 2.0, 3.0):
    out.append(Candidate(f"one-cycle max {max_lr * scale:.2e}", "one-cycle",
                         max_lr * scale / 25.0, max_lr * scale))
  for lr in np.geomspace(max_lr / 10.0, 3.0 * max_lr, num_fixed):
    out.append(Candidate(f"fixed {lr:.2e}", "fixed", float(lr), float(lr)))
  return out


def candidate_hyper_fn(num_steps: int) -> Callable[..., Any]:
  """Per-copy LR and momentum of the candidates at step ``t``: one function
  for every kind, switching on ``hyper["kind"]`` (the schedules take traced
  bounds)."""
  up = max(1, num_steps // 2)

  def hyper_fn(hyper, t):
    kind, base, top = hyper["kind"], hyper["base"], hyper["max"]
    clr = cyclic_schedule(base, top, up)(t)
    one = one_cycle_schedule(top, max(2, num_steps))(t)
    lr = jnp.where(kind == 0, clr, jnp.where(kind == 1, one, top))
    out = {"learning_rate": lr}
    if "momentum" in hyper:
      mom = jnp.where(
          kind == 0, cyclic_momentum_schedule(0.8, 0.9, up)(t),
          jnp.where(kind == 1, one_cycle_momentum_schedule(
              max(2, num_steps))(t), 0.9))
      out["momentum"] = mom
    return out
  return hyper_fn


_HYPER_FNS: dict[tuple[int, bool], Callable[..., Any]] = {}


def _hyper_fn(num_steps: int, momentum: bool) -> Callable[..., Any]:
  key = (num_steps, momentum)
  if key not in _HYPER_FNS:
    _HYPER_FNS[key] = candidate_hyper_fn(num_steps)
  return _HYPER_FNS[key]


def choose(candidates: Sequence[Candidate], sweep: GridSweepResult
           ) -> tuple[int, np.ndarray, str, str]:
  """Index of the best stable candidate, the metric, its name, the rule."""
  metric, name, higher = sweep.score()
  stable = sweep.stable
  if not stable.any():
    raise ValueError(
        "no candidate schedule trained stably (statuses "
        f"{sorted(set(sweep.status))}); lower the LR range or train longer")
  score = np.where(stable & np.isfinite(metric), metric if higher
                   else -metric, -np.inf)
  best = int(np.argmax(score))
  # Prefer a cyclical schedule when it is as good (within 0.2 % of the
  # metric): its momentum cycling and annealing keep helping beyond the
  # confirmation's single cycle.
  tol = 0.002 * max(abs(metric[best]), 1e-12)
  close = [i for i in range(len(candidates)) if score[i] >= score[best] - tol]
  for i in close:
    if candidates[i].policy == "triangular":
      best = i
      break
  rule = (f"highest {name} among {int(stable.sum())} stable candidates "
          f"({metric[best]:.4g}; cyclical schedules preferred within 0.2 %)"
          if higher else
          f"lowest {name} among {int(stable.sum())} stable candidates "
          f"({metric[best]:.4g}; cyclical schedules preferred within 0.2 %)")
  return best, metric, name, rule


class NoBoundsError(ValueError):
  """:func:`find_bounds`' range test gave no bounds; ``range_test`` holds
  its result, so that a caller can keep it."""

  def __init__(self, message: str, range_test: RangeTestResult):
    super().__init__(message)
    self.range_test = range_test


def find_bounds(
    model: Any,
    loss_fn: Callable[..., Any],
    train_data: Any,
    *,
    val_data: Any,
    batch_size: int | None = None,
    num_steps: int = 100,
    momentum_name: str | None = "momentum",
    optimizer: Any = None,
    range_test_kwargs: dict[str, Any] | None = None,
    candidates: Sequence[Candidate] | None = None,
    seed: int = 0,
    wrt: Any = nnx.Param,
    progress: Any = None,
) -> BoundsChoice:
  """Range test, confirmation sweep of candidate schedules, choice.

  Args:
    model, loss_fn, train_data, batch_size: as in
      :func:`~optax_clr.range_test`.
    val_data: validation data: candidates are compared on it.
    num_steps: steps each candidate trains (about one cycle of the planned
      schedule: the CLR candidates make one full cycle in it, one-cycle
      candidates their whole policy).
    momentum_name: the optimizer argument the candidates cycle inversely to
      the LR (``"momentum"`` for SGD, ``"b1"`` for Adam); None: none.
    optimizer: a factory ``(learning_rate, **{momentum_name: m}) ->
      GradientTransformation``; default SGD (momentum cycled).
    range_test_kwargs: extra arguments of the range test.
    candidates: the schedules to try (default :func:`candidates_around`).
    seed, wrt, progress: as in :func:`~optax_clr.range_test`.

  Returns:
    A :class:`BoundsChoice`.

  Raises:
    NoBoundsError: (a ValueError) the range test gave no bounds, e.g. it was
      interrupted; its result is the error's ``range_test``.
  """
  num_steps = _checks.check_int("num_steps", num_steps, low=2)
  if val_data is None:
    raise ValueError("find_bounds needs val_data: candidates are compared on "
                     "their validation metric")
  factory = optimizer or _optimizer.DEFAULT_FACTORY
  rt_kwargs = dict(range_test_kwargs or {})
  rt = _range_test.range_test(
      model, loss_fn, train_data, batch_size=batch_size, seed=seed,
      optimizer=factory, wrt=wrt, progress=progress, **rt_kwargs)
  sugg = rt.suggest()
  if sugg.max_lr is None:
    raise NoBoundsError(
        f"the range test gave no bounds to confirm: {sugg.rule}", rt)
  cands = list(candidates or candidates_around(sugg.base_lr, sugg.max_lr))
  driven = ("learning_rate",) + ((momentum_name,) if momentum_name else ())
  setup = _setup.prepare(
      model, loss_fn, train_data, optimizer=factory, driven=driven,
      batch_size=batch_size, seed=seed, val_data=val_data, val_batches=4,
      eval_fn=None, accumulation_steps=1, compute_dtype=None, wrt=wrt,
      step_mode="train", eval_mode="eval", execution="auto",
      steps_per_chunk=None, num_steps=num_steps,
      placeholders={momentum_name: 0.9} if momentum_name else None)
  hyper = {"kind": np.array([KINDS.index(c.policy) for c in cands],
                            np.int32),
           "base": np.array([c.base_lr for c in cands], np.float32),
           "max": np.array([c.max_lr for c in cands], np.float32)}
  if momentum_name:
    hyper["momentum"] = np.full(len(cands), 0.9, np.float32)
  run = _sweep.run_sweep(
      setup, hyper, model=model,
      hyper_fn=_hyper_fn(num_steps, bool(momentum_name)), init="shared",
      model_init=None, wrt=wrt, seed=seed, num_steps=num_steps, window=10,
      diverge_threshold=4.0, accumulation_steps=1, max_parallel=None,
      group_size="auto", mesh=None, progress=progress,
      config={"test": "confirmation", "candidates": [
          dataclasses.asdict(c) for c in cands], "batch_size": batch_size})
  sweep = GridSweepResult(configs={k: v.astype(np.float64) for k, v in
                                   hyper.items()}, **run._asdict())
  best, metric, name, rule = choose(cands, sweep)
  status = sweep.status
  table = tuple({"name": c.name, "policy": c.policy, "base_lr": c.base_lr,
                 "max_lr": c.max_lr, "status": str(status[i]),
                 "metric": float(metric[i]),
                 "final_loss": float(sweep.mean_loss[i]),
                 "chosen": i == best} for i, c in enumerate(cands))
  c = cands[best]
  return BoundsChoice(c.policy, c.base_lr, c.max_lr, tuple(cands), table,
                      name, rule, rt, sweep)
