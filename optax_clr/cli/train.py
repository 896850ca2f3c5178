"""``optax-clr train`` and ``optax-clr fit``.

``train`` trains one schedule: cyclical, one-cycle or fixed, with momentum
cycling; the bounds given, or read from a run (``--bounds-from``).
``fit``, and ``train --auto-bounds`` (the same function), run
:func:`optax_clr.fit`: candidate schedules side by side for the budget, the
worse stopped at cycle ends; the survivor is the trained model. Both write
the history, plots and model the same way (:func:`report`).
"""

from __future__ import annotations

import math
import types

import click

from optax_clr.cli import _common as c
from optax_clr.cli import _run

CYCLIC = ("triangular", "triangular2", "exp_range")
ONE_CYCLE = ("pct_start", "anneal_strategy", "div_factor", "final_div_factor",
             "three_phase")
SHAPE = ("waveform", "gamma", "decay_bounds", "cycle_momentum",
         "base_momentum", "max_momentum", "momentum") + ONE_CYCLE
# Schedule flags -> the policies that use them; the others refuse them.
USED_BY = dict(
    lr=("fixed",), **dict.fromkeys(("base_lr", "max_lr", "cycle_momentum",
                                    "base_momentum", "max_momentum"),
                                   CYCLIC + ("one-cycle",)),
    **dict.fromkeys(("waveform", "step_size", "step_size_down"), CYCLIC),
    **dict.fromkeys(("gamma", "decay_bounds"), ("exp_range",)),
    **dict.fromkeys(ONE_CYCLE, ("one-cycle",)))
# The flags of fit (and of train --auto-bounds): the schedule is its answer.
FIT_FLAGS = ("data", "model", "width", "batch_size", "val_fraction",
             "epochs", "cycles", "optimizer", "weight_decay", "save_model",
             "allow_failure", "seed", "out", "overwrite", "no_progress",
             "as_json", "auto_bounds")


def schedule_options(unit: str, div_default: str, cycle_momentum=True):
  """The schedule's shape: flags of train and plot-schedule."""
  o = c.opt
  return c.options(*[
      o("--waveform", c.choice(("triangular", "cosine", "welch")),
        "triangular", "Shape of each half cycle (Smith 2017: equivalent)."),
      o("--step-size-down", c.POSITIVE, None, f"The falling half ({unit}): "
        "asymmetric cycles.", show_default="= --step-size"),
      o("--gamma", c.Number(float, 0.0, 1.0, low_open=True), None,
        "exp_range: decay per iteration.",
        show_default="amplitude decays to 0.1 by the last step"),
      o("--decay-bounds", None, None, "exp_range: decay both bounds (the "
        "paper's form), not only the amplitude (PyTorch).", is_flag=True),
      o("--pct-start", c.FRACTION, 0.3, "one-cycle: fraction of the steps "
        "spent rising."),
      o("--anneal-strategy", c.choice(("cos", "linear")), "cos",
        "one-cycle: annealing shape."),
      o("--div-factor", c.POSITIVE, None, "one-cycle: initial LR = max LR / "
        "div factor.", show_default=div_default),
      o("--final-div-factor", c.POSITIVE, 1e4, "one-cycle: final LR = "
        "initial LR / this."),
      o("--three-phase", None, None, "one-cycle: anneal back to the initial "
        "LR before the final annealing (fastai).", is_flag=True),
      o("--base-momentum", c.MOMENTUM, None, "Momentum at the LR peak.",
        show_default="0.8 CLR, 0.85 one-cycle"),
      o("--max-momentum", c.MOMENTUM, None, "Momentum at the LR minimum.",
        show_default="0.9 CLR, 0.95 one-cycle")] + [o(
            "--cycle-momentum/--no-cycle-momentum", None, True, "Cycle the "
            "momentum inversely to the LR (Smith & Topin 2017).")][
                :cycle_momentum])


training_options = c.options(
    c.opt("--save-model/--no-save-model", None, True, "Save the final model "
          "as OUT/checkpoint.msgpack."),
    c.opt("--allow-failure", None, None, "Exit 0 even when training "
          "diverged or stalled.", is_flag=True))


@click.command("train", context_settings=c.CONTEXT)
@c.data_options
@c.opt("--policy", c.choice(CYCLIC + ("one-cycle", "fixed")), "triangular",
       "LR policy: cyclical (triangular, triangular2, exp_range), one-cycle "
       "or a fixed LR.")
@c.opt("--base-lr", c.POSITIVE, None, "Lower LR bound (CLR); one-cycle: "
       "initial LR (sets --div-factor).")
@c.opt("--max-lr", c.POSITIVE, None, "Upper LR bound (CLR), peak LR "
       "(one-cycle).")
