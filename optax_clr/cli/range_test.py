"""``optax-clr range-test``: the classic ramp, ``--seeds S`` ramps, or a
``--parallel K`` sweep of fixed LRs; prints the suggestions."""

from __future__ import annotations

import click

from optax_clr.cli import _common as c
from optax_clr.cli import _run


def _check(ctx, parallel, seeds, steps, start_lr, end_lr, min_lr, max_lr):
  if parallel == 1:
    raise click.BadParameter("must be 0 (classic) or >= 2, got 1",
                             param_hint="--parallel")
  if parallel and seeds > 1:
    raise c.usage("--seeds: only for the classic test, not with --parallel")
  if parallel:
    c.reject(ctx, ("start_lr", "end_lr", "ramp", "smoothing", "eval_every"),
             "only for the classic test, not with --parallel")
    if min_lr >= max_lr:
      raise c.usage(f"--min-lr must be < --max-lr, got --min-lr={min_lr:g}, "
                    f"--max-lr={max_lr:g}")
    return
  c.reject(ctx, ("min_lr", "max_lr"), "only with --parallel K")
  if start_lr >= end_lr:
    raise c.usage(f"--start-lr must be < --end-lr, got --start-lr="
                  f"{start_lr:g}, --end-lr={end_lr:g}")
  if steps is not None and steps < 2:
    raise click.BadParameter(f"must be >= 2 for the classic test (a ramp "
                             f"needs two LRs), got {steps}",
                             param_hint="--steps")


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
@click.option("--parallel", "parallel", type=c.NONNEG_INT, default=0,
              metavar="K", show_default="0 = classic",
              help="Train K fixed LRs side by side instead (vmapped, sharded "
              "over the devices).")
@click.option("--min-lr", type=c.POSITIVE, default=1e-4,
              help="Parallel: smallest LR of the log-spaced grid.")
@click.option("--max-lr", type=c.POSITIVE, default=1.0,
              help="Parallel: largest LR of the grid.")
@c.optimizer_options
@c.run_options
@click.pass_context
def range_test_cmd(ctx, data, model, width, batch_size, val_fraction,
                   start_lr, end_lr, steps, ramp, smoothing,
                   diverge_threshold, eval_every, seeds, parallel, min_lr,
                   max_lr, optimizer, momentum, weight_decay, seed, out,
                   overwrite, no_progress, as_json):
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
  range_test.png. Next: `optax-clr train --bounds-from OUT`.
  """
  _check(ctx, parallel, seeds, steps, start_lr, end_lr, min_lr, max_lr)
  # Data first: a bad --data or --batch-size must not leave a directory.
  dataset, train, val = c.load_data(data, val_fraction, seed)
  c.check_batch(train, batch_size)
  with _run.run_dir(ctx, out, overwrite, as_json) as run:
    net = c.build_model(model, dataset, width, seed)
    from optax_clr import models
    factory = c.optimizer_factory(optimizer, momentum, weight_decay)
    progress = c.progress_enabled(no_progress)
    run.say(f"data: {dataset.name} {dataset.image_shape}, {len(train)} "
            f"train / {len(val)} val; model: {model}; optimizer: "
            f"{optimizer} (momentum {momentum:g}, weight decay "
            f"{weight_decay:g})")
    common = dict(optimizer=factory, batch_size=batch_size, seed=seed,
                  progress=progress)
    if parallel:
      import optax_clr as clr
      n = steps or 50
      run.say(f"parallel range test: {parallel} LRs in [{min_lr:g}, "
              f"{max_lr:g}], {n} steps each")
      result = clr.parallel_range_test(
          net, models.cross_entropy_loss, train, num_lrs=parallel,
          min_lr=min_lr, max_lr=max_lr, num_steps=n, val_data=val,
          diverge_threshold=diverge_threshold, **common)
    else:
      result = _classic(run, net, train, val, seeds, start_lr, end_lr, steps,
                        ramp, smoothing, diverge_threshold, eval_every,
                        common)
    return _report(run, result, parallel)


def _classic(run, net, train, val, seeds, start_lr, end_lr, steps, ramp,
             smoothing, diverge_threshold, eval_every, common):
  import optax_clr as clr
  from optax_clr import models
  from optax_clr.drivers import _range_test
  n = steps or _range_test.default_num_steps(start_lr, end_lr)
  kwargs = dict(start_lr=start_lr, end_lr=end_lr, num_steps=n, ramp=ramp,
                smoothing=smoothing, diverge_threshold=diverge_threshold,
                val_data=val if eval_every else None, eval_every=eval_every)
  if seeds > 1:
    seed = common.pop("seed")
    run.say(f"range test over {seeds} seeds: {ramp} ramp {start_lr:g} -> "
            f"{end_lr:g} over {n} steps")
    return clr.multi_seed_range_test(
        net, models.cross_entropy_loss, train,
        seeds=list(range(seed, seed + seeds)), **kwargs, **common)
  run.say(f"range test: {ramp} ramp {start_lr:g} -> {end_lr:g} over {n} "
          "steps")
  result = clr.range_test(net, models.cross_entropy_loss, train, **kwargs,
                          **common)
  last = f" (last LR {result.lrs[-1]:.3g})" if result.num_steps else ""
  run.say(f"stopped: {result.stop_reason} after {result.num_steps} "
          f"steps{last}")
  return result


def _report(run, result, parallel) -> int:
  sugg = result.suggest()
  run.say("suggestions:")
  run.say(str(sugg))
  summary = {"kind": type(result).__name__, "suggestions": sugg.to_dict(),
             "base_lr": sugg.base_lr, "max_lr": sugg.max_lr}
  if parallel:
    best = sugg.best.lr
    if best is not None:
      run.say(f"best fixed LR: {best:.3e} ({c.one_line(sugg.best.reason)})")
    summary["best_lr"] = best
  result.to_json(run.path("results.json"))
  result.to_csv(run.path("results.csv"))
  result.plot(path=run.path("range_test.png"))
  stop = getattr(result, "stop_reason", None)
  summary["stop_reason"] = stop
  run.finish(summary, kind=type(result).__name__, base_lr=sugg.base_lr,
             max_lr=sugg.max_lr)
  if stop == "interrupted":
    raise c.Exit(130, f"interrupted; the steps run so far are in {run.dir}")
  if parallel and sugg.best.lr is None:
    raise c.Exit(1, f"no LR of the sweep trained stably "
                 f"({c.in_flags(c.one_line(sugg.rule))}); results are in "
                 f"{run.dir}")
  if sugg.base_lr is not None:
    run.say(f"next: optax-clr train --bounds-from {run.dir}")
  return 0
