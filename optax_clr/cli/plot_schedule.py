"""``optax-clr plot-schedule``: draws LR (and momentum) schedules."""

from __future__ import annotations

import click

from optax_clr.cli import _common as c
from optax_clr.cli import _run
from optax_clr.cli.train import schedule_options

POLICIES = ("triangular", "triangular2", "exp_range", "one-cycle")


@click.command("plot-schedule", context_settings=c.CONTEXT)
@click.option("--policy", "policies", type=c.choice(POLICIES), multiple=True,
              show_default=", ".join(POLICIES),
              help="A policy to draw; repeat to overlay several.")
@click.option("--steps", type=c.POS_INT, default=8000,
              help="Steps (iterations) to draw; one-cycle spans all of "
              "them.")
@click.option("--base-lr", type=c.POSITIVE, default=0.001,
              help="Lower LR bound (Smith's CIFAR-10 example: 0.001).")
@click.option("--max-lr", type=c.POSITIVE, default=0.006,
              help="Upper LR bound (Smith's CIFAR-10 example: 0.006).")
@click.option("--step-size", type=c.POS_INT, default=1000,
              help="Half a cycle, in iterations.")
@schedule_options("iterations", "25", cycle_momentum=False)
@click.option("--momentum/--no-momentum", "draw_momentum", default=True,
              help="Also draw the momentum schedules.")
@c.options(c.OUT, c.OVERWRITE, c.JSON)
@click.pass_context
def plot_schedule_cmd(ctx, policies, steps, base_lr, max_lr, step_size,
                      step_size_down, draw_momentum, out, overwrite,
                      as_json, **shape):
  """Draw learning-rate (and momentum) schedules over --steps steps.

  Example: optax-clr plot-schedule --policy triangular --policy triangular2
  --policy exp_range --policy one-cycle. Writes schedule.png, and the values
  per step in results.json and schedule.csv.
  """
  import optax_clr as clr
  from optax_clr import plotting
  lrs, moms, resolved = {}, {}, {}
  with c.usage_errors():
    for policy in dict.fromkeys(p.lower() for p in policies or POLICIES):
      label = policy if policy == "one-cycle" or shape["waveform"] == (
          "triangular") else f"{policy} ({shape['waveform']})"
      lrs[label], moms[label], resolved[label] = clr.policy_schedules(
          policy, base_lr=base_lr, max_lr=max_lr, step_size_up=step_size,
          step_size_down=None if step_size_down is None else max(
              1, round(step_size_down)), total_steps=steps,
          **dict(shape, decay_bounds=shape["decay_bounds"] and (
              policy == "exp_range"), div_factor=shape["div_factor"] or 25.0))
  with _run.run_dir(ctx, out, overwrite, as_json) as run:
    plotting.plot_schedules(lrs, steps,
                            momentum=moms if draw_momentum else None,
                            title=f"{len(lrs)} schedules over {steps} steps",
                            path=run.path("schedule.png"))
    values = {n: plotting.evaluate_schedule(fn, steps) for n, fn in
              {**lrs, **{f"momentum[{n}]": m for n, m in moms.items()}}
              .items()}
    summary = {n: {"lr_min": v.min(), "lr_max": v.max(), "lr_last": v[-1],
                   "momentum_min": values[f"momentum[{n}]"].min(),
                   "momentum_max": values[f"momentum[{n}]"].max()}
               for n, v in values.items() if n in lrs}
    run.write_json("results.json", {"schedules": resolved,
                                    "summary": summary,
                                    "values": "schedule.csv"})
    from optax_clr import _serialize
    names = [n if n.startswith("momentum[") else f"lr[{n}]" for n in values]
    _serialize.write_csv(["step"] + names, [
        [i] + [float(f"{v[i]:.8g}") for v in values.values()]
        for i in range(steps)], run.path("schedule.csv"))
    for name, v in values.items():
      if name in lrs:
        run.say(f"{name:<24} lr in [{v.min():.3e}, {v.max():.3e}], last "
                f"{v[-1]:.3e}")
    run.finish({"summary": summary}, schedules=resolved)
  return 0