@c.opt("--lr", c.POSITIVE, None, "The LR of --policy fixed.")
@c.opt("--bounds-from", click.Path(), None, "The bounds of a run (its "
       "directory or results.json): a range test's, a sweep's (its best LR "
       "for --policy fixed) or the demo's.", metavar="RUN")
@c.opt("--auto-bounds", None, None, "Let `optax-clr fit` choose the "
       "schedule (the same run as that command).", is_flag=True)
@c.opt("--step-size", c.POSITIVE, 4.0, "Half a cycle, in epochs (Smith: "
       "2-10 epochs).")
@c.opt("--epochs", c.POS_INT, 16, "Training epochs (Smith: stop after 3-5 "
       "cycles).")
@schedule_options("epochs", "25, or --max-lr / --base-lr when given")
@c.optimizer_options
@c.opt("--nesterov", None, None, "SGD: Nesterov momentum.", is_flag=True)
@c.opt("--checkpoint-dir", click.Path(file_okay=False), None, "Save a "
       "checkpoint here every --checkpoint-every epochs (and resume).")
@c.opt("--checkpoint-every", c.POS_INT, 1, "Epochs between checkpoints.")
@c.opt("--resume/--no-resume", None, True, "Continue from the checkpoint in "
       "--checkpoint-dir.")
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
  c.reject(ctx, [n for n, used in USED_BY.items() if f.policy not in used],
           f"not used by --policy {f.policy}")
  if f.policy == "one-cycle" and None not in (f.base_lr, f.div_factor):
    raise c.usage("give --base-lr or --div-factor for one-cycle, not both "
                  "(--div-factor = --max-lr / --base-lr)")
  if f.nesterov and f.optimizer != "sgd":
    raise c.usage("--nesterov needs --optimizer sgd")
  dataset, train, val = c.load_data(f)
  per_epoch = len(train) // f.batch_size
  with c.usage_errors():
    plan = _plan(f, per_epoch)
  with _run.Run(ctx, f) as run:
    run.say(c.describe_data(dataset, train, val, f.model) + f"; {per_epoch} "
            "iterations per epoch\nschedule: " + ", ".join(
                f"{k}={c.fmt(v)}" for k, v in plan.resolved.items()))
    if plan.source != "options":
      run.say(f"bounds from {plan.source}")
    _cycle_warnings(run, f, plan.resolved, per_epoch)
    ckpt, every, resume = f.checkpoint_dir, f.checkpoint_every, f.resume
    if ckpt is None and f.save_model:
      ckpt, every, resume = run.dir, f.epochs, False  # the final model only
    elif resume and plan.done:
      run.say(f"resumed from epoch {plan.done} of {f.epochs} (checkpoint "
              f"{ckpt}/checkpoint.msgpack)")
    _, history = train_epochs(
        run, c.build_model(f.model, dataset, f.width, f.seed), train, val,
        plan.optimizer, f, desc=f"train {f.policy}", checkpoint_dir=ckpt,
        checkpoint_every=every, resume=resume, run_config=plan.run_config)
    return report(run, history, f.policy if f.policy != "fixed" else
                  f"fixed {plan.lr:g}", plan.lr, plan.momentum,
                  dict(plan.resolved, bounds_source=plan.source),
                  f.allow_failure)


