"""``optax-clr range-test``: the classic ramp, ``--seeds S`` ramps, or a
``--parallel K`` sweep of fixed LRs; prints the suggestions, and exits 1
(saying which flag to change) when they give no answer."""

from __future__ import annotations

import types

import click

from optax_clr.cli import _common as c
from optax_clr.cli import _run

CLASSIC_ONLY = ("start_lr", "end_lr", "ramp", "smoothing", "eval_every")


def _check(ctx, f) -> None:
  """The flags the mode would ignore are refused; the values are checked by
  the library's own checks of the ramp, or of the sweep's grid."""
  from optax_clr.drivers import _ramp
  from optax_clr.drivers import _sweep
  if f.parallel == 1:
    raise click.BadParameter("must be 0 (classic) or >= 2, got 1",
                             param_hint="--parallel")
  if f.parallel:
    c.reject(ctx, CLASSIC_ONLY + ("seeds",),
             "only for the classic test, not with --parallel")
  else:
    c.reject(ctx, ("min_lr", "max_lr"), "only with --parallel K")
  with c.usage_errors():
    if f.parallel:
      _sweep.lr_grid(None, f.parallel, f.min_lr, f.max_lr)
    else:
      _ramp.RampSettings.check(f.start_lr, f.end_lr, f.steps, f.ramp,
                               f.smoothing, f.diverge_threshold,
                               f.eval_every, f.eval_every and "val")


@click.command("range-test", context_settings=c.CONTEXT)
@c.data_options
@click.option("--start-lr", type=c.POSITIVE, default=1e-6,
              help="Classic: first LR of the ramp.")
@click.option("--end-lr", type=c.POSITIVE, default=10.0,
              help="Classic: last LR of the ramp.")
@click.option("--steps", type=c.POS_INT, default=None,
              show_default="classic: 40 per decade of LR; parallel: 50",
              help="Classic: steps of the ramp. Parallel: steps per LR.")
@click.option("--ramp", type=c.choice(("exp", "linear")), default="exp",
              help="Classic: exponential (fastai, torch-lr-finder) or "
              "linear (Smith 2017) ramp.")
@click.option("--smoothing", type=c.Number(float, 0.0, 1.0, low_open=True),
              default=0.05, help="Classic: EMA factor of the loss.")
@click.option("--diverge-threshold", type=c.Number(float, 1.0,
                                                    low_open=True),
              default=4.0, help="Stop (classic) or mark a run diverged "
              "(parallel) beyond this multiple of the best/initial loss.")
@click.option("--eval-every", type=c.POS_INT, default=None,
              show_default="never",
              help="Classic: evaluate validation accuracy every N steps "
              "(gives Smith's accuracy-based bounds).")
@click.option("--seeds", type=c.POS_INT, default=1,
              help="Classic: S ramps side by side, one per seed; each "
              "suggestion is reported as the median with its spread.")
@click.option("--parallel", type=c.NONNEG_INT, default=0, metavar="K",
              show_default="0 = classic", help="Train K fixed LRs side by "
              "side instead (vmapped, sharded over the devices).")
@click.option("--min-lr", type=c.POSITIVE, default=1e-4,
              help="Parallel: smallest LR of the log-spaced grid.")
@click.option("--max-lr", type=c.POSITIVE, default=1.0,
              help="Parallel: largest LR of the grid.")
@c.optimizer_options
@c.run_options
@click.pass_context
def range_test_cmd(ctx, **flags):
  """LR range test: find the bounds of a cyclical learning rate.

  Classic (default): one run whose LR rises from --start-lr to --end-lr over
  --steps steps (40 per decade of LR by default: a ramp of a few epochs, as
  Smith recommends for training from scratch); stops early when the
  smoothed loss diverges. --seeds S runs S such ramps at once and reports
  the median suggestion with its spread.

  Parallel (--parallel K): K runs at fixed, log-spaced LRs in
  [--min-lr, --max-lr], each trained --steps steps, all at once; reports the
  best fixed LR, the stable range and CLR bounds read from the finished runs.

  Prints the suggestions; writes results.json, results.csv and
  range_test.png; exits 1 when they hold no answer (no CLR bounds, or no
  stable LR). Next: `optax-clr train --bounds-from OUT`.
  """
  f = types.SimpleNamespace(**flags)
  _check(ctx, f)
  dataset, train, val = c.load_data(f)
  with _run.Run(ctx, f) as run:
    run.say(c.describe_data(dataset, train, val, f.model) + f"; optimizer: "
            f"{f.optimizer} (momentum {f.momentum:g}, weight decay "
            f"{f.weight_decay:g})")
    net = c.build_model(f.model, dataset, f.width, f.seed)
    return _report(run, f, _test(run, f, net, train, val))


