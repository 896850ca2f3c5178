"""``optax-clr demo``: the main job on the embedded digits, end to end."""

from __future__ import annotations

import time
import types

import click

from optax_clr.cli import _common as c
from optax_clr.cli import _run
from optax_clr.cli import train as train_lib

# Sizes of the demo and of --quick (the < 30 s variant the tests run). The
# ramp spans several epochs (Smith's advice), so the small CNN learns during
# the test and the loss curve has a real descent.
FULL = dict(start_lr=1e-3, end_lr=10.0, range_steps=300, sweep_lrs=16,
            sweep_epochs=3, epochs=24, step_size=3.0, width=16)
QUICK = dict(FULL, range_steps=100, sweep_lrs=8, sweep_epochs=2, epochs=4,
             step_size=1.0, width=8)


@click.command("demo", context_settings=c.CONTEXT)
@click.option("--quick", is_flag=True,
              help="A small variant (< 30 s): fewer steps, LRs and epochs.")
@click.option("--epochs", type=c.POS_INT, default=None,
              show_default="24 (4 with --quick)",
              help="Training epochs of each of the two runs.")
@click.option("--width", type=c.POS_INT, default=None,
              show_default="16 (8 with --quick)", help="CNN width.")
@c.run_options
@click.pass_context
def demo_cmd(ctx, quick, epochs, width, **flags):
  """The main job on the embedded digits, end to end.

  \b
  1. classic LR range test -> suggested (base_lr, max_lr);
  2. parallel sweep over fixed LRs -> the best fixed LR;
  3. triangular2 CLR with cyclic momentum (suggested bounds) next to the
     best fixed LR, same epochs and seed;
  4. a table: iterations to reach the fixed-LR run's best validation
     accuracy, final and best accuracy, wall time.
  Writes every part's results and plots; results.json names the parts and
  the bounds used (so `optax-clr train --bounds-from OUT` takes them).
  """
  f = types.SimpleNamespace(**dict(QUICK if quick else FULL), **flags,
                            data="digits", val_fraction=0.2, batch_size=64)
  f.epochs, f.width = epochs or f.epochs, width or f.width
  dataset, train, val = c.load_data(f)
  with _run.run_dir(ctx, f) as run:
    per_epoch = len(train) // f.batch_size
    run.say(c.describe_data(dataset, train, val, f"CNN width {f.width}")
            + f"; batch {f.batch_size} -> {per_epoch} iterations per epoch; "
            "SGD momentum 0.9")
    # The drivers work on copies: every run starts from these weights.
    net = c.build_model("cnn", dataset, f.width, f.seed)
    found = _bounds(run, f, net, train, val, per_epoch)
    rows, plans = _train_both(run, f, net, train, val, per_epoch, found)
    return _summary(run, f, found, rows, plans)


def _bounds(run, f, net, train, val, per_epoch: int) -> dict:
  """Steps 1 and 2: the range test's CLR bounds and the sweep's best fixed
  LR, each written (with the bounds trained with) as soon as it exists."""
  import optax_clr as clr
  common = dict(optimizer=c.factory("sgd", 0.9), batch_size=f.batch_size,
                seed=f.seed, progress=False if f.no_progress else None)
  run.say(f"\n[1/4] LR range test: exp ramp {f.start_lr:g} -> {f.end_lr:g} "
          f"over {f.range_steps} steps")
  t0 = time.perf_counter()
  rt = clr.range_test(net, clr.cross_entropy_loss, train,
                      start_lr=f.start_lr, end_lr=f.end_lr,
                      num_steps=f.range_steps, **common)
  sugg, t_rt = rt.suggest(), time.perf_counter() - t0
  run.say(f"stopped: {rt.stop_reason} after {rt.num_steps} steps "
          f"({t_rt:.1f} s)\n{sugg}")
  bounds = None if sugg.base_lr is None else (sugg.base_lr, sugg.max_lr)
  run.save(rt, "range_test", bounds=bounds)
  if bounds is None:
    raise c.Exit(1, f"the range test gave no CLR bounds "
                 f"({c.in_flags(c.one_line(sugg.rule))})")
  lo, hi, steps = bounds[0] / 10.0, bounds[1] * 10.0, (
      f.sweep_epochs * per_epoch)
  run.say(f"\n[2/4] parallel sweep: {f.sweep_lrs} fixed LRs in [{lo:.2e}, "
          f"{hi:.2e}], {steps} steps each")
  t0 = time.perf_counter()
  sweep = clr.parallel_range_test(
      net, clr.cross_entropy_loss, train, num_lrs=f.sweep_lrs, min_lr=lo,
      max_lr=hi, num_steps=steps, val_data=val, **common)
  swept, t_sweep = sweep.suggest(), time.perf_counter() - t0
  run.save(sweep, "sweep", bounds=bounds)
  if swept.best.lr is None:
    raise c.Exit(1, f"no LR of the sweep trained ({c.one_line(swept.rule)})")
  run.say(f"best fixed LR: {swept.best.lr:.3e} "
          f"({c.one_line(swept.best.reason)}; {t_sweep:.1f} s)")
  return {"base_lr": bounds[0], "max_lr": bounds[1],
          "fixed_lr": swept.best.lr, "rt_rule": sugg.rule,
          "sweep_rule": swept.best.reason,
          "range_test": {"base_lr": bounds[0], "max_lr": bounds[1],
                         "rule": sugg.rule, "stop_reason": rt.stop_reason,
                         "num_steps": rt.num_steps, "time_s": t_rt},
          "sweep": {"lrs": sweep.lrs, "best_lr": swept.best.lr,
                    "rule": swept.best.reason, "num_steps": steps,
                    "time_s": t_sweep}}


