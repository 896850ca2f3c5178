"""How good are the answers? ``clr.fit``, the plain range-test defaults,
fastai's and torch-lr-finder's recipes and the LR-free optimizers, against a
dense fixed-LR grid, on ten tasks of five kinds, over seeds.

Tasks (:mod:`_tasks`): a conv net without normalisation (digits) and one
with BatchNorm (noisy shifted digits), a tabular MLP classifier, a
regression MLP and a character-level transformer; each once with SGD
(momentum 0.9) and once with Adam, at two batch sizes. The split into a
**tune** half and a **report** half is fixed up front (``_tasks.TUNE`` /
``_tasks.REPORT``): constants may be chosen on the tune half only, the
report half is the held-out evidence, and the tables are printed apart.

Per task and seed (the seed sets the initial weights and the batch order),
every method trains for the task's budget of ``N`` steps **in the same
loop**: ``clr.train(..., num_epochs=6, steps_per_epoch=N // 6,
val_data=...)`` -- the same batches (the library's seeded order) and the
validation metric evaluated at the same 6 points (every ``N / 6`` steps,
which are also ``fit``'s cycle ends). A method's score is its **best
validation metric over those 6 evaluations**; the grid's is the best over
its LRs and evaluations. Methods:

* ``grid``: a fixed LR (``optax`` factory at a constant LR, momentum 0.9 /
  b1 0.9), 13 LRs log-spaced a factor 1.78 apart over 3 decades (the
  task's ``grid``); the reference;
* ``fit``: ``clr.fit(model, loss, train, val_data=val, num_steps=N,
  optimizer=factory)`` with its defaults -- its survivor's best of the 6
  cycle-end evaluations; cost ``FitResult.cost["run_equivalents"]``;
* ``default``: ``clr.range_test(...).suggest()`` (the loss rule) ->
  ``answer.optimizer(factory, num_steps=N)`` (triangular CLR, 4 cycles,
  momentum cycled inversely) -> ``clr.train``; cost (range-test steps +
  N) / N;
* ``fastai``: the valley suggestion of the same range test (fastai's
  ``lr_find().valley``) as the peak of fastai's ``fit_one_cycle``
  (pct_start 0.25, div 25, div_final 1e5, cosine, momentum 0.95-0.85-0.95);
* ``torch-lr-finder``: its suggestion (steepest descent of the smoothed
  loss by index, ``np.gradient``, 10 points skipped at the start and 5 at
  the end) of the same range test as ``max_lr``, ``base_lr = max_lr / 4``
  (Smith 2017's rule when only the max is known) and PyTorch ``CyclicLR``'s
  defaults otherwise (triangular, momentum cycled 0.8-0.9), 4 cycles;
* ``schedule-free``: ``optax.contrib.schedule_free_sgd`` (SGD tasks) /
  ``schedule_free_adamw`` (Adam tasks) at their default LR (1.0 / 0.0025)
  with a linear warmup over the first 5 % of the budget (the optax docs'
  "warmup_constant" usage); evaluated at ``schedule_free_eval_params`` (x),
  which ``clr.train`` cannot do, so it runs in a plain jitted loop here on
  the same batches with the same evaluation points (BatchNorm statistics
  are the running ones collected at y);
* ``prodigy``: ``optax.contrib.prodigy()`` (defaults: LR 1.0, constant),
  trained with ``clr.train``; ``prodigy-sched``: with the schedule its
  docstring recommends (linear warmup over 10 %, then linear decay to 0;
  ``safeguard_warmup=True``, as its authors advise with a warmup);
* (``--rule-variants``, e.g. ``4,8,16``) ``rule/d``: the default answer
  with the loss rule's max divisor ``d`` instead of the rule book's (4 for
  SGD, 16 for Adam; both bounds scaled by their ratio), trained like
  ``default``;
* (``--fit-variants``, e.g. ``scale=0.25``) ``fit[...]``: ``clr.fit``
  with other constants; ``scale=s`` puts the default 12 candidates around
  ``s`` x fit's scale (read off the default fit's own ramp, whose steps
  are counted in its cost), i.e. the scale's max divisor ``4 / s``.

Quality = best validation metric of the method ÷ best of the grid
(accuracy); grid's ÷ method's (regression MSE); grid's perplexity ÷
method's (language models). >= 1 means as good as the grid's best.

  python benchmarks/bench_suggestions.py                 # 10 tasks x 5 seeds
  python benchmarks/bench_suggestions.py --quick         # 2 tasks, 1 seed, tiny
  python benchmarks/bench_suggestions.py --tasks conv-sgd-b32 --seeds 2
  # keep every finished task-seed (resumable), then add methods to those
  # rows without training the grid and the rest again:
  python benchmarks/bench_suggestions.py --rows-file rows.jsonl
  python benchmarks/bench_suggestions.py --rows-file rows.jsonl \
      --extra-into more.jsonl --fit-variants "eta=2" --rule-variants ""

The quality tables of section 6 of benchmarks/README.md come from the
first command (no variants: the defaults). Its "Constants" table came from
an earlier run at commit 49cbdab (divisor 4 for every optimizer, fit's
candidates around the blow-up / 4) with ``--rule-variants 8,16
--fit-variants "scale=0.25;eta=2;scale=0.25,eta=2"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _tasks  # noqa: E402

import optax_clr as clr  # noqa: E402
from optax_clr._serialize import jsonable  # noqa: E402
from optax_clr.drivers import _fit  # noqa: E402
from optax_clr.suggestions import _rules  # noqa: E402
from optax_clr.suggestions._answer import Answer  # noqa: E402

EVALS = 6             # evaluations per run (every budget / 6 steps)
CLR_CYCLES = 4        # the answers' cycles over the budget (the default)
SF_WARMUP = 0.05      # schedule-free warmup, fraction of the budget
PRODIGY_WARMUP = 0.10
METHODS = ("fit", "default", "fastai", "torch-lr-finder", "schedule-free",
           "prodigy", "prodigy-sched")
GOALS = {"fit": 0.99, "default": 0.95, "spread": 2.0}
QUICK_TASKS = ("tabular-sgd-b128", "regression-sgd-b32")


# ----------------------------------------------------------------------------
# Scores.


def best_of(values: Any, higher: bool) -> float:
  """The best finite value (NaN when none)."""
  v = np.asarray(values, np.float64).ravel()
  v = v[np.isfinite(v)]
  if not v.size:
    return float("nan")
  return float(v.max() if higher else v.min())


def quality(task: _tasks.Task | str, value: float, best: float) -> float:
  """``value`` against the grid's ``best`` (>= 1: as good); 0 when the
  method produced no finite metric. ``task``: a Task or its
  ``quality_kind``."""
  kind = task if isinstance(task, str) else task.quality_kind
  if value is None or best is None:
    return 0.0
  if not np.isfinite(value) or not np.isfinite(best):
    return 0.0
  if kind == "accuracy":
    return value / best
  if kind == "perplexity":
    return float(np.exp(best - value))
  return best / value


def final_quality(row: dict[str, Any], name: str) -> float:
  """The quality of the method's model at the end of the budget (its last
  evaluation; 0 when the run stopped early or has no curve): what the
  returned model scores, as against the best during training."""
  curve = (row.get("curves") or {}).get(name)
  if not curve or len(curve) < EVALS:
    return 0.0
  return quality(row["quality_kind"], curve[-1], row["grid_best"])


# ----------------------------------------------------------------------------
# Training: clr.train at 6 evaluation points; schedule-free in a plain loop.


class Runner:
  """Trains for a task's budget and keeps what may be shared between seeds
  (the same optax objects find their compiled programs again)."""

  def __init__(self):
    self._tx: dict[tuple, Any] = {}
    self._sf: dict[str, Any] = {}

  def tx(self, key: tuple, make: Any) -> Any:
    if key not in self._tx:
      self._tx[key] = make()
    return self._tx[key]

  def train(self, task: _tasks.Task, seed: int, tx: Any
            ) -> tuple[float, list[float], str]:
    """``clr.train`` for the budget; (best metric, the 6 values, stop)."""
    _, h = clr.train(task.make_model(seed), task.loss_fn, task.train,
                     optimizer=tx, num_epochs=EVALS,
                     steps_per_epoch=task.budget // EVALS,
                     val_data=task.val, batch_size=task.batch_size,
                     seed=seed, progress=False, warn=False)
    vals = np.asarray(h.eval_metrics.get(task.metric, []), np.float64)
    return (best_of(vals, task.higher_is_better), vals.tolist(),
            h.stop_reason)

  # Schedule-free: the same batches and evaluation points as clr.train,
  # evaluated at schedule_free_eval_params.

  def _sf_fns(self, task: _tasks.Task, model: Any, tx: Any):
    train_m = nnx.clone(model)
    train_m.train()
    eval_m = nnx.clone(model)
    eval_m.eval()
    gdef, params, rest = nnx.split(train_m, nnx.Param, ...)
    edef = nnx.split(eval_m, nnx.Param, ...)[0]
    cached = self._sf.get(task.name)
    if cached is not None and cached[0] == (gdef, edef):
      return cached[1], params, rest

    def loss_of(p, r, batch):
      m = nnx.merge(gdef, p, r, copy=True)
      out = task.loss_fn(m, batch)
      loss = out[0] if isinstance(out, tuple) else out
      return loss, nnx.split(m, nnx.Param, ...)[2]

    def step(p, r, s, batch):
      (loss, r), g = jax.value_and_grad(loss_of, has_aux=True)(p, r, batch)
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), r, s, loss

    def evaluate(p, r, s, val):
      out = {}
      for name, q in (("x", optax.contrib.schedule_free_eval_params(s, p)),
                      ("y", p)):
        res = task.loss_fn(nnx.merge(edef, q, r, copy=True), val)
        loss, aux = res if isinstance(res, tuple) else (res, {})
        out[name] = {"loss": loss, **aux}
      return out

    fns = (jax.jit(step), jax.jit(evaluate))
    self._sf[task.name] = ((gdef, edef), fns)
    return fns, params, rest

  def train_sf(self, task: _tasks.Task, seed: int, tx: Any
               ) -> tuple[float, list[float], float]:
    """(best metric at x, the 6 values at x, best at y)."""
    model = task.make_model(seed)
    (step, evaluate), p, r = self._sf_fns(task, model, tx)
    s = tx.init(p)
    batches = _common.epoch_batches(task.train, task.batch_size, seed,
                                    task.budget)
    every = task.budget // EVALS
    xs, ys = [], []
    for i, batch in enumerate(batches):
      p, r, s, loss = step(p, r, s, batch)
      if (i + 1) % every == 0:
        if not np.isfinite(float(loss)):
          break
        m = evaluate(p, r, s, task.val)
        xs.append(float(m["x"][task.metric]))
        ys.append(float(m["y"][task.metric]))
    return (best_of(xs, task.higher_is_better), xs,
            best_of(ys, task.higher_is_better))


# ----------------------------------------------------------------------------
# The peers' readings of a range test.


def torch_lr_finder_rule(rt: clr.RangeTestResult) -> float | None:
  """torch-lr-finder's suggestion: min of ``np.gradient`` of the smoothed
  loss by index, after skipping 10 points at the start and 5 at the end
  (its ``plot(suggest_lr=True)``), up to the first non-finite loss."""
  loss = np.where(np.isfinite(rt.losses), rt.smoothed_losses, np.nan)
  bad = np.flatnonzero(~np.isfinite(loss))
  stop = bad[0] if bad.size else loss.size
  lo, hi = 10, min(stop, loss.size - 5)
  if hi - lo < 3:
    return None
  grad = np.gradient(loss[lo:hi])
  return float(rt.lrs[lo + int(np.argmin(grad))])


def fastai_tx(task: _tasks.Task, peak: float) -> Any:
  """fastai's ``fit_one_cycle(lr_max=peak)``: pct_start 0.25, div 25,
  div_final 1e5, cosine, momentum 0.95 -> 0.85 -> 0.95."""
  n = task.budget
  lr = clr.one_cycle_schedule(peak, n, pct_start=0.25, div_factor=25.0,
                              final_div_factor=1e5)
  mom = clr.one_cycle_momentum_schedule(n, pct_start=0.25,
                                        base_momentum=0.85,
                                        max_momentum=0.95)
  return clr.cyclic_optimizer(task.optimizer, learning_rate=lr, momentum=mom)


def torch_clr_tx(task: _tasks.Task, top: float) -> Any:
  """PyTorch ``CyclicLR(base_lr=top / 4, max_lr=top)``, triangular,
  momentum cycled 0.8-0.9 (its defaults), ``CLR_CYCLES`` cycles."""
  up = task.budget // (2 * CLR_CYCLES)
  return clr.cyclic_optimizer(
      task.optimizer, learning_rate=clr.cyclic_schedule(top / 4, top, up),
      momentum=clr.cyclic_momentum_schedule(0.8, 0.9, up))


def schedule_free_tx(task: _tasks.Task) -> Any:
  warm = max(1, int(SF_WARMUP * task.budget))
  if task.optimizer_name == "sgd":
    return optax.contrib.schedule_free_sgd(warmup_steps=warm)
  return optax.contrib.schedule_free_adamw(warmup_steps=warm)


def prodigy_sched_tx(task: _tasks.Task) -> Any:
  warm = max(1, int(PRODIGY_WARMUP * task.budget))
  sched = optax.join_schedules(
      [optax.linear_schedule(0.0, 1.0, warm),
       optax.linear_schedule(1.0, 0.0, task.budget - warm)], [warm])
  # safeguard_warmup: Prodigy's advice with a warmup (the LR is 0 at step 0,
  # and without it the D estimate divides by it).
  return optax.contrib.prodigy(learning_rate=sched, safeguard_warmup=True)


def parse_variants(text: str | None) -> list[dict[str, Any]]:
  """``"cycles=4;eta=3,cycles=4"`` -> ``[{"cycles": 4}, {"eta": 3,
  "cycles": 4}]`` (variants split by ``;``, fields by ``,``)."""
  out = []
  for part in (text or "").split(";"):
    part = part.strip()
    if not part:
      continue
    kv = {}
    for field in part.split(","):
      k, v = field.split("=")
      kv[k.strip()] = int(v) if v.strip().isdigit() else float(v)
    out.append(kv)
  return out


def variant_name(kv: dict[str, Any]) -> str:
  return "fit[" + ",".join(f"{k}={v}" for k, v in kv.items()) + "]"


@dataclasses.dataclass(frozen=True)
class Bounds(Answer):
  """CLR bounds as an answer (``.optimizer(factory, num_steps=...)``)."""
  base_lr: float
  max_lr: float
  rule: str = ""


def default_divisor(task: _tasks.Task) -> float:
  """The loss rule's max divisor for the task's optimizer (the rule book's
  ``MAX_DIVISOR``: 4 for SGD, 16 for Adam)."""
  return _rules.MAX_DIVISOR[task.optimizer_name == "adam"]


def rule_variant_tx(task: _tasks.Task, base: float, top: float,
                    divisor: float) -> Any:
  """The default answer with the loss rule's max divisor ``divisor``
  instead of the default's (``base = max / 4`` kept), as
  ``answer.optimizer`` builds it."""
  scale = default_divisor(task) / divisor
  return Bounds(base * scale, top * scale).optimizer(task.optimizer,
                                                     num_steps=task.budget)


def run_fit(task: _tasks.Task, seed: int, kw: dict[str, Any],
            row: dict[str, Any], metric: dict[str, float],
            curves: dict[str, list[float]]) -> None:
  """``clr.fit`` with ``kw`` (none: its defaults) for the budget; its
  fields into ``row``. ``scale=s`` in ``kw``: the default candidates around
  ``s`` x the default fit's scale (``row["fit_scale"]``, read off its own
  ramp, whose steps count in the cost as fit counts them)."""
  n = task.budget
  name = variant_name(kw) if kw else "fit"
  kw = dict(kw)
  scale = kw.pop("scale", None)
  if scale is not None:
    kw["candidates"] = _fit.candidates_around(row["fit_scale"] * scale)
  res = clr.fit(task.make_model(seed), task.loss_fn, task.train,
                val_data=task.val, num_steps=n, optimizer=task.optimizer,
                batch_size=task.batch_size, seed=seed, progress=False, **kw)
  vals = np.asarray(res.history.eval_metrics.get(task.metric, []),
                    np.float64)
  metric[name] = best_of(vals, task.higher_is_better)
  curves[name] = vals.tolist()
  cost = dict(res.cost)
  if scale is not None:
    cost["range_test_steps"] = row["fit_range_test_steps"]
    cost["run_equivalents"] = (cost["range_test_steps"]
                               + cost["candidate_steps"]) / n
  row[f"{name}_policy"] = res.policy
  row[f"{name}_base_lr"] = res.base_lr
  row[f"{name}_max_lr"] = res.max_lr
  row[f"{name}_cost"] = float(cost["run_equivalents"])
  row[f"{name}_cost_detail"] = cost
  row[f"{name}_table"] = [
      {k: r[k] for k in ("name", "stopped_at", "metrics", "status")}
      for r in res.table]
  if name == "fit":
    row["fit_scale"] = _fit._scale(res.range_test)[0]
    row["fit_range_test_steps"] = int(len(res.range_test.lrs))
    row["fit_scale_rule"] = res.rule


def regrid(task: _tasks.Task, row: dict[str, Any], runner: Runner,
           curves: dict[str, list[float]]) -> None:
  """Brings ``row``'s grid to the task's current ``grid``: the LRs it
  lacks are trained, the ones it has are kept (same runs, deterministic),
  and every method's quality is recomputed against the new best."""
  old = dict(zip(row["grid_lrs"], row["grid_values"]))
  lrs, values = [], []
  for lr in task.grid:
    have = [v for k, v in old.items() if abs(k / lr - 1) < 1e-6]
    if have:
      value = np.nan if have[0] is None else have[0]
    else:
      tx = runner.tx((task.name, "grid", float(lr)),
                     lambda lr=lr: task.optimizer(float(lr)))
      value, vals, _ = runner.train(task, row["seed"], tx)
      curves[f"grid {lr:.3g}"] = vals
    lrs.append(float(lr))
    values.append(value)
  g = np.asarray(values, np.float64)
  score = np.where(np.isfinite(g), g if task.higher_is_better else -g,
                   -np.inf)
  i = int(np.argmax(score))
  row.update(grid_lrs=lrs, grid_values=g.tolist(), grid_best=float(g[i]),
             grid_best_lr=lrs[i], grid_best_interior=0 < i < len(lrs) - 1)
  for key in list(row):
    if key.endswith("_metric") and key != "metric":
      name = key[:-len("_metric")]
      row[f"{name}_quality"] = quality(task, row[key], row["grid_best"])