def _test(run, f, net, train, val):
  """The library's test the flags ask for."""
  import optax_clr as clr
  common = dict(optimizer=c.factory(f.optimizer, f.momentum, f.weight_decay),
                batch_size=f.batch_size, diverge_threshold=f.diverge_threshold,
                progress=False if f.no_progress else None)
  steps = {} if f.steps is None else {"num_steps": f.steps}
  if f.parallel:
    run.say(f"parallel range test: {f.parallel} LRs in [{f.min_lr:g}, "
            f"{f.max_lr:g}], {f.steps or 'the default'} steps each")
    return clr.parallel_range_test(
        net, clr.cross_entropy_loss, train, num_lrs=f.parallel,
        min_lr=f.min_lr, max_lr=f.max_lr, val_data=val, seed=f.seed,
        **steps, **common)
  ramp = dict(start_lr=f.start_lr, end_lr=f.end_lr, ramp=f.ramp,
              smoothing=f.smoothing, eval_every=f.eval_every,
              val_data=val if f.eval_every else None, **steps, **common)
  run.say(f"range test{f' over {f.seeds} seeds' if f.seeds > 1 else ''}: "
          f"{f.ramp} ramp {f.start_lr:g} -> {f.end_lr:g} over "
          f"{f.steps or '40 per decade of LR'} steps")
  if f.seeds > 1:
    return clr.multi_seed_range_test(
        net, clr.cross_entropy_loss, train,
        seeds=list(range(f.seed, f.seed + f.seeds)), **ramp)
  result = clr.range_test(net, clr.cross_entropy_loss, train, seed=f.seed,
                          **ramp)
  last = f" (last LR {result.lrs[-1]:.3g})" if result.num_steps else ""
  run.say(f"stopped: {result.stop_reason} after {result.num_steps} "
          f"steps{last}")
  return result


def _report(run, f, result) -> int:
  sugg = result.suggest()
  run.say("suggestions:")
  run.say(str(sugg))
  run.save(result, "results", "range_test")
  best = sugg.best.lr if f.parallel else None
  if best is not None:
    run.say(f"best fixed LR: {best:.3e} ({c.one_line(sugg.best.reason)})")
  run.finish({"kind": type(result).__name__, "suggestions": sugg.to_dict(),
              "base_lr": sugg.base_lr, "max_lr": sugg.max_lr,
              "best_lr": best}, kind=type(result).__name__,
             base_lr=sugg.base_lr, max_lr=sugg.max_lr)
  why = c.in_flags(c.one_line(sugg.rule))
  if f.parallel and best is None:
    raise c.Exit(1, f"no LR of the sweep trained stably ({why}); results "
                 f"are in {run.dir}")
  if not f.parallel and sugg.base_lr is None:
    from optax_clr import suggestions
    ramp = result.lrs[(0,) * (result.lrs.ndim - 1)]  # the (first) ramp
    why = why.removeprefix("no CLR bounds: ")
    if set(getattr(result, "stop_reasons", [getattr(
        result, "stop_reason", None)])) == {"completed"} and (
            "too short" in why or suggestions.resolution(ramp, f.smoothing)):
      why = f"--steps {ramp.size} is too short for this ramp ({why})"
    raise c.Exit(1, f"no CLR bounds: {why}; results are in {run.dir}")
  run.say(f"next: optax-clr train --bounds-from {run.dir}")
  return 0
