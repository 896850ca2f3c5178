"""Training runs of the CLI (``train`` and the demo): schedules from the
policy flags, the library's ``train`` with per-epoch lines, the files."""

from __future__ import annotations

import pathlib

from optax_clr.cli import _common as c
from optax_clr.cli import _run


class EpochReporter:
  """Progress of :func:`optax_clr.train`: a bar over epochs and, with
  ``echo``, one line per epoch (the metrics arrive once per epoch)."""

  def __init__(self, run: _run.Run, desc: str, enabled: bool, num_epochs: int,
               echo: bool = True):
    from optax_clr import _progress
    self.run = run
    self.bar = _progress.Bar(desc, "epoch", num_epochs, enabled)
    self.enabled = enabled
    self.echo = echo
    self.lines: list[str] = []

  def __call__(self, epoch, total=None, metrics=None):
    self.bar(epoch, total, metrics)
    if not self.echo:
      return
    metrics = dict(metrics or {})
    width = len(str(total))
    parts = [f"epoch {epoch:>{width}}/{total}"]
    if "lr" in metrics:
      parts.append(f"lr {c.fmt(metrics.pop('lr'), '.3e')}")
    for key, value in metrics.items():
      parts.append(f"{key} {c.fmt(value, '.4f')}")
    line = "  " + "  ".join(parts)
    self.lines.append(line)
    if self.enabled and not self.run.as_json:
      self.bar.write(line)
    else:
      self.run.say(line)

  def close(self) -> None:
    self.bar.close()


def fit(run: _run.Run, net, train, val, *, optimizer, epochs, batch_size, seed,
        enabled, desc, echo=True, checkpoint_dir=None, resume=True,
        checkpoint_every=1, run_config=None):
  """:func:`optax_clr.train` with a progress bar; returns (model, history).
  Divergence and stalls are reported by the caller, not warned twice."""
  import optax_clr as clr
  from optax_clr import models
  reporter = EpochReporter(run, desc, enabled, epochs, echo)
  try:
    return clr.train(
        net, models.cross_entropy_loss, train, optimizer=optimizer,
        num_epochs=epochs, batch_size=batch_size, val_data=val, seed=seed,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
        resume=resume, progress=reporter, run_config=run_config, warn=False)
  finally:
    reporter.close()


def verdict(history) -> str | None:
  """The one-line complaint about a run that did not train, or None."""
  if history.status == "diverged":
    return (f"training diverged (the loss became non-finite at step "
            f"{len(history)}); lower --max-lr/--lr")
  if history.status == "stalled":
    acc = history.eval_metrics.get("accuracy")
    extra = "" if acc is None or not acc.size else (
        f", final val accuracy {acc[-1]:.3f}")
    return (f"training stalled: the loss never left its initial level"
            f"{extra}; the LR is likely too high (the model died) or far too "
            "low")
  return None


