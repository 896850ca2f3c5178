"""GPU check: the parallel sweep vs K sequential runs vs PyTorch, on one chip.

Run it with ``bash benchmarks/gpu_check.sh`` (one command, no network, under
8 minutes on one H100/H200-class GPU); it writes
``benchmarks/results/gpu_<device>.json`` and prints a table of ratios
**ours ÷ theirs** (below 1: we are faster).

Task: the bundled CNN (width ``--width``) on the embedded 8x8 digits,
batch ``--batch-size``, SGD with momentum 0.9, ``--steps`` steps per run.
For each K in ``--ks`` (default 8, 32, 128, 512, 1024; LRs log-spaced
1e-4 .. 1):

* ``sweep``: :func:`optax_clr.parallel_range_test` (K copies vmapped in one
  compiled program; rounds only if they do not fit in memory): first call
  (with compilation) and warm (median of ``--repeats``);
* ``one run``: the same call with K = 1 (warm);
* ``sequential``: what a user writes without the library: ONE jitted optax
  train step (``inject_hyperparams``; the LR a traced argument, so one
  compilation serves every LR, buffers donated) in a Python loop over the
  steps and over K LRs, batches already on the device, one host sync per
  run. ``--seq-runs`` runs are timed (after a warm-up) and the median is
  multiplied by K: the JSON says ``"extrapolated": true``;
* ``torch``: the same CNN and loop in PyTorch (CUDA if the sweep runs on a
  GPU; skipped when torch is not importable or has no CUDA there),
  extrapolated the same way.

Then the user-style models (``_common.USER_MODELS``: an ``nnx.Conv`` CNN, a
CNN with BatchNorm and Dropout, a character transformer, a tabular MLP, a
Linen CNN as a params pytree, the bundled CNN), each at ``--user-ks``
(default 128) for ``--user-steps`` (default 100): the sweep
(``parallel_range_test`` on the user's own model and loss, fed the user's
NumPy batches) against one run (K = 1) and K sequential runs of the user's
own loop (``_common.UserLoop``: one jitted optax step, batches on the
device; ``--seq-runs`` runs timed, times K).

Then the classic range test (``--steps`` steps, 1e-5 .. 10) against the
same ramp in the user's jitted loop (and PyTorch), the multi-seed range test
(3 seeds) against 3 classic tests one after another, a K=128 sweep in
bfloat16, and a K=4096 sweep of 10 steps that must not run out of memory
(copies per round from ``memory_stats()``). As a sanity check the sweep's
losses at the timed LRs are compared with the user's loop on the same
batches (max relative difference; TF32/reduction order on a GPU).

``--smoke`` runs everything tiny on any backend (CPU: < 60 s); its numbers
are not GPU measurements and are labelled so.

  python benchmarks/bench_gpu.py [--smoke] [--ks 8,32,128,512,1024]
      [--steps 100] [--out PATH]
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import _common  # noqa: E402

GOAL_K = 128
GOALS = {"sweep_vs_one_run": 2.0, "sweep_vs_sequential": 1 / 50}


class Clock:
  """Seconds since the start, and whether the time budget is spent."""

  def __init__(self, budget_s: float):
    self.start = time.perf_counter()
    self.budget_s = budget_s

  def elapsed(self) -> float:
    return time.perf_counter() - self.start

  def spent(self) -> bool:
    return self.elapsed() > self.budget_s


def timed(fn, repeats: int = 1) -> tuple[float, Any]:
  """(median wall seconds of ``repeats`` calls, last result); ``fn`` must
  return host values (it blocks)."""
  times, out = [], None
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times), out


def device_info() -> dict[str, Any]:
  import jax
  d = jax.devices()[0]
  stats = None
  try:
    stats = d.memory_stats()
  except Exception:  # noqa: BLE001 - a backend without statistics
    pass
  return {"backend": jax.default_backend(), "device_kind": d.device_kind,
          "device_count": jax.device_count(),
          "process_count": jax.process_count(),
          "memory_stats": None if stats is None else {
              k: int(v) for k, v in stats.items()
              if k in ("bytes_limit", "bytes_in_use", "peak_bytes_in_use")},
          "jax": jax.__version__}


# ---------------------------------------------------------------------------
# What a user writes: one jitted optax step, LR traced, in a Python loop.


def user_step(graphdef, tx):
  """``step(params, opt_state, batch, lr) -> (params, opt_state, loss)``,
  jitted once (``lr`` traced; params and optimizer state donated)."""
  import jax
  import optax
  from flax import nnx
  import optax_clr as clr

  def loss_fn(params, batch):
    return clr.cross_entropy_loss(nnx.merge(graphdef, params), batch)[0]

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, batch, lr):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    opt_state.hyperparams["learning_rate"] = lr
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
  return step


def user_run(step, tx, params0, batches, lrs_per_step) -> np.ndarray:
  """One run of the user's loop; the losses of every step (one sync)."""
  import jax
  import jax.numpy as jnp
  params = jax.tree.map(jnp.copy, params0)
  opt_state = tx.init(params)
  losses = []
  for batch, lr in zip(batches, lrs_per_step):
    params, opt_state, loss = step(params, opt_state, batch, lr)
    losses.append(loss)
  return np.asarray(jnp.stack(losses))


