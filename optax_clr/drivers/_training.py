"""``train``: a compiled training loop on the shared engine.

:func:`train` trains a copy of a model with any optax optimizer, following
the schedules inside it, and records for every step the training loss and
the learning rate and momentum that step used (read from the
``optax.inject_hyperparams`` state inside the compiled step: the values the
update applied, not a host-side re-evaluation of the schedule). After every
epoch it evaluates on ``val_data``; the result is a
:class:`~optax_clr.TrainHistory`.

Steps run in compiled chunks of the same engine as the range tests (one
host sync per chunk; ``execution`` as in :mod:`optax_clr.engine._runner`),
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

import os
import pathlib
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optax_clr import _checks
from optax_clr import _interrupt
from optax_clr import _progress
from optax_clr import _serialize
from optax_clr.drivers import _checkpoint
from optax_clr.drivers import _range_test
from optax_clr.drivers import _setup
from optax_clr.engine import _engine
from optax_clr.engine import _feed
from optax_clr.engine import _loss
from optax_clr.engine import _model
from optax_clr.engine import _optimizer
from optax_clr.engine import _placement
from optax_clr.engine import _runner
from optax_clr.results import TrainHistory

PyTree = Any
TRAIN_CHUNK = 100


def train_body(engine: _engine.Engine) -> Callable[..., Any]:
  """One step following the optimizer's schedules; freezes on NaN/inf."""
  def body(carry, consts, _, x):
    state, dead = carry
    micro, ok, t, _ = x
    key = _loss.step_key(consts["seed"], consts["copy"], t)
    new_state, metrics = engine.step(state, micro, key, {})
    loss = metrics["loss"]
    active = ok & ~dead
    finite = jnp.isfinite(loss)
    state = _engine.select_tree(active & finite, new_state, state)
    logged = engine.logged(new_state.opt_state)
    out = {"loss": loss, "recorded": active,
           "lr": logged["learning_rate"], "momentum": logged["momentum"]}
    return (state, dead | (active & ~finite)), out
  return body


