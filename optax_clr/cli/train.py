"""``optax-clr train``: cyclical, one-cycle or fixed LR, with momentum
cycling; bounds given, read from a run, or found and confirmed
(``--auto-bounds``)."""

from __future__ import annotations

import click

from optax_clr.cli import _common as c
from optax_clr.cli import _run

ONE_CYCLE_ONLY = ("pct_start", "anneal_strategy", "div_factor",
                  "final_div_factor", "three_phase")
CYCLIC_ONLY = ("waveform", "step_size", "step_size_down")
# Smith (2017): the half cycle (the step size) is best 2-10 epochs of
# iterations; 4 epochs with 16 epochs of training gives two full cycles.
DEFAULT_STEP_SIZE_EPOCHS = 4.0


def schedule_options(step_unit: str, *, div_default: str,
                     cycle_momentum: bool = True):
  """Options shared by train and plot-schedule (schedule shape)."""
  opts = [
      click.option("--waveform", type=c.choice(("triangular", "cosine",
                                                 "welch")),
                   default="triangular",
                   help="Shape of each half cycle (Smith 2017 found them "
                   "equivalent)."),
      click.option("--step-size-down", type=c.POSITIVE, default=None,
                   show_default="= --step-size",
                   help=f"Length of the falling half ({step_unit}); "
                   "asymmetric cycles."),
      click.option("--gamma", type=c.GAMMA, default=None,
                   show_default="amplitude decays to 0.1 by the last step",
                   help="exp_range: decay per iteration."),
      click.option("--decay-bounds", is_flag=True,
                   help="exp_range: decay both bounds (the paper's form) "
                   "instead of the amplitude only (PyTorch, Keras)."),
      click.option("--pct-start", type=c.FRACTION, default=0.3,
                   help="one-cycle: fraction of the steps spent rising."),
      click.option("--anneal-strategy", type=c.choice(("cos", "linear")),
                   default="cos", help="one-cycle: annealing shape."),
      click.option("--div-factor", type=c.POSITIVE, default=None,
                   show_default=div_default,
                   help="one-cycle: initial LR = max LR / div factor."),
      click.option("--final-div-factor", type=c.POSITIVE, default=1e4,
                   help="one-cycle: final LR = initial LR / this."),
      click.option("--three-phase", is_flag=True,
                   help="one-cycle: anneal back to the initial LR before "
                   "the final annealing (fastai)."),
      click.option("--base-momentum", type=c.MOMENTUM, default=None,
                   show_default="0.8 CLR, 0.85 one-cycle",
                   help="Momentum at the LR peak."),
      click.option("--max-momentum", type=c.MOMENTUM, default=None,
                   show_default="0.9 CLR, 0.95 one-cycle",
                   help="Momentum at the LR minimum."),
  ]
  if cycle_momentum:
    opts.append(click.option(
        "--cycle-momentum/--no-cycle-momentum", default=True,
        help="Cycle the momentum inversely to the LR (Smith & Topin 2017)."))

  def decorate(f):
    for opt in reversed(opts):
      f = opt(f)
    return f
  return decorate


def check_momentum_bounds(base_momentum, max_momentum, policy):
  from optax_clr.schedules import _policy
  b, m = _policy.momentum_bounds(policy, base_momentum, max_momentum)
  if b > m:
    raise c.usage(f"--base-momentum must be <= --max-momentum, got "
                  f"--base-momentum={b:g}, --max-momentum={m:g}")


def _check_policy_flags(ctx, policy, base_lr, div_factor, nesterov,
                        optimizer, auto_bounds, bounds_from):
  if policy == "fixed":
    c.reject(ctx, ("base_lr", "max_lr", "cycle_momentum", "base_momentum",
                   "max_momentum", "gamma", "decay_bounds") + ONE_CYCLE_ONLY
             + CYCLIC_ONLY, "not used by --policy fixed (give --lr)")
  else:
    c.reject(ctx, ("lr",), "only for --policy fixed")
  if policy != "one-cycle":
    c.reject(ctx, ONE_CYCLE_ONLY, "only for --policy one-cycle")
  else:
    c.reject(ctx, CYCLIC_ONLY, "not used by --policy one-cycle (it spans all "
             "--epochs)")
  if policy != "exp_range":
    c.reject(ctx, ("gamma", "decay_bounds"), "only for --policy exp_range")
  if policy == "one-cycle" and base_lr is not None and div_factor is not None:
    raise c.usage("give --base-lr or --div-factor for one-cycle, not both "
                  "(--div-factor = --max-lr / --base-lr)")
  if nesterov and optimizer != "sgd":
    raise c.usage("--nesterov needs --optimizer sgd")
  if auto_bounds:
    c.reject(ctx, ("base_lr", "max_lr", "lr", "bounds_from"),
             "not with --auto-bounds (it finds the bounds)")


