"""``optax-clr demo``: the main job on the embedded digits, end to end."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import click

from optax_clr.cli import _common as c
from optax_clr.cli import _run
from optax_clr.cli import _training


@dataclasses.dataclass
class DemoSettings:
  """Sizes of the demo; ``quick`` is the < 30 s variant the tests run."""
  start_lr: float = 1e-3
  end_lr: float = 10.0
  range_steps: int = 300
  sweep_lrs: int = 16
  sweep_epochs: int = 3
  epochs: int = 24
  step_size: float = 3.0
  width: int = 16

  @classmethod
  def make(cls, quick: bool) -> DemoSettings:
    # The ramp spans several epochs (Smith's advice) so that the small CNN
    # learns during the test and the loss curve has a real descent.
    if quick:
      return cls(range_steps=60, sweep_lrs=8, sweep_epochs=2, epochs=4,
                 step_size=1.0, width=8)
    return cls()


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> str:
  """The demo's table; rows hold name, iters, final, best, time."""
  header = ("run", "iterations to target", "final val acc", "best val acc",
            "wall time")
  cells = [header] + [(
      r["name"], "not reached" if r["iters"] is None else str(r["iters"]),
      f"{r['final']:.4f}", f"{r['best']:.4f}", f"{r['time']:.1f} s")
      for r in rows]
  widths = [max(len(x[i]) for x in cells) for i in range(len(header))]
  lines = ["  " + "  ".join(x[i].ljust(widths[i]) if i == 0
                            else x[i].rjust(widths[i])
                            for i in range(len(header))) for x in cells]
  lines.insert(1, "  " + "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def _versus(rows: list[dict[str, Any]], target: float, num_val: int) -> str:
  clr_iters, fixed_iters = rows[0]["iters"], rows[1]["iters"]
  if clr_iters is not None and fixed_iters:
    if clr_iters < fixed_iters:
      how = f"{fixed_iters / clr_iters:.2f}x fewer than"
    elif clr_iters > fixed_iters:
      how = f"{clr_iters / fixed_iters:.2f}x more than"
    else:
      how = "as many as"
    return (f"CLR reached the target in {clr_iters} iterations, {how} the "
            f"fixed LR ({fixed_iters})")
  gap = target - rows[0]["best"]
  return (f"CLR did not reach the target: its best is {gap:.4f} lower "
          f"(about {gap * num_val:.0f} of {num_val} validation images)")


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
def demo_cmd(ctx, quick, epochs, width, seed, out, overwrite, no_progress,
             as_json):
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
  cfg = DemoSettings.make(quick)
  cfg.epochs = epochs or cfg.epochs
  cfg.width = width or cfg.width
  with _run.run_dir(ctx, out, overwrite, as_json) as run:
    return _demo(run, cfg, seed, c.progress_enabled(no_progress))


def _demo(run: _run.Run, cfg: DemoSettings, seed: int, progress: bool) -> int:
  from optax_clr import results
  batch_size = 64
  dataset, train, val = c.load_data("digits", 0.2, seed)
  per_epoch = len(train) // batch_size
  run.say(f"data: {dataset.name} {dataset.image_shape}, {len(train)} train "
          f"/ {len(val)} val, batch {batch_size} -> {per_epoch} iterations "
          f"per epoch; CNN width {cfg.width}; SGD momentum")
  # The range tests and train() work on copies: one model serves every run,
  # which therefore all start from the same weights.
  net = c.build_model("cnn", dataset, cfg.width, seed)
  common = dict(optimizer=c.optimizer_factory("sgd", 0.9),
                batch_size=batch_size, seed=seed, progress=progress)
  found = _find_bounds(run, cfg, net, train, val, per_epoch, common)
  plans, rows, target = _train_both(run, cfg, net, train, val, per_epoch,
                                    found, batch_size, seed, progress)
  summary = results.RunSummary(
      command="demo",
      parts={"range_test": "range_test.json", "sweep": "sweep.json",
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
                    epochs=cfg.epochs, width=cfg.width)
  click.echo(f"demo wall time {wall:.1f} s", err=run.as_json)
  return 0


def _find_bounds(run: _run.Run, cfg: DemoSettings, net, train, val,
                 per_epoch: int, common: dict[str, Any]) -> dict[str, Any]:
  """Steps 1 and 2: the range test's CLR bounds and the sweep's best fixed
  LR, each written with its plot (which draws the bounds trained with)."""
  import optax_clr as clr
  from optax_clr import models
  run.say(f"\n[1/4] LR range test: exp ramp {cfg.start_lr:g} -> "
          f"{cfg.end_lr:g} over {cfg.range_steps} steps")
  t0 = time.perf_counter()
  rt = clr.range_test(net, models.cross_entropy_loss, train,
                      start_lr=cfg.start_lr, end_lr=cfg.end_lr,
                      num_steps=cfg.range_steps, **common)
  sugg = rt.suggest()
  t_rt = time.perf_counter() - t0
  run.say(f"stopped: {rt.stop_reason} after {rt.num_steps} steps "
          f"({t_rt:.1f} s)")
  run.say(str(sugg))
  # Each result is written as soon as it exists: kept also when it gives
  # nothing to go on with (no bounds, an interrupted run).
  _write_result(run, "range_test", rt, None if sugg.base_lr is None
                else (sugg.base_lr, sugg.max_lr))  # the bounds trained with
  if sugg.base_lr is None:
    raise ValueError(f"the range test gave no CLR bounds: {sugg.rule}")
  base_lr, max_lr = sugg.base_lr, sugg.max_lr

  lo, hi = base_lr / 10.0, max_lr * 10.0
  sweep_steps = cfg.sweep_epochs * per_epoch
  run.say(f"\n[2/4] parallel sweep: {cfg.sweep_lrs} fixed LRs in "
          f"[{lo:.2e}, {hi:.2e}], {sweep_steps} steps each")
  t0 = time.perf_counter()
  sweep = clr.parallel_range_test(
      net, models.cross_entropy_loss, train, num_lrs=cfg.sweep_lrs,
      min_lr=lo, max_lr=hi, num_steps=sweep_steps, val_data=val, **common)
  t_sweep = time.perf_counter() - t0
  swept = sweep.suggest()
  fixed_lr = swept.best.lr
  _write_result(run, "sweep", sweep, (base_lr, max_lr))
  if fixed_lr is None:
    raise ValueError(f"no LR of the sweep trained: {swept.rule}")
  run.say(f"best fixed LR: {fixed_lr:.3e} ({c.one_line(swept.best.reason)};"
          f" {t_sweep:.1f} s)")
  return {
      "base_lr": base_lr, "max_lr": max_lr, "fixed_lr": fixed_lr,
      "rt_rule": sugg.rule, "sweep_rule": swept.best.reason,
      "range_test": {"base_lr": base_lr, "max_lr": max_lr,
                     "rule": sugg.rule, "stop_reason": rt.stop_reason,
                     "num_steps": rt.num_steps, "time_s": t_rt},
      "sweep": {"lrs": sweep.lrs, "best_lr": fixed_lr,
                "rule": swept.best.reason, "num_steps": sweep_steps,
                "time_s": t_sweep}}


def _write_result(run: _run.Run, name: str, result, bounds) -> None:
  """``name``.json, .csv and .png (with ``bounds`` drawn, if given)."""
  result.to_json(run.path(f"{name}.json"))
  result.to_csv(run.path(f"{name}.csv"))
  result.plot(bounds=bounds, path=run.path(f"{name}.png"))


def _train_both(run: _run.Run, cfg: DemoSettings, net, train, val,
                per_epoch: int, found: Mapping[str, Any], batch_size: int,
                seed: int, progress: bool):
  """Steps 3 and 4: CLR and the best fixed LR trained side by side, the
  comparison table, the plots. Returns ``(plans, rows, target)``."""
  import numpy as np

  from optax_clr import schedules
  base_lr, max_lr, fixed_lr = (found["base_lr"], found["max_lr"],
                               found["fixed_lr"])
  up = max(1, round(cfg.step_size * per_epoch))
  total = cfg.epochs * per_epoch
  plans = {
      "CLR triangular2": schedules.policy_schedules(
          "triangular2", base_lr=base_lr, max_lr=max_lr, step_size_up=up,
          total_steps=total),
      f"fixed LR {fixed_lr:.2e}": schedules.policy_schedules(
          "fixed", lr=fixed_lr, momentum=0.9)}
  run.say(f"\n[3/4] training {cfg.epochs} epochs each: triangular2 CLR "
          f"[{base_lr:.2e}, {max_lr:.2e}], step size {up} iterations, "
          f"momentum 0.9 -> 0.8; fixed LR {fixed_lr:.2e}, momentum 0.9")
  histories, times = {}, {}
  for name, plan in plans.items():
    t0 = time.perf_counter()
    _, hist = _training.fit(
        run, net, train, val, optimizer=c.build_optimizer(
            "sgd", plan.learning_rate, plan.momentum), epochs=cfg.epochs,
        batch_size=batch_size, seed=seed, enabled=progress, desc=name,
        echo=False)
    times[name], histories[name] = time.perf_counter() - t0, hist
    slug = "clr" if name.startswith("CLR") else "fixed"
    hist.to_json(run.path(f"history_{slug}.json"))
    hist.to_csv(run.path(f"history_{slug}.csv"))

  fixed_name = list(plans)[1]
  target = float(np.nanmax(histories[fixed_name].eval_metrics["accuracy"]))
  rows = []
  for name, hist in histories.items():
    acc = np.asarray(hist.eval_metrics["accuracy"])
    rows.append({"name": name, "iters": hist.steps_to_reach("accuracy",
                                                            target),
                 "final": float(acc[-1]), "best": float(np.nanmax(acc)),
                 "time": times[name], "status": hist.status})
  run.say(f"\n[4/4] comparison (target: the fixed-LR run's best validation "
          f"accuracy, {target:.4f})")
  run.say(comparison_table(rows))
  run.say(_versus(rows, target, len(val)))
  _write_comparison(run, plans, histories, rows, total, found)
  return plans, rows, target


def _write_comparison(run, plans, histories, rows, total, found) -> None:
  from optax_clr import _serialize
  from optax_clr import plotting
  plotting.plot_schedules(
      {n: p.learning_rate for n, p in plans.items()}, total,
      momentum={n: p.momentum for n, p in plans.items()},
      title=f"schedules: CLR {found['base_lr']:.2g}-{found['max_lr']:.2g} "
      f"vs fixed {found['fixed_lr']:.2g}", path=run.path("schedule.png"))
  plotting.plot_training(histories, title="training: CLR vs the best fixed "
                         "LR", path=run.path("training.png"))
  _serialize.write_csv(
      ["run", "iterations_to_target", "final_val_accuracy",
       "best_val_accuracy", "wall_time_s"],
      [[r["name"], r["iters"], r["final"], r["best"], round(r["time"], 3)]
       for r in rows], run.path("comparison.csv"))
