"""The parallel LR range test: K copies of a model trained side by side.

Instead of ramping the LR during one run, ``parallel_range_test`` trains K
copies of the model for ``num_steps`` steps each, copy k at its own LR
``lrs[k]`` (or a per-copy schedule ``schedule_fn(lrs[k])``), on the same
batches, and reports each copy's loss curve, final and mean loss, and final
validation metrics. It answers "which LR trains best over N steps" directly,
at the cost of K times the compute of one run.

Execution
---------
* One pure train step (``_engine.Engine.step``) whose LR is data, so one
  compiled program serves every LR.
* The LR axis (K, padded with dummy copies to a multiple of the device
  count; their results are dropped) is sharded over the ``"lr"`` axis of a
  1-D ``jax.sharding.Mesh`` (default: all of ``jax.devices()``) with
  ``NamedSharding``, and ``jax.shard_map`` runs each device's local copies.
  Batches are replicated on the mesh (``NamedSharding(mesh, P())``) chunk by
  chunk; the data set never has to be on the device.
* Within a device, ``jax.lax.map(run_copy, local_copies, batch_size=g)``
  runs the copies in vmapped groups of ``g``, each group doing a whole chunk
  of steps. On CPU a vmapped group's working set (``g`` x activations, e.g.
  the im2col patches) must stay in cache to beat copies run one after
  another, so ``g`` is chosen by a memory model (bytes of one copy's step
  from its jaxpr vs. the CPU's last-level cache); on GPU/TPU ``g`` is all
  local copies (one vmap). ``group_size`` overrides it.
* ``max_parallel`` bounds how many copies are resident at once: K is then
  processed in groups of at most ``max_parallel`` copies, one after another,
  by the same compiled program (array data are re-sampled with the same
  seed for each group; an iterable is read once and its chunks are kept on
  the host).
* A copy whose loss turns NaN/inf is marked diverged at that step and stops
  updating (its state is frozen with ``jnp.where``, so NaNs never reach its
  parameters); every other copy is unaffected.

Multi-host
----------
The code is multi-controller correct: every array it creates on the mesh is
built with ``jax.make_array_from_process_local_data`` (replicated batches) or
``jax.make_array_from_callback`` (the sharded LR axis), never assuming all
devices are local, and results are gathered with
``multihost_utils.process_allgather``. To run on several hosts, call
``jax.distributed.initialize()`` first on every host, then call
``parallel_range_test`` on every host with the same arguments and the same
data (each host feeds the same replicated batches, e.g. the same array data
and seed); the default mesh spans ``jax.devices()`` (all hosts' devices) and
every host gets the full result.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from optax_clr import _checks
from optax_clr import _engine
from optax_clr import _feed
from optax_clr.range_test import _describe, default_steps_per_chunk
from optax_clr.results import ParallelSweepResult

PyTree = Any
AXIS = "lr"
INITS = ("shared", "independent")


# ----------------------------------------------------------------------------
# Memory model for the per-device group size.


def _cache_bytes() -> int | None:
  """Size of the largest CPU cache (the last level) in bytes, or None."""
  best = None
  base = "/sys/devices/system/cpu/cpu0/cache"
  try:
    entries = sorted(os.listdir(base))
  except OSError:
    entries = []
  for entry in entries:
    try:
      with open(os.path.join(base, entry, "type")) as f:
        if f.read().strip() == "Instruction":
          continue
      with open(os.path.join(base, entry, "size")) as f:
        text = f.read().strip().upper()
    except OSError:
      continue
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    try:
      size = int(text.rstrip("KMG")) * scale
    except ValueError:
      continue
    best = size if best is None else max(best, size)
  if best is None:
    try:
      best = os.sysconf("SC_LEVEL3_CACHE_SIZE") or os.sysconf(
          "SC_LEVEL2_CACHE_SIZE") or None
    except (ValueError, OSError):
      best = None
  return best


def _jaxpr_bytes(jaxpr: Any) -> int:
  """Bytes of every value an (unrolled) jaxpr produces, sub-jaxprs included
  once: the memory traffic of one pass, a proxy for its working set."""
  total = 0
  for eqn in jaxpr.eqns:
    for var in eqn.outvars:
      aval = getattr(var, "aval", None)
      if hasattr(aval, "shape") and hasattr(aval, "dtype"):
        total += math.prod(aval.shape) * np.dtype(aval.dtype).itemsize
    for param in eqn.params.values():
      sub = getattr(param, "jaxpr", None)
      if sub is not None and hasattr(sub, "eqns"):
        total += _jaxpr_bytes(sub)
      elif hasattr(param, "eqns"):
        total += _jaxpr_bytes(param)
  return total


def step_bytes(engine: _engine.Engine, state: PyTree, micro: PyTree) -> int:
  """Estimated working set of one copy's train step, in bytes."""
  closed = jax.make_jaxpr(engine.step)(state, micro, jnp.float32(0.1))
  return _jaxpr_bytes(closed.jaxpr)


