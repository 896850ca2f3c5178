"""``fit``: from the user's model to a trained model whose schedule was
measured, not guessed.

1. **Scale**: a short LR range test (:func:`~optax_clr.range_test`) reads
   the LR scale ``m`` with the rule book (:mod:`optax_clr.suggestions`).
2. **Candidates** around it (:func:`candidates_around`): triangular CLR
   (momentum cycled inversely), one-cycle, and fixed LRs -- 12 by default.
3. **Side by side, for the user's budget**: every candidate trains in one
   population (:mod:`optax_clr.engine`), all on the same batches from the
   same weights. The budget of ``N`` steps is ``cycles`` cycles of ``L =
   N // cycles`` steps; every cyclical candidate ends each cycle at its low
   LR (a triangular CLR at its base, a one-cycle candidate -- one one-cycle
   per cycle, warm restarts -- annealed), a fair moment to compare.
4. **Successive halving at cycle ends**: after each cycle but the last the
   candidates still running are ranked by their validation metric (accuracy
   if the loss reports one, else loss) and only the best ``1 / eta`` go on,
   at least two (a lone survivor could collapse unseen); a candidate stopped
   is never resumed. A survivor that did not train (its status by the one
   rule) is returned with a warning.
5. **The survivor is the result**: its trained model (no retraining), its
   schedule as a ready optax transformation, its history, and the evidence
   (every candidate, when it stopped, its metric at every cycle end).

Cost, counted in copy-steps (one copy trained one step): the range test's
steps plus ``L * sum_r K_r`` (``K_r`` candidates in cycle ``r``), reported in
units of the budget ``N`` as :attr:`FitResult.cost`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_clr import _checks
from optax_clr import _options
from optax_clr import _progress
from optax_clr import suggestions as _sg
from optax_clr.drivers import _ramp
from optax_clr.engine import _feed
from optax_clr.engine import _layout
from optax_clr.engine import _loop
from optax_clr.engine import _loss
from optax_clr.engine import _model
from optax_clr.engine import _optimizer
from optax_clr.engine import _population
from optax_clr.engine import _setup
from optax_clr.engine import _step
from optax_clr.optimizers import cyclic_optimizer
from optax_clr.results import Candidate
from optax_clr.results import FitResult
from optax_clr.results import RangeTestResult
from optax_clr.results import TrainHistory
from optax_clr.schedules import cyclic_momentum_schedule
from optax_clr.schedules import cyclic_schedule
from optax_clr.schedules import one_cycle_momentum_schedule
from optax_clr.schedules import one_cycle_schedule
from optax_clr.schedules import _named

PyTree = Any
KINDS = ("triangular", "one-cycle", "fixed")
# Momentum: cycled 0.95 -> 0.85 inversely to the LR (Smith & Topin), 0.9
# for a fixed LR (Smith 2017's range test).
MOMENTUM = (0.85, 0.95)
FIXED_MOMENTUM = 0.9
# The candidates' scale m is the LR where the range test blew up / this
# (chosen on the tune half of benchmarks/bench_suggestions.py).
BLOW_UP_DIVISOR = 16.0


def candidates_around(scale: float) -> list[Candidate]:
  """The default 12 candidates around an LR scale ``m``: CLR with ``max`` at
  ``m/2``, ``m``, ``2m`` (base ``max/4``) and at ``m`` (base ``max/10``);
  one-cycle peaking at ``m``, ``2m``, ``4m``; fixed LRs ``m/8`` ... ``2m``.
  ``fit`` takes ``m`` = the LR where the range test's loss blew up / 16
  (chosen on the tune half of benchmarks/bench_suggestions.py: the rule
  book's ``max_lr`` / 4 for SGD, itself for Adam)."""
  m = float(scale)
  out = [Candidate("triangular", top / 4.0, top) for top in (m / 2, m, 2 * m)]
  out.append(Candidate("triangular", m / 10.0, m))
  out += [Candidate("one-cycle", top / 25.0, top) for top in (m, 2 * m, 4 * m)]
  out += [Candidate("fixed", lr, lr) for lr in np.geomspace(m / 8, 2 * m, 5)]
  return out


def _one_cycle(top: Any, length: int) -> Any:
  return one_cycle_schedule(top, max(2, length))


def candidate_schedules(c: Candidate, cycle_steps: int, cycles: int,
                        momentum: bool) -> tuple[Any, Any]:
  """The LR (and momentum, or None) schedules of a candidate over the
  budget: ``cycles`` cycles of ``cycle_steps``, then held at the last
  value."""
  end = cycles * cycle_steps - 1
  if c.policy == "fixed":
    return (optax.constant_schedule(c.max_lr),
            FIXED_MOMENTUM if momentum else None)
  if c.policy == "triangular":
    up = cycle_steps // 2
    lr = cyclic_schedule(c.base_lr, c.max_lr, up)
    mom = cyclic_momentum_schedule(*MOMENTUM, up)
    last = 2 * up * cycles
    at = lambda t: jnp.minimum(t, last)  # noqa: E731
  else:
    lr = _one_cycle(c.max_lr, cycle_steps)
    mom = one_cycle_momentum_schedule(max(2, cycle_steps),
                                      base_momentum=MOMENTUM[0],
                                      max_momentum=MOMENTUM[1])
    at = lambda t: jnp.minimum(t, end) % cycle_steps  # noqa: E731
  wrap = lambda f: _named.Schedule(  # noqa: E731
      lambda t: f(at(t)), "fit_schedule", cycle=f, cycles=cycles,
      cycle_steps=cycle_steps)
  return wrap(lr), wrap(mom) if momentum else None


@dataclasses.dataclass(frozen=True)
class Candidates(_step.Frozen):
  """The candidates as a solver: copy ``k`` follows its schedule (kind,
  base and max in its constants), computed in the step with the same
  functions as :func:`candidate_schedules`."""
  cycle_steps: int
  cycles: int
  momentum_name: str | None

  def hyper(self, consts: PyTree, t: jax.Array) -> dict[str, jax.Array]:
    kind, base, top = consts["kind"], consts["base"], consts["max"]
    out = {}
    momentum = self.momentum_name is not None
    lrs, moms = [], []
    for i, policy in enumerate(KINDS):
      lr, mom = candidate_schedules(Candidate(policy, base, top),
                                    self.cycle_steps, self.cycles, momentum)
      lrs.append(lr(t) if callable(lr) else lr)
      moms.append(mom(t) if callable(mom) else mom)
    pick = lambda xs: jnp.select([kind == i for i in range(len(KINDS))],  # noqa: E731
                                 [jnp.asarray(x, jnp.float32) for x in xs])
    out["learning_rate"] = pick(lrs)
    if momentum:
      out[self.momentum_name] = pick(moms)
    return out

  def step(self, spec: _step.Spec, carry: _step.Carry, consts: PyTree,
           val: PyTree, x: PyTree) -> tuple[_step.Carry, dict]:
    del val
    micro, ok, t = x
    hyper = self.hyper(consts, t)
    carry, _, loss, active = _step.guarded_step(
        spec, carry, micro, ok,
        _loss.step_key(consts["seed"], consts["copy"], t), hyper)
    return carry, {
        "loss": jnp.where(active, loss, jnp.nan), "recorded": active,
        "lr": hyper["learning_rate"],
        "momentum": hyper.get(self.momentum_name, jnp.float32(jnp.nan))}


def momentum_name_of(factory: Any) -> str | None:
  """The momentum a factory takes and uses: ``"momentum"`` with a numeric
  default (``functools.partial(optax.sgd, momentum=0.9)``; plain
  ``optax.sgd`` uses none), else ``"b1"`` (Adam); None otherwise."""
  try:
    params = inspect.signature(factory).parameters
  except (TypeError, ValueError):
    return None
  p = params.get("momentum")
  if p is not None and isinstance(p.default, (int, float)):
    return "momentum"
  return "b1" if "b1" in params else None


class NoBoundsError(ValueError):
  """The range test gave no scale to build candidates around; its result
  is the error's ``range_test``, so a caller can keep it."""

  def __init__(self, message: str, range_test: RangeTestResult):
    super().__init__(message)
    self.range_test = range_test


def _scale(rt: RangeTestResult) -> tuple[float, str]:
  """``m``, the LR the candidates are built around -- the blow-up LR /
  ``BLOW_UP_DIVISOR``, read by the rule book (its ``max_lr`` times its
  divisor) -- and how."""
  s = rt.suggest()
  div = _sg.MAX_DIVISOR[rt.adaptive]
  if s.max_lr is not None:
    m = float(s.max_lr) * div / BLOW_UP_DIVISOR
    return m, (f"scale {m:.3g} = the rule book's max_lr x {div:g} / "
               f"{BLOW_UP_DIVISOR:g}: {s.rule}")
  if rt.stop_reason in ("diverged", "nonfinite") and len(rt.lrs) > 1:
    m = float(rt.lrs[-1]) / BLOW_UP_DIVISOR
    return m, (f"scale {m:.3g}: the ramp blew up at LR {rt.lrs[-1]:.3g} "
               f"(no loss bounds: {s.rule}); that LR / {BLOW_UP_DIVISOR:g}")
  raise NoBoundsError(
      f"fit: the range test located no LR scale: {s.rule}", rt)


def _rank(metrics: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
  """The metric candidates are ranked by, as "higher is better" scores."""
  if "accuracy" in metrics:
    return "val_accuracy", np.asarray(metrics["accuracy"], np.float64)
  return "val_loss", -np.asarray(metrics["loss"], np.float64)


# Budget layout: cycles per budget and the fraction kept at each cycle end.
# Each candidate must train one cycle to be judged, so the first cycle costs
# K / cycles runs: with 12 candidates, 6 cycles and 1/4 kept, at least two
# (12, 3, 2, 2, 2, 2), the candidates cost (12 + 3 + 8) / 6 = 3.8 runs.
DEFAULT_CYCLES = 6
# The scale's ramp: 25 steps per decade (an EMA lag of 0.8 decades, within
# the rule book's resolution), coarser than a plain range test's 40: the
# candidates spread over a factor of 32 around it. It stops where the loss
# blows up. (The scale's factor, / 16, was measured with this ramp.)
RAMP_STEPS_PER_DECADE, RAMP_SMOOTHING = 25, 0.05
MIN_SURVIVORS = 2


def _budget(num_epochs: Any, num_steps: Any, epochs: _feed.Epochs,
            cycles: Any) -> tuple[int, int, int]:
  """``(N, cycles, cycle_steps)``, checked."""
  if (num_epochs is None) == (num_steps is None):
    raise ValueError("fit needs the budget: num_epochs or num_steps (one of "
                     "them)")
  if num_steps is None:
    num_steps = _checks.check_int("num_epochs", num_epochs, low=1) * (
        epochs.steps)
  n = _checks.check_int("num_steps", num_steps, low=4)
  c = DEFAULT_CYCLES if cycles is None else _checks.check_int(
      "cycles", cycles, low=1)
  # A cycle of at least 4 steps: a one-cycle warms up for 30 % of it.
  c = max(1, min(c, n // 4))
  return n, c, n // c


def fit(
    model: Any,
    loss_fn: Callable[..., Any],
    train_data: Any,
    *,
    val_data: Any,
    num_epochs: int | None = None,
    num_steps: int | None = None,
    steps_per_epoch: int | None = None,
    optimizer: Callable[..., Any] | None = None,
    cycles: int | None = None,
    candidates: Sequence[Candidate] | None = None,
    eta: int = 4,
    options: _options.Options | None = None,
    **option_fields: Any,
) -> FitResult:
  """Trains candidate schedules side by side for the budget and returns the
  survivor's trained model (module docstring).

  Args:
    model, loss_fn, train_data: as in :func:`~optax_clr.train`.
    val_data: held-out data the candidates are ranked on (never rows the
      model trains on).
    num_epochs, num_steps: the budget (one of them): epochs of
      ``train_data``, or steps.
    steps_per_epoch: as in :func:`~optax_clr.train`.
    optimizer: a factory ``learning_rate -> GradientTransformation``
      (default SGD with momentum 0.9); its momentum (``momentum`` with a
      numeric default, or Adam's ``b1``) is cycled inversely to the LR.
    cycles: cycles in the budget (default 6, at most ``N // 4``: a cycle
      has at least 4 steps); the candidates are ranked at the end of every
      cycle but the last.
    candidates: the schedules to try (default :func:`candidates_around`
      the range test's scale; none: no range test).
    eta: at each cycle end the best ``ceil(K / eta)`` candidates go on (at
      least two).
    options: as in :func:`~optax_clr.range_test`.
    **option_fields: :class:`~optax_clr.Options` fields, overriding
      ``options``.

  Returns:
    A :class:`FitResult`.

  Raises:
    NoBoundsError: (a ValueError) the range test located no LR scale.
  """
  options = _options.resolve(options, option_fields, "fit")
  if val_data is None:
    raise ValueError("fit needs val_data: the candidates are ranked on "
                     "held-out data")
  eta = _checks.check_int("eta", eta, low=2)
  factory = _optimizer.DEFAULT_FACTORY if optimizer is None else optimizer
  if not callable(factory) or isinstance(factory,
                                         optax.GradientTransformation):
    raise TypeError("fit's optimizer must be a factory learning_rate -> "
                    "optax.GradientTransformation (e.g. optax.adamw), got "
                    f"{_checks.describe(optimizer)}")
  feed = _feed.make_feed(train_data, options.batch_size, options.seed)
  epochs = _feed.Epochs(train_data, options.batch_size, steps_per_epoch,
                        feed, options.accumulation_steps)
  n, c, cycle = _budget(num_epochs, num_steps, epochs, cycles)
  rt, scale_rule = None, "candidates given"
  if candidates is None:
    rt = _ramp.range_test(
        model, loss_fn, train_data, optimizer=factory, start_lr=1e-6,
        end_lr=10.0, num_steps=7 * RAMP_STEPS_PER_DECADE,
        smoothing=RAMP_SMOOTHING, options=options)
    m, scale_rule = _scale(rt)
    candidates = candidates_around(m)
  cands = list(candidates)
  if not cands or not all(isinstance(x, Candidate) for x in cands):
    raise TypeError("candidates must be a non-empty list of "
                    "optax_clr.Candidate")
  return _run(model, loss_fn, train_data, options, val_data=val_data,
              factory=factory, epochs=epochs, budget=(n, c, cycle),
              cands=cands, eta=eta, rt=rt, scale_rule=scale_rule)


def find_bounds(model: Any, loss_fn: Callable[..., Any], train_data: Any, *,
                val_data: Any, num_steps: int = 100,
                optimizer: Callable[..., Any] | None = None,
                candidates: Sequence[Candidate] | None = None,
                options: _options.Options | None = None,
                **option_fields: Any) -> FitResult:
  """The confirmation of bounds: a range test, then every candidate trained
  for one cycle of ``num_steps`` steps side by side (no halving); the best
  on ``val_data`` wins. :func:`fit` with ``cycles=1``: the evidence for
  choosing bounds when the final training is run separately."""
  return fit(model, loss_fn, train_data, val_data=val_data,
             num_steps=num_steps, optimizer=optimizer, cycles=1,
             candidates=candidates, options=options, **option_fields)


class _Evidence:
  """What the candidates did: per-step records ``[K, N]`` (NaN where a
  candidate did not run) and the metrics at every cycle end."""

  def __init__(self, k: int, n: int):
    self.steps = np.zeros(k, np.int64)
    self.rec = {name: np.full((k, n), np.nan) for name in
                ("loss", "lr", "momentum")}
    self.rungs: list[dict[str, np.ndarray]] = []  # name -> [K] (NaN: off)
    self.rung_steps: list[int] = []
    self.stopped_at = np.full(k, -1, np.int64)
    self.initial: dict[str, np.ndarray] = {}
    self.wall: list[float] = []

  def add(self, alive: np.ndarray, first: int,
          records: list[dict[str, np.ndarray]]) -> int:
    done = first
    for out in records:
      count = out["loss"].shape[1]
      for name, rows in self.rec.items():
        rows[alive, done:done + count] = out[name]
      self.steps[alive] += out["recorded"].sum(1)
      done += count
    return done

  def add_rung(self, alive: np.ndarray, step: int, metrics: dict,
               wall: float) -> None:
    full = {k: np.full(len(self.steps), np.nan) for k in metrics}
    for name, values in metrics.items():
      full[name][alive] = values
    self.rungs.append(full)
    self.rung_steps.append(step)
    self.wall.append(wall)


def _halve(alive: np.ndarray, score: np.ndarray, eta: int) -> np.ndarray:
  """The best ``ceil(len(alive) / eta)`` of ``alive`` by ``score`` (higher
  is better; NaN worst), at least two, in ascending copy order: a lone
  survivor that collapses in a later cycle would be returned with nothing to
  compare it to (seen on the benchmark: 0.75 -> 0.09 accuracy)."""
  keep = min(len(alive), max(MIN_SURVIVORS, math.ceil(len(alive) / eta)))
  s = np.where(np.isfinite(score), score, -np.inf)
  order = np.argsort(-s, kind="stable")[:keep]
  return np.sort(alive[order])


def _run(model, loss_fn, train_data, options, *, val_data, factory, epochs,
         budget, cands, eta, rt, scale_rule) -> FitResult:
  n, c, cycle = budget
  mom = momentum_name_of(factory)
  k = len(cands)
  setup = _setup.prepare(
      model, loss_fn, train_data, options, val_data=val_data,
      optimizer=factory, driven=("learning_rate",) + ((mom,) if mom else ()),
      placeholders={mom: FIXED_MOMENTUM} if mom else None, num_steps=cycle,
      num_copies=k)
  _population.check_model_init(setup)
  solver = Candidates(cycle, c, mom)
  consts = {"kind": np.array([KINDS.index(x.policy) for x in cands],
                             np.int32),
            "base": np.array([x.base_lr for x in cands], np.float32),
            "max": np.array([x.max_lr for x in cands], np.float32),
            "seed": np.full(k, options.seed, np.int32),
            "copy": np.arange(k, dtype=np.int32)}
  prog, local, _ = _population.program(setup, solver, consts, False,
                                       setup.has_conv)
  keys = (_population.init_keys(options.seed, k)
          if options.init == "independent" else None)
  pop = _population.start(setup, consts, keys)(prog, np.arange(k))
  ev = _Evidence(k, n)
  # Every candidate starts from the same weights unless each has its own
  # init: one evaluation then stands for all (the user's loop pays none).
  ev.initial = pop.evaluate() if keys is not None else jax.tree.map(
      lambda v: np.repeat(v[:1], k, 0), pop.evaluate(blocks=[0]))
  alive = np.arange(k)
  ends = [cycle * (r + 1) for r in range(c - 1)] + [n]
  placer = _population.xs_placer(prog, setup.chunk_steps)
  start, done, interrupted = time.perf_counter(), 0, False
  with _progress.reporter(options.progress, "fit") as bar:
    for r, end in enumerate(ends):
      measure = (_loop.measured_dispatch(local, -(-n // setup.chunk_steps))
                 if r == 0 and _layout.may_measure(options, local) else None)
      outcome = _loop.drive(
          pop, epochs.chunks(done, end, setup.chunk_steps),
          lambda chunk, d, f=done: placer(chunk, f + d), end - done,
          measure=measure, report=None if bar is None else (
              lambda d, out, f=done: bar(f + d, n, {})))
      done = ev.add(alive, done, outcome.records)
      if outcome.interrupted or done < end:
        interrupted = outcome.interrupted
        break
      ev.add_rung(alive, done, pop.evaluate(), time.perf_counter() - start)
      if end < n:
        metric, score = _rank({k_: v[alive] for k_, v in ev.rungs[-1].items()})
        keep = _halve(alive, score, eta)
        ev.stopped_at[np.setdiff1d(alive, keep)] = done
        alive = keep
        pop.regroup(lambda: _survivor_prog(pop, len(alive)), alive)
  return _result(setup, pop, ev, cands, alive, budget, rt, scale_rule,
                 factory, mom, interrupted or done < n, eta)


def _survivor_prog(pop: _loop.Population, count: int) -> _loop.Program:
  """The program for the survivors: on CPU a group no larger than them
  (a padded group would compute the padding)."""
  prog = pop.blocks[-1].prog
  if jax.default_backend() != "cpu":
    return prog
  per_device = -(-count // prog.plan.devices)
  return prog.with_group(min(prog.plan.group, per_device))


def _result(setup, pop, ev, cands, alive, budget, rt, scale_rule, factory,
            mom, stopped_early, eta) -> FitResult:
  n, c, cycle = budget
  if ev.rungs:
    metric, score = _rank({k: v[alive] for k, v in ev.rungs[-1].items()})
    best = int(alive[int(np.argmax(np.where(np.isfinite(score), score,
                                            -np.inf)))])
  else:
    metric, best = ("val_accuracy" if "accuracy" in ev.initial
                    else "val_loss"), int(alive[0])
  name = metric[4:]
  rows = []
  for i, cand in enumerate(cands):
    ran = int(ev.steps[i])
    final = {k: np.array([v[i]]) for k, v in (
        ev.rungs[-1] if ev.rungs else {}).items() if np.isfinite(v[i])}
    last = [r for r in ev.rungs if np.isfinite(r[name][i])]
    if last:
      final = {k: np.array([v[i]]) for k, v in last[-1].items()}
    status = _sg.classify(
        ev.rec["loss"][i:i + 1, :ran], _sg.windowed_mean(
            ev.rec["loss"][i:i + 1, :ran], 10)[:, -1] if ran else [np.nan],
        initial_metrics={k: v[i:i + 1] for k, v in ev.initial.items()},
        final_metrics=final)[0]
    rows.append({
        "name": cand.name, "policy": cand.policy, "base_lr": cand.base_lr,
        "max_lr": cand.max_lr,
        "stopped_at": None if ev.stopped_at[i] < 0 else int(ev.stopped_at[i]),
        "metrics": [None if not np.isfinite(r[name][i]) else float(r[name][i])
                    for r in ev.rungs],
        "status": str(status), "survivor": i == best})
  survivor = cands[best]
  lr_fn, mom_fn = candidate_schedules(survivor, cycle, c, mom is not None)
  tx = (cyclic_optimizer(factory, learning_rate=lr_fn, momentum=mom_fn,
                         momentum_name=mom) if mom else
        cyclic_optimizer(factory, learning_rate=lr_fn))
  ran = int(ev.steps[best])
  config = _setup.config(
      setup, **pop.blocks[-1].prog.plan.config(), test="fit", num_steps=n,
      cycles=c, cycle_steps=cycle, eta=eta,
      candidates=[dataclasses.asdict(x) for x in cands])
  history = TrainHistory(
      steps=np.arange(ran), losses=ev.rec["loss"][best, :ran],
      lrs=ev.rec["lr"][best, :ran], momenta=ev.rec["momentum"][best, :ran],
      eval_steps=np.asarray(ev.rung_steps, np.int64),
      eval_metrics={k: np.array([r[k][best] for r in ev.rungs])
                    for k in (ev.rungs[0] if ev.rungs else {})},
      wall_times=np.asarray(ev.wall),
      initial_metrics={k: v[best:best + 1] for k, v in ev.initial.items()},
      stop_reason="interrupted" if stopped_early else "completed",
      config=config)
  final = pop.carry_of(best).state
  model = _model.rebuild(setup.model, _model.Parts(final.params, final.rest,
                                                   final.state))
  rt_steps = 0 if rt is None else len(rt.lrs)
  cost = {"range_test_steps": rt_steps,
          "candidate_steps": int(ev.steps.sum()), "budget_steps": n,
          "run_equivalents": (rt_steps + float(ev.steps.sum())) / n}
  if rows[best]["status"] != "trained":
    warnings.warn(
        f"fit: the survivor {survivor.name} did not train (status "
        f"{rows[best]['status']!r}; the evidence table has every candidate); "
        "check the data and the loss, or give candidates= lower LRs",
        RuntimeWarning, stacklevel=3)
  rule = (f"highest {metric} at the last cycle end among {len(alive)} "
          f"survivor(s) of {len(cands)} candidates, the best 1/{eta} kept at "
          f"each of {c - 1} cycle ends; {scale_rule}")
  if metric == "val_loss":
    rule = rule.replace("highest", "lowest")
  return FitResult(model, survivor, lr_fn, mom_fn, tx, history, tuple(rows),
                   metric, rule, rt, cost, config)