class Torch:
  """The same CNN and loop in PyTorch, or the reason it is skipped."""

  def __init__(self, params0, batches, width: int, backend: str):
    self.skipped = None
    try:
      import torch
    except ImportError:
      self.skipped = "torch is not installed"
      return
    if backend == "gpu" and not torch.cuda.is_available():
      self.skipped = "torch has no CUDA here (a CPU column would mislead)"
      return
    if backend not in ("gpu", "cpu"):
      self.skipped = f"no torch device for backend {backend!r}"
      return
    self.torch = torch
    self.device = "cuda" if backend == "gpu" else "cpu"
    self.params0, self.width = params0, width
    self.batches = [(_common.to_nchw(b["image"]).to(self.device),
                     torch.from_numpy(b["label"]).long().to(self.device))
                    for b in batches]

  def run(self, lrs_per_step) -> None:
    torch = self.torch
    net = _common.torch_cnn(self.params0, self.width).to(self.device)
    opt = torch.optim.SGD(net.parameters(), lr=float(lrs_per_step[0]),
                          momentum=0.9)
    crit = torch.nn.CrossEntropyLoss()
    for (x, y), lr in zip(self.batches, lrs_per_step):
      for group in opt.param_groups:
        group["lr"] = float(lr)
      opt.zero_grad()
      crit(net(x), y).backward()
      opt.step()
    if self.device == "cuda":
      torch.cuda.synchronize()


# ---------------------------------------------------------------------------
# The measurements.