def extra_methods(task: _tasks.Task, row: dict[str, Any], runner: Runner,
                  rule_variants: list[float], fit_variants: list[dict],
                  log: Any = print, regrid_rows: bool = False
                  ) -> dict[str, Any]:
  """Adds methods to a finished row without training anything else: rule
  variants from its default answer, fit variants from its fit scale; the
  quality against the row's own grid (``regrid_rows``: first brought to
  the task's current grid, :func:`regrid`)."""
  row = dict(row)
  seed = row["seed"]
  metric: dict[str, float] = {}
  curves = dict(row.get("curves") or {})
  if regrid_rows and list(row["grid_lrs"]) != list(task.grid):
    regrid(task, row, runner, curves)
  row.setdefault("fit_range_test_steps",
                 (row.get("fit_cost_detail") or {}).get("range_test_steps"))
  t0 = time.perf_counter()
  for kw in fit_variants:
    run_fit(task, seed, kw, row, metric, curves)
  for d in rule_variants:
    name = f"rule/{d:g}"
    row[f"{name}_cost"] = (row["range_test_steps"] + task.budget) / (
        task.budget)
    if row.get("default_max_lr") is None:
      metric[name] = float("nan")
      row[f"{name}_max_lr"] = None
      continue
    row[f"{name}_max_lr"] = row["default_max_lr"] * default_divisor(
        task) / d
    best, vals, _ = runner.train(task, seed, rule_variant_tx(
        task, row["default_base_lr"], row["default_max_lr"], d))
    metric[name], curves[name] = best, vals
  for name, value in metric.items():
    row[f"{name}_metric"] = value
    row[f"{name}_quality"] = quality(task, value, row["grid_best"])
  row["curves"] = curves
  row.setdefault("extra_seconds", 0.0)
  row["extra_seconds"] += round(time.perf_counter() - t0, 1)
  log(f"{task.name} seed {seed} (extra): grid best {row['grid_best']:.4g}"
      f" at {row['grid_best_lr']:.3g}; " + ", ".join(
          f"{m} {row[f'{m}_quality']:.3f}" for m in metric))
  return row


