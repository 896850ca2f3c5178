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
TABLE = "  {:<18}  {:>20}  {:>13}  {:>12}  {:>9}"


@click.command("demo", context_settings=c.CONTEXT)
@click.option("--quick", is_flag=True,
              help="A small variant (< 30 s): fewer steps, LRs and epochs.")
@click.option("--epochs", type=c.POS_INT, show_default="24 (4 with --quick)",
              help="Training epochs of each of the two runs.")
@click.option("--width", type=c.POS_INT, show_default="16 (8 with --quick)",
              help="CNN width.")
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
  with _run.Run(ctx, f) as run:
    per_epoch = len(train) // f.batch_size
    run.say(c.describe_data(dataset, train, val, f"CNN width {f.width}")
            + f"; batch {f.batch_size} -> {per_epoch} iterations per epoch; "
            "SGD momentum 0.9")
    # The drivers work on copies: every run starts from these weights.
    net = c.build_model("cnn", dataset, f.width, f.seed)
    found = _bounds(run, f, net, train, val, per_epoch)
    return _compare(run, f, net, train, val, per_epoch, found)


def _bounds(run, f, net, train, val, per_epoch: int) -> dict:
  """Steps 1 and 2: the range test's CLR bounds and the sweep's best fixed
  LR, each written (with the bounds trained with) as soon as it exists."""
  import optax_clr as clr
  common = dict(optimizer=c.factory("sgd", 0.9), batch_size=f.batch_size,
                seed=f.seed, progress=False if f.no_progress else None)
  run.say(f"\n[1/4] LR range test: exp ramp {f.start_lr:g} -> {f.end_lr:g} "
          f"over {f.range_steps} steps")
  t0 = time.perf_counter()
  rt = clr.range_test(net, clr.cross_entropy_loss, train, start_lr=f.start_lr,
                      end_lr=f.end_lr, num_steps=f.range_steps, **common)
  s, t_rt = rt.suggest(), time.perf_counter() - t0
  run.say(f"stopped: {rt.stop_reason} after {rt.num_steps} steps "
          f"({t_rt:.1f} s)\n{s}")
  run.save(rt, "range_test", bounds=s.base_lr and (s.base_lr, s.max_lr))
  if s.base_lr is None:
    raise c.Exit(1, f"the range test gave no CLR bounds "
                 f"({c.in_flags(c.one_line(s.rule))})")
  lo, hi, steps = s.base_lr / 10, s.max_lr * 10, f.sweep_epochs * per_epoch
  run.say(f"\n[2/4] parallel sweep: {f.sweep_lrs} fixed LRs in [{lo:.2e}, "
          f"{hi:.2e}], {steps} steps each")
  t0 = time.perf_counter()
  sweep = clr.parallel_range_test(
      net, clr.cross_entropy_loss, train, num_lrs=f.sweep_lrs, min_lr=lo,
      max_lr=hi, num_steps=steps, val_data=val, **common)
  best, t_sweep = sweep.suggest().best, time.perf_counter() - t0
  run.save(sweep, "sweep", bounds=(s.base_lr, s.max_lr))
  if best.lr is None:
    raise c.Exit(1, f"no LR of the sweep trained ({c.one_line(best.reason)})")
  run.say(f"best fixed LR: {best.lr:.3e} ({c.one_line(best.reason)}; "
          f"{t_sweep:.1f} s)")
  return {"base_lr": s.base_lr, "max_lr": s.max_lr, "fixed_lr": best.lr,
          "range_test": {"base_lr": s.base_lr, "max_lr": s.max_lr,
                         "rule": s.rule, "stop_reason": rt.stop_reason,
                         "num_steps": rt.num_steps, "time_s": t_rt},
          "sweep": {"lrs": sweep.lrs, "best_lr": best.lr, "rule": best.reason,
                    "num_steps": steps, "time_s": t_sweep}}