class Bench:
  """The task, the baselines and the shared settings of one check."""

  def __init__(self, args):
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx
    import optax_clr as clr
    self.args, self.clr, self.jnp = args, clr, jnp
    self.backend = jax.default_backend()
    ds = clr.load_digits()
    self.data = ds.as_batch()
    self.model = clr.CNN(num_classes=10, in_channels=1, width=args.width,
                         rngs=nnx.Rngs(args.seed))
    self.graphdef, self.params0 = nnx.split(self.model)
    # The library's batch order (same seed): the sanity check compares
    # like with like.
    it = ds.batches(args.batch_size, seed=args.seed)
    host = [next(it) for _ in range(args.steps)]
    self.batches = [jax.device_put(b) for b in host]
    self.tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1,
                                                  momentum=0.9)
    self.step = user_step(self.graphdef, self.tx)
    self.torch = None if args.no_torch else Torch(
        self.params0, host, args.width, self.backend)
    if self.torch is not None and self.torch.skipped is None:
      _common.set_torch_threads(args.torch_threads)

  def user(self, lrs_per_step) -> np.ndarray:
    lrs = [np.float32(lr) for lr in lrs_per_step]  # traced: no recompile
    return user_run(self.step, self.tx, self.params0, self.batches, lrs)

  def sweep(self, lrs, **kw):
    a = self.args
    return self.clr.parallel_range_test(
        self.model, self.clr.cross_entropy_loss, self.data, lrs=lrs,
        num_steps=kw.pop("num_steps", a.steps), batch_size=a.batch_size,
        seed=a.seed, group_size=a.group_size, progress=False, **kw)

  def sequential(self, lrs) -> dict[str, Any]:
    """The user's loop at ``--seq-runs`` of the LRs, timed, times K."""
    pick = np.unique(np.linspace(0, len(lrs) - 1, self.args.seq_runs)
                     .round().astype(int))
    self.user([lrs[0]] * self.args.steps)  # compile
    times, losses = [], {}
    for i in pick:
      t, out = timed(lambda i=i: self.user([lrs[i]] * self.args.steps))
      times.append(t)
      losses[int(i)] = out
    per_run = statistics.median(times)
    return {"per_run_s": per_run, "s": per_run * len(lrs),
            "extrapolated": len(pick) < len(lrs), "timed_runs": len(pick),
            "losses": losses}

  def torch_runs(self, lrs) -> dict[str, Any]:
    if self.torch is None or self.torch.skipped:
      return {"skipped": "--no-torch" if self.torch is None
              else self.torch.skipped}
    n = self.args.steps
    self.torch.run([lrs[0]] * n)  # warm-up (cuDNN autotuning, allocator)
    pick = np.unique(np.linspace(0, len(lrs) - 1, self.args.seq_runs)
                     .round().astype(int))
    times = [timed(lambda i=i: self.torch.run([lrs[i]] * n))[0]
             for i in pick]
    per_run = statistics.median(times)
    return {"per_run_s": per_run, "s": per_run * len(lrs),
            "extrapolated": len(pick) < len(lrs), "timed_runs": len(pick)}


# The largest relative difference of the sweep's losses from the user's
# loop's at the same LRs (shared with the CPU benchmark).
max_rel_diff = _common.max_rel_diff


def plan_of(result) -> dict[str, Any]:
  c = result.config
  return {k: c.get(k) for k in ("devices", "copies_per_round", "rounds",
                                "group_size", "memory_cap", "execution")}


def sweep_row(bench: Bench, k: int, one_run_s: float) -> dict[str, Any]:
  """Sweep vs one run vs K sequential runs vs PyTorch at one K."""
  lrs = np.geomspace(1e-4, 1.0, k)
  first, result = timed(lambda: bench.sweep(lrs))
  warm, result = timed(lambda: bench.sweep(lrs), bench.args.repeats)
  seq = bench.sequential(lrs)
  torch = bench.torch_runs(lrs)
  row = {"K": k, "N": bench.args.steps, "sweep_first_s": first,
         "sweep_warm_s": warm, "one_run_s": one_run_s,
         "sequential_s": seq["s"], "sequential_per_run_s": seq["per_run_s"],
         "sequential_extrapolated": seq["extrapolated"],
         "sequential_timed_runs": seq["timed_runs"],
         "torch_s": torch.get("s"), "torch_per_run_s": torch.get(
             "per_run_s"), "torch_extrapolated": torch.get("extrapolated"),
         "torch_skipped": torch.get("skipped"),
         "sweep_vs_one_run": warm / one_run_s,
         "sweep_vs_sequential": warm / seq["s"],
         "sweep_vs_torch": None if torch.get("s") is None
         else warm / torch["s"],
         "loss_max_rel_diff_vs_user_loop": max_rel_diff(result.losses,
                                                        seq["losses"]),
         "plan": plan_of(result)}
  row["speedup_vs_sequential"] = seq["s"] / warm
  return row


