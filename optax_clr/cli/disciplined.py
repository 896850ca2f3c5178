"""``optax-clr disciplined``: Smith's (2018) recipe: LR range tests at
several weight decays side by side, the weight decay and LR bounds they
suggest, and the cyclical momentum to use."""

from __future__ import annotations

import types

import click

from optax_clr.cli import _common as c
from optax_clr.cli import _run


def _floats(ctx, param, value: str) -> list[float]:
  """Comma-separated numbers (checked by the library with the ramp)."""
  try:
    return [float(part) for part in value.split(",")]
  except ValueError:
    raise click.BadParameter(f"must be a comma-separated list of numbers, "
                             f"got {value!r}", ctx, param) from None


@click.command("disciplined", context_settings=c.CONTEXT)
@c.data_options
@click.option("--weight-decays", callback=_floats, default="0,1e-5,1e-4,1e-3",
              help="Comma-separated weight decays to compare.")
@click.option("--momenta", callback=_floats, default="0.9",
              help="Comma-separated momenta (b1 for adam) to compare.")
@click.option("--optimizer", type=c.choice(("sgd", "adam")), default="sgd",
              help="sgd (momentum, L2 weight decay) or adam (b1, L2 weight "
              "decay).")
@click.option("--start-lr", type=c.POSITIVE, default=1e-6,
              help="First LR of the ramps.")
@click.option("--end-lr", type=c.POSITIVE, default=10.0,
              help="Last LR of the ramps.")
@click.option("--steps", type=c.Number(int, 2), default=None,
              show_default="40 per decade of LR", help="Steps of the ramps.")
@c.run_options
@click.pass_context
def disciplined_cmd(ctx, **flags):
  """Smith's disciplined approach: LR range tests at several weight decays.

  All ramps run side by side in one compiled program, on the same batches
  from the same weights. The weight decay whose curve reaches about the
  lowest loss and lets the largest LR train is chosen (ties to the larger
  weight decay), with its CLR bounds and the cyclical momentum 0.95 ->
  0.85. Writes results.json, results.csv and weight_decay.png (the loss
  over LR x weight decay); exits 1 when no ramp gave bounds.
  """
  from optax_clr.drivers import _ramp
  f = types.SimpleNamespace(**flags)
  with c.usage_errors():  # the grid and the ramp, by the library's checks
    _ramp._check_grid("weight_decays", f.weight_decays, 0.0, None)
    _ramp._check_grid("momenta", f.momenta, 0.0, 1.0)
    _ramp.RampSettings.check(f.start_lr, f.end_lr, f.steps, "exp", 0.05,
                             None, None, None)
  dataset, train, val = c.load_data(f)
  with _run.Run(ctx, f) as run:
    import optax_clr as clr
    run.say(c.describe_data(dataset, train, val, f.model) + f"; "
            f"{len(f.weight_decays)} weight decays x {len(f.momenta)} "
            f"momenta, {f.optimizer}")
    result = clr.weight_decay_range_test(
        c.build_model(f.model, dataset, f.width, f.seed),
        clr.cross_entropy_loss, train, weight_decays=f.weight_decays,
        momenta=f.momenta, optimizer=c.factory(f.optimizer),
        momentum_name="momentum" if f.optimizer == "sgd" else "b1",
        start_lr=f.start_lr, end_lr=f.end_lr, num_steps=f.steps,
        batch_size=f.batch_size, seed=f.seed,
        progress=False if f.no_progress else None)
    sugg = result.suggest()
    run.say(str(sugg))
    run.save(result, "results", "weight_decay")
    run.finish({"suggestions": sugg.to_dict()}, **sugg.to_dict())
    if sugg.max_lr is None:
      why = c.in_flags(c.one_line(sugg.rule))
      raise c.Exit(1, f"no ramp gave CLR bounds ({why}); results are in "
                   f"{run.dir}")
    run.say(f"next: optax-clr train --bounds-from {run.dir} --optimizer "
            f"{f.optimizer} --weight-decay {sugg.weight_decay:g} "
            f"--base-momentum {sugg.base_momentum:g} --max-momentum "
            f"{sugg.max_momentum:g}")
  return 0