class _Epochs:
  """Where each epoch's batches come from."""

  def __init__(self, train_data: Any, batch_size: Any, steps_per_epoch: Any,
               feed: Any, accumulation: int):
    self.data = train_data
    self.accumulation = accumulation
    self.reiterable = isinstance(_feed.as_arrays(train_data), Sequence) and (
        not _feed.is_single_pytree(_feed.as_arrays(train_data)))
    self.feed = feed
    if steps_per_epoch is not None:
      self.steps = _checks.check_int("steps_per_epoch", steps_per_epoch,
                                     low=1)
    elif isinstance(feed, _feed.ArrayFeed):
      self.steps = feed.per_epoch // accumulation
    elif self.reiterable:
      self.steps = len(_feed.as_arrays(train_data)) // accumulation
    else:
      raise ValueError(
          "steps_per_epoch is required when train_data is an iterator (it "
          "has no length); e.g. steps_per_epoch=len(dataset) // batch_size")
    if self.steps < 1:
      raise ValueError(f"batch_size={batch_size} leaves no full batch in "
                       "train_data")

  def chunks(self, epoch: int, chunk_steps: int):
    """The chunks of training epoch ``epoch``: for array data from batch
    ``epoch * steps * accumulation`` of the seeded batch sequence."""
    if isinstance(self.feed, _feed.ArrayFeed):
      batch = epoch * self.steps * self.accumulation
      self.feed.seek(*divmod(batch, self.feed.per_epoch))
      feed = self.feed
    elif self.reiterable and epoch > 0:
      feed = _feed.make_feed(self.data, None, 0)
    else:
      feed = self.feed
    return _feed.iter_chunks(feed, self.steps, chunk_steps,
                             self.accumulation)


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
    batch_size: int | None = None,
    steps_per_epoch: int | None = None,
    val_data: Any = None,
    val_batches: int = 4,
    eval_fn: Callable[..., Any] | None = None,
    seed: int = 0,
    accumulation_steps: int = 1,
    compute_dtype: Any = None,
    wrt: Any = nnx.Param,
    step_mode: Any = "train",
    eval_mode: Any = "eval",
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 1,
    resume: bool = True,
    run_config: Mapping[str, Any] | None = None,
    execution: str = "auto",
    steps_per_chunk: int | None = None,
    progress: Any = None,
    warn: bool = True,
) -> tuple[Any, TrainHistory]:
  """Trains a copy of ``model`` for ``num_epochs`` epochs.

  Step ``k`` (from 0) computes ``loss_fn`` on its batch, takes the gradient
  with respect to the trained variables and applies ``optimizer``; with an
  ``inject_hyperparams`` optimizer (e.g. :func:`~optax_clr.cyclic_sgd`) it
  uses ``lr(k)`` and ``momentum(k)``, which are logged next to the loss.

  Args:
    model: an ``nnx.Module`` or a params pytree; not modified.
    loss_fn: ``loss_fn(model, batch[, rngs])`` -> loss or ``(loss, aux)``
      (see :func:`~optax_clr.range_test`).
    train_data: arrays with a leading example axis (a ``Dataset`` through
      its ``as_batch()``; epoch ``e`` in the order ``epoch_order(seed, e)``),
      a list of batches (each epoch iterates it again) or an iterator
      (continued from epoch to epoch; needs ``steps_per_epoch``).
    optimizer: an ``optax.GradientTransformation`` or an ``nnx.Optimizer``
      (its ``tx``), used as it is.
    num_epochs: number of epochs, >= 1 (the total, including epochs restored
      from a checkpoint).
    batch_size: examples per (micro-)batch, for array data.
    steps_per_epoch: steps per epoch (default: a full pass over array data
      or a list of batches).
    val_data: validation data (a batch, a Dataset, or an iterable whose
      first ``val_batches`` batches are read once), evaluated after every
      epoch.
    val_batches: batches of an iterable ``val_data`` to use.
    eval_fn: ``eval_fn(model, batch) -> dict`` of scalar metrics (default:
      ``loss_fn``'s metrics plus ``"loss"``), in ``eval_mode``.
    seed: seed of the data order and of the per-step keys, >= 0.
    accumulation_steps, compute_dtype, wrt: as in
      :func:`~optax_clr.range_test`.
    step_mode, eval_mode, execution, steps_per_chunk: as in
      :func:`~optax_clr.range_test`.
    checkpoint_dir: directory of ``checkpoint.msgpack``; None: none.
    checkpoint_every: write a checkpoint every this many epochs (>= 1), and
      always after the last one.
    resume: continue from a checkpoint in ``checkpoint_dir``. It must come
      from the same configuration (everything but ``num_epochs`` and
      ``checkpoint_every``); otherwise a ValueError lists the differences.
    run_config: JSON-able settings the arguments cannot reveal (e.g. the
      schedule's hyperparameters); stored in ``config["run_config"]`` and
      compared on resume.
    progress: None (a bar over steps in interactive sessions), True, False,
      or a callable ``progress(epoch, num_epochs, metrics)`` called after
      each epoch with ``epoch`` from 1 and ``metrics`` holding
      ``"train_loss"`` (epoch mean), ``"lr"`` (of the epoch's last step) and
      ``"val_<name>"`` per validation metric.
    warn: warn (``RuntimeWarning``) when the run diverged or stalled.

  Under ``jax.set_mesh(mesh)`` training runs on that mesh as the classic
  range test does: batches split over its ``"data"``/``"batch"`` axis,
  parameters already laid out on it (explicit sharding) keep their layout.

  Returns:
    ``(trained_model, history)``: a new module (or params pytree) holding
    the final parameters, and the :class:`~optax_clr.TrainHistory` of the
    whole run (also when it diverged or was interrupted).
  """
  num_epochs, checkpoint_every, run_config = _check_train_args(
      num_epochs, checkpoint_every, resume, run_config, warn)
  _setup.check_common(
      accumulation_steps=accumulation_steps, val_batches=val_batches,
      seed=seed, steps_per_chunk=steps_per_chunk, loss_fn=loss_fn,
      eval_fn=eval_fn, progress=progress, step_mode=step_mode,
      eval_mode=eval_mode, val_data=val_data)
  mesh, axis = _range_test.single_mesh(None, None, False)
  setup = _setup.prepare(
      model, loss_fn, train_data, optimizer=optimizer, driven=(),
      batch_size=batch_size, seed=seed, val_data=val_data,
      val_batches=val_batches, eval_fn=eval_fn,
      accumulation_steps=accumulation_steps, compute_dtype=compute_dtype,
      wrt=wrt, step_mode=step_mode, eval_mode=eval_mode, execution=execution,
      steps_per_chunk=steps_per_chunk, num_steps=10**9, training=True,
      mesh=mesh, data_axis=axis)
  epochs = _Epochs(train_data, batch_size, steps_per_epoch, setup.feed,
                   accumulation_steps)
  # A chunk is at most an epoch, and at most TRAIN_CHUNK steps by default
  # (the chunk's batches are stacked on the host: 100 CIFAR-10 batches of
  # 64 are 79 MB).
  chunk_steps = min(epochs.steps, steps_per_chunk or TRAIN_CHUNK)
  engine = setup.engine
  with _placement.mesh_context(mesh):
    parts = (setup.parts.params, setup.parts.rest)
    state = jax.jit(lambda p, r: engine.init(p, _model.fold_in_keys(
        r, seed, 0)))(*(parts if mesh is None else
                        _range_test.keep_shardings(parts, mesh)))
  config = _run_config(setup, model, batch_size, epochs.steps, num_epochs,
                       checkpoint_every, compute_dtype, seed,
                       accumulation_steps, run_config, train_data, state)
  path = (None if checkpoint_dir is None
          else pathlib.Path(checkpoint_dir) / _checkpoint.CHECKPOINT_NAME)
  record = _Record()
  start_epoch, offset = 0, 0.0
  if path is not None and resume and path.exists():
    state, start_epoch, offset = _resume(path, config, num_epochs, state,
                                         record)
  # Ctrl-C between epochs (evaluation, checkpoint) also ends the run at the
  # next chunk boundary, with the history kept.
  with _interrupt.deferred(), _progress.reporter(
      None if callable(progress) else progress, "train", "step") as bar:
    state, stop = _epoch_loop(
        setup, epochs, state, record, config, path,
        start_epoch=start_epoch, num_epochs=num_epochs,
        chunk_steps=chunk_steps, checkpoint_every=checkpoint_every,
        seed=seed, offset=offset, mesh=mesh, axis=axis,
        on_epoch=progress if callable(progress) and progress is not True
        else None, bar=bar)
  history = record.history(stop, config)
  if warn and history.status != "trained":
    warnings.warn(_verdict(history), RuntimeWarning, stacklevel=2)
  params, rest = state[0].params, state[0].rest
  return (_model.merge(setup.parts.graphdef, params, rest)
          if setup.parts.graphdef is not None else params), history


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