def train_and_report(run: _run.Run, net, dataset, train, val, *, policy,
                     base_lr, max_lr, lr, source, up, down, step_size,
                     epochs, per_epoch, waveform, gamma, decay_bounds,
                     pct_start, anneal_strategy, div_factor,
                     final_div_factor, three_phase, base_momentum,
                     max_momentum, cycle_momentum, optimizer, momentum,
                     weight_decay, nesterov, checkpoint_dir,
                     checkpoint_every, resume, save_model, allow_failure,
                     seed, batch_size, model, width, data, val_fraction,
                     no_progress, warn_cycles) -> int:
  from optax_clr import drivers
  from optax_clr import schedules
  total = epochs * per_epoch
  sched = schedules.policy_schedules(
      policy, base_lr=base_lr, max_lr=max_lr, lr=lr, step_size_up=up,
      step_size_down=down, total_steps=total, waveform=waveform, gamma=gamma,
      decay_bounds=decay_bounds, cycle_momentum=cycle_momentum,
      momentum=momentum, base_momentum=base_momentum,
      max_momentum=max_momentum, pct_start=pct_start,
      anneal_strategy=anneal_strategy, div_factor=div_factor,
      final_div_factor=final_div_factor, three_phase=three_phase)
  resolved = dict(sched.resolved, bounds_source=source,
                  steps_per_epoch=per_epoch, total_steps=total)
  opt = c.build_optimizer(optimizer, sched.learning_rate, sched.momentum,
                          weight_decay, nesterov)
  run.say(f"data: {dataset.name} {dataset.image_shape}, {len(train)} train "
          f"/ {len(val)} val; model: {model}; {per_epoch} iterations per "
          "epoch")
  run.say("schedule: " + ", ".join(
      f"{k}={c.fmt(v, '.4g') if isinstance(v, float) else v}"
      for k, v in resolved.items() if k != "bounds_source"))
  if source != "options":
    run.say(f"bounds from {source}")
  warn_cycles()
  ckpt_dir, every = checkpoint_dir, checkpoint_every
  if ckpt_dir is None and save_model:
    ckpt_dir, every, resume = run.dir, epochs, False  # the final model only
  if ckpt_dir is not None and resume:
    done = drivers.epochs_done(ckpt_dir)
    if done:
      run.say(f"resumed from epoch {done} of {epochs} (checkpoint "
              f"{pathlib.Path(ckpt_dir) / drivers.CHECKPOINT_NAME})")
  run_config = {"optimizer": optimizer, "nesterov": nesterov,
                "weight_decay": weight_decay, "model": model, "width": width,
                "data": data, "val_fraction": val_fraction,
                # Extending a cyclic run by more epochs is a resume, not a
                # new run; a one-cycle schedule spans total_steps itself.
                **{k: v for k, v in resolved.items()
                   if k != "bounds_source" and (
                       k != "total_steps" or policy == "one-cycle")}}
  _, history = fit(run, net, train, val, optimizer=opt, epochs=epochs,
                   batch_size=batch_size, seed=seed,
                   enabled=c.progress_enabled(no_progress),
                   desc=f"train {policy}", checkpoint_dir=ckpt_dir,
                   resume=resume, checkpoint_every=every,
                   run_config=run_config)
  return write_training(run, history, sched, policy, lr, total, resolved,
                        allow_failure, bounds=(base_lr, max_lr))


def write_training(run, history, sched, policy, lr, total, resolved,
                   allow_failure, bounds) -> int:
  from optax_clr import plotting
  acc = history.eval_metrics.get("accuracy")
  if acc is not None and len(acc):
    best = history.best_metrics()["accuracy"]
    run.say(f"final val accuracy {acc[-1]:.4f}; best {best['value']:.4f} at "
            f"step {best['step']}")
  history.to_json(run.path("results.json"))
  history.to_csv(run.path("results.csv"))
  name = policy if policy != "fixed" else f"fixed {lr:g}"
  title = (f"{name}: LR {c.fmt(bounds[0])} - {c.fmt(bounds[1])}"
           if policy != "fixed" else name)
  mom = {name: sched.momentum}
  plotting.plot_schedules({name: sched.learning_rate}, total, momentum=mom,
                          title=f"schedule ({title})",
                          path=run.path("schedule.png"))
  plotting.plot_training({name: history}, title=f"training ({title})",
                         path=run.path("training.png"))
  complaint = verdict(history)
  run.finish({"status": history.status, "stop_reason": history.stop_reason,
              "final_metrics": history.final_metrics(),
              "best_metrics": history.best_metrics(), "resolved": resolved},
             **resolved)
  if history.stop_reason == "interrupted":
    raise c.Exit(130, f"interrupted after {len(history)} steps; the results "
                 f"so far are in {run.dir}")
  if complaint is not None:
    if allow_failure:
      c.warn(complaint)
    else:
      raise c.Exit(1, complaint + f" (results in {run.dir}; "
                   "--allow-failure to exit 0)")
  return 0
