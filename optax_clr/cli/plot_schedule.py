"""``optax-clr plot-schedule``: draws LR (and momentum) schedules."""

from __future__ import annotations

import types

import click

from optax_clr.cli import _common as c
from optax_clr.cli import _run
from optax_clr.cli.train import schedule_options

POLICIES = ("triangular", "triangular2", "exp_range", "one-cycle")


@click.command("plot-schedule", context_settings=c.CONTEXT)
@click.option("--policy", "policies", type=c.choice(POLICIES), multiple=True,
              show_default=", ".join(POLICIES),
              help="A policy to draw; repeat to overlay several.")
@click.option("--steps", type=c.POS_INT, default=8000, help="Steps "
              "(iterations) to draw; one-cycle spans all of them.")
@click.option("--base-lr", type=c.POSITIVE, default=0.001,
              help="Lower LR bound (Smith's CIFAR-10 example: 0.001).")
@click.option("--max-lr", type=c.POSITIVE, default=0.006,
              help="Upper LR bound (Smith's CIFAR-10 example: 0.006).")
@click.option("--step-size", type=c.POS_INT, default=1000,
              help="Half a cycle, in iterations.")
@schedule_options("iterations", "25", cycle_momentum=False)
@click.option("--momentum/--no-momentum", "draw_momentum", default=True,
              help="Also draw the momentum schedules.")
@c.options(c.OUT, c.JSON)
@click.pass_context
def plot_schedule_cmd(ctx, policies, steps, base_lr, max_lr, step_size,
                      step_size_down, draw_momentum, **shape):
  """Draw learning-rate (and momentum) schedules over --steps steps.

  Example: optax-clr plot-schedule --policy triangular --policy triangular2
  --policy exp_range --policy one-cycle. Writes schedule.png, and the values
  per step in results.json and schedule.csv.
  """
  import optax_clr as clr
  from optax_clr import _serialize
  from optax_clr import plotting
  f = types.SimpleNamespace(**{k: shape.pop(k) for k in (
      "out", "overwrite", "as_json")})
  lrs, moms, resolved = {}, {}, {}
  with c.usage_errors():
    for policy in dict.fromkeys(p.lower() for p in policies or POLICIES):
      label = policy if policy == "one-cycle" or shape["waveform"] == (
          "triangular") else f"{policy} ({shape['waveform']})"
      lrs[label], moms[label], resolved[label] = clr.policy_schedules(
          policy, base_lr=base_lr, max_lr=max_lr, step_size_up=step_size,
          step_size_down=step_size_down and max(1, round(step_size_down)),
          total_steps=steps, **dict(
              shape, div_factor=shape["div_factor"] or 25.0,
              decay_bounds=shape["decay_bounds"] and policy == "exp_range"))
  with _run.Run(ctx, f) as run:
    plotting.plot_schedules(lrs, steps, momentum=moms if draw_momentum else
                            None, path=run.path("schedule.png"),
                            title=f"{len(lrs)} schedules over {steps} steps")
    values = {**{f"lr[{n}]": plotting.evaluate_schedule(s, steps)
                 for n, s in lrs.items()},
              **{f"momentum[{n}]": plotting.evaluate_schedule(s, steps)
                 for n, s in moms.items()}}
    summary = {}
    for n in lrs:
      v, m = values[f"lr[{n}]"], values[f"momentum[{n}]"]
      summary[n] = {"lr_min": v.min(), "lr_max": v.max(), "lr_last": v[-1],
                    "momentum_min": m.min(), "momentum_max": m.max()}
      run.say(f"{n:<24} lr in [{v.min():.3e}, {v.max():.3e}], last "
              f"{v[-1]:.3e}")
    run.write_json("results.json", {"schedules": resolved, "summary":
                                    summary, "values": "schedule.csv"})
    _serialize.write_csv(["step"] + list(values), [
        [i] + [float(f"{v[i]:.8g}") for v in values.values()]
        for i in range(steps)], run.path("schedule.csv"))
    run.finish({"summary": summary}, schedules=resolved)
  return 0