# ----------------------------------------------------------------------------
# One task, one seed.


def one_seed(task: _tasks.Task, seed: int, runner: Runner,
             rule_variants: list[float], fit_variants: list[dict],
             log: Any = print) -> dict[str, Any]:
  t_start, cpu_start = time.perf_counter(), time.process_time()
  n = task.budget
  common = dict(batch_size=task.batch_size, seed=seed, progress=False)
  row: dict[str, Any] = {
      "task": task.name, "kind": task.kind, "half": task.half,
      "optimizer": task.optimizer_name, "batch_size": task.batch_size,
      "budget": n, "seed": seed, "metric": task.metric,
      "quality_kind": task.quality_kind}
  seconds: dict[str, float] = {}
  metric: dict[str, float] = {}
  curves: dict[str, list[float]] = {}

  def timed(name, fn):
    t0 = time.perf_counter()
    out = fn()
    seconds[name] = round(time.perf_counter() - t0, 2)
    return out

  # The dense fixed-LR grid.
  grid = np.asarray(task.grid)
  gvals = []
  t0 = time.perf_counter()
  for lr in grid:
    tx = runner.tx((task.name, "grid", float(lr)),
                   lambda lr=lr: task.optimizer(float(lr)))
    best, vals, _ = runner.train(task, seed, tx)
    gvals.append(best)
    curves[f"grid {lr:.3g}"] = vals
  seconds["grid"] = round(time.perf_counter() - t0, 2)
  gvals = np.asarray(gvals)
  score = gvals if task.higher_is_better else -gvals
  i_best = int(np.nanargmax(np.where(np.isfinite(score), score, -np.inf)))
  grid_best = float(gvals[i_best])
  row.update(grid_best=grid_best, grid_best_lr=float(grid[i_best]),
             grid_best_interior=0 < i_best < grid.size - 1,
             grid_lrs=grid.tolist(), grid_values=gvals.tolist())

  # clr.fit with its defaults (and variants).
  for kw in [{}] + fit_variants:
    timed(variant_name(kw) if kw else "fit", lambda kw=kw: run_fit(
        task, seed, kw, row, metric, curves))

  # The plain range test and the answers read off it.
  rt = timed("range_test", lambda: clr.range_test(
      task.make_model(seed), task.loss_fn, task.train,
      optimizer=task.optimizer, **common))
  ans = rt.suggest()
  rt_steps = int(len(rt.lrs))
  answer_cost = (rt_steps + n) / n
  row.update(range_test_steps=rt_steps, range_test_stop=rt.stop_reason,
             default_base_lr=ans.base_lr, default_max_lr=ans.max_lr,
             default_rule=ans.rule, valley_lr=ans.valley.lr,
             steepest_lr=ans.steepest.lr)
  torch_top = torch_lr_finder_rule(rt)
  row["torch-lr-finder_max_lr"] = torch_top
  row["fastai_max_lr"] = ans.valley.lr
  answers = {
      "default": (None if ans.max_lr is None else
                  lambda: ans.optimizer(task.optimizer, num_steps=n)),
      "fastai": (None if ans.valley.lr is None else
                 lambda: fastai_tx(task, ans.valley.lr)),
      "torch-lr-finder": (None if torch_top is None else
                          lambda: torch_clr_tx(task, torch_top)),
  }
  for d in rule_variants:
    name = f"rule/{d:g}"
    answers[name] = (None if ans.max_lr is None else
                     lambda d=d: rule_variant_tx(task, ans.base_lr,
                                                 ans.max_lr, d))
    row[f"{name}_max_lr"] = (None if ans.max_lr is None
                             else ans.max_lr * default_divisor(task) / d)
  for name, make in answers.items():
    row[f"{name}_cost"] = answer_cost
    if make is None:
      metric[name] = float("nan")
      continue
    best, vals, _ = timed(name, lambda make=make: runner.train(
        task, seed, make()))
    metric[name] = best
    curves[name] = vals

  # The LR-free optimizers.
  sf = runner.tx((task.name, "schedule-free"), lambda: schedule_free_tx(task))
  best, vals, at_y = timed("schedule-free",
                           lambda: runner.train_sf(task, seed, sf))
  metric["schedule-free"], curves["schedule-free"] = best, vals
  row["schedule-free_at_y"] = at_y
  for name, make in (("prodigy", optax.contrib.prodigy),
                     ("prodigy-sched", lambda: prodigy_sched_tx(task))):
    tx = runner.tx((task.name, name), make)
    best, vals, _ = timed(name, lambda tx=tx: runner.train(task, seed, tx))
    metric[name], curves[name] = best, vals
  for name in ("schedule-free", "prodigy", "prodigy-sched"):
    row[f"{name}_cost"] = 1.0

  for name, value in metric.items():
    row[f"{name}_metric"] = value
    row[f"{name}_quality"] = quality(task, value, grid_best)
  row["curves"] = curves
  row["seconds"] = seconds
  row["seconds_total"] = round(time.perf_counter() - t_start, 1)
  row["cpu_seconds"] = round(time.process_time() - cpu_start, 1)
  row["process"] = _process_state()
  log(f"{task.name} seed {seed} ({row['seconds_total']:.0f} s): grid best "
      f"{grid_best:.4g} at {grid[i_best]:.3g}; " + ", ".join(
          f"{m} {row[f'{m}_quality']:.3f}" for m in metric))
  return row


