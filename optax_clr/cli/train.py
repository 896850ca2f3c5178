"""``optax-clr train`` and ``optax-clr fit``.

``train`` trains one schedule: cyclical, one-cycle or fixed, with momentum
cycling; the bounds given, or read from a run (``--bounds-from``).
``fit`` (and ``train --auto-bounds``, the same code) calls
:func:`optax_clr.fit`: candidate schedules trained side by side for the
budget, the worse stopped at cycle ends; the survivor is the trained model.
Both write the history, the plots and the model like any training run.
"""

from __future__ import annotations

import math
import pathlib
import types

import click

from optax_clr.cli import _common as c
from optax_clr.cli import _run

CYCLIC = ("triangular", "triangular2", "exp_range")
ONE_CYCLE_ONLY = ("pct_start", "anneal_strategy", "div_factor",
                  "final_div_factor", "three_phase")
CYCLIC_ONLY = ("waveform", "step_size", "step_size_down")
SHAPE = ("waveform", "gamma", "decay_bounds", "cycle_momentum",
         "base_momentum", "max_momentum", "momentum") + ONE_CYCLE_ONLY
# The flags fit (and train --auto-bounds) use; the schedule is its answer.
FIT_FLAGS = ("data", "model", "width", "batch_size", "val_fraction",
             "epochs", "cycles", "optimizer", "weight_decay", "save_model",
             "allow_failure", "seed", "out", "overwrite", "no_progress",
             "as_json", "auto_bounds")


def schedule_options(step_unit: str, div_default: str,
                     cycle_momentum: bool = True):
  """The schedule's shape: flags of train and plot-schedule."""
  return c.options(*[
      click.option("--waveform", type=c.choice(("triangular", "cosine",
                                                 "welch")),
                   default="triangular", help="Shape of each half cycle "
                   "(Smith 2017 found them equivalent)."),
      click.option("--step-size-down", type=c.POSITIVE, default=None,
                   show_default="= --step-size", help="Length of the "
                   f"falling half ({step_unit}); asymmetric cycles."),
      click.option("--gamma", type=c.Number(float, 0.0, 1.0, low_open=True),
                   default=None, show_default="amplitude decays to 0.1 by "
                   "the last step", help="exp_range: decay per iteration."),
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
                   help="Momentum at the LR minimum.")] + ([click.option(
                       "--cycle-momentum/--no-cycle-momentum", default=True,
                       help="Cycle the momentum inversely to the LR (Smith & "
                       "Topin 2017).")] if cycle_momentum else []))


training_options = c.options(
    click.option("--save-model/--no-save-model", default=True,
                 help="Save the final model as OUT/checkpoint.msgpack."),
    click.option("--allow-failure", is_flag=True,
                 help="Exit 0 even when training diverged or stalled."))


@click.command("train", context_settings=c.CONTEXT)
@c.data_options
@click.option("--policy", type=c.choice(CYCLIC + ("one-cycle", "fixed")),
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
              help="Let `optax-clr fit` choose: candidate schedules around a "
              "range test's scale trained side by side, the worse stopped at "
              "cycle ends; the survivor is the trained model.")
@click.option("--step-size", type=c.POSITIVE, default=4.0,
              help="Half a cycle, in epochs (Smith: 2-10 epochs).")
@click.option("--epochs", type=c.POS_INT, default=16,
              help="Training epochs (Smith: stop after 3-5 cycles).")
@schedule_options("epochs", "25, or --max-lr / --base-lr when given")
@c.optimizer_options
@click.option("--nesterov", is_flag=True, help="SGD: Nesterov momentum.")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False),
              default=None, help="Save a checkpoint every --checkpoint-every "
              "epochs here (and resume from it).")
@click.option("--checkpoint-every", type=c.POS_INT, default=1,
              help="Epochs between checkpoints.")
@click.option("--resume/--no-resume", default=True,
              help="Continue from the checkpoint in --checkpoint-dir.")
