"""``train``: a compiled training loop on the shared engine.

:func:`train` trains a copy of a model with any optax optimizer, following
the schedules inside it, and records for every step the training loss and
the learning rate and momentum that step used (read from the
``optax.inject_hyperparams`` state inside the compiled step: the values the
update applied, not a host-side re-evaluation of the schedule). After every
epoch it evaluates on ``val_data``; the result is a
:class:`~optax_clr.TrainHistory`.

Steps run in compiled chunks of the same engine as the range tests (one
host read per chunk; the layout as in :mod:`optax_clr.engine._layout`),
batches come from the same feed (epoch ``e`` visits the examples in the
order ``epoch_order(seed, e)``: the same batches as a range test with that
seed), and a loss that takes ``rngs`` gets a fresh key every step.

Telling the truth: a loss that turns NaN/inf stops training at that step
(``stop_reason="nonfinite"``); a run that never leaves its initial loss is
``status="stalled"``; both warn (``RuntimeWarning``), and the history keeps
every step that ran. Ctrl-C ends training with the steps done so far
(``"interrupted"``). With ``checkpoint_dir`` a checkpoint is written
atomically every ``checkpoint_every`` epochs and at the end
(:mod:`optax_clr.drivers._checkpoint`); ``resume=True`` continues from it
bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from optax_clr import _checks
from optax_clr import _interrupt
from optax_clr import _options
from optax_clr import _progress
from optax_clr import _serialize
from optax_clr.drivers import _checkpoint
from optax_clr.engine import _feed
from optax_clr.engine import _loop
from optax_clr.engine import _loss
from optax_clr.engine import _model
from optax_clr.engine import _optimizer
from optax_clr.engine import _population
from optax_clr.engine import _setup
from optax_clr.engine import _step
from optax_clr.results import TrainHistory
from optax_clr.suggestions import _status

PyTree = Any
TRAIN_CHUNK = 100


@dataclasses.dataclass(frozen=True)
class Scheduled(_step.Frozen):
  """Training as a solver: each step follows the optimizer's own schedules
  and records the LR and momentum the update applied; a NaN/inf loss
  freezes the model at that step."""

  def step(self, spec: _step.Spec, carry: _step.Carry, consts: PyTree,
           val: PyTree, x: PyTree) -> tuple[_step.Carry, dict]:
    del val
    micro, ok, t = x
    before = carry.state.opt_state
    carry, new, loss, active = _step.guarded_step(
        spec, carry, micro, ok,
        _loss.step_key(consts["seed"], consts["copy"], t), {})
    applied = _optimizer.applied_hyperparams(spec.optimizer, before,
                                             new.opt_state)
    return carry, {"loss": loss, "recorded": active,
                   "lr": applied["learning_rate"],
                   "momentum": applied["momentum"]}


def _check_train_args(num_epochs, checkpoint_every, resume, run_config,
                      warn):
  num_epochs = _checks.check_int("num_epochs", num_epochs, low=1)
  checkpoint_every = _checks.check_int("checkpoint_every", checkpoint_every,
                                       low=1)
  _checks.check_bool("resume", resume)
  _checks.check_bool("warn", warn)
  if run_config is not None and not isinstance(run_config, Mapping):
    raise TypeError(f"run_config must be a mapping or None, got "
                    f"{type(run_config).__name__}")
  try:
    run_config = (None if run_config is None
                  else _serialize.jsonable(run_config))
  except TypeError as e:
    raise TypeError(f"run_config must be JSON-able: {e}") from e
  return num_epochs, checkpoint_every, run_config


class _Record:
  """The history being built, epoch by epoch."""

  def __init__(self):
    self.parts = {k: [] for k in ("steps", "losses", "lrs", "momenta",
                                  "eval_steps", "wall_times")}
    self.metrics: dict[str, list[np.ndarray]] = {}
    self.initial: dict[str, np.ndarray] = {}

  def extend(self, previous: TrainHistory) -> None:
    for key in self.parts:
      self.parts[key].append(np.asarray(getattr(previous, key)))
    for key, values in previous.eval_metrics.items():
      self.metrics[key] = [values]
    self.initial = dict(previous.initial_metrics)

  def set_initial(self, metrics: Mapping[str, Any]) -> None:
    self.initial = {k: np.asarray([v], np.float64)
                    for k, v in metrics.items()}

  def add_steps(self, first: int, out: dict[str, np.ndarray]) -> int:
    n = int(out["recorded"].sum())
    self.parts["steps"].append(np.arange(first, first + n))
    self.parts["losses"].append(out["loss"][:n].astype(np.float64))
    self.parts["lrs"].append(out["lr"][:n].astype(np.float64))
    self.parts["momenta"].append(out["momentum"][:n].astype(np.float64))
    return n

  def add_eval(self, steps_done: int, wall: float,
               metrics: Mapping[str, Any], epoch: int) -> None:
    if self.parts["eval_steps"] and set(metrics) != set(self.metrics):
      raise ValueError(
          f"eval_fn returned metrics {sorted(metrics)} in epoch {epoch}, but "
          f"{sorted(self.metrics)} before")
    self.parts["eval_steps"].append(np.array([steps_done]))
    self.parts["wall_times"].append(np.array([wall]))
    for key, value in metrics.items():
      self.metrics.setdefault(key, []).append(np.asarray([value], np.float64))

  def history(self, stop_reason: str, config: dict[str, Any]) -> TrainHistory:
    cat = lambda p: np.concatenate(p) if p else np.zeros((0,))  # noqa: E731
    return TrainHistory(
        steps=cat(self.parts["steps"]).astype(np.int64),
        losses=cat(self.parts["losses"]), lrs=cat(self.parts["lrs"]),
        momenta=cat(self.parts["momenta"]),
        eval_steps=cat(self.parts["eval_steps"]).astype(np.int64),
        eval_metrics={k: cat(v) for k, v in self.metrics.items()},
        wall_times=cat(self.parts["wall_times"]),
        initial_metrics=dict(self.initial), stop_reason=stop_reason,
        config=config)


def train(
    model: Any,
    loss_fn: Callable[..., Any],
    train_data: Any,
    *,
    optimizer: Any,
    num_epochs: int,
    val_data: Any = None,
    steps_per_epoch: int | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: bool = True,
    run_config: Mapping[str, Any] | None = None,
    warn: bool = True,
    options: _options.Options | None = None,
    **option_fields: Any,
) -> tuple[Any, TrainHistory]:
  """Trains a copy of ``model`` for ``num_epochs`` epochs.

  Step ``k`` (from 0) computes ``loss_fn`` on its batch, takes the gradient
  with respect to the trained variables and applies ``optimizer``; with an
  ``inject_hyperparams`` optimizer (e.g. :func:`~optax_clr.cyclic_sgd`) it
  uses ``lr(k)`` and ``momentum(k)``, which are logged next to the loss
  (for ``optax.adamw(schedule)``, ``schedule(k)``; times the scale of a
  ``reduce_on_plateau`` in the chain).

  Args:
    model: an ``nnx.Module``, an Equinox module, a params pytree, or
      :func:`~optax_clr.with_state` ``(model, state)``; not modified.
    loss_fn: as in :func:`~optax_clr.range_test`.
    train_data: arrays with a leading example axis (a ``Dataset`` through
      its ``as_batch()``; epoch ``e`` in the order ``epoch_order(seed, e)``),
      a list of batches (each epoch iterates it again) or an iterator
      (continued from epoch to epoch; needs ``steps_per_epoch``).
    optimizer: an ``optax.GradientTransformation`` or an ``nnx.Optimizer``
      (its ``tx``), used as it is.
    num_epochs: number of epochs, >= 1 (the total, including epochs restored
      from a checkpoint).
    val_data: validation data (a batch, a Dataset, or an iterable whose
      first ``val_batches`` batches are read once), evaluated after every
      epoch.
    steps_per_epoch: steps per epoch (default: a full pass over array data
      or a list of batches).
    checkpoint_dir: directory of ``checkpoint.msgpack``; None: none.
    checkpoint_every: write a checkpoint every this many epochs (>= 1), and
      always after the last one.
    resume: continue from a checkpoint in ``checkpoint_dir``. It must come
      from the same configuration (everything but ``num_epochs`` and
      ``checkpoint_every``); otherwise a ValueError lists the differences.
    run_config: JSON-able settings the arguments cannot reveal (e.g. the
      schedule's hyperparameters); stored in ``config["run_config"]`` and
      compared on resume.
    warn: warn (``RuntimeWarning``) when the run did not train (its
      status, :mod:`optax_clr.suggestions._status`).
    options: as in :func:`~optax_clr.range_test`; ``progress`` may be a
      callable ``progress(epoch, num_epochs, metrics)`` called after each
      epoch with ``"train_loss"`` (epoch mean), ``"lr"`` (of the epoch's
      last step) and ``"val_<name>"``.
    **option_fields: :class:`~optax_clr.Options` fields, overriding
      ``options``.

  Under ``jax.set_mesh(mesh)`` training runs on that mesh: batches split
  over its ``"data"``/``"batch"`` axis, parameters already laid out on it
  (explicit sharding) keep their layout.

  Returns:
    ``(trained_model, history)``: a new module (or pytree; with declared
    state, ``with_state(model, state)``) holding the final weights, and the
    :class:`~optax_clr.TrainHistory` of the whole run (also when it diverged
    or was interrupted).
  """
  options = _options.resolve(options, option_fields, "train")
  num_epochs, checkpoint_every, run_config = _check_train_args(
      num_epochs, checkpoint_every, resume, run_config, warn)
  setup = _setup.prepare(model, loss_fn, train_data, options,
                         val_data=val_data, optimizer=optimizer,
                         training=True, num_steps=10**9)
  epochs = _feed.Epochs(train_data, options.batch_size, steps_per_epoch,
                        setup.feed, options.accumulation_steps)
  # A chunk is at most an epoch, and at most TRAIN_CHUNK steps by default
  # (the chunk's batches are stacked on the host: 100 CIFAR-10 batches of
  # 64 are 79 MB).
  chunk_steps = min(epochs.steps, options.steps_per_chunk or TRAIN_CHUNK)
  setup = setup._replace(chunk_steps=chunk_steps)
  consts = {"seed": np.array([options.seed], np.int32),
            "copy": np.zeros(1, np.int32)}
  prog, _, _ = _population.program(setup, Scheduled(), consts, False,
                                   setup.has_conv)
  pop = _population.start(setup, consts, None)(prog, np.arange(1))
  state = pop.carry_of(0).state
  config = _run_config(setup, model, epochs.steps, num_epochs,
                       checkpoint_every, run_config, train_data, state)
  path = (None if checkpoint_dir is None
          else pathlib.Path(checkpoint_dir) / _checkpoint.CHECKPOINT_NAME)
  record = _Record()
  start_epoch, offset = 0, 0.0
  if path is not None and resume and path.exists():
    state, start_epoch, offset = _resume(path, config, num_epochs, state,
                                         record)
    pop.load(0, prog.solver.init(state))
  progress = options.progress
  # Ctrl-C between epochs (evaluation, checkpoint) also ends the run at the
  # next chunk boundary, with the history kept.
  with _interrupt.deferred(), _progress.reporter(
      None if callable(progress) else progress, "train", "step") as bar:
    stop = _epoch_loop(
        pop, setup, epochs, record, config, path, start_epoch=start_epoch,
        num_epochs=num_epochs, checkpoint_every=checkpoint_every,
        offset=offset, bar=bar,
        on_epoch=progress if callable(progress) and progress is not True
        else None)
  history = record.history(stop, config)
  status = history.status  # a property that classifies the whole run
  if warn and status != "trained":
    warnings.warn(_verdict(history, status), RuntimeWarning, stacklevel=2)
  final = pop.carry_of(0).state
  return _model.rebuild(setup.model, _model.Parts(
      final.params, final.rest, final.state)), history


def _epoch_summary(record: _Record, metrics: Mapping[str, Any]
                   ) -> dict[str, float]:
  """What ``progress(epoch, num_epochs, metrics)`` is shown."""
  losses, lrs = record.parts["losses"], record.parts["lrs"]
  shown = {"train_loss": float(np.mean(losses[-1])) if losses and len(
               losses[-1]) else float("nan"),
           "lr": float(lrs[-1][-1]) if lrs and len(lrs[-1])
           else float("nan")}
  shown.update({f"val_{k}": float(v) for k, v in metrics.items()})
  return shown


def _verdict(history: TrainHistory, status: str) -> str:
  """What a run that did not train (``status``) did, in one sentence with
  the numbers."""
  losses = history.losses
  if status == "nonfinite":
    return (f"training diverged: the loss became non-finite at step "
            f"{int(np.argmax(~np.isfinite(losses)))} (stop_reason="
            f"{history.stop_reason!r}); lower the learning rate (max_lr)")
  if status in ("diverged", "spiked"):
    what, limit = (("ended above", _status.DIVERGE_THRESHOLD)
                   if status == "diverged"
                   else ("rose above", _status.SPIKE_THRESHOLD))
    return (f"training {status}: the loss {what} {limit:g}x its initial "
            f"{losses[0]:.4g} (peak {np.nanmax(losses):.4g}); lower the "
            "learning rate (max_lr)")
  start, evals = history.initial_metrics, history.eval_metrics
  if "accuracy" in start and evals.get("accuracy", np.zeros(0)).size:
    seen = (f"the validation accuracy never rose above its initial "
            f"{start['accuracy'][0]:.4g} (best "
            f"{np.nanmax(evals['accuracy']):.4g})")
  elif "loss" in start and evals.get("loss", np.zeros(0)).size:
    seen = (f"the validation loss never fell below its initial "
            f"{start['loss'][0]:.4g} (best {np.nanmin(evals['loss']):.4g})")
  else:
    seen = (f"the training loss never fell below its initial level (first "
            f"steps {losses[:10].mean():.4g}, last "
            f"{losses[-10:].mean():.4g})")
  return (f"training stalled: {seen}; the learning rate is likely too high "
          "(the model died) or far too low")


def _run_config(setup, model, steps, num_epochs, checkpoint_every,
                run_config, train_data, state) -> dict[str, Any]:
  return _setup.config(
      setup, steps_per_epoch=int(steps), num_epochs=int(num_epochs),
      checkpoint_every=int(checkpoint_every),
      params_digest=_checkpoint.tree_digest(
          (setup.parts.params, setup.parts.rest, setup.parts.state)),
      optimizer_digest=_checkpoint.tree_digest(state.opt_state),
      train_data_digest=_data_digest(train_data, setup.feed),
      val_data_digest=(None if setup.val is None
                       else _checkpoint.tree_digest(setup.val)),
      run_config=run_config, backend=jax.default_backend(),
      execution=setup.options.execution)


def _data_digest(train_data: Any, feed: Any) -> str | None:
  if isinstance(feed, _feed.ArrayFeed):
    return _checkpoint.tree_digest(feed.data)
  return _checkpoint.tree_digest(feed.first_batch())


def _resume(path, config, num_epochs, state, record):
  raw = _checkpoint.read(path)
  diff = _checkpoint.config_diff(raw["config"],
                                 _serialize.jsonable(config))
  if diff:
    raise ValueError(
        f"{path} was written by a different run; differing config keys: "
        + "; ".join(diff) + ". Use another checkpoint_dir, or resume=False "
        "to start over (the checkpoint will be overwritten).")
  start = int(raw["epochs_done"])
  if start > num_epochs:
    raise ValueError(
        f"{path} holds {start} completed epochs, more than "
        f"num_epochs={num_epochs}; use num_epochs >= {start}, another "
        f"checkpoint_dir, or resume=False")
  state = _checkpoint.restore_state(path, raw, state)
  previous = raw["history"]
  record.extend(previous)
  offset = float(previous.wall_times[-1]) if previous.wall_times.size else 0.0
  return state, start, offset


def _epoch_loop(pop, setup, epochs, record, config, path, *, start_epoch,
                num_epochs, checkpoint_every, offset, on_epoch, bar) -> str:
  """Epoch after epoch: the steps, a NaN/inf check, the evaluation, the
  checkpoint, the report; returns the stop reason."""
  placer = _population.xs_placer(pop.blocks[0].prog, setup.chunk_steps)
  if setup.val is not None and start_epoch == 0:
    # The level before training is what "stalled" is judged against.
    record.set_initial({k: v[0] for k, v in pop.evaluate().items()})
  start = time.perf_counter() - offset
  total = num_epochs * epochs.steps
  for epoch in range(start_epoch, num_epochs):
    first = epoch * epochs.steps
    outcome = _loop.drive(
        pop, epochs.chunks(first, first + epochs.steps, setup.chunk_steps),
        lambda chunk, done, f=first: placer(chunk, f + done), epochs.steps,
        report=None if bar is None else (
            lambda done, out, f=first: bar(f + done, total, _shown(out))),
        stop=lambda out: not out["recorded"][0, -1])
    done = first
    for out in outcome.records:
      done += record.add_steps(done, jax.tree.map(lambda x: x[0], out))
    if outcome.interrupted:
      return "interrupted"
    if bool(pop.read(lambda c: c.dead)[0]):
      return "nonfinite"
    metrics = ({} if setup.val is None
               else {k: v[0] for k, v in pop.evaluate().items()})
    record.add_eval(done, time.perf_counter() - start, metrics, epoch + 1)
    epoch_done = epoch + 1
    if path is not None and (epoch_done % checkpoint_every == 0
                             or epoch_done == num_epochs):
      _checkpoint.write(path, state=pop.carry_of(0).state,
                        epochs_done=epoch_done,
                        history=record.history("completed", config),
                        config=config)
    if on_epoch is not None:
      on_epoch(epoch_done, num_epochs, _epoch_summary(record, metrics))
    if outcome.exhausted and done - first < epochs.steps:
      return "data_exhausted"
  return "completed"


def _shown(out: dict[str, np.ndarray]) -> dict[str, float]:
  rec = out["recorded"][0]
  return ({"loss": float(out["loss"][0][rec][-1])} if rec.any() else {})