# ----------------------------------------------------------------------------
# Summaries, goals, tables.


def method_names(rows: list[dict[str, Any]]) -> list[str]:
  names = []
  for r in rows:
    for k in r:
      if k.endswith("_quality") and k[:-8] not in names:
        names.append(k[:-8])
  return names


def spread(values: list[Any]) -> float | None:
  v = np.array([x for x in values if x is not None and np.isfinite(x)],
               np.float64)
  return float(v.max() / v.min()) if v.size else None


def grid_tuned(rows: list[dict[str, Any]]) -> list[float]:
  """Per seed, the quality of the fixed LR that is best on average over
  the task's *other* seeds (leave-one-seed-out): a fixed LR tuned on the
  grid, without seeing this seed. How far below 1 it falls is the noise
  of the reference itself (the grid's best is a max over 13 x 6 noisy
  evaluations of this seed)."""
  qs = [[quality(r["quality_kind"], v, r["grid_best"])
         for v in r["grid_values"]] for r in rows]
  out = []
  for i, q in enumerate(qs):
    others = [o for j, o in enumerate(qs) if j != i]
    mean = np.mean(np.array(others, np.float64), axis=0)
    out.append(float(q[int(np.argmax(mean))]))
  return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
  out = {}
  for task in dict.fromkeys(r["task"] for r in rows):
    mine = [r for r in rows if r["task"] == task]
    entry = {"kind": mine[0]["kind"], "half": mine[0]["half"],
             "optimizer": mine[0]["optimizer"],
             "batch_size": mine[0]["batch_size"],
             "budget": mine[0]["budget"], "seeds": len(mine),
             "grid_best_interior": all(r["grid_best_interior"]
                                       for r in mine),
             "methods": {}}
    for name in method_names(mine):
      q = np.array([r.get(f"{name}_quality", np.nan) for r in mine])
      cost = np.array([r.get(f"{name}_cost", np.nan) for r in mine],
                      np.float64)
      m = {"quality_mean": float(np.nanmean(q)),
           "quality_min": float(np.nanmin(q)),
           "cost_mean": float(np.nanmean(cost))}
      if all(r.get("curves") for r in mine):
        fq = np.array([final_quality(r, name) for r in mine])
        m["final_quality_mean"] = float(fq.mean())
        m["final_quality_min"] = float(fq.min())
      if f"{name}_max_lr" in mine[0]:
        m["max_lr_spread"] = spread([r.get(f"{name}_max_lr")
                                     for r in mine])
        m["max_lr_median"] = float(np.nanmedian(
            [np.nan if r.get(f"{name}_max_lr") is None
             else r[f"{name}_max_lr"] for r in mine]))
      entry["methods"][name] = m
    if len(mine) >= 2:
      q = np.array(grid_tuned(mine))
      entry["methods"]["grid-tuned LR"] = {
          "quality_mean": float(q.mean()), "quality_min": float(q.min()),
          "cost_mean": float(len(mine[0]["grid_values"]))}
    out[task] = entry
  return out