@training_options
@c.run_options
@click.pass_context
def train_cmd(ctx, **flags):
  """Train with a cyclical, one-cycle or fixed learning rate.

  The cycle's step size is given in epochs and converted to iterations.
  Prints validation accuracy per epoch; writes results.json and results.csv
  (per step: loss, LR, momentum; per epoch: validation metrics),
  schedule.png, training.png and the final model (checkpoint.msgpack).
  Exits 1 when training diverged or stalled (the results are written
  first), unless --allow-failure.
  """
  f = types.SimpleNamespace(**flags)
  if f.auto_bounds:
    c.reject(ctx, [p.name for p in ctx.command.params
                   if p.name not in FIT_FLAGS],
             "not with --auto-bounds (fit chooses the schedule)")
    return fit_and_report(ctx, f, cycles=None)
  _check_policy_flags(ctx, f)
  with c.usage_errors():
    dataset, train, val = c.load_data(f.data, f.val_fraction, f.seed,
                                      f.batch_size)
    per_epoch = len(train) // f.batch_size
    plan = _plan(f, per_epoch)
  with _run.run_dir(ctx, f.out, f.overwrite, f.as_json) as run:
    run.say(c.describe_data(dataset, train, val, f.model) + f"; {per_epoch} "
            "iterations per epoch")
    run.say("schedule: " + ", ".join(f"{k}={c.fmt(v)}"
                                     for k, v in plan.resolved.items()))
    if plan.source != "options":
      run.say(f"bounds from {plan.source}")
    _cycle_warnings(run, f, plan.resolved, per_epoch)
    ckpt, every, resume = f.checkpoint_dir, f.checkpoint_every, f.resume
    if ckpt is None and f.save_model:
      ckpt, every, resume = run.dir, f.epochs, False  # the final model only
    if resume and plan.done:
      run.say(f"resumed from epoch {plan.done} of {f.epochs} (checkpoint "
              f"{pathlib.Path(ckpt) / 'checkpoint.msgpack'})")
    net = c.build_model(f.model, dataset, f.width, f.seed)
    _, history = train_epochs(
        run, net, train, val, plan.optimizer, f, desc=f"train {f.policy}",
        checkpoint_dir=ckpt, checkpoint_every=every, resume=resume,
        run_config=plan.run_config)
    name = f.policy if f.policy != "fixed" else f"fixed {plan.lr:g}"
    return report(run, history, name, plan.lr, plan.momentum,
                  dict(plan.resolved, bounds_source=plan.source),
                  f.allow_failure)


def _check_policy_flags(ctx, f) -> None:
  if f.policy == "fixed":
    c.reject(ctx, ("base_lr", "max_lr", "cycle_momentum", "base_momentum",
                   "max_momentum", "gamma", "decay_bounds") + ONE_CYCLE_ONLY
             + CYCLIC_ONLY, "not used by --policy fixed (give --lr)")
  else:
    c.reject(ctx, ("lr",), "only for --policy fixed")
  if f.policy != "one-cycle":
    c.reject(ctx, ONE_CYCLE_ONLY, "only for --policy one-cycle")
  else:
    c.reject(ctx, CYCLIC_ONLY, "not used by --policy one-cycle (it spans "
             "all --epochs)")
  if f.policy != "exp_range":
    c.reject(ctx, ("gamma", "decay_bounds"), "only for --policy exp_range")
  if f.policy == "one-cycle" and None not in (f.base_lr, f.div_factor):
    raise c.usage("give --base-lr or --div-factor for one-cycle, not both "
                  "(--div-factor = --max-lr / --base-lr)")
  if f.nesterov and f.optimizer != "sgd":
    raise c.usage("--nesterov needs --optimizer sgd")


def resolve_bounds(policy, base_lr, max_lr, lr, bounds_from):
  """``(base_lr, max_lr, lr, source)`` from the flags or ``--bounds-from``
  (read by :func:`optax_clr.bounds_of`)."""
  source = "options"
  if bounds_from is not None:
    if (base_lr, max_lr, lr) != (None, None, None):
      raise c.usage("give either --bounds-from or --base-lr/--max-lr/--lr, "
                    "not both")
    from optax_clr import results
    found = results.bounds_of(bounds_from, policy)
    base_lr, max_lr, lr = found.base_lr, found.max_lr, found.lr
    source = f"{bounds_from}: {c.one_line(found.source)}"
  if policy == "fixed" and lr is None:
    raise c.usage("--policy fixed needs --lr (or --bounds-from a sweep, "
                  "whose best LR is used)")
  if policy != "fixed" and max_lr is None:
    raise c.usage(f"--policy {policy} needs --max-lr (and --base-lr), "
                  "--bounds-from a run, or --auto-bounds")
  if policy in CYCLIC and base_lr is None:
    raise c.usage(f"--policy {policy} needs --base-lr")
  return base_lr, max_lr, lr, source