def _verdict(history: TrainHistory) -> str:
  if history.status == "diverged":
    return (f"training diverged: the loss became non-finite at step "
            f"{len(history)} (stop_reason={history.stop_reason!r}); lower "
            "the learning rate (max_lr)")
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
            f"steps {history.losses[:10].mean():.4g}, last "
            f"{history.losses[-10:].mean():.4g})")
  return (f"training stalled: {seen}; the learning rate is likely too high "
          "(the model died) or far too low")


def _run_config(setup, model, batch_size, steps, num_epochs,
                checkpoint_every, compute_dtype, seed, accumulation,
                run_config, train_data, state) -> dict[str, Any]:
  return {
      "batch_size": None if batch_size is None else int(batch_size),
      "seed": int(seed), "steps_per_epoch": int(steps),
      "num_epochs": int(num_epochs), "checkpoint_every": int(
          checkpoint_every),
      "accumulation_steps": int(accumulation),
      "compute_dtype": _engine.dtype_name(
          _engine.check_compute_dtype(compute_dtype)),
      "model": _model.describe_model(model),
      "params_digest": _checkpoint.tree_digest(
          (setup.parts.params, setup.parts.rest)),
      "optimizer_digest": _checkpoint.tree_digest(state.opt_state),
      "loss_fn": _optimizer.describe(setup.engine.loss.fn),
      "optimizer": setup.engine.optimizer.description,
      "train_data_digest": _data_digest(train_data, setup.feed),
      "val_data_digest": (None if setup.val is None
                          else _checkpoint.tree_digest(setup.val)),
      "run_config": run_config, "backend": jax.default_backend(),
      "execution": setup.execution,
  }


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