def goals(summary: dict[str, Any], half: str | None = None
          ) -> dict[str, Any]:
  """The issue's goals over the tasks of ``half`` (None: all)."""
  tasks = {t: e for t, e in summary.items()
           if half is None or e["half"] == half}
  if not tasks:
    return {}
  fit = {t: e["methods"]["fit"]["quality_min"] for t, e in tasks.items()
         if "fit" in e["methods"]}
  dflt = {t: e["methods"]["default"]["quality_min"]
          for t, e in tasks.items() if "default" in e["methods"]}
  spr = {t: e["methods"]["default"].get("max_lr_spread")
         for t, e in tasks.items() if "default" in e["methods"]}
  return {
      "fit_min_quality": fit,
      "fit_goal_met": bool(fit) and all(v >= GOALS["fit"]
                                        for v in fit.values()),
      "default_min_quality": dflt,
      "default_goal_met": bool(dflt) and all(v >= GOALS["default"]
                                             for v in dflt.values()),
      "default_spread": spr,
      "spread_goal_met": bool(spr) and all(
          v is not None and v <= GOALS["spread"] for v in spr.values()),
  }


def print_tables(summary: dict[str, Any], rows: list[dict[str, Any]]
                 ) -> None:
  names = method_names(rows) + ["grid-tuned LR"]
  for task, e in summary.items():
    print(f"\n### {task} ({e['half']} half; {e['kind']}, "
          f"{e['optimizer']}, batch {e['batch_size']}, {e['budget']} "
          f"steps, {e['seeds']} seeds; grid best interior: "
          f"{e['grid_best_interior']})")
    table = []
    for name in names:
      m = e["methods"].get(name)
      if m is None:
        continue
      table.append({"method": name, "quality mean": m["quality_mean"],
                    "quality min": m["quality_min"],
                    "final model: mean": m.get("final_quality_mean", ""),
                    "final: min": m.get("final_quality_min", ""),
                    "max_lr spread": m.get("max_lr_spread", ""),
                    "cost (runs)": m["cost_mean"]})
    _common.print_table(table)
  for half in (_tasks.TUNE, _tasks.REPORT):
    tasks = [t for t, e in summary.items() if e["half"] == half]
    if not tasks:
      continue
    print(f"\n## {half} half: quality mean / min over seeds")
    table = []
    for t in tasks:
      e = summary[t]
      r = {"task": t}
      for name in names:
        m = e["methods"].get(name)
        if m is not None:
          r[name] = f"{m['quality_mean']:.3f} / {m['quality_min']:.3f}"
      d, f = e["methods"].get("default", {}), e["methods"].get("fit", {})
      r["spread default"] = d.get("max_lr_spread")
      r["spread fit"] = f.get("max_lr_spread")
      r["cost fit"] = f.get("cost_mean")
      r["cost default"] = d.get("cost_mean")
      table.append(r)
    r = {"task": "**mean / worst**"}
    for name in names:
      ms = [summary[t]["methods"][name] for t in tasks
            if name in summary[t]["methods"]]
      if ms:
        r[name] = (f"{np.mean([m['quality_mean'] for m in ms]):.3f} / "
                   f"{min(m['quality_min'] for m in ms):.3f}")
    table.append(r)
    _common.print_table(table)
    g = goals(summary, half)
    print(f"goals ({half}): fit >= {GOALS['fit']} on every seed: "
          f"{'met' if g['fit_goal_met'] else 'NOT met'}; default >= "
          f"{GOALS['default']}: {'met' if g['default_goal_met'] else 'NOT met'}"
          f"; default spread <= {GOALS['spread']}x: "
          f"{'met' if g['spread_goal_met'] else 'NOT met'}")