def resolve_bounds(policy, base_lr, max_lr, lr, bounds_from):
  """(base_lr, max_lr, lr, source) from the flags or a results file/run."""
  from optax_clr import results
  source = "options"
  if bounds_from is not None:
    if base_lr is not None or max_lr is not None:
      raise c.usage("give either --bounds-from or --base-lr/--max-lr, not "
                    "both")
    if policy == "fixed" and lr is not None:
      raise c.usage("give either --bounds-from or --lr, not both")
    found = results.bounds_of(results.load_results(bounds_from), policy)
    base_lr, max_lr, lr = found.base_lr, found.max_lr, found.lr
    source = f"{bounds_from}: {c.one_line(found.source)}"
  if policy == "fixed":
    if lr is None:
      raise c.usage("--policy fixed needs --lr (or --bounds-from a sweep, "
                    "whose best LR is used)")
    return None, None, lr, source
  if max_lr is None:
    raise c.usage(f"--policy {policy} needs --max-lr (and --base-lr), "
                  "--bounds-from a run, or --auto-bounds")
  if base_lr is None and policy != "one-cycle":
    raise c.usage(f"--policy {policy} needs --base-lr")
  if base_lr is not None and base_lr >= max_lr:
    raise c.usage(f"--base-lr must be < --max-lr, got --base-lr={base_lr:g}, "
                  f"--max-lr={max_lr:g}")
  return base_lr, max_lr, lr, source


def _cycle_warnings(run, policy, step_size, down, up, epochs, per_epoch):
  if policy not in ("triangular", "triangular2", "exp_range"):
    return
  half = up + (down or up)
  cycles = epochs * per_epoch / half
  if up < 2:
    c.warn(f"--step-size {step_size:g} epochs is {up} iteration(s): a cycle "
           f"of {up} + {down or up} iterations; Smith recommends 2-10 epochs "
           f"({2 * per_epoch}-{10 * per_epoch} iterations here)")
  if cycles < 1:
    c.warn(f"--step-size {step_size:g} epochs: {cycles:.2g} cycles in "
           f"{epochs} epochs; the LR never completes a cycle (use "
           f"--step-size <= {epochs / 2:g}, or more --epochs)")
  run.say(f"cycle: {up} + {down or up} iterations; {cycles:.2g} cycles in "
          f"{epochs} epochs")


@click.command("train", context_settings=c.CONTEXT)
@c.data_options
@click.option("--policy", type=c.choice(
    ("triangular", "triangular2", "exp_range", "one-cycle", "fixed")),
    default="triangular", help="LR policy: cyclical (triangular, "
    "triangular2, exp_range), one-cycle, or a fixed LR.")
@click.option("--base-lr", type=c.POSITIVE, default=None,
              help="Lower LR bound (CLR); one-cycle: initial LR (sets "
              "--div-factor).")
@click.option("--max-lr", type=c.POSITIVE, default=None,
              help="Upper LR bound (CLR), peak LR (one-cycle).")
@click.option("--lr", type=c.POSITIVE, default=None,
              help="The LR of --policy fixed.")
@click.option("--bounds-from", type=click.Path(), default=None,
              metavar="RUN", help="Take the bounds from a run directory or "
              "its results.json (a range test's suggested bounds, a sweep's "
              "bounds or, for --policy fixed, its best LR; the demo's "
              "chosen bounds).")
@click.option("--auto-bounds", is_flag=True,
              help="Find the bounds: a range test, then a confirmation sweep "
              "of candidate schedules for one cycle; trains the best one.")
@click.option("--step-size", type=c.POSITIVE,
              default=DEFAULT_STEP_SIZE_EPOCHS,
              help="Half a cycle, in epochs (Smith: 2-10 epochs).")
@click.option("--epochs", type=c.POS_INT, default=16,
              help="Training epochs (Smith: stop after 3-5 cycles).")
@schedule_options(step_unit="epochs",
                  div_default="25, or --max-lr / --base-lr when given")
@c.optimizer_options
@click.option("--nesterov", is_flag=True, help="SGD: Nesterov momentum.")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False),
              default=None, help="Save a checkpoint every --checkpoint-every "
              "epochs here (and resume from it).")
@click.option("--checkpoint-every", type=c.POS_INT, default=1,
              help="Epochs between checkpoints.")
@click.option("--resume/--no-resume", default=True,
              help="Continue from the checkpoint in --checkpoint-dir.")
@click.option("--save-model/--no-save-model", default=True,
              help="Save the final model as OUT/checkpoint.msgpack.")
@click.option("--allow-failure", is_flag=True,
              help="Exit 0 even when training diverged or stalled.")