def _epoch_loop(setup, epochs, state, record, config, path, *, start_epoch,
                num_epochs, chunk_steps, checkpoint_every,
                seed, offset, on_epoch, bar, mesh=None,
                axis=None) -> tuple[Any, str]:
  engine = setup.engine
  program = engine.program(
      ("train", setup.execution, mesh, axis),
      lambda: _runner.single_program(train_body(engine), setup.execution,
                                     mesh))

  def spec(lead):
    return lambda x: _placement.batch_spec(np.ndim(x), lead, axis)
  evaluate = None
  val = None
  if setup.val is not None:
    val = _placement.put(setup.val, mesh, spec(1))
    eval_program = engine.program(("train_eval", mesh), lambda: jax.jit(
        lambda st, v, k: engine.evaluate_stack(st.params, st.rest, v,
                                               _loss.eval_key(k, 0))))

    def evaluate(st, v, k):
      with _placement.mesh_context(mesh):
        return eval_program(st, v, k)
  consts = _placement.put({"seed": np.int32(seed), "copy": np.int32(0)},
                          mesh)
  if evaluate is not None and start_epoch == 0:
    # The level before training is what "stalled" is judged against.
    record.set_initial(jax.device_get(evaluate(state, val, seed)))
  carry = (state, jnp.bool_(False))
  start = time.perf_counter() - offset
  total = num_epochs * epochs.steps
  for epoch in range(start_epoch, num_epochs):
    first = epoch * epochs.steps

    def place(chunk, at, first=first):
      return (_placement.put(chunk.batches, mesh, spec(2)),
              *_placement.put((chunk.valid, _runner.steps_array(
                  first + at, chunk_steps), None), mesh))
    outcome = _runner.drive(
        program, carry, consts, None,
        epochs.chunks(epoch, chunk_steps), place,
        lambda out, chunk, done: bool(out["recorded"].sum()
                                      < chunk.num_valid),
        epochs.steps,
        None if bar is None else
        (lambda done, _, m, f=first: bar(f + done, total, m)),
        lambda o: {"loss": float(o["loss"][o["recorded"]][-1])}
        if o["recorded"].any() else {})
    done = first
    for out in outcome.records:
      done += record.add_steps(done, out)
    carry = outcome.carry
    if outcome.interrupted:  # before reading the carry: a second Ctrl-C
      return carry, "interrupted"  # may have left it donated
    if bool(jax.device_get(carry[1])):
      return carry, "nonfinite"
    metrics = {} if evaluate is None else jax.device_get(
        evaluate(carry[0], val, seed))
    record.add_eval(done, time.perf_counter() - start, metrics, epoch + 1)
    epoch_done = epoch + 1
    if path is not None and (epoch_done % checkpoint_every == 0
                             or epoch_done == num_epochs):
      _checkpoint.write(path, state=carry[0], epochs_done=epoch_done,
                        history=record.history("completed", config),
                        config=config)
    if on_epoch is not None:
      on_epoch(epoch_done, num_epochs, _epoch_summary(record, metrics))
    if outcome.exhausted and done - first < epochs.steps:
      return carry, "data_exhausted"
  return carry, "completed"
