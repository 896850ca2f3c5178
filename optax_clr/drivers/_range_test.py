"""The classic LR range test (Smith 2017): one ramp, or S ramps over seeds.

One copy of the model is trained while the LR rises every step from
``start_lr`` to ``end_lr``:

  exp:     lr_i = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))
  linear:  lr_i = start_lr + (end_lr - start_lr) * i / (num_steps - 1)

so the last step uses ``end_lr`` exactly (as torch-lr-finder; fastai divides
by ``num_steps`` and never reaches it). The ramp is computed on the host in
float64 and fed to the steps as data: one compiled program serves every ramp.
The loss is smoothed by a bias-corrected exponential moving average (fastai,
Lightning):

  avg_i = beta * avg_{i-1} + (1 - beta) * loss_i,   avg_{-1} = 0
  smoothed_i = avg_i / (1 - beta ** (i + 1)),        beta = 1 - smoothing

and the test stops when ``smoothed_i > diverge_threshold * min_{j<=i}
smoothed_j`` ("diverged") or when a loss is NaN/inf ("nonfinite"); the step
that stops the test is the last one recorded. Data that run out end the test
with what was recorded ("data_exhausted"), and so does Ctrl-C
("interrupted").

Everything per step (ramp, EMA, divergence check, the optional evaluation)
runs in the compiled chunk; once stopped, the rest of a chunk is a no-op
(``jnp.where`` on the state), and the host looks at one flag per chunk.

Smith's accuracy-based variant: pass ``val_data`` (and optionally
``eval_every``/``eval_fn``); ``eval_metrics["accuracy"]`` against
``eval_lrs`` gives the accuracy bounds.

:mod:`._multi_ramp` runs S such ramps side by side (one per seed, or one
per weight decay), vmapped and sharded over the devices like the sweep.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from optax_clr import _checks
from optax_clr import _progress
from optax_clr.drivers import _setup
from optax_clr.engine import _engine
from optax_clr.engine import _feed
from optax_clr.engine import _loss
from optax_clr.engine import _model
from optax_clr.engine import _placement
from optax_clr.engine import _runner
from optax_clr.results import RangeTestResult

PyTree = Any
RAMPS = ("exp", "linear")
# Training from scratch needs a ramp of a few epochs (Smith 2017), not the
# 100 steps fastai uses for fine-tuning: at least this many steps per decade
# of LR, so that the smoothed loss can follow the ramp.
STEPS_PER_DECADE = 40
DEFAULT_START_LR = 1e-6
DEFAULT_END_LR = 10.0


def default_num_steps(start_lr: float, end_lr: float) -> int:
  """``STEPS_PER_DECADE`` steps per decade of the ramp, at least 100."""
  decades = math.log10(end_lr / start_lr)
  return max(100, int(math.ceil(STEPS_PER_DECADE * decades)))


def ramp_lrs(start_lr: float, end_lr: float, num_steps: int,
             ramp: str = "exp") -> np.ndarray:
  """The ramp's LRs in float64.

  Args:
    start_lr: LR of step 0.
    end_lr: LR of step ``num_steps - 1``.
    num_steps: number of steps, >= 2.
    ramp: ``"exp"`` (geometric) or ``"linear"``.

  Returns:
    ``[num_steps]`` LRs; the first and last are exactly the endpoints.
  """
  t = np.arange(num_steps) / (num_steps - 1)
  if ramp == "exp":
    lrs = start_lr * (end_lr / start_lr) ** t
  else:
    lrs = start_lr + (end_lr - start_lr) * t
  lrs[0], lrs[-1] = start_lr, end_lr
  return lrs


def check_ramp(start_lr, end_lr, num_steps, ramp, smoothing,
                diverge_threshold, eval_every, val_data):
  start = _checks.check_number("start_lr", start_lr, low=0.0,
                               low_inclusive=False)
  end = _checks.check_number("end_lr", end_lr, low=0.0, low_inclusive=False)
  _checks.check_order("start_lr", start, "end_lr", end, strict=True)
  if num_steps is None:
    num_steps = default_num_steps(start, end)
  num_steps = _checks.check_int("num_steps", num_steps, low=2)
  _checks.check_choice("ramp", ramp, RAMPS)
  _checks.check_number("smoothing", smoothing, low=0.0, high=1.0,
                       low_inclusive=False)
  if diverge_threshold is not None:
    _checks.check_number("diverge_threshold", diverge_threshold, low=1.0,
                         low_inclusive=False)
  if eval_every is not None:
    _checks.check_int("eval_every", eval_every, low=1)
    if val_data is None:
      raise ValueError("eval_every needs val_data")
  lrs = ramp_lrs(start, end, num_steps, ramp)
  with np.errstate(over="ignore"):
    lrs32 = lrs.astype(np.float32)
  bad = np.flatnonzero(~np.isfinite(lrs32) | ~(lrs32 > 0))
  if bad.size:
    raise ValueError(
        f"start_lr={start!r}, end_lr={end!r}: the ramp's LR at step "
        f"{int(bad[0])} ({lrs[bad[0]]!r}) is not a positive float32")
  return start, end, num_steps, lrs


def ramp_body(engine: _engine.Engine, has_val: bool,
               eval_names: tuple[str, ...],
               data_axis: str | None = None) -> Callable[..., Any]:
  """One step of a ramp: update at the step's LR, EMA, stop, evaluate."""
  def body(carry, consts, val, x):
    state, avg, best, stopped, code = carry
    micro, ok, t, lr = x
    key = _loss.step_key(consts["seed"], consts["copy"], t)
    # A multi-ramp may give each copy its own other hyperparameters (e.g.
    # weight decay); the LR is the ramp's.
    hyper = {**consts.get("hyper", {}), "learning_rate": lr}
    new_state, metrics = engine.step(state, micro, key, hyper, data_axis)
    loss = metrics["loss"]
    active = ok & ~stopped
    finite = jnp.isfinite(loss)
    beta = consts["beta"]
    avg_new = beta * avg + (1 - beta) * loss
    smoothed = avg_new / (1 - beta ** (t + 1).astype(jnp.float32))
    best_new = jnp.minimum(best, smoothed)
    diverged = consts["use_threshold"] & (
        smoothed > consts["threshold"] * best_new)
    keep = active & finite
    state = _engine.select_tree(keep, new_state, state)
    avg = jnp.where(keep, avg_new, avg)
    best = jnp.where(keep, best_new, best)
    stop_now = active & (~finite | diverged)
    code = jnp.where(stop_now, jnp.where(finite, 1, 2), code)
    stopped = stopped | stop_now
    out = {"lr": lr, "loss": loss, "smoothed": smoothed, "recorded": active}
    if has_val:
      do_eval = keep & ((t + 1) % consts["eval_every"] == 0)
      nan = {k: jnp.float32(jnp.nan) for k in eval_names}
      out["evaluated"] = do_eval
      out["metrics"] = jax.lax.cond(
          do_eval, lambda: engine.evaluate_stack(
              state.params, state.rest, val,
              _loss.eval_key(consts["seed"], consts["copy"])),
          lambda: nan)
    return (state, avg, best, stopped, code), out
  return body


