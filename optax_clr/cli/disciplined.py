"""``optax-clr disciplined``: Smith's (2018) recipe: LR range tests at
several weight decays side by side, the weight decay and LR bounds they
suggest, and the cyclical momentum to use."""

from __future__ import annotations

import click

from optax_clr.cli import _common as c
from optax_clr.cli import _run


def _floats(text: str, flag: str, low: float, high: float | None
            ) -> list[float]:
  values = []
  for part in (p.strip() for p in text.split(",")):
    try:
      x = float(part)
    except ValueError:
      raise click.BadParameter(f"must be a comma-separated list of numbers, "
                               f"got {text!r}", param_hint=flag) from None
    if not (x >= low and (high is None or x < high)) or x != x:
      bound = (f"in [{low:g}, {high:g})" if high is not None
               else f">= {low:g}")
      raise click.BadParameter(f"must be numbers {bound}, got {part}",
                               param_hint=flag)
    values.append(x)
  if len(set(values)) != len(values):
    raise click.BadParameter(f"must be distinct numbers, got {text}",
                             param_hint=flag)
  return values


@click.command("disciplined", context_settings=c.CONTEXT)
@c.data_options
@click.option("--weight-decays", default="0,1e-5,1e-4,1e-3",
              help="Comma-separated weight decays to compare.")
@click.option("--momenta", default="0.9",
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
  over LR x weight decay).
  """
  wds = _floats(weight_decays, "--weight-decays", 0.0, None)
  moms = _floats(momenta, "--momenta", 0.0, 1.0)
  if start_lr >= end_lr:
    raise c.usage(f"--start-lr must be < --end-lr, got --start-lr="
                  f"{start_lr:g}, --end-lr={end_lr:g}")
  dataset, train, val = c.load_data(data, val_fraction, seed)
  c.check_batch(train, batch_size)
  with _run.run_dir(ctx, out, overwrite, as_json) as run:
    import optax_clr as clr
    from optax_clr import models
    net = c.build_model(model, dataset, width, seed)
    factory = clr.optimizers.sgd if optimizer == "sgd" else (
        clr.optimizers.adam)
    run.say(f"data: {dataset.name} {dataset.image_shape}, {len(train)} "
            f"train / {len(val)} val; model: {model}; {len(wds)} weight "
            f"decays x {len(moms)} momenta, {optimizer}")
    result = clr.weight_decay_range_test(
        net, models.cross_entropy_loss, train, weight_decays=wds,
        momenta=moms, optimizer=factory,
        momentum_name=c.momentum_name(optimizer), start_lr=start_lr,
        end_lr=end_lr, num_steps=steps, batch_size=batch_size, seed=seed,
        progress=c.progress_enabled(no_progress))
    sugg = result.suggest()
    run.say(str(sugg))
    result.to_json(run.path("results.json"))
    result.to_csv(run.path("results.csv"))
    result.plot(path=run.path("weight_decay.png"))
    run.finish({"suggestions": sugg.to_dict()}, **sugg.to_dict())
    if sugg.max_lr is None:
      raise c.Exit(1, f"no ramp gave CLR bounds "
                   f"({c.in_flags(c.one_line(sugg.rule))}); "
                   f"results are in {run.dir}")
    run.say(f"next: optax-clr train --bounds-from {run.dir} --optimizer "
            f"{optimizer} --weight-decay {sugg.weight_decay:g} "
            f"--base-momentum {sugg.base_momentum:g} --max-momentum "
            f"{sugg.max_momentum:g}")
  return 0