def _plan(f, per_epoch: int) -> types.SimpleNamespace:
  """The schedules and optimizer the flags name (checked by the library),
  and what a resumed run must match."""
  import optax_clr as clr
  from optax_clr import drivers
  base_lr, max_lr, lr, source = resolve_bounds(f.policy, f.base_lr,
                                               f.max_lr, f.lr, f.bounds_from)
  steps = lambda epochs: None if epochs is None else max(  # noqa: E731
      1, round(epochs * per_epoch))
  total = f.epochs * per_epoch
  sched = clr.policy_schedules(
      f.policy, base_lr=base_lr, max_lr=max_lr, lr=lr,
      step_size_up=steps(f.step_size), step_size_down=steps(
          f.step_size_down), total_steps=total,
      **{k: getattr(f, k) for k in SHAPE})
  resolved = dict(sched.resolved, steps_per_epoch=per_epoch,
                  total_steps=total)
  # Extending a cyclic run by more epochs is a resume, not a new run; a
  # one-cycle schedule spans total_steps itself.
  run_config = {k: getattr(f, k) for k in (
      "optimizer", "nesterov", "weight_decay", "model", "width", "data",
      "val_fraction")}
  run_config.update((k, v) for k, v in resolved.items()
                    if k != "total_steps" or f.policy == "one-cycle")
  return types.SimpleNamespace(
      lr=sched.learning_rate, momentum=sched.momentum, resolved=resolved,
      source=source, run_config=run_config, optimizer=clr.cyclic_optimizer(
          c.factory(f.optimizer, None, f.weight_decay, f.nesterov),
          learning_rate=sched.learning_rate, momentum=sched.momentum),
      done=f.checkpoint_dir and f.resume and drivers.epochs_done(
          f.checkpoint_dir))


