"""``optax-clr plot-schedule``: draws LR (and momentum) schedules."""

from __future__ import annotations

import click

from optax_clr.cli import _common as c
from optax_clr.cli import _run
from optax_clr.cli.train import check_momentum_bounds
from optax_clr.cli.train import schedule_options


@click.command("plot-schedule", context_settings=c.CONTEXT)
@click.option("--policy", "policies", type=c.choice(
    ("triangular", "triangular2", "exp_range", "one-cycle")), multiple=True,
    show_default="triangular, triangular2, exp_range, one-cycle",
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
@schedule_options(step_unit="iterations", div_default="25",
                  cycle_momentum=False)
@click.option("--momentum/--no-momentum", "draw_momentum", default=True,
              help="Also draw the momentum schedules.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              show_default="runs/plot-schedule-<timestamp>",
              help="Output directory.")
@click.option("--overwrite", is_flag=True,
              help="Reuse an --out directory that already holds a run "
              "(its results, plots and records are removed first).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object with the results on stdout.")
@click.pass_context
def plot_schedule_cmd(ctx, policies, steps, base_lr, max_lr, step_size,
                      waveform, step_size_down, gamma, decay_bounds,
                      pct_start, anneal_strategy, div_factor,
                      final_div_factor, three_phase, base_momentum,
                      max_momentum, draw_momentum, out, overwrite, as_json):
  """Draw learning-rate (and momentum) schedules over --steps steps.

  Example: optax-clr plot-schedule --policy triangular --policy triangular2
  --policy exp_range --policy one-cycle. Writes schedule.png, and the values
  per step in results.json and schedule.csv.
  """
  from optax_clr import plotting
  from optax_clr import schedules
  policies = [p.lower() for p in policies] or ["triangular", "triangular2",
                                               "exp_range", "one-cycle"]
  if base_lr >= max_lr:
    raise c.usage(f"--base-lr must be < --max-lr, got --base-lr="
                  f"{base_lr:g}, --max-lr={max_lr:g}")
  for p in dict.fromkeys(policies):
    check_momentum_bounds(base_momentum, max_momentum, p)
  down = None if step_size_down is None else max(1, round(step_size_down))
  with _run.run_dir(ctx, out, overwrite, as_json) as run:
    lrs, moms, resolved = {}, {}, {}
    for policy in dict.fromkeys(policies):
      label = policy
      if policy != "one-cycle" and waveform != "triangular":
        label = f"{policy} ({waveform})"
      s = schedules.policy_schedules(
          policy, base_lr=base_lr, max_lr=max_lr, step_size_up=step_size,
          step_size_down=down, total_steps=steps, waveform=waveform,
          gamma=gamma, decay_bounds=decay_bounds and policy == "exp_range",
          base_momentum=base_momentum, max_momentum=max_momentum,
          pct_start=pct_start, anneal_strategy=anneal_strategy,
          div_factor=25.0 if div_factor is None else div_factor,
          final_div_factor=final_div_factor, three_phase=three_phase)
      lrs[label], moms[label], resolved[label] = s
    plotting.plot_schedules(lrs, steps,
                            momentum=moms if draw_momentum else None,
                            title=f"{len(lrs)} schedules over {steps} steps",
                            path=run.path("schedule.png"))
    values = {n: plotting.evaluate_schedule(fn, steps)
              for n, fn in lrs.items()}
    momenta = {n: plotting.evaluate_schedule(fn, steps)
               for n, fn in moms.items()}
    summary = {name: {"lr_min": v.min(), "lr_max": v.max(), "lr_last": v[-1],
                      "momentum_min": momenta[name].min(),
                      "momentum_max": momenta[name].max()}
               for name, v in values.items()}
    run.write_json("results.json", {"schedules": resolved,
                                    "summary": summary,
                                    "values": "schedule.csv"})
    from optax_clr import _serialize
    names = list(values)
    _serialize.write_csv(
        ["step"] + [f"lr[{n}]" for n in names]
        + [f"momentum[{n}]" for n in names],
        [[i] + [float(f"{values[n][i]:.8g}") for n in names]
         + [float(f"{momenta[n][i]:.8g}") for n in names]
         for i in range(steps)], run.path("schedule.csv"))
    for name, v in values.items():
      run.say(f"{name:<24} lr in [{v.min():.3e}, {v.max():.3e}], "
              f"last {v[-1]:.3e}")
    run.finish({"summary": summary}, schedules=resolved)
  return 0
