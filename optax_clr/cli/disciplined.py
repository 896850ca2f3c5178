"""``optax-clr disciplined``: Smith's (2018) recipe: LR range tests at
several weight decays side by side, the weight decay and LR bounds they
suggest, and the cyclical momentum to use."""

from __future__ import annotations

import click

from optax_clr.cli import _common as c
from optax_clr.cli import _run


class Floats(click.ParamType):
  """Distinct comma-separated numbers in ``[low, high)``."""
  name = "floats"

  def __init__(self, low: float, high: float | None = None):
    self.low, self.high = low, high

  def convert(self, value, param, ctx):
    if not isinstance(value, str):
      return value
    values = []
    for part in (p.strip() for p in value.split(",")):
      try:
        x = float(part)
      except ValueError:
        self.fail(f"must be a comma-separated list of numbers, got "
                  f"{value!r}", param, ctx)
      if not (x >= self.low and (self.high is None or x < self.high)):
        bound = (f">= {self.low:g}" if self.high is None
                 else f"in [{self.low:g}, {self.high:g})")
        self.fail(f"must be numbers {bound}, got {part}", param, ctx)
      values.append(x)
    if len(set(values)) != len(values):
      self.fail(f"must be distinct numbers, got {value}", param, ctx)
    return values


@click.command("disciplined", context_settings=c.CONTEXT)
@c.data_options
@click.option("--weight-decays", type=Floats(0.0), default="0,1e-5,1e-4,1e-3",
              help="Comma-separated weight decays to compare.")
@click.option("--momenta", type=Floats(0.0, 1.0), default="0.9",
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
def disciplined_cmd(ctx, data, model, width, batch_size, val_fraction,
                    weight_decays, momenta, optimizer, start_lr, end_lr,
                    steps, seed, out, overwrite, no_progress, as_json):
  """Smith's disciplined approach: LR range tests at several weight decays.

  All ramps run side by side in one compiled program, on the same batches
  from the same weights. The weight decay whose curve reaches about the
  lowest loss and lets the largest LR train is chosen (ties to the larger
  weight decay), with its CLR bounds and the cyclical momentum 0.95 ->
  0.85. Writes results.json, results.csv and weight_decay.png (the loss
  over LR x weight decay); exits 1 when no ramp gave bounds.
  """
  if start_lr >= end_lr:
    raise c.usage(f"--start-lr must be < --end-lr, got --start-lr="
                  f"{start_lr:g}, --end-lr={end_lr:g}")
  with c.usage_errors():
    dataset, train, val = c.load_data(data, val_fraction, seed, batch_size)
  with _run.run_dir(ctx, out, overwrite, as_json) as run:
    import optax_clr as clr
    run.say(c.describe_data(dataset, train, val, model) + f"; "
            f"{len(weight_decays)} weight decays x {len(momenta)} momenta, "
            f"{optimizer}")
    result = clr.weight_decay_range_test(
        c.build_model(model, dataset, width, seed), clr.cross_entropy_loss,
        train, weight_decays=weight_decays, momenta=momenta,
        optimizer=c.factory(optimizer),
        momentum_name="momentum" if optimizer == "sgd" else "b1",
        start_lr=start_lr, end_lr=end_lr, num_steps=steps,
        batch_size=batch_size, seed=seed,
        progress=False if no_progress else None)
    sugg = result.suggest()
    run.say(str(sugg))
    run.save(result, "results", "weight_decay")
    run.finish({"suggestions": sugg.to_dict()}, **sugg.to_dict())
    if sugg.max_lr is None:
      why = c.in_flags(c.one_line(sugg.rule))
      raise c.Exit(1, f"no ramp gave CLR bounds ({why}); results are in "
                   f"{run.dir}")
    run.say(f"next: optax-clr train --bounds-from {run.dir} --optimizer "
            f"{optimizer} --weight-decay {sugg.weight_decay:g} "
            f"--base-momentum {sugg.base_momentum:g} --max-momentum "
            f"{sugg.max_momentum:g}")
  return 0