# ----------------------------------------------------------------------------


def load_rows(path: str | None) -> list[dict[str, Any]]:
  if not path or not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--tasks", nargs="*", default=None,
                  help="task names (default: all ten)")
  ap.add_argument("--half", choices=(_tasks.TUNE, _tasks.REPORT),
                  default=None, help="only the tasks of one half")
  ap.add_argument("--seeds", type=int, default=5)
  ap.add_argument("--first-seed", type=int, default=0)
  ap.add_argument("--quick", action="store_true",
                  help=f"smoke run: {', '.join(QUICK_TASKS)}, 1 seed, "
                  "budget 48, a 12-LR grid, no variants (< 3 minutes); "
                  "writes results/suggestions_quick.*")
  ap.add_argument("--rule-variants", default="",
                  help="max divisors of the loss rule to try besides the "
                  "rule book's (4 SGD, 16 Adam), e.g. '4,8,16' "
                  "(comma-separated; '' for none)")
  ap.add_argument("--fit-variants", default="",
                  help="fit constants to try besides the defaults, e.g. "
                  "'cycles=4;eta=3;scale=0.25' (variants split by ';'; "
                  "scale=s: the default candidates around s x fit's scale, "
                  "read off the default fit's own ramp); '' for none")
  ap.add_argument("--rows-file", default=None,
                  help="append every finished task-seed row here (JSON "
                  "lines) and skip the ones already in it (resume)")
  ap.add_argument("--from-rows", action="store_true",
                  help="train nothing: summarize the rows of --rows-file "
                  "and rewrite the results (machine and config kept from "
                  "the results file the run wrote, if any)")
  ap.add_argument("--extra-into", default=None, metavar="ROWS",
                  help="train only the given --rule-variants/--fit-variants "
                  "for the rows of --rows-file (their grids, answers and "
                  "fit scales reused) and append the merged rows to ROWS "
                  "(resumable); then summarize ROWS as --from-rows does")
  ap.add_argument("--regrid", action="store_true",
                  help="with --extra-into: first train the grid LRs a row "
                  "lacks (the task's grid changed) and recompute every "
                  "quality against the new best")
  ap.add_argument("--cache-dir", default=None,
                  help="persistent XLA compilation cache directory (reruns "
                  "skip compilation); default: none")
  ap.add_argument("--name", default=None,
                  help="results name (default suggestions, or "
                  "suggestions_quick with --quick)")
  args = ap.parse_args(argv)
  warnings.filterwarnings("ignore", category=RuntimeWarning)
  if args.cache_dir:
    clr.enable_compilation_cache(args.cache_dir)
  machine = _common.machine_info()
  if args.tasks:
    tasks = [_tasks.by_name(n) for n in args.tasks]
  elif args.quick:
    tasks = [_tasks.by_name(n) for n in QUICK_TASKS]
  else:
    tasks = list(_tasks.all_tasks())
  if args.half:
    tasks = [t for t in tasks if t.half == args.half]
  seeds = args.seeds
  rule_variants = [float(x) for x in args.rule_variants.split(",") if x]
  fit_variants = parse_variants(args.fit_variants)
  if args.quick:
    seeds = 1
    rule_variants, fit_variants = [], []
    tasks = [t.replace(budget=48, grid=_tasks.lr_grid(
        t.grid[0], t.grid[-1], 12)) for t in tasks]
  name = args.name or ("suggestions_quick" if args.quick else "suggestions")
  git_start = _git_state()  # the library this process imports
  done = load_rows(args.rows_file)
  git_of_run = None
  if args.extra_into:
    # Every merged row records the library it was extended with.
    merged = {(r["task"], r["seed"]) for r in load_rows(args.extra_into)}
    for task in tasks:
      runner = Runner()
      for r in done:
        if r["task"] != task.name or (r["task"], r["seed"]) in merged:
          continue
        new = extra_methods(task, r, runner, rule_variants, fit_variants,
                            regrid_rows=args.regrid)
        new["extra_git"] = git_start
        with open(args.extra_into, "a", encoding="utf-8") as f:
          f.write(json.dumps(jsonable(new)) + "\n")
      jax.clear_caches()
    done = load_rows(args.extra_into)
    args.from_rows = True
  if args.from_rows:
    if not done:
      raise SystemExit("--from-rows needs a --rows-file with rows")
    previous = os.path.join(_common.RESULTS_DIR, f"{name}.json")
    if os.path.exists(previous):
      with open(previous, encoding="utf-8") as f:
        old = json.load(f)
      machine = dict(old["machine"])
      git_of_run = (old.get("config", {}).get("git_of_run")
                    or old.get("config", {}).get("git"))
      machine.pop("loadavg_end", None)
      machine.setdefault("run_loadavg_end",
                         old["machine"].get("loadavg_end"))
      machine["resummarized"] = _common.machine_info()["date"]
  have = {(r["task"], r["seed"]) for r in done}
  runner = Runner()
  rows = [r for r in done if r["task"] in {t.name for t in tasks}]
  t0 = time.perf_counter()
  for task in tasks if not args.from_rows else []:
    for seed in range(args.first_seed, args.first_seed + seeds):
      if (task.name, seed) in have:
        continue
      row = one_seed(task, seed, runner, rule_variants, fit_variants)
      rows.append(row)
      if args.rows_file:
        with open(args.rows_file, "a", encoding="utf-8") as f:
          f.write(json.dumps(jsonable(row)) + "\n")
    # The next task shares no compiled program with this one; keeping them
    # all would exhaust the process's memory maps (_process_state).
    jax.clear_caches()
    runner = Runner()
  wall = time.perf_counter() - t0
  order = {t.name: i for i, t in enumerate(tasks)}
  rows.sort(key=lambda r: (order.get(r["task"], 99), r["seed"]))
  summary = summarize(rows)
  print_tables(summary, rows)
  result = {"tasks": summary,
            "goals": {"all": goals(summary),
                      _tasks.TUNE: goals(summary, _tasks.TUNE),
                      _tasks.REPORT: goals(summary, _tasks.REPORT)},
            "wall_seconds_this_process": round(wall, 1),
            "wall_seconds_of_rows": round(sum(
                r.get("seconds_total") or 0 for r in rows), 1),
            "cpu_seconds_of_rows": round(sum(
                r.get("cpu_seconds") or 0 for r in rows), 1)}
  config = {
      "git": git_start,
      "git_of_run": git_of_run or git_start,
      "quick": args.quick, "seeds": len({r["seed"] for r in rows}),
      "first_seed": args.first_seed,
      "evaluations_per_run": EVALS, "clr_cycles": CLR_CYCLES,
      "schedule_free_warmup": SF_WARMUP, "prodigy_warmup": PRODIGY_WARMUP,
      "rule_variants": rule_variants, "fit_variants": fit_variants,
      "goals": GOALS,
      "tasks": [{"name": t.name, "kind": t.kind, "half": t.half,
                 "optimizer": t.optimizer_name, "batch_size": t.batch_size,
                 "budget": t.budget, "metric": t.metric,
                 "quality": t.quality_kind, "grid": list(t.grid),
                 "train_rows": len(next(iter(t.train.values()))),
                 "val_rows": len(next(iter(t.val.values())))}
                for t in tasks]}
  _common.write_results(name, [_flat(r) for r in rows], result, machine,
                        config)
  # The full rows (curves, fit's tables) next to the flat ones.
  with open(os.path.join(_common.RESULTS_DIR, f"{name}_rows.json"), "w",
            encoding="utf-8") as f:
    json.dump([jsonable(r) for r in rows], f, indent=0)