def _train_both(run, f, net, train, val, per_epoch: int, found: dict):
  """Step 3: CLR and the best fixed LR trained from the same weights;
  returns the comparison rows and the schedules."""
  import optax_clr as clr
  up = max(1, round(f.step_size * per_epoch))
  plans = {
      "CLR triangular2": clr.policy_schedules(
          "triangular2", base_lr=found["base_lr"], max_lr=found["max_lr"],
          step_size_up=up, total_steps=f.epochs * per_epoch),
      f"fixed LR {found['fixed_lr']:.2e}": clr.policy_schedules(
          "fixed", lr=found["fixed_lr"], momentum=0.9)}
  run.say(f"\n[3/4] training {f.epochs} epochs each: triangular2 CLR "
          f"[{found['base_lr']:.2e}, {found['max_lr']:.2e}], step size {up} "
          f"iterations, momentum 0.9 -> 0.8; fixed LR "
          f"{found['fixed_lr']:.2e}, momentum 0.9")
  histories, times = {}, {}
  for (name, plan), slug in zip(plans.items(), ("clr", "fixed")):
    t0 = time.perf_counter()
    _, histories[name] = train_lib.train_epochs(
        run, net, train, val, clr.cyclic_optimizer(
            c.factory("sgd"), learning_rate=plan.learning_rate,
            momentum=plan.momentum), f, desc=name, echo=False)
    times[name] = time.perf_counter() - t0
    histories[name].to_json(run.path(f"history_{slug}.json"))
    histories[name].to_csv(run.path(f"history_{slug}.csv"))
  fixed = histories[list(plans)[1]]
  target = float(fixed.best_metrics()["accuracy"]["value"])
  rows = [{"name": name, "iters": h.steps_to_reach("accuracy", target),
           "final": h.final_metrics()["val_accuracy"],
           "best": h.best_metrics()["accuracy"]["value"],
           "time": times[name], "status": h.status}
          for name, h in histories.items()]
  from optax_clr import plotting
  plotting.plot_schedules(
      {n: p.learning_rate for n, p in plans.items()}, f.epochs * per_epoch,
      momentum={n: p.momentum for n, p in plans.items()},
      title=f"schedules: CLR {found['base_lr']:.2g}-{found['max_lr']:.2g} "
      f"vs fixed {found['fixed_lr']:.2g}", path=run.path("schedule.png"))
  plotting.plot_training(histories, title="training: CLR vs the best fixed "
                         "LR", path=run.path("training.png"))
  return rows, plans


def _summary(run, f, found, rows, plans) -> int:
  """Step 4: the comparison table, comparison.csv and results.json (a
  RunSummary naming the parts and the bounds)."""
  from optax_clr import _serialize
  from optax_clr import results
  target = rows[1]["best"]
  header = ("run", "iterations to target", "final val acc", "best val acc",
            "wall time")
  cells = [header] + [(r["name"], "not reached" if r["iters"] is None else
                       str(r["iters"]), f"{r['final']:.4f}",
                       f"{r['best']:.4f}", f"{r['time']:.1f} s")
                      for r in rows]
  widths = [max(len(x[i]) for x in cells) for i in range(len(header))]
  lines = ["  " + "  ".join(x[0].ljust(widths[0]) if i == 0 else
                            x[i].rjust(widths[i]) for i in range(len(x)))
           for x in cells]
  lines.insert(1, "  " + "  ".join("-" * w for w in widths))
  run.say(f"\n[4/4] comparison (target: the fixed-LR run's best validation "
          f"accuracy, {target:.4f})\n" + "\n".join(lines))
  clr_iters, fixed_iters = rows[0]["iters"], rows[1]["iters"]
  run.say(f"CLR reached the target in {clr_iters} iterations; the fixed LR "
          f"in {fixed_iters}" if clr_iters is not None else
          f"CLR did not reach the target: its best is "
          f"{target - rows[0]['best']:.4f} lower")
  _serialize.write_csv(
      ["run", "iterations_to_target", "final_val_accuracy",
       "best_val_accuracy", "wall_time_s"],
      [[r["name"], r["iters"], r["final"], r["best"], round(r["time"], 3)]
       for r in rows], run.path("comparison.csv"))
  summary = results.RunSummary(
      command="demo", parts={"range_test": "range_test.json",
                             "sweep": "sweep.json",
                             "history_clr": "history_clr.json",
                             "history_fixed": "history_fixed.json"},
      bounds={"base_lr": found["base_lr"], "max_lr": found["max_lr"],
              "lr": found["fixed_lr"], "policy": "triangular2",
              "source": f"range test: {c.one_line(found['rt_rule'])}; best "
              f"fixed LR of the sweep: {c.one_line(found['sweep_rule'])}"},
      summary={"range_test": found["range_test"], "sweep": found["sweep"],
               "runs": {r["name"]: r for r in rows},
               "schedules": {n: p.resolved for n, p in plans.items()},
               "target_accuracy": target})
  summary.to_json(run.path("results.json"))
  wall = run.finish(summary.to_dict()["summary"], base_lr=found["base_lr"],
                    max_lr=found["max_lr"], fixed_lr=found["fixed_lr"],
                    epochs=f.epochs, width=f.width)
  run.say(f"demo wall time {wall:.1f} s")
  return 0
