"""How good are the suggestions? Ours against torch-lr-finder's and fastai's
rules, on four tasks of different kinds, over seeds.

For every task (:mod:`_tasks`: the digits CNN with SGD and with Adam, a
regression MLP, a character-level transformer) and seed:

1. one default classic range test (``optax_clr.range_test``: 1e-6 -> 10,
   40 steps per decade, seed-specific init and data order);
2. the suggested max_lr of three rules read off that same curve:
   * ours: ``result.suggest()`` (max_lr a factor 4 below where the
     smoothed loss climbs back half its fall, base max/4);
   * torch-lr-finder: the steepest descent by index (``np.gradient`` of the
     loss, skipping 10 points at the start and 5 at the end), as max_lr;
   * fastai: ``valley`` (the point about halfway down the longest descent),
     as max_lr;
   the two peers get base_lr = max_lr / 4 (Smith's rule when only max is
   known);
3. one compiled sweep (``optax_clr.sweep``) that trains, for the task's
   budget: a dense grid of fixed LRs (16, log-spaced over 1e-5 .. 3) and
   triangular CLR (one cycle over the budget, momentum cycled 0.9 -> 0.8)
   between each rule's bounds;
4. ``optax_clr.find_bounds``: the range test, then the confirmation sweep of
   candidate schedules for the same budget; its chosen schedule is trained
   in the same way.

Reported per task: (a) the spread of each rule's max_lr over the seeds
(max / min), and of the median of 3 seeds (all 3-subsets of the seeds); (b)
quality: the best validation metric of the rule's CLR divided by the best
of the dense fixed grid (for losses: grid best / rule's loss), so >= 1
means CLR between those bounds trained as well as the best fixed LR.

  python benchmarks/bench_suggestions.py                # 4 tasks x 5 seeds
  python benchmarks/bench_suggestions.py --tasks digits-sgd --seeds 2
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from typing import Any

import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import _tasks  # noqa: E402

import optax_clr as clr  # noqa: E402
from optax_clr import suggestions as sg  # noqa: E402

GRID = np.geomspace(1e-5, 3.0, 16)
RULES = ("ours", "torch-lr-finder", "fastai")


def torch_lr_finder_rule(result: clr.RangeTestResult) -> float | None:
  """torch-lr-finder's suggestion: min of np.gradient(loss) by index,
  after skipping 10 points at the start and 5 at the end."""
  loss = np.where(np.isfinite(result.losses), result.smoothed_losses,
                  np.nan)
  finite = np.flatnonzero(~np.isfinite(loss))
  stop = finite[0] if finite.size else loss.size
  lo, hi = 10, min(stop, loss.size - 5)
  if hi - lo < 3:
    return None
  grad = np.gradient(loss[lo:hi])
  return float(result.lrs[lo + int(np.argmin(grad))])


def fastai_rule(result: clr.RangeTestResult) -> float | None:
  loss = np.where(np.isfinite(result.losses), result.smoothed_losses,
                  np.nan)
  return sg.valley(result.lrs, loss).lr


def schedule_fn(budget: int, momentum_name: str):
  """kind 0: triangular CLR (one cycle over the budget, momentum cycled);
  kind 2: the fixed LR ``max`` at momentum 0.9."""
  up = max(1, budget // 2)

  def fn(config, t):
    clr_lr = clr.cyclic_schedule(config["base"], config["max"], up)(t)
    lr = jnp.where(config["kind"] == 0, clr_lr, config["max"])
    mom = jnp.where(config["kind"] == 0,
                    clr.cyclic_momentum_schedule(0.8, 0.9, up)(t), 0.9)
    return {"learning_rate": lr, momentum_name: mom}
  return fn


def quality(value: float, best: float, higher: bool) -> float:
  if not np.isfinite(value):
    return 0.0
  return value / best if higher else best / value


def one_seed(task: _tasks.Task, seed: int, fn) -> dict[str, Any]:
  model = task.make_model(seed)
  common = dict(batch_size=task.batch_size, optimizer=task.optimizer,
                seed=seed, progress=False)
  t0 = time.perf_counter()
  rt = clr.range_test(model, task.loss_fn, task.train, **common)
  ours = rt.suggest()
  bounds = {"ours": (ours.base_lr, ours.max_lr)}
  for name, rule in (("torch-lr-finder", torch_lr_finder_rule),
                     ("fastai", fastai_rule)):
    top = rule(rt)
    bounds[name] = (None, None) if top is None else (top / 4, top)
  choice = clr.find_bounds(
      model, task.loss_fn, task.train, val_data=task.val,
      num_steps=task.budget, momentum_name=task.momentum_name, **common)
  kinds = {"triangular": 0, "fixed": 2, "one-cycle": 1}
  configs = [dict(kind=2.0, base=float(lr), max=float(lr)) for lr in GRID]
  for name in RULES:
    base, top = bounds[name]
    configs.append(dict(kind=0.0, base=base or 1e-6, max=top or 1e-6))
  configs.append(dict(kind=float(kinds[choice.policy]),
                      base=choice.base_lr, max=choice.max_lr))
  run = clr.sweep(model, task.loss_fn, task.train, hyperparams=configs,
                  schedule_fn=fn, num_steps=task.budget,
                  val_data=task.val, **common)
  metric = np.array(run.eval_metrics[task.metric], np.float64)  # a copy
  if choice.policy == "one-cycle":  # a one-cycle choice: its own schedule
    metric[-1] = _one_cycle(task, model, choice, common)
  grid = metric[:GRID.size]
  grid = grid[np.isfinite(grid)]
  best = grid.max() if task.higher_is_better else grid.min()
  row = {"task": task.name, "seed": seed, "grid_best": float(best),
         "grid_best_lr": float(GRID[int(np.nanargmax(metric[:GRID.size])
                                        if task.higher_is_better else
                                        np.nanargmin(metric[:GRID.size]))]),
         "range_test_steps": rt.num_steps, "stop": rt.stop_reason,
         "confirmed_policy": choice.policy,
         "confirmed_max_lr": choice.max_lr,
         "confirmed_base_lr": choice.base_lr}
  for i, name in enumerate(RULES):
    base, top = bounds[name]
    value = metric[GRID.size + i] if top is not None else np.nan
    row[f"{name}_max_lr"] = top
    row[f"{name}_quality"] = quality(value, best, task.higher_is_better)
  row["confirmed_quality"] = quality(metric[-1], best, task.higher_is_better)
  row["seconds"] = time.perf_counter() - t0
  return row


def _one_cycle(task, model, choice, common) -> float:
  total = task.budget
  s = clr.policy_schedules("one-cycle", max_lr=choice.max_lr,
                           total_steps=total)
  opt = clr.cyclic_optimizer(task.optimizer, learning_rate=s.learning_rate,
                             momentum=s.momentum,
                             momentum_name=task.momentum_name)
  steps_per_epoch = len(next(iter(task.train.values()))) // task.batch_size
  _, h = clr.train(model, task.loss_fn, task.train, optimizer=opt,
                   num_epochs=-(-total // steps_per_epoch),
                   batch_size=task.batch_size, val_data=task.val,
                   seed=common["seed"], progress=False, warn=False)
  return float(h.eval_metrics[task.metric][-1])


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
  out = {}
  for task in dict.fromkeys(r["task"] for r in rows):
    mine = [r for r in rows if r["task"] == task]
    entry = {}
    for name in RULES + ("confirmed",):
      tops = np.array([r[f"{name}_max_lr"] for r in mine
                       if r[f"{name}_max_lr"]], np.float64)
      q = np.array([r[f"{name}_quality"] for r in mine])
      medians = [np.median(tops[list(c)]) for c in itertools.combinations(
          range(tops.size), 3)] if tops.size >= 3 else []
      entry[name] = {
          "spread": float(tops.max() / tops.min()) if tops.size else None,
          "spread_of_3_seed_medians": (float(max(medians) / min(medians))
                                       if medians else None),
          "quality_mean": float(q.mean()), "quality_min": float(q.min())}
    out[task] = entry
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--tasks", nargs="*", default=None,
                  help="task names (default: all four)")
  ap.add_argument("--seeds", type=int, default=5)
  args = ap.parse_args(argv)
  machine = _common.machine_info()
  tasks = [_tasks.by_name(n) for n in args.tasks] if args.tasks else (
      _tasks.all_tasks())
  rows = []
  for task in tasks:
    fn = schedule_fn(task.budget, task.momentum_name)
    for seed in range(args.seeds):
      row = one_seed(task, seed, fn)
      rows.append(row)
      print(f"{task.name} seed {seed}: " + ", ".join(
          f"{k} {row[k]:.3g}" for k in row if k.endswith(("quality",
                                                          "max_lr"))),
            flush=True)
  summary = summarize(rows)
  table = []
  for task, entry in summary.items():
    for name, v in entry.items():
      table.append({"task": task, "rule": name, **v})
  _common.print_table(table, ["task", "rule", "spread",
                              "spread_of_3_seed_medians", "quality_mean",
                              "quality_min"])
  _common.write_results("suggestions", rows, summary, machine,
                        {"grid": GRID.tolist(), "seeds": args.seeds,
                         "tasks": [t.name for t in tasks]})


if __name__ == "__main__":
  main()