def auto_group_size(per_copy_bytes: int, local_copies: int, *,
                    devices_sharing_cache: int = 1,
                    backend: str | None = None,
                    cache_bytes: int | None = None) -> int:
  """Copies vmapped together on one device.

  GPU/TPU: all local copies (wide vmaps are what accelerators are for).
  CPU: as many copies as fit in the last-level cache, which the process's
  CPU devices (threads running their shards concurrently) share:

    g = clip(floor(cache / (devices_sharing_cache * per_copy_bytes)),
             1, local_copies)

  with ``per_copy_bytes`` from :func:`step_bytes`. A vmapped group whose
  working set spills out of the cache runs slower than the same copies one
  after another. Measured (32 copies x 20 steps, 32 MB L3, 2 cores): bundled
  CNN width 16 batch 64 (39 MB/copy): g=1 1.45 s, 2 1.63 s, 4 1.80 s, 32
  2.30 s -> rule 1; width 8 batch 32 (10 MB): g=1 0.38 s, 2 0.35 s, 4 0.33 s,
  8 0.33 s, 32 0.40 s -> rule 3; width 4 batch 16 (2.5 MB): g=1 0.13 s, 8
  0.11 s, 32 0.10 s -> rule 12; the same 10 MB model on 2 devices: g=1
  0.23 s, 2 0.26 s, 16 0.33 s -> rule 1.
  """
  backend = backend or jax.default_backend()
  if backend != "cpu":
    return local_copies
  cache = cache_bytes if cache_bytes is not None else _cache_bytes()
  if not cache:
    return 1
  sharing = max(1, int(devices_sharing_cache))
  g = int(cache // (sharing * max(per_copy_bytes, 1)))
  return int(min(max(g, 1), local_copies))


# ----------------------------------------------------------------------------
# Placement helpers (multi-host correct).


def _put_replicated(tree: PyTree, mesh: Mesh) -> PyTree:
  sharding = NamedSharding(mesh, P())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(
          sharding, np.asarray(x), np.shape(x)), tree)


def _put_sharded(x: np.ndarray, mesh: Mesh) -> jax.Array:
  sharding = NamedSharding(mesh, P(AXIS))
  return jax.make_array_from_callback(x.shape, sharding, lambda i: x[i])


def _fetch(tree: PyTree) -> PyTree:
  def get(x):
    if getattr(x, "is_fully_addressable", True):
      return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return jax.tree.map(get, tree)


def default_mesh() -> Mesh:
  """A 1-D mesh over all devices (of all hosts) with axis name ``"lr"``."""
  return Mesh(np.array(jax.devices()), (AXIS,))


# ----------------------------------------------------------------------------
# Compiled programs (cached on the engine).


