"""Population tests vs the loop a user writes, on user-style models (CPU).

The question (issue: "The engine, simpler and never slower than the user's
own loop, on the user's own model"): on a CPU, are the library's population
tests at least as fast as K sequential runs of the loop a user writes, warm
and on their first call?

Models (``_common.USER_MODELS``, written the usual way; seeded synthetic
data of the right shapes where no data set is embedded):

  a  two nnx.Conv 3x3 (16, 32) + nnx.max_pool + nnx.Linear, 28x28x1 (the
     issue's model)
  b  a CNN with nnx.BatchNorm and nnx.Dropout, the loss taking ``rngs``
  c  a character transformer (nnx.MultiHeadAttention, 2 blocks, width 64,
     sequence 64, vocab 65)
  d  an MLP on tabular data
  e  a Flax Linen CNN used as a params pytree (loss calls ``model.apply``)
  f  the bundled CNN (``clr.make_model("cnn")``) on the embedded digits
     (goal: speed-up >= 1.1)

Parts, each against the user's own loop (``_common.UserLoop``: ``nnx.split``
once, ONE ``jax.jit``-ted optax step, the hyperparameters injected
(``optax.inject_hyperparams``) and set in the optimizer state, a Python loop
over the runs and steps fed NumPy batches):

  lr          ``clr.parallel_range_test(model, loss_fn, batches, lrs=K LRs,
              num_steps=N)`` vs K runs of SGD (momentum 0.9), K = 8, 32, 128;
              also the same K runs in PyTorch (models a, d, f; 1 thread by
              default) and the FLOP utilisation
  multi_seed  ``clr.multi_seed_range_test`` (S = 8 seeds, each its own data
              order; ramp 1e-5 -> 0.3, no divergence stop) vs S ramps
  sweep       ``clr.sweep`` with ``optax.adamw`` over 4 learning rates x 2
              weight decays (K = 8) vs K runs
  fit         ``clr.fit(..., candidates=[12], num_steps=N, cycles=6, eta=4)``
              (candidates given: no range test) vs the same 12 candidates'
              schedules trained one after another with the same successive
              halving at cycle ends

Timing: every (model, part, K) runs in a fresh subprocess with an empty
compilation cache (no persistent cache, no optax-clr cache). "first" is the
first call of each in that process (ours first, then the user's; a tiny jit
beforehand takes JAX's own one-time start-up out of both); "warm" is the
best of ``--repeats`` (2) later calls, ours and the user's alternated. The
speed-up is the user's time / ours (above 1: the library is faster).
FLOP utilisation = FLOPs of one step of one copy (XLA cost analysis of the
user's jitted step) x N x K / time, over this machine's float32 2048x2048
matmul rate measured in the same worker. Every row records the load average
before its model, the layout the library chose (``group_size``,
``execution``, ``devices``) and, for deterministic losses, the largest
relative difference between our losses and the user's loop's (same batches,
same LRs).

  python benchmarks/bench_parallel_sweep.py              # full: ~50 min
  python benchmarks/bench_parallel_sweep.py --quick      # smoke: K=8, tiny N
  python benchmarks/bench_parallel_sweep.py --models a,f --parts lr
  python benchmarks/bench_parallel_sweep.py --plan       # steps and estimate

Writes ``results/parallel_sweep.{json,csv}`` (``--quick``:
``parallel_sweep_quick``), after each model.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import _common  # noqa: E402

PARTS = ("lr", "multi_seed", "sweep", "fit")
EXTRAS_K = {"multi_seed": 8, "sweep": 8, "fit": 12}
# fit's layout of the budget, given explicitly to both sides.
FIT_CYCLES, FIT_ETA, FIT_SCALE = 6, 4, 0.05
RAMP = (1e-5, 0.3)  # multi-seed ramp: no NaN, so both sides run every step
LRS = (1e-4, 1.0)   # the parallel test's K LRs, log-spaced (the defaults)
GOAL = {"default": 1.0, "f": 1.1}  # warm speed-up at least this
# First call (fresh process, empty caches) at most this times the user's
# loop's first call (one step compiled, K runs), for K up to FIRST_GOAL_K.
FIRST_GOAL, FIRST_GOAL_K = 3.0, 32


@dataclasses.dataclass(frozen=True)
class ModelPlan:
  """Steps of one model: per K for ``lr``, one count for the other parts;
  ``ms``: estimated ms per copy-step on 2 cores (for the runtime estimate,
  from a few timed steps of the user's loop on the Intel Xeon VM)."""
  steps: dict[int, int]
  extra_steps: int
  ms: float


# K = 128 dominates: fewer steps there (both sides run the same steps).
PLAN = {
    "a": ModelPlan({8: 40, 32: 30, 128: 15}, 30, 20.0),
    "b": ModelPlan({8: 40, 32: 30, 128: 15}, 30, 21.0),
    "c": ModelPlan({8: 200, 32: 40, 128: 10}, 48, 25.0),
    "d": ModelPlan({8: 200, 32: 200, 128: 100}, 120, 0.9),
    "e": ModelPlan({8: 40, 32: 30, 128: 15}, 30, 8.0),
    "f": ModelPlan({8: 30, 32: 30, 128: 30}, 30, 3.6),
}
QUICK_STEPS, QUICK_FIT_STEPS, QUICK_FIT_CYCLES = 3, 8, 2
# Per worker process: imports, data, compilations (both sides), matmul.
PROCESS_OVERHEAD_S = 15.0


# ---------------------------------------------------------------------------
# Worker: one fresh process, parts timed ours vs the user's loop.


class UserSide:
  """The user's code for one part: ``build()`` makes the loop (its jitted
  step), ``work(loop)`` runs every run; the first call does both."""

  def __init__(self, build, work):
    self.build, self.work = build, work
    self.loop = self.last = None

  def first(self):
    self.loop = self.build()
    self.last = self.work(self.loop)

  def warm(self):
    self.last = self.work(self.loop)


def timed_pair(ours, user: UserSide, repeats: int) -> dict:
  """First calls (ours, then the user's), then ``repeats`` alternated warm
  calls; best of."""
  row = {"ours_first_s": _common.time_once(ours),
         "user_first_s": _common.time_once(user.first),
         "first_order": "ours, user"}
  o, u = [], []
  for _ in range(repeats):
    o.append(_common.time_once(ours))
    u.append(_common.time_once(user.warm))
  row.update(ours_warm_s=min(o), user_warm_s=min(u), ours_warm_all=o,
             user_warm_all=u)
  return row


def layout(config: dict) -> dict:
  """The layout a result records (None where it records none)."""
  return {k: config.get(k) for k in ("group_size", "execution", "devices")}


def sgd_tx():
  import optax
  return optax.inject_hyperparams(optax.sgd)(learning_rate=0.1,
                                             momentum=0.9)


def part_lr(task, k: int, n: int, args) -> dict:
  import optax_clr as clr
  batches = task.batches(n, args.seed)
  lrs = np.geomspace(*LRS, k)
  res = {}

  def ours():
    res["r"] = clr.parallel_range_test(task.model, task.loss_fn, batches,
                                       lrs=lrs, num_steps=n, progress=False)
  user = UserSide(
      lambda: _common.UserLoop(task, sgd_tx(), args.seed),
      lambda loop: {i: loop.run(batches, {"learning_rate": lr})
                    for i, lr in enumerate(lrs)})
  row = timed_pair(ours, user, args.repeats)
  row.update(layout(res["r"].config))
  row["loss_max_rel_diff"] = (None if task.random else _common.max_rel_diff(
      res["r"].losses, user.last))
  row["flops_per_step"] = _common.cost_flops(
      user.loop.raw_step, *user.loop.step_args(batches[0]))
  row["matmul_gflops"] = _common.matmul_gflops()
  if task.torch_model is not None and not args.no_torch:
    row.update(torch_runs(task, batches, lrs, args))
  return row


def torch_runs(task, batches, lrs, args) -> dict:
  """The same K runs in PyTorch: one run as warm-up, then best of
  ``--torch-repeats`` timed K-run loops."""
  try:
    _common.set_torch_threads(args.torch_threads)
  except ImportError:
    return {"torch_skipped": "torch is not installed"}
  loop = _common.TorchLoop(task, batches)
  loop.run(lrs[0])
  times = [_common.time_once(lambda: [loop.run(lr) for lr in lrs])
           for _ in range(args.torch_repeats)]
  return {"torch_warm_s": min(times), "torch_threads": args.torch_threads}


def part_multi_seed(task, k: int, n: int, args) -> dict:
  import optax_clr as clr
  seeds = list(range(k))
  ramp = np.geomspace(*RAMP, n).astype(np.float32)
  res = {}

  def ours():
    res["r"] = clr.multi_seed_range_test(
        task.model, task.loss_fn, task.data, seeds=seeds, start_lr=RAMP[0],
        end_lr=RAMP[1], num_steps=n, diverge_threshold=None,
        batch_size=task.batch_size, progress=False)

  def work(loop):
    # Each seed its own data order (the library's documented rule),
    # indexed in the loop as a user's loader would.
    return {s: loop.run(task.batches(n, s), schedule={"learning_rate": ramp},
                        seed=s) for s in seeds}
  user = UserSide(lambda: _common.UserLoop(task, sgd_tx(), args.seed), work)
  row = timed_pair(ours, user, args.repeats)
  r = res["r"]
  row.update(layout(r.config))
  row["steps_recorded_min"] = int(np.min(r.num_recorded))
  row["loss_max_rel_diff"] = (None if task.random else _common.max_rel_diff(
      r.losses, user.last))
  return row


def grid(k: int) -> dict:
  """``k // 2`` learning rates x 2 weight decays (K = 8: 4 x 2)."""
  return {"learning_rate": list(np.geomspace(1e-4, 3e-3, max(1, k // 2))),
          "weight_decay": [1e-4, 1e-2]}


def part_sweep(task, k: int, n: int, args) -> dict:
  import optax
  import optax_clr as clr
  batches = task.batches(n, args.seed)
  hyper = grid(k)
  res = {}

  def ours():
    res["r"] = clr.sweep(task.model, task.loss_fn, batches,
                         optimizer=optax.adamw, hyperparams=hyper,
                         num_steps=n, progress=False)

  def build():
    tx = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3,
                                               weight_decay=1e-4)
    return _common.UserLoop(task, tx, args.seed)

  def work(loop):  # the grid in the library's order (itertools.product)
    return {i: loop.run(batches, {"learning_rate": lr, "weight_decay": wd})
            for i, (lr, wd) in enumerate(
                (lr, wd) for lr in hyper["learning_rate"]
                for wd in hyper["weight_decay"])}
  user = UserSide(build, work)
  row = timed_pair(ours, user, args.repeats)
  row.update(layout(res["r"].config))
  row["K"] = int(res["r"].losses.shape[0])
  row["loss_max_rel_diff"] = (None if task.random else _common.max_rel_diff(
      res["r"].losses, user.last))
  return row


def fit_cycles(n: int, cycles: int) -> int:
  """The cycles fit runs in ``n`` steps: ``cycles`` capped so that each is at
  least 4 steps (fit's cap, drivers/_fit._budget)."""
  return max(1, min(cycles, n // 4))


def candidate_schedule(c, n: int, cycles: int) -> dict[str, np.ndarray]:
  """A candidate's LR and momentum for each of ``n`` steps, with the public
  schedules (momentum cycled 0.95 -> 0.85 inversely; 0.9 when fixed)."""
  import jax
  import jax.numpy as jnp
  import optax_clr as clr
  cycles = fit_cycles(n, cycles)
  length = n // cycles
  t = jnp.arange(n)
  if c.policy == "fixed":
    lr, mom = jnp.full(n, c.max_lr), jnp.full(n, 0.9)
  elif c.policy == "triangular":
    up = length // 2
    tt = jnp.minimum(t, 2 * up * cycles)
    lr = jax.vmap(clr.cyclic_schedule(c.base_lr, c.max_lr, up))(tt)
    mom = jax.vmap(clr.cyclic_momentum_schedule(0.85, 0.95, up))(tt)
  else:
    tt = jnp.minimum(t, cycles * length - 1) % length
    lr = jax.vmap(clr.one_cycle_schedule(c.max_lr, max(2, length)))(tt)
    mom = jax.vmap(clr.one_cycle_momentum_schedule(
        max(2, length), base_momentum=0.85, max_momentum=0.95))(tt)
  return {"learning_rate": np.asarray(lr, np.float32),
          "momentum": np.asarray(mom, np.float32)}


def user_fit(loop, cands, schedules, batches, val, n: int, cycles: int,
             eta: int, seed: int) -> int:
  """The user's fit: every candidate trained one after another for a
  cycle, ranked on ``val`` at each cycle end but the last, the best
  ``ceil(alive / eta)`` going on, at least ``MIN_SURVIVORS`` (as fit
  keeps them: the same copy-steps on both sides); the survivor's index."""
  import jax
  from optax_clr.drivers._fit import MIN_SURVIVORS
  cycles = fit_cycles(n, cycles)
  length = n // cycles
  ends = [length * (r + 1) for r in range(cycles - 1)] + [n]
  carries = {i: loop.init() for i in range(len(cands))}
  alive, done, score = list(range(len(cands))), 0, {}
  for end in ends:
    for i in alive:
      carries[i], _ = loop.train(carries[i], batches[done:end], done,
                                 schedules[i], seed)
    done = end
    metrics = {i: jax.device_get(loop.evaluate(carries[i][0], carries[i][1],
                                               val)) for i in alive}
    score = {i: float(m["accuracy"]) if "accuracy" in m else -float(m["loss"])
             for i, m in metrics.items()}
    score = {i: s if math.isfinite(s) else -math.inf for i, s in score.items()}
    if end < n:
      keep = min(len(alive), max(MIN_SURVIVORS, math.ceil(len(alive) / eta)))
      alive = sorted(sorted(alive, key=lambda i: -score[i])[:keep])
  return max(alive, key=lambda i: score[i])


def part_fit(task, k: int, n: int, args) -> dict:
  import optax_clr as clr
  cycles = args.fit_cycles
  batches = task.batches(n, args.seed)
  from optax_clr.drivers import _fit
  cands = _fit.candidates_around(FIT_SCALE)[:k]  # fit's own 12
  # The schedules' values, computed before the clock starts (the user's
  # loop only reads them).
  schedules = [candidate_schedule(c, n, cycles) for c in cands]
  res = {}

  def ours():
    res["r"] = clr.fit(task.model, task.loss_fn, batches, val_data=task.val,
                       candidates=cands, num_steps=n, cycles=cycles,
                       eta=FIT_ETA, progress=False)
  user = UserSide(
      lambda: _common.UserLoop(task, sgd_tx(), args.seed),
      lambda loop: user_fit(loop, cands, schedules, batches, task.val, n,
                            cycles, FIT_ETA, args.seed))
  row = timed_pair(ours, user, args.repeats)
  r = res["r"]
  row.update(layout(r.config))
  row["K"] = len(cands)
  row["cycles"] = int(r.config["cycles"])
  row["copy_steps"] = int(r.cost["candidate_steps"])
  row["survivor"] = r.candidate.name
  row["user_survivor"] = cands[user.last].name
  row["same_survivor"] = row["survivor"] == row["user_survivor"]
  return row


PART_FNS = {"lr": part_lr, "multi_seed": part_multi_seed,
            "sweep": part_sweep, "fit": part_fit}


def worker(args) -> None:
  import jax
  import jax.numpy as jnp
  jax.config.update("jax_enable_compilation_cache", False)
  # JAX's own one-time start-up (backend, first compilation), paid by
  # neither side's first call.
  jax.block_until_ready(jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(x) @ x)))(
      jnp.ones((4, 4))))
  task = _common.user_task(args.model, args.seed, small=args.small)
  rows = []
  for spec in json.loads(args.spec):
    row = {"model": args.model, "model_name": task.name, "part": spec["part"],
           "K": spec["k"], "N": spec["steps"],
           "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    row.update(PART_FNS[spec["part"]](task, spec["k"], spec["steps"], args))
    rows.append(row)
    print("progress " + json.dumps(row), file=sys.stderr, flush=True)
  print("RESULT " + json.dumps(rows), flush=True)


# ---------------------------------------------------------------------------
# Main: one worker per (model, part, K), ratios, tables, files.


def specs(args, model: str) -> list[list[dict]]:
  """The workers of one model (each a list of parts run in one process)."""
  if args.quick:
    out = [{"part": p, "k": EXTRAS_K.get(p, 8),
            "steps": QUICK_FIT_STEPS if p == "fit" else QUICK_STEPS}
           for p in args.parts]
    return [out]  # quick: one process per model (later first calls: warm
    #               library helpers)
  plan = PLAN[model]
  scale = lambda n: max(2, int(round(n * args.steps_scale)))  # noqa: E731
  out = []
  if "lr" in args.parts:
    out += [[{"part": "lr", "k": k,
              "steps": scale(plan.steps.get(k, plan.steps[max(plan.steps)]))}]
            for k in args.ks]
  out += [[{"part": p, "k": EXTRAS_K[p], "steps": scale(plan.extra_steps)}]
          for p in args.parts if p != "lr"]
  return out


def copy_steps(spec: dict) -> float:
  """Copy-steps of one side's one call."""
  if spec["part"] == "fit":
    from optax_clr.drivers._fit import MIN_SURVIVORS
    n = spec["steps"]
    c = fit_cycles(n, FIT_CYCLES)
    alive, total = spec["k"], 0
    for r in range(c):
      total += alive * (n // c if r < c - 1 else n - (c - 1) * (n // c))
      alive = min(alive, max(MIN_SURVIVORS, math.ceil(alive / FIT_ETA)))
    return total
  return spec["k"] * spec["steps"]


def estimate_s(args, model: str) -> float:
  """Rough runtime of one model: (1 + repeats) calls per side, PyTorch's
  warm-up and repeats, a fixed cost per worker process."""
  total = 0.0
  torch = model in ("a", "d", "f") and not args.no_torch
  for worker_specs in specs(args, model):
    total += PROCESS_OVERHEAD_S
    for s in worker_specs:
      calls = 2 * (1 + args.repeats)
      if s["part"] == "lr" and torch:
        calls += args.torch_repeats + 1 / s["k"]
      total += calls * copy_steps(s) * PLAN[model].ms / 1e3
  return total


def run_worker(args, model: str, worker_specs: list[dict]) -> list[dict]:
  env = dict(os.environ)
  env.setdefault("JAX_PLATFORMS", "cpu")
  env["OPTAX_CLR_CACHE_DIR"] = ""  # no library cache, no persistent cache
  env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--model",
         model, "--spec", json.dumps(worker_specs), "--repeats",
         str(args.repeats), "--seed", str(args.seed), "--torch-threads",
         str(args.torch_threads), "--torch-repeats", str(args.torch_repeats),
         "--fit-cycles", str(args.fit_cycles)]
  cmd += ["--no-torch"] * args.no_torch + ["--small"] * args.small
  label = ", ".join(f"{s['part']} K={s['k']} N={s['steps']}"
                    for s in worker_specs)
  t0 = time.perf_counter()
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
  line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
  if proc.returncode or not line:
    print(f"  [{model}] {label}: FAILED\n{proc.stderr[-4000:]}", flush=True)
    return [{"model": model, "part": s["part"], "K": s["k"], "N": s["steps"],
             "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:500]}
            for s in worker_specs]
  print(f"  [{model}] {label}: {time.perf_counter() - t0:.0f} s", flush=True)
  return json.loads(line[0][len("RESULT "):])


def run_model(args, model: str) -> list[dict]:
  """Every worker of one model, one after another; rows with ratios."""
  load = [round(x, 2) for x in os.getloadavg()]
  print(f"model {model} ({_common.USER_MODELS[model]}); load average "
        f"{load}", flush=True)
  return [with_ratios({**r, "loadavg_before_model": load})
          for w in specs(args, model) for r in run_worker(args, model, w)]


def with_ratios(row: dict) -> dict:
  """Speed-ups, first-call ratio, FLOP utilisation, goals of one row."""
  if "error" in row:
    return row
  r = dict(row)
  r["speedup"] = r["user_warm_s"] / r["ours_warm_s"]
  r["first_ratio"] = r["ours_first_s"] / r["user_first_s"]
  if "torch_warm_s" in r:
    r["ours_over_torch"] = r["ours_warm_s"] / r["torch_warm_s"]
    r["user_over_torch"] = r["user_warm_s"] / r["torch_warm_s"]
  if r.get("flops_per_step") and r.get("matmul_gflops"):
    work = r["flops_per_step"] * r["N"] * r["K"] / 1e9
    r["ours_flop_util"] = work / r["ours_warm_s"] / r["matmul_gflops"]
    r["user_flop_util"] = work / r["user_warm_s"] / r["matmul_gflops"]
  r["goal_speedup"] = GOAL.get(r["model"], GOAL["default"])
  r["warm_goal_met"] = bool(r["speedup"] >= r["goal_speedup"])
  r["first_goal_met"] = bool(r["K"] > FIRST_GOAL_K
                             or r["first_ratio"] <= FIRST_GOAL)
  return r


def summary_of(rows: list[dict]) -> dict:
  ok = [r for r in rows if "error" not in r]
  return {
      "warm_goal_met": all(r["warm_goal_met"] for r in ok) and len(ok) == len(
          rows),
      "first_goal_met": all(r["first_goal_met"] for r in ok) and len(
          ok) == len(rows),
      "missed_warm": [f"{r['model']}/{r['part']}/K={r['K']}: "
                      f"{r['speedup']:.3f}x < {r['goal_speedup']}x"
                      for r in ok if not r["warm_goal_met"]],
      "missed_first": [f"{r['model']}/{r['part']}/K={r['K']}: ours "
                       f"{r['ours_first_s']:.3g} s vs {r['user_first_s']:.3g}"
                       f" s (> {FIRST_GOAL:g}x)" for r in ok
                       if not r["first_goal_met"]],
      "errors": [f"{r['model']}/{r['part']}/K={r['K']}: {r['error']}"
                 for r in rows if "error" in r],
  }


def print_tables(rows: list[dict]) -> None:
  lr = [r for r in rows if r["part"] == "lr" and "error" not in r]
  if lr:
    print("\nparallel_range_test vs K runs of the user's loop (seconds; "
          "speed-up = user's / ours; first = fresh process, empty caches):")
    _common.print_table(lr, [
        "model", "model_name", "K", "N", "user_warm_s", "ours_warm_s",
        "speedup", "ours_first_s", "user_first_s", "first_ratio",
        "torch_warm_s", "ours_over_torch", "ours_flop_util",
        "user_flop_util", "group_size", "execution", "loss_max_rel_diff"])
  other = [r for r in rows if r["part"] != "lr" and "error" not in r]
  if other:
    print("\nOther population tests vs the user's loop:")
    _common.print_table(other, [
        "model", "part", "K", "N", "user_warm_s", "ours_warm_s", "speedup",
        "ours_first_s", "user_first_s", "first_ratio", "group_size",
        "execution", "loss_max_rel_diff", "same_survivor"])
  bad = [r for r in rows if "error" in r]
  if bad:
    print("\nFailed:")
    _common.print_table(bad, ["model", "part", "K", "N", "error"])


def parse(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--quick", action="store_true",
                  help=f"smoke run (< 2 min; its times mean nothing): K=8 "
                  f"only, N={QUICK_STEPS} (fit {QUICK_FIT_STEPS}, "
                  f"{QUICK_FIT_CYCLES} cycles), 1 repeat, the small "
                  "transformer, every part of a model in one process, two "
                  "models side by side; writes parallel_sweep_quick")
  ap.add_argument("--models", default=",".join(_common.USER_MODELS),
                  help="comma-separated, from: " + "; ".join(
                      f"{k}={v.split(':')[0]}" for k, v in
                      _common.USER_MODELS.items()))
  ap.add_argument("--parts", default=",".join(PARTS),
                  help="comma-separated, from " + ",".join(PARTS))
  ap.add_argument("--ks", default="8,32,128", help="K of the lr part")
  ap.add_argument("--steps-scale", type=float, default=1.0,
                  help="multiply every planned step count (PLAN)")
  ap.add_argument("--repeats", type=int, default=2,
                  help="warm calls per side after the first (best of)")
  ap.add_argument("--fit-cycles", type=int, default=None,
                  help=f"fit's cycles (default {FIT_CYCLES}; quick "
                  f"{QUICK_FIT_CYCLES})")
  ap.add_argument("--no-torch", action="store_true")
  ap.add_argument("--torch-repeats", type=int, default=1,
                  help="timed PyTorch K-run loops after a one-run warm-up")
  ap.add_argument("--small", action="store_true",
                  help="a smaller transformer (width 16, sequence 16)")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--out", default=None,
                  help="results name (default parallel_sweep; quick: "
                  "parallel_sweep_quick)")
  ap.add_argument("--jobs", type=int, default=None,
                  help="models run side by side (default 1; quick 2: only "
                  "for smoke runs, they disturb each other's times)")
  ap.add_argument("--merge", default=None,
                  help="no run: combine the comma-separated results "
                  "(e.g. parallel_sweep_a,parallel_sweep_fit) into --out, "
                  "a later file's (model, part, K) rows replacing an "
                  "earlier's (a model or a part rerun)")
  ap.add_argument("--plan", action="store_true",
                  help="print the workers and the runtime estimate only")
  _common.add_torch_threads_flag(ap)
  ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--model", help=argparse.SUPPRESS)
  ap.add_argument("--spec", help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  if args.fit_cycles is None:
    args.fit_cycles = QUICK_FIT_CYCLES if args.quick else FIT_CYCLES
  if args.quick:  # every path once, small: the small transformer, 1 repeat
    args.small = True
    args.repeats = min(args.repeats, 1)
  args.jobs = args.jobs or (2 if args.quick else 1)
  if args.worker:
    return args
  args.models = [m for m in args.models.split(",") if m]
  args.parts = [p for p in args.parts.split(",") if p]
  for m in args.models:
    if m not in _common.USER_MODELS:
      ap.error(f"unknown model {m!r}")
  for p in args.parts:
    if p not in PARTS:
      ap.error(f"unknown part {p!r}")
  args.ks = [8] if args.quick else [int(k) for k in args.ks.split(",")]
  args.out = args.out or ("parallel_sweep_quick" if args.quick
                          else "parallel_sweep")
  return args


def merge(args) -> int:
  """``--merge``: the rows of several results files in one (ratios and
  goals recomputed; each file's machine and load kept in ``sources``)."""
  rows: dict[tuple, dict] = {}
  sources, first = [], None
  for name in [n for n in args.merge.split(",") if n]:
    with open(os.path.join(_common.RESULTS_DIR, f"{name}.json")) as f:
      data = json.load(f)
    first = first or data
    sources.append({"name": name, "machine": data["machine"],
                    "loadavg_before_model": data["summary"].get(
                        "loadavg_before_model")})
    for r in data["rows"]:
      rows[r["model"], r["part"], r["K"]] = with_ratios(r)
  order = list(_common.USER_MODELS)
  merged = sorted(rows.values(), key=lambda r: (
      order.index(r["model"]), PARTS.index(r["part"]), r["K"]))
  config = dict(first["config"], merged_from=[s["name"] for s in sources])
  _common.write_results(args.out, merged, {"sources": sources,
                                           **summary_of(merged)},
                        first["machine"], config)
  print_tables(merged)
  return 0


def main(argv=None) -> int:
  args = parse(argv)
  if args.worker:
    worker(args)
    return 0
  if args.merge:
    return merge(args)
  est = {m: estimate_s(args, m) for m in args.models}
  print(f"models {','.join(args.models)}, parts {','.join(args.parts)}, "
        f"K {args.ks}; estimated {sum(est.values()) / 60 / args.jobs:.0f} "
        f"min on an idle 2-core machine "
        f"({', '.join(f'{m} {s / 60:.1f}' for m, s in est.items())})",
        flush=True)
  if args.plan:
    for m in args.models:
      for w in specs(args, m):
        print(f"  {m}: {w}")
    return 0
  machine = _common.machine_info()
  config = {k: v for k, v in vars(args).items() if k not in (
      "worker", "model", "spec", "plan")}
  config.update(plan={m: dataclasses.asdict(p) for m, p in PLAN.items()},
                models={m: _common.USER_MODELS[m] for m in args.models},
                lrs=LRS, ramp=RAMP, fit={"cycles": args.fit_cycles,
                                         "eta": FIT_ETA, "scale": FIT_SCALE},
                estimate_s=est)
  rows = []
  t0 = time.perf_counter()

  def save(model_rows):
    rows.extend(model_rows)
    rows.sort(key=lambda r: args.models.index(r["model"]))
    summary = {"loadavg_before_model": {r["model"]: r.get(
        "loadavg_before_model") for r in rows},
               "wall_s": time.perf_counter() - t0, **summary_of(rows)}
    _common.write_results(args.out, rows, summary, machine, config)
  if args.jobs == 1:
    for m in args.models:
      save(run_model(args, m))
  else:  # --quick: models side by side (a smoke run's times mean nothing)
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
      for done in concurrent.futures.as_completed(
          [pool.submit(run_model, args, m) for m in args.models]):
        save(done.result())
  print_tables(rows)
  s = summary_of(rows)
  print(f"\nwarm goal (speed-up >= 1, bundled CNN >= 1.1) met: "
        f"{s['warm_goal_met']}; first-call goal (ours <= {FIRST_GOAL:g}x "
        f"the user's at K <= {FIRST_GOAL_K}) met: "
        f"{s['first_goal_met']}; {time.perf_counter() - t0:.0f} s")
  for line in s["missed_warm"] + s["missed_first"] + s["errors"]:
    print("  " + line)
  return 1 if s["errors"] else 0


if __name__ == "__main__":
  sys.exit(main())