def _compare(run, f, net, train, val, per_epoch: int, found: dict) -> int:
  """Steps 3 and 4: CLR and the best fixed LR trained from the same
  weights; the table, the plots, comparison.csv and results.json (a
  RunSummary naming the parts and the bounds)."""
  import optax_clr as clr
  from optax_clr import _serialize
  from optax_clr import plotting
  base, top, lr = found["base_lr"], found["max_lr"], found["fixed_lr"]
  up, total = max(1, round(f.step_size * per_epoch)), f.epochs * per_epoch
  plans = {"CLR triangular2": clr.policy_schedules(
      "triangular2", base_lr=base, max_lr=top, step_size_up=up,
      total_steps=total), f"fixed LR {lr:.2e}": clr.policy_schedules(
          "fixed", lr=lr, momentum=0.9)}
  run.say(f"\n[3/4] training {f.epochs} epochs each: triangular2 CLR "
          f"[{base:.2e}, {top:.2e}], step size {up} iterations, momentum "
          f"0.9 -> 0.8; fixed LR {lr:.2e}, momentum 0.9")
  histories, rows = {}, []
  for (name, plan), part in zip(plans.items(), ("clr", "fixed")):
    t0 = time.perf_counter()
    _, histories[name] = train_lib.train_epochs(
        run, net, train, val, clr.cyclic_optimizer(
            c.factory("sgd"), learning_rate=plan.learning_rate,
            momentum=plan.momentum), f, desc=name, echo=False)
    rows.append({"name": name, "time": time.perf_counter() - t0})
    histories[name].to_json(run.path(f"history_{part}.json"))
    histories[name].to_csv(run.path(f"history_{part}.csv"))
  target = histories[rows[1]["name"]].best_metrics()["accuracy"]["value"]
  for row, h in zip(rows, histories.values()):
    row.update(iters=h.steps_to_reach("accuracy", target), status=h.status,
               final=h.final_metrics()["val_accuracy"],
               best=h.best_metrics()["accuracy"]["value"])
  run.say(f"\n[4/4] comparison (target: the fixed-LR run's best validation "
          f"accuracy, {target:.4f})\n" + TABLE.format(
              "run", "iterations to target", "final val acc", "best val acc",
              "wall time") + "".join("\n" + TABLE.format(
                  r["name"], r["iters"] or "not reached", f"{r['final']:.4f}",
                  f"{r['best']:.4f}", f"{r['time']:.1f} s") for r in rows))
  plotting.plot_schedules(
      {n: p.learning_rate for n, p in plans.items()}, total,
      momentum={n: p.momentum for n, p in plans.items()},
      title=f"schedules: CLR {base:.2g}-{top:.2g} vs fixed {lr:.2g}",
      path=run.path("schedule.png"))
  plotting.plot_training(histories, title="training: CLR vs the best fixed "
                         "LR", path=run.path("training.png"))
  _serialize.write_csv(
      ["run", "iterations_to_target", "final_val_accuracy",
       "best_val_accuracy", "wall_time_s"],
      [[r["name"], r["iters"], r["final"], r["best"], round(r["time"], 3)]
       for r in rows], run.path("comparison.csv"))
  summary = {"range_test": found["range_test"], "sweep": found["sweep"],
             "runs": {r["name"]: r for r in rows}, "target_accuracy": target,
             "schedules": {n: p.resolved for n, p in plans.items()}}
  clr.RunSummary(
      command="demo", parts={p: f"{p}.json" for p in (
          "range_test", "sweep", "history_clr", "history_fixed")},
      bounds={"base_lr": base, "max_lr": top, "lr": lr, "policy":
              "triangular2", "source": "range test: " + c.one_line(
                  found["range_test"]["rule"]) + "; best fixed LR of the "
              "sweep: " + c.one_line(found["sweep"]["rule"])},
      summary=summary).to_json(run.path("results.json"))
  wall = run.finish(summary, base_lr=base, max_lr=top, fixed_lr=lr,
                    epochs=f.epochs, width=f.width)
  run.say(f"demo wall time {wall:.1f} s")
  return 0