def _programs(engine: _engine.Engine, mesh: Mesh, group: int, g: int,
              has_schedule: Callable[..., Any] | None, independent: Any,
              has_val: bool) -> dict[str, Any]:
  key = ("parallel", mesh, group, g, has_schedule, independent, has_val)
  cache = engine.__dict__.setdefault("programs", {})
  if key in cache:
    return cache[key]
  schedule_fn = has_schedule
  sharded = NamedSharding(mesh, P(AXIS))
  n_dev = mesh.shape[AXIS]
  local = group // n_dev

  def over_copies(fn, xs):
    if g >= local:
      return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=g)

  def run_copy(state, div, div_at, lr, batches, valid, steps):
    def body(c, x):
      state, div, div_at = c
      micro, ok, t = x
      lr_t = lr if schedule_fn is None else schedule_fn(lr)(t)
      new_state, metrics = engine.step(state, micro, lr_t)
      loss = metrics["loss"]
      active = ok & ~div
      finite = jnp.isfinite(loss)
      state = _engine.select_tree(active & finite, new_state, state)
      newly = active & ~finite
      div_at = jnp.where(newly, t, div_at)
      return (state, div | newly, div_at), jnp.where(active, loss, jnp.nan)
    return jax.lax.scan(body, (state, div, div_at), (batches, valid, steps),
                        unroll=engine.unroll)

  def local_run(states, div, div_at, lrs, batches, valid, steps):
    return over_copies(
        lambda x: run_copy(*x, batches, valid, steps),
        (states, div, div_at, lrs))

  spec_l, spec_r = P(AXIS), P()
  run = jax.jit(jax.shard_map(
      local_run, mesh=mesh,
      in_specs=(spec_l, spec_l, spec_l, spec_l, spec_r, spec_r, spec_r),
      out_specs=((spec_l, spec_l, spec_l), spec_l), check_vma=False))

  def local_eval(states, div, val):
    def one(x):
      state, d = x
      metrics = engine.evaluate_stack(state.params, state.rest, val)
      return {k: jnp.where(d, jnp.nan, v) for k, v in metrics.items()}
    return over_copies(one, (states, div))

  evaluate = None
  if has_val:
    evaluate = jax.jit(jax.shard_map(
        local_eval, mesh=mesh, in_specs=(spec_l, spec_l, spec_r),
        out_specs=spec_l, check_vma=False))

  def init_shared(params, rest):
    state = engine.init(params, rest)
    tile = lambda x: jnp.broadcast_to(x, (group,) + x.shape)  # noqa: E731
    return (jax.tree.map(tile, state), jnp.zeros(group, bool),
            jnp.full(group, -1, jnp.int32))

  def init_independent(keys):
    def one(key):
      parts = _split(independent(key))
      return engine.init(parts.params, parts.rest)
    return (jax.vmap(one)(keys), jnp.zeros(group, bool),
            jnp.full(group, -1, jnp.int32))

  init = jax.jit(init_independent if independent is not None
                 else init_shared, out_shardings=sharded)
  cache[key] = {"run": run, "evaluate": evaluate, "init": init}
  return cache[key]


def _split(model: Any) -> _engine.ModelParts:
  """Like :func:`_engine.split_model` but traceable (no copies, no checks)."""
  from flax import nnx
  if isinstance(model, nnx.Module):
    return _engine.ModelParts(*nnx.split(model, nnx.Param, ...))
  return _engine.ModelParts(None, model, None)


# ----------------------------------------------------------------------------
# Public API.


def _lr_grid(lrs, num_lrs, min_lr, max_lr) -> np.ndarray:
  if lrs is None:
    _checks.check_int("num_lrs", num_lrs, low=1)
    lo = _checks.check_number("min_lr", min_lr, low=0.0, low_inclusive=False)
    hi = _checks.check_number("max_lr", max_lr, low=0.0, low_inclusive=False)
    if num_lrs == 1:
      _checks.check_order("min_lr", lo, "max_lr", hi)
      return np.array([lo])
    _checks.check_order("min_lr", lo, "max_lr", hi, strict=True)
    return np.geomspace(lo, hi, num_lrs)
  arr = np.asarray(lrs, dtype=np.float64)
  if arr.ndim != 1:
    raise ValueError(f"lrs must be a 1-D array of LRs, got shape {arr.shape}")
  if arr.size < 1:
    raise ValueError("lrs must hold at least one LR (K >= 1), got 0")
  bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
  if bad.size:
    raise ValueError(
        f"lrs must be finite and > 0, got lrs[{bad[0]}]={arr[bad[0]]!r}")
  arr = np.sort(arr)
  dup = np.flatnonzero(np.diff(arr) == 0)
  if dup.size:
    raise ValueError(f"lrs must be distinct, got {arr[dup[0]]!r} twice")
  return arr