def _cycle_warnings(run, f, resolved, per_epoch: int) -> None:
  """Where the cycles fall: a cycle of under 2 iterations, or a run that
  ends mid-cycle (naming the --epochs that end at a cycle end)."""
  if f.policy not in CYCLIC:
    return
  up, down = resolved["step_size_up"], resolved["step_size_down"]
  cycle, total = up + down, f.epochs * per_epoch
  run.say(f"cycle: {up} + {down} iterations; {total / cycle:.2g} cycles in "
          f"{f.epochs} epochs")
  if up < 2:
    c.warn(f"--step-size {f.step_size:g} epochs is {up} iteration(s): a "
           f"cycle of {up} + {down} iterations; Smith recommends 2-10 epochs "
           f"({2 * per_epoch}-{10 * per_epoch} iterations here)")
  if total % cycle:
    every = cycle // math.gcd(cycle, per_epoch)  # epochs per whole cycles
    ends = [e for e in (f.epochs // every * every,
                        (f.epochs // every + 1) * every) if e > 0]
    c.warn(f"--epochs {f.epochs} ends mid-cycle: {total / cycle:.2g} cycles "
           f"in {f.epochs} epochs (a cycle is {cycle} iterations); --epochs "
           f"{' or '.join(map(str, ends))} would end at a cycle end")


class EpochReporter:
  """Progress of :func:`optax_clr.train`: a bar over epochs and, with
  ``echo``, one line per epoch (the metrics arrive once per epoch)."""

  def __init__(self, run: _run.Run, desc: str, enabled: bool, epochs: int,
               echo: bool = True):
    from optax_clr import _progress
    self.run, self.enabled, self.echo = run, enabled, echo
    self.bar = _progress.Bar(desc, "epoch", epochs, enabled)

  def __call__(self, epoch, total=None, metrics=None):
    self.bar(epoch, total, metrics)
    if self.echo:
      line = f"  epoch {epoch:>{len(str(total))}}/{total}" + "".join(
          f"  {k} {c.fmt(v, '.3e' if k == 'lr' else '.4f')}"
          for k, v in (metrics or {}).items())
      if self.enabled and not self.run.as_json:
        self.bar.write(line)
      else:
        self.run.say(line)


def train_epochs(run, net, train, val, optimizer, f, *, desc, echo=True,
                 **train_kwargs):
  """:func:`optax_clr.train` of the flags' model, data and epochs, with a
  progress bar; returns ``(model, history)``. The verdict on the run is
  the caller's, not a warning."""
  import optax_clr as clr
  reporter = EpochReporter(run, desc, c.progress_enabled(f.no_progress),
                           f.epochs, echo)
  try:
    return clr.train(net, clr.cross_entropy_loss, train, optimizer=optimizer,
                     num_epochs=f.epochs, val_data=val,
                     batch_size=f.batch_size, seed=f.seed, progress=reporter,
                     warn=False, **train_kwargs)
  finally:
    reporter.bar.close()


def report(run, history, name, lr, momentum, resolved, allow_failure) -> int:
  """A training run's files and verdict: results.json/.csv, schedule.png,
  training.png, the summary; exit 1 when it did not train."""
  from optax_clr import plotting
  best = history.best_metrics().get("accuracy")
  if best is not None:
    run.say(f"final val accuracy {history.eval_metrics['accuracy'][-1]:.4f}"
            f"; best {best['value']:.4f} at step {best['step']}")
  title = name if "max_lr" not in resolved else (
      f"{name}: LR {c.fmt(resolved.get('base_lr'), '.3g')} - "
      f"{c.fmt(resolved['max_lr'], '.3g')}")
  run.save(history, "results", "training", label=name,
           title=f"training ({title})")
  plotting.plot_schedules({name: lr}, resolved.get(
      "total_steps", resolved.get("num_steps")), momentum=None if (
          momentum is None) else {name: momentum},
                          title=f"schedule ({title})",
                          path=run.path("schedule.png"))
  run.finish({"status": history.status, "stop_reason": history.stop_reason,
              "final_metrics": history.final_metrics(),
              "best_metrics": history.best_metrics(), "resolved": resolved},
             **resolved)
  if history.status != "trained":
    complaint = (f"training {history.status} after {len(history)} steps "
                 f"(stop reason {history.stop_reason}); the LR is likely too "
                 "high (lower --max-lr/--lr), or far too low if it stalled")
    if not allow_failure:
      raise c.Exit(1, f"{complaint} (results in {run.dir}; --allow-failure "
                   "to exit 0)")
    c.warn(complaint)
  return 0


@click.command("fit", context_settings=c.CONTEXT)
@c.data_options
@click.option("--epochs", type=c.POS_INT, default=12,
              help="The budget: epochs of training, shared by the "
              "candidates.")
@click.option("--cycles", type=c.POS_INT, default=None, show_default="6",
              help="Cycles in the budget; the candidates are compared (the "
              "worse stopped) at every cycle end but the last.")
@c.optimizer_choice
@c.weight_decay_option
@training_options
@c.run_options
@click.pass_context
def fit_cmd(ctx, **flags):
  """Train the model with a schedule measured, not guessed.

  A short range test reads the LR scale; 12 candidate schedules around it
  (triangular CLR, one-cycle, fixed LRs, momentum cycled inversely) train
  side by side for the budget, the worse stopped at cycle ends; the
  survivor is the trained model (no second run). Prints the evidence table;
  writes it (fit.json), the range test, and the survivor's history, plots
  and model like `optax-clr train`.
  """
  return fit_and_report(ctx, types.SimpleNamespace(**flags),
                        cycles=flags["cycles"])


def fit_and_report(ctx, f, cycles) -> int:
  """``optax-clr fit`` and ``train --auto-bounds``: :func:`optax_clr.fit`,
  then the survivor written as a training run."""
  with c.usage_errors():
    dataset, train, val = c.load_data(f.data, f.val_fraction, f.seed,
                                      f.batch_size)
    factory = c.factory(f.optimizer, None, f.weight_decay)
  with _run.run_dir(ctx, f.out, f.overwrite, f.as_json) as run:
    import optax_clr as clr
    from optax_clr import drivers
    run.say(c.describe_data(dataset, train, val, f.model) + f"; fit: "
            f"{f.epochs} epochs, {cycles or 'default'} cycles, {f.optimizer}")
    net = c.build_model(f.model, dataset, f.width, f.seed)
    try:
      result = clr.fit(net, clr.cross_entropy_loss, train, val_data=val,
                       num_epochs=f.epochs, cycles=cycles, optimizer=factory,
                       batch_size=f.batch_size, seed=f.seed, progress=(
                           False if f.no_progress else None))
    except drivers.NoBoundsError as e:  # keep the range test it ran
      run.save(e.range_test, "range_test")
      raise c.Exit(1, f"{c.in_flags(c.one_line(e))}; the range test is in "
                   f"{run.dir}") from e
    run.say(str(result))
    if result.range_test is not None:
      run.save(result.range_test, "range_test")
    run.write_json("fit.json", result.to_dict())
    if f.save_model:
      _save_model(run, result, f.epochs)
    resolved = dict(result.to_dict()["survivor"], rule=result.rule,
                    cost=result.cost, **{k: result.config[k] for k in (
                        "num_steps", "cycles", "cycle_steps")})
    return report(run, result.history, result.candidate.name,
                  result.learning_rate, result.momentum, resolved,
                  f.allow_failure)


def _save_model(run, result, epochs: int) -> None:
  """The survivor's model in the checkpoint format train writes (its
  arrays, epochs, history and config; no optimizer state)."""
  from flax import nnx

  from optax_clr.drivers import _checkpoint
  model = result.model
  _checkpoint.write(run.path(_checkpoint.CHECKPOINT_NAME), state=(
      nnx.state(model) if isinstance(model, nnx.Module) else model),
                    epochs_done=epochs, history=result.history,
                    config=result.config)