def ramp_consts(seed: int, copy: int, smoothing: float,
                 diverge_threshold: float | None, eval_every: int | None
                 ) -> dict[str, np.ndarray]:
  return {
      "seed": np.int32(seed), "copy": np.int32(copy),
      "beta": np.float32(1.0 - smoothing),
      "threshold": np.float32(diverge_threshold or 0.0),
      "use_threshold": np.bool_(diverge_threshold is not None),
      "eval_every": np.int32(eval_every or 1),
  }


def ramp_carry(state: Any) -> tuple:
  return (state, jnp.float32(0), jnp.float32(jnp.inf), jnp.bool_(False),
          jnp.int32(0))


def ramp_code(carry: tuple) -> Any:
  return carry[4]


STOP_CODES = {1: "diverged", 2: "nonfinite"}


def stop_reason(code: int, recorded: int, num_steps: int, exhausted: bool,
                 interrupted: bool) -> str:
  if code in STOP_CODES:
    return STOP_CODES[code]
  if interrupted and recorded < num_steps:
    return "interrupted"
  if exhausted and recorded < num_steps:
    return "data_exhausted"
  return "completed"


def keep_shardings(tree: PyTree, mesh: Mesh) -> PyTree:
  """Leaves already laid out on ``mesh`` (a model created under
  ``jax.set_mesh``) keep their sharding; the others are replicated."""
  def one(x):
    sharding = getattr(x, "sharding", None)
    if isinstance(sharding, jax.sharding.NamedSharding) and (
        sharding.mesh.shape == mesh.shape):
      return x
    return _placement.put(x, mesh)
  return jax.tree.map(one, tree)