def _trailing_mean(losses: np.ndarray, window: int) -> np.ndarray:
  """[K, N] -> [K, N]: mean of the finite losses among the last
  ``min(window, t + 1)`` steps at each step t (NaN if none is finite)."""
  finite = np.isfinite(losses)
  vals = np.where(finite, losses, 0.0)
  csum = np.cumsum(vals, axis=1)
  ccnt = np.cumsum(finite, axis=1)
  shift = lambda a: np.concatenate(  # noqa: E731
      [np.zeros((a.shape[0], window)), a[:, :-window]], 1)[:, :a.shape[1]]
  s = csum - shift(csum)
  c = ccnt - shift(ccnt)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def parallel_range_test(
    model: Any,
    loss_fn: Callable[..., Any],
    train_data: Any,
    *,
    lrs: Any = None,
    num_lrs: int = 16,
    min_lr: float = 1e-5,
    max_lr: float = 1.0,
    num_steps: int = 50,
    schedule_fn: Callable[[jax.Array], Callable[..., Any]] | None = None,
    init: str = "shared",
    model_init: Callable[[jax.Array], Any] | None = None,
    optimizer: Callable[..., Any] | None = None,
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
    steps_per_chunk: int | None = None,
    unroll: int | None = None,
    progress: Callable[[int, int, dict], Any] | None = None,
) -> ParallelSweepResult:
  """Trains K copies of ``model``, one per LR, side by side.

  Args:
    model: an ``nnx.Module`` or a plain params pytree (see
      :func:`optax_clr.range_test.range_test`); not modified.
    loss_fn: ``loss_fn(model, batch) -> loss`` or ``(loss, aux_dict)``.
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
      lr, 5)``); it is called on a traced ``lr_k``, so it must be jittable.
      Default: the constant ``lr_k``.
    init: ``"shared"``: every copy starts from ``model``'s weights (the
      sweep then isolates the effect of the LR); ``"independent"``: copy k
      starts from ``model_init(key_k)`` with ``key_k`` the k-th of
      ``jax.random.split(jax.random.key(seed), K)``.
    model_init: for ``init="independent"``: ``key -> model`` building a
      module (e.g. ``lambda key: CNN(rngs=nnx.Rngs(key))``) or a params
      pytree of the same structure as ``model``. Traced under ``jax.vmap``.
    optimizer: factory ``learning_rate -> optax.GradientTransformation``
      (default SGD with momentum 0.9).
    batch_size: examples per (micro-)batch for array data.
    window: ``mean_loss`` averages the finite losses of the last ``window``
      steps.
    diverge_threshold: an LR diverged when a loss is NaN/inf, or when
      ``mean_loss > diverge_threshold * initial loss`` (its first step's
      loss); None keeps only the NaN/inf criterion.
    val_data: validation data (one batch, or an iterable whose first
      ``val_batches`` batches are read once); each copy's final weights are
      evaluated on it (NaN for copies that hit a NaN/inf loss).
    eval_fn: ``eval_fn(model, batch) -> dict`` of scalar metrics (default:
      ``loss_fn``'s aux plus ``"loss"``).
    val_batches: batches of an iterable ``val_data`` to use.
    accumulation_steps: micro-batches per step (gradients averaged).
    compute_dtype: e.g. ``jnp.bfloat16`` for the forward/backward pass.
    max_parallel: most copies resident at once (rounded down to a multiple
      of the mesh's device count, at least one copy per device); K is
      processed in groups of this size. Default: all K at once.
    group_size: copies vmapped together on one device: ``"auto"`` (memory
      model, see :func:`auto_group_size`) or an int >= 1.
    mesh: a ``jax.sharding.Mesh`` with an axis named ``"lr"`` (the LR axis
      is sharded over it; other axes replicate). Default: 1-D mesh over
      ``jax.devices()``.
    seed: seed of the batch sampling (array data) and of the initial keys
      (``init="independent"``).
    steps_per_chunk: steps per compiled chunk.
    unroll: ``lax.scan`` unroll over the steps of a chunk.
    progress: ``progress(step, total, metrics)`` called after each chunk,
      ``total = num_groups * num_steps``.

  Returns:
    A :class:`ParallelSweepResult`; ``diverged_at`` is the step of the first
    NaN/inf loss, or for the threshold criterion the first step whose
    trailing ``window`` mean exceeds ``diverge_threshold * initial loss``.
  """
  grid = _lr_grid(lrs, num_lrs, min_lr, max_lr)
  num_k = grid.size
  _checks.check_int("num_steps", num_steps, low=1)
  _checks.check_int("window", window, low=1)
  if diverge_threshold is not None:
    _checks.check_number("diverge_threshold", diverge_threshold, low=1.0,
                         low_inclusive=False)
  _checks.check_int("accumulation_steps", accumulation_steps, low=1)
  _checks.check_int("val_batches", val_batches, low=1)
  _checks.check_int("seed", seed, low=0)
  _checks.check_choice("init", init, INITS)
  _checks.check_callable("loss_fn", loss_fn)
  if steps_per_chunk is not None:
    _checks.check_int("steps_per_chunk", steps_per_chunk, low=1)
  if max_parallel is not None:
    _checks.check_int("max_parallel", max_parallel, low=1)
  if group_size != "auto":
    _checks.check_int("group_size", group_size, low=1)
  for name, fn in (("schedule_fn", schedule_fn), ("eval_fn", eval_fn),
                   ("progress", progress), ("model_init", model_init)):
    if fn is not None:
      _checks.check_callable(name, fn)
  if init == "independent" and model_init is None:
    raise ValueError(
        "init='independent' needs model_init: key -> model (e.g. "
        "lambda key: CNN(rngs=nnx.Rngs(key)))")
  if init == "shared" and model_init is not None:
    raise ValueError("model_init is only used with init='independent'")
  if eval_fn is not None and val_data is None:
    raise ValueError("eval_fn needs val_data")
  optimizer = _engine.check_optimizer(optimizer)
  compute_dtype = _engine.check_compute_dtype(compute_dtype)
  unroll = _engine.check_unroll(unroll)
  if mesh is None:
    mesh = default_mesh()
  elif not isinstance(mesh, Mesh) or AXIS not in mesh.axis_names:
    raise ValueError(
        f"mesh must be a jax.sharding.Mesh with an axis named {AXIS!r}, got "
        f"{mesh!r}")

  feed = _feed.make_feed(train_data, batch_size, seed)
  parts = _engine.split_model(model)
  engine = _engine.engine_for(parts.graphdef, loss_fn, optimizer, eval_fn,
                              compute_dtype, unroll)
  first = feed.first_batch()
  _engine.check_loss_shapes(engine, parts, first)
  if schedule_fn is not None:
    out = jax.eval_shape(lambda lr, t: schedule_fn(lr)(t), jnp.float32(0.1),
                         jnp.int32(0))
    if getattr(out, "shape", None) != ():
      raise ValueError(
          "schedule_fn(lr) must return a schedule step -> scalar LR, got "
          f"{out!r}")
  keys = None
  if init == "independent":
    keys = jax.random.split(jax.random.key(seed), num_k)
    shapes = jax.eval_shape(lambda k: _split(model_init(k)), keys[0])
    same = (shapes.graphdef == parts.graphdef and
            jax.tree.structure(shapes.params) ==
            jax.tree.structure(parts.params) and
            all(a.shape == b.shape and a.dtype == b.dtype for a, b in zip(
                jax.tree.leaves(shapes.params),
                jax.tree.leaves(parts.params))))
    if not same:
      raise ValueError(
          "model_init(key) must build a model with the same structure, "
          "shapes and dtypes as model")

  has_val = val_data is not None
  val = None
  metric_names: list[str] = []
  if has_val:
    val = _feed.load_validation(val_data, val_batches)
    metric_names = _engine.check_eval_shapes(
        engine, parts, jax.tree.map(lambda x: x[0], val))
    val = _put_replicated(val, mesh)

  # Copies: padded to a multiple of the devices, in groups of max_parallel.
  n_dev = mesh.shape[AXIS]
  if max_parallel is None:
    cap = -(-num_k // n_dev) * n_dev
  else:
    cap = max(n_dev, max_parallel // n_dev * n_dev)
  num_groups = -(-num_k // cap)
  group = -(-(-(-num_k // num_groups)) // n_dev) * n_dev
  padded = np.concatenate([grid, np.full(num_groups * group - num_k,
                                         grid[0])])
  local = group // n_dev
  chunk_steps = min(num_steps, steps_per_chunk or default_steps_per_chunk())
  state0 = engine.init(parts.params, parts.rest)
  micro = jax.tree.map(lambda x: x[None], first)
  if group_size == "auto":
    per_copy = step_bytes(engine, state0, micro)
    g = auto_group_size(per_copy, local,
                        devices_sharing_cache=len(mesh.local_devices))
  else:
    g = min(int(group_size), local)
  programs = _programs(engine, mesh, group, g, schedule_fn, model_init,
                       has_val)

  source = _feed.ChunkSource(feed, num_steps, chunk_steps,
                             accumulation_steps, num_groups)
  rep_params = None
  if keys is None:
    rep_params = _put_replicated(
        jax.device_get((parts.params, parts.rest)), mesh)
  losses_groups, div_groups, at_groups, metric_groups = [], [], [], []
  total = num_groups * num_steps
  t0 = time.perf_counter()
  done_steps = num_steps
  for gi in range(num_groups):
    sl = slice(gi * group, (gi + 1) * group)
    if keys is None:
      states, div, div_at = programs["init"](*rep_params)
    else:
      idx = np.minimum(np.arange(sl.start, sl.stop), num_k - 1)
      group_keys = jax.random.key_data(keys)[idx]
      states, div, div_at = programs["init"](jax.random.wrap_key_data(
          _put_sharded(np.asarray(group_keys), mesh)))
    lrs_dev = _put_sharded(padded[sl].astype(np.float32), mesh)
    outs = []
    done = 0
    chunks = iter(source)
    nxt = next(chunks, None)
    pending = None if nxt is None else _put_chunk(nxt, 0, chunk_steps, mesh)
    while pending is not None:
      (batches, valid, steps), chunk = pending
      (states, div, div_at), losses = programs["run"](
          states, div, div_at, lrs_dev, batches, valid, steps)
      outs.append((losses, chunk.num_valid))
      done += chunk.num_valid
      nxt = next(chunks, None)  # host work overlaps the running chunk
      pending = (None if nxt is None
                 else _put_chunk(nxt, done, chunk_steps, mesh))
      if progress is not None:
        jax.block_until_ready(losses)
        progress(gi * num_steps + done, total,
                 {"group": gi, "num_groups": num_groups,
                  "elapsed": time.perf_counter() - t0})
    done_steps = done
    if has_val:
      metric_groups.append(programs["evaluate"](states, div, val))
    losses_groups.append(np.concatenate(
        [_fetch(l)[:, :n] for l, n in outs], axis=1))
    div_groups.append(_fetch(div))
    at_groups.append(_fetch(div_at))

  losses = np.concatenate(losses_groups)[:num_k].astype(np.float64)
  nonfinite = np.concatenate(div_groups)[:num_k]
  diverged_at = np.concatenate(at_groups)[:num_k].astype(np.int64)
  trailing = _trailing_mean(losses, window)
  final_loss = losses[:, -1]
  mean_loss = trailing[:, -1]
  diverged = nonfinite.copy()
  if diverge_threshold is not None:
    initial = losses[:, :1]
    with np.errstate(invalid="ignore"):
      over = trailing > diverge_threshold * initial
    over_final = over[:, -1] & ~nonfinite
    first_over = np.argmax(over, axis=1)
    diverged_at = np.where(over_final, first_over, diverged_at)
    diverged |= over_final
  diverged_at = np.where(diverged, diverged_at, -1)
  eval_metrics = {}
  if has_val:
    fetched = [_fetch(m) for m in metric_groups]
    eval_metrics = {k: np.concatenate([m[k] for m in fetched])[:num_k]
                    for k in metric_names}
  config = {
      "test": "parallel_range_test", "num_lrs": int(num_k),
      "min_lr": float(grid[0]), "max_lr": float(grid[-1]),
      "num_steps": int(num_steps), "steps_run": int(done_steps),
      "schedule_fn": None if schedule_fn is None else _describe(schedule_fn),
      "init": init, "optimizer": _describe(optimizer),
      "batch_size": None if batch_size is None else int(batch_size),
      "window": int(window),
      "diverge_threshold": (None if diverge_threshold is None
                            else float(diverge_threshold)),
      "accumulation_steps": int(accumulation_steps),
      "compute_dtype": _engine.dtype_name(compute_dtype),
      "max_parallel": None if max_parallel is None else int(max_parallel),
      "copies_per_group": int(group), "num_groups": int(num_groups),
      "devices": int(n_dev), "group_size": int(g),
      "seed": int(seed), "steps_per_chunk": int(chunk_steps),
      "unroll": int(unroll), "model": type(model).__name__,
  }
  return ParallelSweepResult(
      lrs=grid, losses=losses, final_loss=final_loss, mean_loss=mean_loss,
      diverged=diverged, diverged_at=diverged_at, eval_metrics=eval_metrics,
      config=config)


def _put_chunk(chunk: _feed.Chunk, first_step: int, chunk_steps: int,
               mesh: Mesh) -> tuple[Any, _feed.Chunk]:
  steps = np.arange(first_step, first_step + chunk_steps, dtype=np.int32)
  return _put_replicated((chunk.batches, chunk.valid, steps), mesh), chunk