def _process_state() -> dict[str, Any]:
  """This process's resident memory (MB) and memory maps: every compiled
  XLA program holds a few maps, and a process that keeps hundreds of them
  can reach the kernel's limit (``vm.max_map_count``, 65530 here: LLVM
  then fails with "Cannot allocate memory"), hence ``jax.clear_caches()``
  after each task."""
  out: dict[str, Any] = {}
  try:
    with open("/proc/self/maps", encoding="utf-8") as f:
      out["maps"] = sum(1 for _ in f)
    with open("/proc/self/status", encoding="utf-8") as f:
      for line in f:
        if line.startswith("VmRSS:"):
          out["rss_mb"] = round(int(line.split()[1]) / 1024, 1)
  except OSError:
    pass
  return out


def _git_state() -> dict[str, Any]:
  """The commit the library came from, and whether optax_clr/ had
  uncommitted changes (others edit it concurrently)."""
  import subprocess
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root,
                          capture_output=True, text=True, check=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "optax_clr"],
                           cwd=root, capture_output=True, text=True,
                           check=True)
  except (OSError, subprocess.CalledProcessError):
    return {}
  return {"head": head.stdout.strip(),
          "optax_clr_modified_files": len(dirty.stdout.splitlines())}


def _flat(row: dict[str, Any]) -> dict[str, Any]:
  """A row without the bulky fields (curves, fit's table), for the CSV."""
  return {k: v for k, v in row.items()
          if k not in ("curves", "grid_lrs") and not k.endswith("_table")}


if __name__ == "__main__":
  main()
