"""The parallel range test: K copies of a model, one per LR, side by side.

Instead of ramping the LR during one run, :func:`parallel_range_test` trains
K copies of the model for ``num_steps`` steps each, copy k at its own LR
``lrs[k]`` (or a per-copy schedule ``schedule_fn(lrs[k])``), on the same
batches, and reports each copy's loss curve, final and windowed mean loss,
validation metrics before and after, and its status (trained, stalled,
spiked, diverged; :func:`optax_clr.suggestions.classify`). It answers "which
LR trains best over N steps" directly, at the cost of K runs of compute --
run as one compiled program, vmapped and sharded over every device
(:mod:`optax_clr.drivers._population`).

A copy whose loss turns NaN/inf is frozen at that step (its state is kept
with ``jnp.where``, so NaNs never reach its parameters); every other copy is
unaffected.

Multi-host: call ``jax.distributed.initialize()`` on every host, then this
function on every host with the same arguments and the same data; the
default mesh spans ``jax.devices()`` of all hosts and every host gets the
full result (see :mod:`optax_clr.engine._placement`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from optax_clr import _checks
from optax_clr import suggestions as _sg
from optax_clr.drivers import _population
from optax_clr.drivers import _setup
from optax_clr.engine import _engine
from optax_clr.engine import _loss
from optax_clr.engine import _placement
from optax_clr.engine import _optimizer
from optax_clr.results import ParallelSweepResult

PyTree = Any


def lr_grid(lrs: Any, num_lrs: Any, min_lr: Any, max_lr: Any) -> np.ndarray:
  """The sweep's LRs, sorted: ``lrs`` as given (checked: finite, > 0 in
  float32, distinct), or ``num_lrs`` log-spaced in ``[min_lr, max_lr]``."""
  if lrs is None:
    _checks.check_int("num_lrs", num_lrs, low=1)
    lo = _checks.check_number("min_lr", min_lr, low=0.0, low_inclusive=False)
    hi = _checks.check_number("max_lr", max_lr, low=0.0, low_inclusive=False)
    if num_lrs == 1:
      _checks.check_order("min_lr", lo, "max_lr", hi)
      return np.array([lo])
    _checks.check_order("min_lr", lo, "max_lr", hi, strict=True)
    return np.geomspace(lo, hi, num_lrs)
  arr = _checks.check_real_array("lrs", lrs, ndim=1, positive=True)
  if arr.size < 1:
    raise ValueError("lrs must hold at least one LR (K >= 1), got 0")
  arr = np.sort(arr)
  dup = np.flatnonzero(np.diff(arr.astype(np.float32)) == 0)
  if dup.size:
    raise ValueError(f"lrs must be distinct (in float32), got {arr[dup[0]]!r}"
                     " twice")
  return arr


def check_schedule_fn(schedule_fn: Any) -> None:
  """``schedule_fn(lr)(t)`` must trace to a scalar for a traced lr and t."""
  if schedule_fn is None:
    return
  _checks.check_callable("schedule_fn", schedule_fn)
  try:
    out = jax.eval_shape(lambda lr, t: schedule_fn(lr)(t), jnp.float32(0.1),
                         jnp.int32(0))
  except Exception as e:  # pylint: disable=broad-except
    raise TypeError(
        "schedule_fn must map an LR to a schedule step -> LR (e.g. lambda "
        "lr: optax_clr.cyclic_schedule(lr / 4, lr, 100)); calling "
        f"schedule_fn(lr)(step) on traced values raised "
        f"{type(e).__name__}: {' '.join(str(e).split())[:200]}") from e
  if getattr(out, "shape", None) != ():
    raise ValueError(
        "schedule_fn(lr) must return a schedule step -> scalar LR, got "
        f"{_checks.describe(out)}")


def lr_schedule_fn(schedule_fn: Callable[..., Any]) -> Callable[..., Any]:
  """The ``hyper_fn`` of a per-copy LR schedule ``schedule_fn(lr_k)``."""
  def hyper_fn(hyper, t):
    return {**hyper, "learning_rate": schedule_fn(hyper["learning_rate"])(t)}
  return hyper_fn


def sweep_body(engine: _engine.Engine, hyper_fn: Callable[..., Any] | None,
               data_axis: str | None = None) -> Callable[..., Any]:
  """One step of one copy at its own hyperparameters: ``consts["hyper"]``
  as they are, or ``hyper_fn(consts["hyper"], step)`` (per-copy
  schedules)."""
  def body(carry, consts, val, x):
    state, dead, dead_at = carry
    micro, ok, t, _ = x
    hyper = dict(consts["hyper"])
    if hyper_fn is not None:
      hyper = hyper_fn(hyper, t)
    key = _loss.step_key(consts["seed"], consts["copy"], t)
    new_state, metrics = engine.step(state, micro, key, hyper, data_axis)
    loss = metrics["loss"]
    active = ok & ~dead
    finite = jnp.isfinite(loss)
    state = _engine.select_tree(active & finite, new_state, state)
    newly = active & ~finite
    dead_at = jnp.where(newly, t, dead_at)
    out = {"loss": jnp.where(active, loss, jnp.nan), "recorded": active}
    return (state, dead | newly, dead_at), out
  return body


def sweep_carry(state: Any) -> tuple:
  return state, jnp.bool_(False), jnp.int32(-1)


def sweep_state(carry: Any) -> tuple:
  return carry[0], carry[1]


def sweep_code(carry: Any) -> Any:
  return carry[2]


_LR_FNS: dict[int, tuple[Any, Any]] = {}


def _cached_lr_fn(schedule_fn: Callable[..., Any]) -> Callable[..., Any]:
  """One ``hyper_fn`` object per ``schedule_fn``, so that its compiled
  program is found again."""
  got = _LR_FNS.get(id(schedule_fn))
  if got is None or got[0] is not schedule_fn:
    got = (schedule_fn, lr_schedule_fn(schedule_fn))
    _LR_FNS[id(schedule_fn)] = got
  return got[1]


def summarize(losses: np.ndarray, nonfinite_at: np.ndarray, window: int,
              diverge_threshold: float | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """``(final_loss, mean_loss, diverged, diverged_at)`` of [K, N] losses.

  ``mean_loss`` is the windowed mean of the last steps' finite losses,
  exact after any spike (:func:`optax_clr.suggestions.windowed_mean`); a run
  diverged at its first NaN/inf loss, or -- for the threshold -- at the
  first step whose windowed mean exceeds ``diverge_threshold`` times its
  initial loss, when its final windowed mean does too.
  """
  k, n = losses.shape
  trailing = _sg.windowed_mean(losses, window) if n else np.zeros((k, 0))
  final = losses[:, -1] if n else np.full(k, np.nan)
  mean = trailing[:, -1] if n else np.full(k, np.nan)
  nonfinite = nonfinite_at >= 0
  diverged = nonfinite.copy()
  diverged_at = nonfinite_at.astype(np.int64)
  if diverge_threshold is not None and n:
    with np.errstate(invalid="ignore"):
      over = trailing > diverge_threshold * losses[:, :1]
    over_final = over[:, -1] & ~nonfinite
    diverged_at = np.where(over_final, np.argmax(over, axis=1), diverged_at)
    diverged |= over_final
  return final, mean, diverged, np.where(diverged, diverged_at, -1)


def parallel_range_test(
    model: Any,
    loss_fn: Callable[..., Any],
    train_data: Any,
    *,
    lrs: Any = None,
    num_lrs: int = 16,
    min_lr: float = 1e-4,
    max_lr: float = 1.0,
    num_steps: int = 50,
    schedule_fn: Callable[[jax.Array], Callable[..., Any]] | None = None,
    init: str = "shared",
    model_init: Callable[[jax.Array], Any] | None = None,
    optimizer: Any = None,
    batch_size: int | None = None,
    window: int = 10,
    diverge_threshold: float | None = 4.0,
    val_data: Any = None,
    eval_fn: Callable[..., Any] | None = None,
    val_batches: int = 4,
    accumulation_steps: int = 1,
    compute_dtype: Any = None,
    max_parallel: int | None = None,
    group_size: int | str = "auto",
    mesh: Mesh | None = None,
    seed: int = 0,
    wrt: Any = nnx.Param,
    step_mode: Any = "train",
    eval_mode: Any = "eval",
    execution: str = "auto",
    steps_per_chunk: int | None = None,
    progress: Any = None,
) -> ParallelSweepResult:
  """Trains K copies of ``model``, one per LR, side by side.

  Args:
    model: an ``nnx.Module`` or a plain params pytree (see
      :func:`~optax_clr.range_test`); not modified.
    loss_fn: ``loss_fn(model, batch[, rngs])`` -> loss or ``(loss, aux)``.
    train_data: arrays with a leading example axis (with ``batch_size``) or
      an iterable of batches; every copy sees the same batches.
    lrs: the K LRs (any order; the result is sorted ascending). Default:
      ``num_lrs`` LRs log-spaced from ``min_lr`` to ``max_lr``.
    num_lrs: K for the default grid, >= 1.
    min_lr: smallest LR of the default grid, > 0.
    max_lr: largest LR of the default grid, > ``min_lr``.
    num_steps: training steps per copy, >= 1.
    schedule_fn: optional ``lr_k -> optax.Schedule``: copy k's LR at step t
      is ``schedule_fn(lr_k)(t)`` (e.g. ``lambda lr: cyclic_schedule(lr / 4,
      lr, 5)``); called on a traced ``lr_k``, so it must be jittable.
    init: ``"shared"``: every copy starts from ``model``'s weights (the
      sweep then isolates the effect of the LR); ``"independent"``: copy k
      starts from ``model_init(key_k)`` with ``key_k`` the k-th of
      ``jax.random.split(jax.random.key(seed), K)``.
    model_init: for ``init="independent"``: ``key -> model`` with the same
      tree paths, shapes and dtypes as ``model``. Traced under ``jax.vmap``.
    optimizer: as in :func:`~optax_clr.range_test` (the LR is driven).
    batch_size: examples per (micro-)batch for array data.
    window: ``mean_loss`` averages the finite losses of the last ``window``
      steps.
    diverge_threshold: a run diverged when a loss is NaN/inf, or when its
      final ``mean_loss`` exceeds this multiple of its initial loss; None
      keeps only the NaN/inf criterion.
    val_data: validation data (one batch, or an iterable whose first
      ``val_batches`` batches are read once); each copy is evaluated before
      and after training (NaN for copies that hit a NaN/inf loss).
    eval_fn: ``eval_fn(model, batch) -> dict`` of scalar metrics.
    val_batches: batches of an iterable ``val_data`` to use.
    accumulation_steps: micro-batches per step (gradients averaged).
    compute_dtype: e.g. ``jnp.bfloat16`` for the forward/backward pass.
    max_parallel: most copies resident at once (rounded down to a multiple
      of the devices, at least one per device); K is then run in rounds.
      Default: all K on CPU; on GPU/TPU as many as fit in 80% of each
      device's free memory (``memory_stats()``), estimated from XLA's
      memory analysis of the compiled step, so that e.g. K = 4096 runs
      in rounds instead of running out of memory (``config
      ["memory_cap"]``).
    group_size: copies vmapped together on a device: ``"auto"`` (measured
      on CPU with the concurrent lanes the copies are split into, all on
      GPU/TPU; :mod:`optax_clr.engine._autotune`) or an int (one lane).
    mesh: a ``jax.sharding.Mesh`` with an axis named ``"copies"`` (the
      copies are split over it). Default: all of ``jax.devices()``; under
      ``jax.set_mesh`` of a mesh without a ``"copies"`` axis, that mesh:
      the copies run side by side on all of it, each laid out as the
      model (batches split over its ``"data"``/``"batch"`` axis), which
      models written for explicit sharding need.
    seed: seed of the batch order and of the per-step and initial keys.
    wrt, step_mode, eval_mode, execution, steps_per_chunk, progress: as in
      :func:`~optax_clr.range_test`.

  Returns:
    A :class:`~optax_clr.ParallelSweepResult`; its ``best_lr`` and
    ``suggest()`` use only the runs that trained.
  """
  grid = lr_grid(lrs, num_lrs, min_lr, max_lr)
  _checks.check_int("num_steps", num_steps, low=1)
  _checks.check_int("window", window, low=1)
  if diverge_threshold is not None:
    _checks.check_number("diverge_threshold", diverge_threshold, low=1.0,
                         low_inclusive=False)
  check_schedule_fn(schedule_fn)
  _setup.check_common(
      accumulation_steps=accumulation_steps, val_batches=val_batches,
      seed=seed, steps_per_chunk=steps_per_chunk, loss_fn=loss_fn,
      eval_fn=eval_fn, progress=progress, step_mode=step_mode,
      eval_mode=eval_mode, val_data=val_data)
  _checks.check_choice("init", init, _population.INITS)
  on_user = _population.user_mesh(mesh)  # the loss is checked on it
  setup = _setup.prepare(
      model, loss_fn, train_data, optimizer=optimizer,
      driven=(_optimizer.LEARNING_RATE,), batch_size=batch_size, seed=seed,
      val_data=val_data, val_batches=val_batches, eval_fn=eval_fn,
      accumulation_steps=accumulation_steps, compute_dtype=compute_dtype,
      wrt=wrt, step_mode=step_mode, eval_mode=eval_mode, execution=execution,
      steps_per_chunk=steps_per_chunk, num_steps=num_steps, mesh=on_user,
      data_axis=None if on_user is None else _placement.resolve_data_axis(
          on_user, None))
  _population.check_model_init(model_init, init, setup, wrt)
  hyper = {_optimizer.LEARNING_RATE: grid.astype(np.float32)}
  run = run_sweep(
      setup, hyper, model=model,
      hyper_fn=None if schedule_fn is None else _cached_lr_fn(schedule_fn),
      init=init,
      model_init=model_init, wrt=wrt, seed=seed, num_steps=num_steps,
      window=window, diverge_threshold=diverge_threshold,
      accumulation_steps=accumulation_steps, max_parallel=max_parallel,
      group_size=group_size, mesh=mesh, progress=progress,
      config={"test": "parallel_range_test", "num_lrs": int(grid.size),
              "min_lr": float(grid[0]), "max_lr": float(grid[-1]),
              "schedule_fn": None if schedule_fn is None
              else _optimizer.describe(schedule_fn),
              "batch_size": batch_size, "compute_dtype": compute_dtype})
  return ParallelSweepResult(lrs=grid, **run._asdict())


class SweepRun(NamedTuple):
  """What :func:`run_sweep` measured: the fields every sweep result holds
  (besides the copies' hyperparameters)."""
  losses: np.ndarray
  final_loss: np.ndarray
  mean_loss: np.ndarray
  diverged: np.ndarray
  diverged_at: np.ndarray
  eval_metrics: dict[str, np.ndarray]
  initial_metrics: dict[str, np.ndarray]
  stop_reason: str
  config: dict[str, Any]


def run_sweep(setup: _setup.Setup, hyper: dict[str, np.ndarray], *,
              model: Any, hyper_fn: Any, init: str, model_init: Any,
              wrt: Any, seed: int, num_steps: int, window: int,
              diverge_threshold: float | None, accumulation_steps: int,
              max_parallel: Any, group_size: Any, mesh: Any, progress: Any,
              config: dict[str, Any]) -> SweepRun:
  """Runs K copies at the per-copy hyperparameters ``hyper`` (name ->
  ``[K]``, through ``hyper_fn(hyper_k, step)`` when given) and summarizes
  them (shared by the LR sweep, the hyperparameter sweep and the
  confirmation of bounds). ``hyper_fn`` identifies the compiled program:
  pass the same object for the same function."""
  num_k = len(next(iter(hyper.values())))
  plan = _population.plan(num_k, mesh, max_parallel, group_size, setup,
                          accumulation_steps)
  consts = {"hyper": hyper, "seed": np.full(num_k, seed, np.int32),
            "copy": np.arange(num_k, dtype=np.int32)}
  keys = list(jax.random.split(jax.random.key(seed), num_k))
  outcome = _population.run(
      plan, setup, sweep_body(setup.engine, hyper_fn, plan.data_axis),
      consts, init=init,
      model_init=model_init, wrt=wrt, init_keys=keys, carry_of=sweep_carry,
      feeds=None, num_steps=num_steps, accumulation_steps=accumulation_steps,
      per_step=None, progress=progress, desc="sweep",
      code_of=sweep_code, state_of=sweep_state,
      body_key=("sweep", hyper_fn, plan.data_axis))
  records = outcome.records
  losses = (_setup.concat(records, "loss", axis=1).astype(np.float64)
            if records else np.zeros((num_k, 0)))
  valid = losses.shape[1]
  nonfinite_at = (outcome.codes if outcome.codes is not None else np.array(
      [_first_nonfinite(row) for row in losses], np.int64))
  final, mean, diverged, diverged_at = summarize(
      losses, np.asarray(nonfinite_at), window, diverge_threshold)
  stop = ("interrupted" if outcome.interrupted else "data_exhausted" if (
      outcome.exhausted and valid < num_steps) else "completed")
  full_config = {
      **config, "num_steps": int(num_steps), "steps_run": int(valid),
      "init": init, "window": int(window),
      "diverge_threshold": (None if diverge_threshold is None
                            else float(diverge_threshold)),
      "max_parallel": None if max_parallel is None else int(max_parallel),
      **plan.config(),
      **_setup.config_common(
          setup, model=model, batch_size=config.get("batch_size"),
          accumulation_steps=accumulation_steps,
          compute_dtype=config.get("compute_dtype"), seed=seed,
          optimizer_description=setup.engine.optimizer.description)}
  return SweepRun(losses, final, mean, diverged, diverged_at,
                  outcome.final_metrics, outcome.initial_metrics, stop,
                  full_config)


def _first_nonfinite(row: np.ndarray) -> int:
  bad = np.flatnonzero(~np.isfinite(row))
  return int(bad[0]) if bad.size else -1