def single_mesh(mesh: Any, data_axis: Any, data_parallel: Any
                 ) -> tuple[Mesh | None, str | None]:
  data_parallel = _checks.check_bool("data_parallel", data_parallel)
  if mesh is not None and not isinstance(mesh, Mesh):
    raise TypeError(f"mesh must be a jax.sharding.Mesh, got "
                    f"{_checks.describe(mesh)}")
  if data_parallel and mesh is not None:
    raise ValueError("give mesh or data_parallel=True, not both (a mesh "
                     "already says how the batch is split)")
  if data_parallel:
    mesh = _placement.data_parallel_mesh()
  elif mesh is None:
    mesh = _placement.ambient_mesh()
  if mesh is None:
    if data_axis is not None:
      raise ValueError("data_axis needs a mesh (mesh=, jax.set_mesh, or "
                       "data_parallel=True)")
    return None, None
  return mesh, _placement.resolve_data_axis(mesh, data_axis)


def range_test(
    model: Any,
    loss_fn: Callable[..., Any],
    train_data: Any,
    *,
    start_lr: float = DEFAULT_START_LR,
    end_lr: float = DEFAULT_END_LR,
    num_steps: int | None = None,
    ramp: str = "exp",
    optimizer: Any = None,
    batch_size: int | None = None,
    smoothing: float = 0.05,
    diverge_threshold: float | None = 4.0,
    val_data: Any = None,
    eval_every: int | None = None,
    eval_fn: Callable[..., Any] | None = None,
    val_batches: int = 4,
    accumulation_steps: int = 1,
    compute_dtype: Any = None,
    seed: int = 0,
    wrt: Any = nnx.Param,
    step_mode: Any = "train",
    eval_mode: Any = "eval",
    mesh: Mesh | None = None,
    data_axis: str | None = None,
    data_parallel: bool = False,
    execution: str = "auto",
    steps_per_chunk: int | None = None,
    progress: Any = None,
) -> RangeTestResult:
  """Runs the LR range test: one model, LR ramped each step.

  Args:
    model: an ``nnx.Module`` (trained on its ``wrt`` leaves; other NNX state
      such as batch statistics is carried along), or a plain params pytree.
      Not modified: the test works on a copy of its state.
    loss_fn: ``loss_fn(model, batch)`` or ``loss_fn(model, batch, rngs)``
      (``params`` for a params pytree) returning a scalar loss or
      ``(loss, aux)`` with any aux (see :mod:`optax_clr.engine._loss`).
    train_data: a pytree of arrays with a leading example axis (sampled in
      batches of ``batch_size`` with a seeded permutation per epoch; a
      ``Dataset`` works through its ``as_batch()``), or an iterable of
      batches (lists, generators, loaders), read lazily.
    start_lr: LR of the first step, > 0.
    end_lr: LR of the last step, > ``start_lr``.
    num_steps: steps of the ramp, >= 2; default: 40 per decade of LR (280
      for the default 1e-6 -> 10), the few epochs Smith recommends for
      training from scratch rather than fastai's 100 (made for fine-tuning).
    ramp: ``"exp"`` (geometric, the default) or ``"linear"`` (Smith's
      original).
    optimizer: a factory ``learning_rate -> optax.GradientTransformation``,
      an injected transformation, an ``nnx.Optimizer`` or its ``tx`` (see
      :mod:`optax_clr.engine._optimizer`); default SGD with momentum 0.9.
    batch_size: examples per (micro-)batch; required for array data,
      ignored for an iterable.
    smoothing: EMA factor in (0, 1]; ``beta = 1 - smoothing`` (1: none).
    diverge_threshold: stop when the smoothed loss exceeds this multiple of
      the best smoothed loss so far (> 1); None disables the check.
    val_data: validation data for the accuracy-based variant: one batch (a
      pytree of arrays, evaluated whole) or an iterable whose first
      ``val_batches`` batches are read once and reused at every evaluation.
    eval_every: evaluate after every ``eval_every`` steps (default: about 20
      evaluations over the run). Requires ``val_data``.
    eval_fn: ``eval_fn(model, batch) -> dict`` of scalar metrics; default:
      ``loss_fn``'s metrics plus ``"loss"``. Runs in ``eval_mode``.
    val_batches: how many batches of an iterable ``val_data`` to use.
    accumulation_steps: micro-batches per step; gradients and losses are
      averaged over them (the effective batch is that many times larger).
    compute_dtype: e.g. ``jnp.bfloat16``: the forward/backward pass runs in
      this dtype; master params, optimizer state and loss stay float32.
    seed: seed of the batch order and of the per-step keys of a loss that
      takes ``rngs``.
    wrt: the NNX filter of the trained variables (as ``nnx.Optimizer``).
    step_mode, eval_mode: ``"train"``, ``"eval"``, ``"as_is"`` or a callable
      ``fn(model)``: the NNX mode of the steps and of evaluation.
    mesh: a ``jax.sharding.Mesh`` to run on; default: the mesh set with
      ``jax.set_mesh`` if any. Batches are split over its ``data_axis``;
      parameters already laid out on it keep their sharding.
    data_axis: the mesh axis the batch is split over (default ``"data"`` or
      ``"batch"`` if the mesh has one).
    data_parallel: run data-parallel over all devices (one model, the batch
      split over a ``"data"`` axis); ``batch_size`` must divide evenly.
    execution: ``"auto"``, ``"scan"`` or ``"steps"`` (see
      :mod:`optax_clr.engine._runner`).
    steps_per_chunk: steps per compiled chunk (one host sync per chunk).
    progress: None (a bar in interactive sessions), True, False, or a
      callable ``progress(step, total, metrics)`` called after each chunk.

  Returns:
    A :class:`~optax_clr.RangeTestResult` with every recorded step, also
    when the test diverged, ran out of data or was interrupted.

  Examples:
    A linear regression as a params pytree with a dict batch:

    >>> import jax.numpy as jnp, numpy as np
    >>> import optax_clr as clr
    >>> x = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    >>> data = {"x": x, "y": x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32)}
    >>> def loss_fn(params, batch):
    ...   return jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)
    >>> res = clr.range_test({"w": jnp.zeros(4)}, loss_fn, data,
    ...                      batch_size=32, start_lr=1e-3, end_lr=10.0,
    ...                      num_steps=40, progress=False)
    >>> res.stop_reason  # the loss blew up before the LR reached end_lr
    'diverged'
    >>> s = res.suggest()
    >>> s.base_lr < s.max_lr < float(res.lrs[-1])
    True
  """
  start, end, num_steps, lrs = check_ramp(
      start_lr, end_lr, num_steps, ramp, smoothing, diverge_threshold,
      eval_every, val_data)
  _setup.check_common(
      accumulation_steps=accumulation_steps, val_batches=val_batches,
      seed=seed, steps_per_chunk=steps_per_chunk, loss_fn=loss_fn,
      eval_fn=eval_fn, progress=progress, step_mode=step_mode,
      eval_mode=eval_mode, val_data=val_data)
  mesh, axis = single_mesh(mesh, data_axis, data_parallel)
  setup = _setup.prepare(
      model, loss_fn, train_data, optimizer=optimizer,
      driven=("learning_rate",), batch_size=batch_size, seed=seed,
      val_data=val_data, val_batches=val_batches, eval_fn=eval_fn,
      accumulation_steps=accumulation_steps, compute_dtype=compute_dtype,
      wrt=wrt, step_mode=step_mode, eval_mode=eval_mode, execution=execution,
      steps_per_chunk=steps_per_chunk, num_steps=num_steps, mesh=mesh,
      data_axis=axis)
  has_val = setup.val is not None
  if has_val and eval_every is None:
    eval_every = max(1, num_steps // 20)
  engine = setup.engine
  names = tuple(setup.eval_names)
  program = engine.program(
      ("ramp", setup.execution, has_val, names, mesh, axis),
      lambda: _runner.single_program(ramp_body(engine, has_val, names),
                                     setup.execution, mesh))

  def spec(lead):
    return lambda x: _placement.batch_spec(np.ndim(x), lead, axis)
  with _placement.mesh_context(mesh):
    params, rest = setup.parts.params, setup.parts.rest
    if mesh is not None:
      params, rest = keep_shardings((params, rest), mesh)
    state = engine.program(("init", mesh), lambda: jax.jit(
        lambda p, r, s: engine.init(p, _model.fold_in_keys(r, s, 0))))(
            params, rest, np.int32(seed))
    carry = ramp_carry(state)
    consts = _placement.put(ramp_consts(seed, 0, smoothing,
                                         diverge_threshold, eval_every), mesh)
    val = None if not has_val else _placement.put(setup.val, mesh, spec(1))

  lrs32 = lrs.astype(np.float32)
  chunk_steps = setup.chunk_steps

  def place(chunk, first):
    per_step = np.full(chunk_steps, lrs32[-1], np.float32)
    n = min(chunk_steps, num_steps - first)
    per_step[:n] = lrs32[first:first + n]
    micro, valid, steps, lr = (chunk.batches, chunk.valid,
                               _runner.steps_array(first, chunk_steps),
                               per_step)
    return (_placement.put(micro, mesh, spec(2)),
            *_placement.put((valid, steps, lr), mesh))

  def stopped(out, chunk, done):
    return bool(out["recorded"].sum() < chunk.num_valid)

  chunks = _feed.iter_chunks(setup.feed, num_steps, chunk_steps,
                             accumulation_steps)
  with _progress.reporter(progress, "range test") as report:
    outcome = _runner.drive(
        program, carry, consts, val, chunks, place, stopped, num_steps,
        report, lambda o: _last_metrics(o))
  # The LRs the steps used: the float32 ramp.
  used = lrs32.astype(np.float64)
  return _ramp_result(outcome, used, num_steps, names, has_val, config={
      "test": "range_test", "start_lr": start, "end_lr": end,
      "num_steps": int(num_steps), "ramp": ramp,
      "smoothing": float(smoothing),
      "diverge_threshold": (None if diverge_threshold is None
                            else float(diverge_threshold)),
      "eval_every": None if eval_every is None else int(eval_every),
      "data_parallel": bool(data_parallel),
      "mesh": None if mesh is None else dict(mesh.shape),
      **_setup.config_common(
          setup, model=model, batch_size=batch_size,
          accumulation_steps=accumulation_steps, compute_dtype=compute_dtype,
          seed=seed, optimizer_description=engine.optimizer.description)})


def _last_metrics(out: dict[str, np.ndarray]) -> dict[str, float]:
  rec = np.flatnonzero(out["recorded"].reshape(-1))
  if not rec.size:
    return {}
  i = rec[-1]
  return {"lr": float(out["lr"].reshape(-1)[i]),
          "loss": float(out["loss"].reshape(-1)[i]),
          "smoothed_loss": float(out["smoothed"].reshape(-1)[i])}


def _ramp_result(outcome: _runner.Outcome, lrs: np.ndarray, num_steps: int,
                 names: tuple[str, ...], has_val: bool,
                 config: dict[str, Any]) -> RangeTestResult:
  records = outcome.records
  if not records:
    keep = np.zeros(0, bool)
    cat = lambda k: np.zeros(0)  # noqa: E731
    code = 0
  else:
    keep = _setup.concat(records, "recorded").astype(bool)
    cat = lambda k: _setup.concat(records, k)[keep]  # noqa: E731
    code = int(jax.device_get(outcome.carry[4])) if not (
        outcome.interrupted) else 0
  losses, smoothed = cat("loss"), cat("smoothed")
  n = int(keep.sum())
  stop = stop_reason(code, n, num_steps, outcome.exhausted,
                      outcome.interrupted)
  eval_steps = np.zeros(0, np.int64)
  eval_metrics: dict[str, np.ndarray] = {}
  if has_val and records:
    evaluated = _setup.concat(records, "evaluated").astype(bool)[keep]
    eval_steps = np.flatnonzero(evaluated)
    eval_metrics = {k: np.concatenate([r["metrics"][k] for r in records])[
        keep][eval_steps] for k in names}
  return RangeTestResult(
      lrs=lrs[:n], losses=losses, smoothed_losses=smoothed,
      stop_reason=stop, eval_steps=eval_steps, eval_lrs=lrs[eval_steps],
      eval_metrics=eval_metrics, config=config)