def resolve_bounds(policy, base_lr, max_lr, lr, bounds_from):
  """``(base_lr, max_lr, lr, source)`` from the flags or ``--bounds-from``
  (read by :func:`optax_clr.bounds_of`)."""
  source = "options"
  if bounds_from is not None:
    if (base_lr, max_lr, lr) != (None, None, None):
      raise c.usage("give either --bounds-from or --base-lr/--max-lr/--lr, "
                    "not both")
    from optax_clr import results
    base_lr, max_lr, lr, source = results.bounds_of(bounds_from, policy)
    source = f"{bounds_from}: {c.one_line(source)}"
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
  steps = lambda epochs: epochs and max(1, round(epochs * per_epoch))  # noqa: E731
  sched = clr.policy_schedules(
      f.policy, base_lr=base_lr, max_lr=max_lr, lr=lr,
      step_size_up=steps(f.step_size), total_steps=f.epochs * per_epoch,
      step_size_down=steps(f.step_size_down),
      **{k: getattr(f, k) for k in SHAPE})
  resolved = dict(sched.resolved, steps_per_epoch=per_epoch,
                  total_steps=f.epochs * per_epoch)
  # Extending a cyclic run by more epochs is a resume, not a new run (a
  # one-cycle schedule spans total_steps itself).
  run_config = {k: getattr(f, k) for k in ("optimizer", "nesterov",
                                           "weight_decay", "model", "width",
                                           "data", "val_fraction")}
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
    every = cycle // math.gcd(cycle, per_epoch)  # epochs of whole cycles
    ends = [e for e in (f.epochs // every * every,
                        (f.epochs // every + 1) * every) if e > 0]
    c.warn(f"--epochs {f.epochs} ends mid-cycle: {total / cycle:.2g} cycles "
           f"in {f.epochs} epochs (a cycle is {cycle} iterations); --epochs "
           f"{' or '.join(map(str, ends))} would end at a cycle end")


def train_epochs(run, net, train, val, optimizer, f, *, desc, echo=True,
                 **kwargs):
  """:func:`optax_clr.train` of the flags' data and epochs with a progress
  bar over epochs and, with ``echo``, a line per epoch; ``(model,
  history)``. The verdict is the caller's, not a warning."""
  import optax_clr as clr
  from optax_clr import _progress
  bar = _progress.Bar(desc, "epoch", f.epochs,
                      c.progress_enabled(f.no_progress))

  def report_epoch(epoch, total, metrics):
    bar(epoch, total, metrics)
    line = f"  epoch {epoch:>{len(str(total))}}/{total}" + "".join(
        f"  {k} {c.fmt(v, '.3e' if k == 'lr' else '.4f')}"
        for k, v in metrics.items())
    if echo:
      (bar.write if bar.enabled and not run.as_json else run.say)(line)
  try:
    return clr.train(net, clr.cross_entropy_loss, train, optimizer=optimizer,
                     num_epochs=f.epochs, val_data=val, seed=f.seed,
                     batch_size=f.batch_size, progress=report_epoch,
                     warn=False, **kwargs)
  finally:
    bar.close()


def report(run, history, name, lr, momentum, resolved, allow_failure) -> int:
  """A training run's files (results.json/.csv, schedule.png, training.png)
  and verdict: exit 1 when it did not train (the library's status)."""
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
  plotting.plot_schedules(
      {name: lr}, resolved.get("total_steps", resolved.get("num_steps")),
      momentum=None if momentum is None else {name: momentum},
      title=f"schedule ({title})", path=run.path("schedule.png"))
  run.finish({"status": history.status, "stop_reason": history.stop_reason,
              "final_metrics": history.final_metrics(),
              "best_metrics": history.best_metrics(),
              "resolved": resolved}, **resolved)
  if history.status != "trained":
    why = (f"training {history.status} after {len(history)} steps (stop "
           f"reason {history.stop_reason}); the LR is likely too high (lower "
           "--max-lr/--lr), or far too low if it stalled")
    if not allow_failure:
      raise c.Exit(1, f"{why} (results in {run.dir}; --allow-failure to "
                   "exit 0)")
    c.warn(why)
  return 0


@click.command("fit", context_settings=c.CONTEXT)
@c.data_options
@c.opt("--epochs", c.POS_INT, 12, "The budget: epochs of training.")
@c.opt("--cycles", c.POS_INT, None, "Cycles in the budget; the candidates "
       "are compared at every cycle end but the last.", show_default="6")
@c.OPTIMIZER
@c.WEIGHT_DECAY
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
                        flags["cycles"])


def fit_and_report(ctx, f, cycles) -> int:
  """``optax-clr fit`` and ``train --auto-bounds``: :func:`optax_clr.fit`,
  then the survivor written as a training run."""
  dataset, train, val = c.load_data(f)
  with _run.Run(ctx, f) as run:
    import optax_clr as clr
    from optax_clr import drivers
    run.say(c.describe_data(dataset, train, val, f.model) + f"; fit: "
            f"{f.epochs} epochs, {cycles or 'default'} cycles, {f.optimizer}")
    try:
      result = clr.fit(
          c.build_model(f.model, dataset, f.width, f.seed),
          clr.cross_entropy_loss, train, val_data=val, num_epochs=f.epochs,
          cycles=cycles, optimizer=c.factory(f.optimizer, None,
                                             f.weight_decay),
          batch_size=f.batch_size, seed=f.seed,
          progress=False if f.no_progress else None)
    except drivers.NoBoundsError as e:  # keep the range test it ran
      run.save(e.range_test, "range_test")
      raise c.Exit(1, f"{c.in_flags(c.one_line(e))}; the range test is in "
                   f"{run.dir}") from e
    run.say(str(result))
    if result.range_test is not None:
      run.save(result.range_test, "range_test")
    run.write_json("fit.json", result.to_dict())
    if f.save_model:  # the survivor, in train's checkpoint format (no
      from flax import nnx  # optimizer state)
      from optax_clr.drivers import _checkpoint
      _checkpoint.write(run.path("checkpoint.msgpack"), state=nnx.state(
          result.model), epochs_done=f.epochs, history=result.history,
                        config=result.config)
    return report(run, result.history, result.candidate.name,
                  result.learning_rate, result.momentum, dict(
                      result.to_dict()["survivor"], rule=result.rule,
                      cost=result.cost, **{k: result.config[k] for k in (
                          "num_steps", "cycles", "cycle_steps")}),
                  f.allow_failure)