def classic(bench: Bench) -> dict[str, Any]:
  """The classic range test vs the same ramp in the user's loop/PyTorch."""
  clr, a = bench.clr, bench.args
  # No divergence stop: both sides run all N steps (a NaN still stops ours;
  # "steps_recorded" says so).
  kw = dict(batch_size=a.batch_size, num_steps=a.steps, start_lr=1e-5,
            end_lr=1.0, diverge_threshold=None, seed=a.seed, progress=False)
  run = lambda: clr.range_test(bench.model, clr.cross_entropy_loss,  # noqa: E731
                               bench.data, **kw)
  first, result = timed(run)
  warm, result = timed(run, a.repeats)
  ramp = np.geomspace(1e-5, 1.0, a.steps)
  bench.user(ramp)  # compiled already by the sweeps; warm
  user, _ = timed(lambda: bench.user(ramp), a.repeats)
  out = {"N": a.steps, "first_s": first, "warm_s": warm,
         "user_loop_s": user, "ours_vs_user_loop": warm / user,
         "stop_reason": result.stop_reason,
         "steps_recorded": result.num_steps}
  t = bench.torch
  if t is None or t.skipped:
    out["torch_skipped"] = "--no-torch" if t is None else t.skipped
  else:
    t.run(ramp)
    out["torch_s"] = timed(lambda: t.run(ramp), a.repeats)[0]
    out["ours_vs_torch"] = warm / out["torch_s"]
  return out


def multi_seed(bench: Bench, seeds=(0, 1, 2)) -> dict[str, Any]:
  """The multi-seed range test vs the classic test once per seed."""
  clr, a = bench.clr, bench.args
  kw = dict(batch_size=a.batch_size, num_steps=a.steps, start_lr=1e-5,
            end_lr=1.0, diverge_threshold=None, progress=False)
  group = dict(group_size=a.group_size)
  run = lambda: clr.multi_seed_range_test(  # noqa: E731
      bench.model, clr.cross_entropy_loss, bench.data, seeds=list(seeds),
      **kw, **group)
  first, result = timed(run)
  warm, result = timed(run, a.repeats)

  def one_by_one():
    for s in seeds:
      clr.range_test(bench.model, clr.cross_entropy_loss, bench.data,
                     seed=s, **kw)
  one_by_one()
  separate, _ = timed(one_by_one, a.repeats)
  return {"seeds": len(seeds), "N": a.steps, "first_s": first,
          "warm_s": warm, "separate_range_tests_s": separate,
          "ours_vs_separate": warm / separate,
          "plan": plan_of(result)}


def bf16_sweep(bench: Bench, k: int) -> dict[str, Any]:
  import jax.numpy as jnp
  lrs = np.geomspace(1e-4, 1.0, k)
  run = lambda: bench.sweep(lrs, compute_dtype=jnp.bfloat16)  # noqa: E731
  first, result = timed(run)
  warm, result = timed(run, bench.args.repeats)
  return {"K": k, "first_s": first, "warm_s": warm,
          "finite_runs": int(np.isfinite(result.final_loss).sum()),
          "plan": plan_of(result)}


def many_copies(bench: Bench, k: int, steps: int) -> dict[str, Any]:
  """K copies for a few steps: rounds from device memory, no OOM."""
  lrs = np.geomspace(1e-4, 1.0, k)
  try:
    t, result = timed(lambda: bench.sweep(lrs, num_steps=steps))
  except Exception as e:  # noqa: BLE001 - the failure is the result
    return {"K": k, "N": steps, "ok": False,
            "error": f"{type(e).__name__}: {str(e)[:500]}"}
  return {"K": k, "N": steps, "ok": True, "first_s": t,
          "finite_runs": int(np.isfinite(result.final_loss).sum()),
          "plan": plan_of(result)}