@c.run_options
@click.pass_context
def train_cmd(ctx, data, model, width, batch_size, val_fraction, policy,
              base_lr, max_lr, lr, bounds_from, auto_bounds, step_size,
              epochs, waveform, step_size_down, gamma, decay_bounds,
              pct_start, anneal_strategy, div_factor, final_div_factor,
              three_phase, base_momentum, max_momentum, cycle_momentum,
              optimizer, momentum, weight_decay, nesterov, checkpoint_dir,
              checkpoint_every, resume, save_model, allow_failure, seed, out,
              overwrite, no_progress, as_json):
  """Train with a cyclical, one-cycle or fixed learning rate.

  The cycle's step size is given in epochs and converted to iterations.
  Prints validation accuracy per epoch; writes results.json and results.csv
  (per step: loss, LR, momentum; per epoch: validation metrics),
  schedule.png, training.png and the final model (checkpoint.msgpack).
  Exits 1 when training diverged or stalled (the results are written
  first), unless --allow-failure.
  """
  policy = policy.lower()
  _check_policy_flags(ctx, policy, base_lr, div_factor, nesterov, optimizer,
                      auto_bounds, bounds_from)
  check_momentum_bounds(base_momentum, max_momentum, policy)
  if not auto_bounds:
    base_lr, max_lr, lr, source = resolve_bounds(policy, base_lr, max_lr, lr,
                                                 bounds_from)
  dataset, train, val = c.load_data(data, val_fraction, seed)
  c.check_batch(train, batch_size)
  per_epoch = len(train) // batch_size
  up = max(1, round(step_size * per_epoch))
  down = (None if step_size_down is None
          else max(1, round(step_size_down * per_epoch)))
  with _run.run_dir(ctx, out, overwrite, as_json) as run:
    net = c.build_model(model, dataset, width, seed)
    if auto_bounds:
      policy, base_lr, max_lr, lr, source = _auto_bounds(
          run, net, train, val, policy, optimizer, momentum, weight_decay,
          batch_size, seed, up, down, epochs * per_epoch, no_progress)
    from optax_clr.cli import _training
    return _training.train_and_report(
        run, net, dataset, train, val, policy=policy, base_lr=base_lr,
        max_lr=max_lr, lr=lr, source=source, up=up, down=down,
        step_size=step_size, epochs=epochs, per_epoch=per_epoch,
        waveform=waveform, gamma=gamma, decay_bounds=decay_bounds,
        pct_start=pct_start, anneal_strategy=anneal_strategy,
        div_factor=div_factor, final_div_factor=final_div_factor,
        three_phase=three_phase, base_momentum=base_momentum,
        max_momentum=max_momentum, cycle_momentum=cycle_momentum,
        optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
        nesterov=nesterov, checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every, resume=resume,
        save_model=save_model, allow_failure=allow_failure, seed=seed,
        batch_size=batch_size, model=model, width=width, data=data,
        val_fraction=val_fraction, no_progress=no_progress,
        warn_cycles=lambda: _cycle_warnings(run, policy, step_size, down, up,
                                            epochs, per_epoch))


def _auto_bounds(run, net, train, val, policy, optimizer, momentum,
                 weight_decay, batch_size, seed, up, down, total,
                 no_progress):
  import optax_clr as clr
  from optax_clr import models
  cycle = min(total, up + (down or up))
  run.say(f"auto bounds: range test, then {cycle} steps (one cycle) of "
          "candidate schedules side by side")
  from optax_clr.drivers import _confirm
  try:
    choice = clr.find_bounds(
        net, models.cross_entropy_loss, train, val_data=val,
        batch_size=batch_size, num_steps=max(2, cycle),
        optimizer=c.optimizer_factory(optimizer, momentum, weight_decay),
        momentum_name=c.momentum_name(optimizer), seed=seed,
        progress=c.progress_enabled(no_progress))
  except _confirm.NoBoundsError as e:  # keep the range test it ran
    e.range_test.to_json(run.path("range_test.json"))
    e.range_test.plot(path=run.path("range_test.png"))
    raise
  run.say(str(choice))
  choice.range_test.to_json(run.path("range_test.json"))
  choice.range_test.plot(path=run.path("range_test.png"))
  choice.sweep.to_json(run.path("confirmation_sweep.json"))
  run.write_json("confirmation.json", choice.to_dict())
  source = f"auto bounds: {choice.rule}"
  if choice.policy == "fixed":
    return "fixed", None, None, choice.max_lr, source
  if choice.policy == "one-cycle":
    return "one-cycle", None, choice.max_lr, None, source
  cyclic = policy if policy in ("triangular", "triangular2",
                                "exp_range") else "triangular"
  return cyclic, choice.base_lr, choice.max_lr, None, source