def user_model_rows(args, key: str, clock: Clock) -> list[dict[str, Any]]:
  """One user-style model: the sweep at each of ``--user-ks`` vs one run vs
  K sequential runs of the user's own loop (times K from ``--seq-runs``
  timed runs)."""
  import jax
  import optax
  import optax_clr as clr
  task = _common.user_task(key, args.seed, small=args.smoke)
  n = args.user_steps
  host = task.batches(n, args.seed)
  loop = _common.UserLoop(task, optax.inject_hyperparams(optax.sgd)(
      learning_rate=0.1, momentum=0.9), args.seed)
  on_device = [jax.device_put(b) for b in host]

  def sweep(lrs):
    return clr.parallel_range_test(
        task.model, task.loss_fn, host, lrs=lrs, num_steps=n,
        group_size=args.group_size, progress=False)
  timed(lambda: sweep(np.array([1e-2])))  # compile
  one_s, _ = timed(lambda: sweep(np.array([1e-2])), args.repeats)
  loop.run(on_device, {"learning_rate": 1e-2})  # compile the user's step
  rows = []
  for k in args.user_ks:
    if clock.spent():
      rows.append({"model": key, "K": k, "skipped": "time budget spent"})
      continue
    lrs = np.geomspace(1e-4, 1.0, k)
    first, result = timed(lambda: sweep(lrs))
    warm, result = timed(lambda: sweep(lrs), args.repeats)
    pick = np.unique(np.linspace(0, k - 1, args.seq_runs).round().astype(
        int))
    times, losses = [], {}
    for i in pick:
      t, losses[int(i)] = timed(lambda i=i: loop.run(
          on_device, {"learning_rate": lrs[i]}))
      times.append(t)
    seq = statistics.median(times) * k
    rows.append({
        "model": key, "model_name": task.name, "K": k, "N": n,
        "sweep_first_s": first, "sweep_warm_s": warm, "one_run_s": one_s,
        "sequential_s": seq, "sequential_extrapolated": len(pick) < k,
        "sequential_timed_runs": len(pick),
        "sweep_vs_one_run": warm / one_s, "sweep_vs_sequential": warm / seq,
        "speedup_vs_sequential": seq / warm,
        "loss_max_rel_diff_vs_user_loop": None if task.random
        else max_rel_diff(result.losses, losses), "plan": plan_of(result)})
  return rows


def user_models(args, clock: Clock, save=None) -> dict[str, Any]:
  """Every model of ``--user-models`` (each its own error, the others
  still run; ``save(part)`` after each); the issue's goals checked on each
  at K = 128."""
  rows = []

  def part():
    return {"rows": rows, "goals": {
        key: goals([r for r in rows if r.get("model") == key])
        for key in args.user_models}}
  for key in args.user_models:
    if clock.spent():
      rows.append({"model": key, "skipped": "time budget spent"})
      continue
    try:
      rows += user_model_rows(args, key, clock)
    except Exception as e:  # noqa: BLE001 - recorded; the others still run
      import traceback
      traceback.print_exc()
      rows.append({"model": key, "error": f"{type(e).__name__}: "
                   f"{str(e)[:500]}"})
    print("user model", rows[-1], flush=True)
    if save is not None:
      save(part())
  return part()


# ---------------------------------------------------------------------------
# Report.


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
  """The issue's goals at K = 128: sweep <= 2x one run, >= 50x faster
  than sequential (None when K = 128 was not run)."""
  row = next((r for r in rows if r.get("K") == GOAL_K and
              "sweep_warm_s" in r), None)
  if row is None:
    return {"K": GOAL_K, "measured": False}
  return {"K": GOAL_K, "measured": True,
          **{name: {"value": row[name], "goal": f"<= {limit:.3g}",
                    "met": bool(row[name] <= limit)}
             for name, limit in GOALS.items()}}


def table(rows, classic_row, seeds_row, user_rows=None) -> None:
  cols = ["K", "sweep_first_s", "sweep_warm_s", "one_run_s", "sequential_s",
          "torch_s", "sweep_vs_one_run", "sweep_vs_sequential",
          "sweep_vs_torch", "loss_max_rel_diff_vs_user_loop"]
  print("\nSweep (ratios ours ÷ theirs; sequential and torch extrapolated "
        "from timed runs):")
  _common.print_table([r for r in rows if "sweep_warm_s" in r], cols)
  users = [r for r in (user_rows or []) if "sweep_warm_s" in r]
  if users:
    print("\nUser-style models (ratios ours ÷ theirs; sequential "
          "extrapolated from timed runs of the user's loop):")
    _common.print_table(users, [
        "model", "model_name", "K", "N", "sweep_first_s", "sweep_warm_s",
        "one_run_s", "sequential_s", "sweep_vs_one_run",
        "sweep_vs_sequential", "loss_max_rel_diff_vs_user_loop"])
  if classic_row and "skipped" not in classic_row:
    print("\nClassic range test:")
    _common.print_table([classic_row], [c for c in (
        "N", "first_s", "warm_s", "user_loop_s", "ours_vs_user_loop",
        "torch_s", "ours_vs_torch", "steps_recorded") if c in classic_row])
  if seeds_row and "skipped" not in seeds_row:
    print("\nMulti-seed range test:")
    _common.print_table([seeds_row], ["seeds", "N", "first_s", "warm_s",
                                      "separate_range_tests_s",
                                      "ours_vs_separate"])


def out_path(args, info) -> str:
  if args.out:
    return args.out
  slug = re.sub(r"[^a-z0-9]+", "_", info["device_kind"].lower()).strip("_")
  name = f"gpu_smoke_{slug}" if args.smoke else f"gpu_{slug}"
  return os.path.join(_common.RESULTS_DIR, f"{name}.json")


def parse(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--smoke", action="store_true",
                  help="tiny K and steps on any backend (CPU: < 60 s)")
  ap.add_argument("--ks", default=None, help="default 8,32,128,512,1024")
  ap.add_argument("--steps", type=int, default=None, help="default 100")
  ap.add_argument("--batch-size", type=int, default=64)
  ap.add_argument("--width", type=int, default=None,
                  help="CNN width (default 16; smoke 4)")
  ap.add_argument("--group-size", default=None,
                  help="the sweeps' group_size (default auto; smoke 1: no "
                  "CPU autotuning)")
  ap.add_argument("--seq-runs", type=int, default=None,
                  help="sequential/torch runs timed per K (default 4)")
  ap.add_argument("--repeats", type=int, default=None,
                  help="warm repeats, median (default 3)")
  ap.add_argument("--many", type=int, default=None,
                  help="K of the out-of-memory check (default 4096)")
  ap.add_argument("--budget-s", type=float, default=None,
                  help="stop starting new parts after this (default 400)")
  ap.add_argument("--user-models", default=None,
                  help="user-style models to measure (default "
                  f"{','.join(_common.USER_MODELS)}; 'none': skip)")
  ap.add_argument("--user-ks", default=None,
                  help="K of the user-style models (default 128; smoke 2)")
  ap.add_argument("--user-steps", type=int, default=None,
                  help="steps of the user-style models (default 100; "
                  "smoke 3)")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--no-torch", action="store_true")
  ap.add_argument("--out", default=None, help="default results/gpu_*.json")
  _common.add_torch_threads_flag(ap)
  args = ap.parse_args(argv)
  small = args.smoke
  args.ks = [int(k) for k in (args.ks or ("2" if small else
                                          "8,32,128,512,1024")).split(",")]
  args.steps = args.steps or (8 if small else 100)
  args.seq_runs = args.seq_runs or (2 if small else 4)
  args.repeats = args.repeats or (1 if small else 3)
  args.many = args.many or (2 if small else 4096)
  args.budget_s = args.budget_s or (300.0 if small else 400.0)
  args.width = args.width or (4 if small else 16)
  models = args.user_models or ",".join(_common.USER_MODELS)
  args.user_models = [] if models == "none" else [
      m for m in models.split(",") if m]
  args.user_ks = [int(k) for k in (args.user_ks or (
      "2" if small else str(GOAL_K))).split(",")]
  args.user_steps = args.user_steps or (3 if small else 100)
  group = args.group_size or ("1" if small else "auto")
  args.group_size = group if group == "auto" else int(group)
  return args


def label(args, info) -> str:
  if args.smoke:
    return "SMOKE RUN: tiny sizes, not a GPU measurement"
  if info["backend"] == "cpu":
    return "CPU RUN: no GPU was visible; not a GPU measurement"
  return f"measured on {info['device_kind']} (not an estimate)"


def attempt(fn) -> dict[str, Any]:
  """``fn()``, or the error it raised (the other parts still run)."""
  try:
    return fn()
  except Exception as e:  # noqa: BLE001 - recorded, and the exit code says
    import traceback
    traceback.print_exc()
    return {"error": f"{type(e).__name__}: {str(e)[:800]}"}


def run_parts(bench: Bench, clock: Clock, one_s: float, save) -> tuple:
  """Every part in turn (each saved as it finishes): the sweep rows, the
  user-style models, then the classic, multi-seed, bfloat16 and
  many-copies checks."""
  args = bench.args
  rows, parts = [], {}
  for k in args.ks:
    rows.append({"K": k, "skipped": "time budget spent"} if clock.spent()
                else {"K": k, **attempt(lambda k=k: sweep_row(bench, k,
                                                              one_s))})
    print("row", rows[-1], flush=True)
    save(rows, parts)
  if args.user_models:
    def save_users(part):
      parts["user_models"] = part
      save(rows, parts)
    user_models(args, clock, save_users)
  for name, fn in (("classic", classic), ("multi_seed", multi_seed),
                   ("bf16_sweep", lambda b: bf16_sweep(b, min(GOAL_K, max(
                       args.ks)))),
                   ("many_copies", lambda b: many_copies(
                       b, args.many, min(10, args.steps)))):
    parts[name] = ({"skipped": "time budget spent"} if clock.spent()
                   else attempt(lambda fn=fn: fn(bench)))
    print(name, parts[name], flush=True)
    save(rows, parts)
  return rows, parts


def main(argv=None) -> int:
  """Runs the check; returns 0, or 1 when a part raised."""
  args = parse(argv)
  if args.smoke and "jax" not in sys.modules:
    # Tiny programs: compile them fast (a smoke run only checks that
    # everything runs).
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_backend_optimization_level=0"
                               " --xla_llvm_disable_expensive_passes=true")
  from optax_clr import _serialize
  clock = Clock(args.budget_s)
  machine = _common.machine_info()
  bench = Bench(args)
  info = device_info()
  path = out_path(args, info)
  print(f"device: {info['device_kind']} ({info['backend']}), jax "
        f"{info['jax']}; writing {path}", flush=True)
  timed(lambda: bench.sweep(np.array([1e-2])))  # compile
  one_s, one = timed(lambda: bench.sweep(np.array([1e-2])), args.repeats)
  result = {
      "benchmark": "gpu_check", "measured_on": info["device_kind"],
      "label": label(args, info), "device": info, "machine": machine,
      "config": dict(vars(args)),
      "one_run": {"s": one_s, "plan": plan_of(one)},
      "notes": ["sequential_s and torch_s: the median of the timed runs "
                "times K (sequential_extrapolated / torch_extrapolated)",
                "ratios are ours / theirs: below 1, the library is faster",
                "one_run_s: parallel_range_test with K = 1 (warm)"]}

  def save(rows, parts):
    result.update({"rows": rows, **parts, "goals": goals(rows),
                   "total_s": clock.elapsed()})
    _serialize.dump_json(_serialize.jsonable(result, "gpu_check"), path, 1)

  rows, parts = run_parts(bench, clock, one_s, save)
  table(rows, parts.get("classic"), parts.get("multi_seed"),
        parts.get("user_models", {}).get("rows"))
  print("\ngoals:", result["goals"])
  print(f"wrote {path} ({clock.elapsed():.1f} s)")
  failed = any("error" in r for r in [*rows, *parts.values(), *parts.get(
      "user_models", {}).get("rows", [])])
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
