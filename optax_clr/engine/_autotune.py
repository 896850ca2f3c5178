"""How the copies on one device run, chosen by measurement.

On GPU/TPU all local copies are vmapped at once (wide vmaps are what
accelerators are for). On a CPU two choices matter (a :class:`Layout`):

* **lanes**: the copies are split into independent parts in one program,
  which XLA's CPU runtime runs concurrently; a small model's step does not
  keep several cores busy by itself (measured on a 2-core Intel Xeon with
  the bundled CNN on digits: two lanes made 8 copies 1.5x faster than one
  after another, a vmap of all 8 only 1.2x). The candidate is one lane per
  core available to the device (the process's CPU affinity divided by its
  CPU devices), against one lane.
* **group size**: within a lane, a vmapped group is faster than the same
  copies one after another only while its working set stays in cache,
  which depends on the model, the batch and the CPU (the best group was 2
  on an AMD EPYC and 1 on an Intel Xeon, clr-facts). No cache-size model
  predicts that, so :func:`layout` times one step for group sizes 1, 2, 4,
  ... and keeps the fastest per copy.

The choice is cached per machine (backend, device kind, CPU model, device
count) and model signature (shapes and dtypes of parameters, state and
batch, optimizer, compute dtype) — not per K: the layout measured at the
first K serves every later K, clamped to its copies — in memory and in
``$OPTAX_CLR_CACHE_DIR/autotune.json`` (default
``~/.cache/optax-clr/autotune.json``; an empty ``OPTAX_CLR_CACHE_DIR``
keeps it in memory only), so a model is measured once per machine.

Across processes (``jax.distributed.initialize``) every process must
compile the same programs: process 0 measures (or reads its cache) and its
choice is broadcast to the others.

**Copies per round from device memory** (:func:`memory_max_parallel`): on
GPU/TPU, where ``Device.memory_stats()`` reports the allocator's limit and
use, the copies resident at once are capped so that a round fits,

  n = floor((MEMORY_FRACTION * (bytes_limit - bytes_in_use) - fixed)
            / per_copy)

per device (at least 1), ``per_copy`` and ``fixed`` from XLA's memory
analysis of the compiled vmapped step at 1 and 2 copies (its marginal and
constant parts: parameters, optimizer state, gradients, activations) plus
the chunks of batches on the device (the running one and the prefetched
next one) and the validation batches; K copies then run in rounds
(:mod:`optax_clr.drivers._population`), so K = 4096 never runs out of
memory. The smallest ``n`` of all local devices and all processes is used.
On CPU ``memory_stats()`` is None and nothing is capped.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import platform
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optax_clr import _serialize
from optax_clr.engine import _model

PyTree = Any
# Fewer local copies than this are run one by one without measuring: the
# gain of grouping two or three copies does not pay for compiling the
# candidates.
MIN_COPIES_TO_MEASURE = 4
MAX_GROUP = 16
# Part of the cache key: choices cached by a release without lanes are
# measured again.
_LAYOUT_VERSION = 2
# Share of a device's free memory one round may plan for: XLA's memory
# analysis leaves out allocator fragmentation and the (separate)
# evaluation program.
MEMORY_FRACTION = 0.8
_MEMORY: dict[str, Layout] = {}
_PROBED: dict[str, tuple[int, int]] = {}


def cache_dir() -> pathlib.Path | None:
  """``$OPTAX_CLR_CACHE_DIR`` (empty: none), else ``~/.cache/optax-clr``."""
  env = os.environ.get("OPTAX_CLR_CACHE_DIR")
  if env is not None:
    return pathlib.Path(env) if env else None
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "optax-clr"


def cpu_model() -> str:
  """The CPU model name (``/proc/cpuinfo``), or the platform's processor."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _key(setup: Any) -> str:
  # Not the number of copies: a layout measured at one K serves every K
  # (clamped to the copies there), so a new K costs no new measurement.
  parts = setup.parts
  batch = setup.feed.first_batch()
  sig = json.dumps([
      _LAYOUT_VERSION, jax.default_backend(), jax.devices()[0].device_kind,
      cpu_model(), jax.device_count(), _model.signature(parts.params),
      _model.signature(parts.rest), _model.signature(batch),
      setup.engine.optimizer.description,
      str(setup.engine.compute_dtype)], default=str)
  return hashlib.sha256(sig.encode()).hexdigest()[:20]


class Layout(NamedTuple):
  """How the local copies of one device run (see the module docstring).

  Attributes:
    lanes: concurrent parts the copies are split into.
    group: copies vmapped together within a part.
  """
  lanes: int
  group: int


def _load() -> dict[str, Layout]:
  """The cached layouts; entries of another format are ignored."""
  d = cache_dir()
  if d is None:
    return {}
  try:
    data = json.loads((d / "autotune.json").read_text(encoding="utf-8"))
    items = data.items()
  except (OSError, ValueError, TypeError, AttributeError):
    return {}
  out = {}
  for k, v in items:
    if (isinstance(v, list) and len(v) == 2 and all(
        isinstance(x, int) and x >= 1 for x in v)):
      out[str(k)] = Layout(*v)
  return out


def _store(key: str, value: Layout) -> None:
  _MEMORY[key] = value
  d = cache_dir()
  if d is None:
    return
  data = {k: list(v) for k, v in _load().items()}
  data[key] = list(value)
  try:
    _serialize.write_text(d / "autotune.json", json.dumps(data, indent=0))
  except OSError:
    pass  # a read-only home: keep the choice in memory only


def _vmapped_step(setup: Any) -> tuple[Callable[..., Any], Any, Any]:
  """``(step, state, micro)``: one update of copies vmapped over a leading
  axis (``step(states, lrs)``, states donated as in the chunk programs),
  one copy's initial state and one step's micro-batches ``[1, ...]``."""
  engine = setup.engine
  state = jax.eval_shape(engine.init, setup.parts.params, setup.parts.rest)
  micro = jax.tree.map(lambda x: np.asarray(x)[None] if not _model.is_key(
      x) else x[None], setup.feed.first_batch())
  key = jax.random.key(0)

  def step(s, lr):
    return engine.step(s, micro, key, {name: lr for name in
                                       engine.optimizer.driven})[0]
  return jax.jit(jax.vmap(step), donate_argnums=0), state, micro


def _stacked(tree: PyTree, g: int) -> PyTree:
  """Abstract ``[g, ...]`` copies of an abstract tree."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct((g,) + tuple(x.shape), x.dtype), tree)


def _time_layout(setup: Any, lanes: int, g: int, repeats: int = 3) -> float:
  """Seconds per copy of one step of ``lanes`` concurrent vmapped groups of
  ``g`` copies (warm)."""
  f, _, _ = _vmapped_step(setup)
  step = jax.jit(lambda states, lrs: [f(s, lr) for s, lr in zip(states, lrs)],
                 donate_argnums=0)
  init = jax.jit(lambda: [jax.tree.map(
      lambda x: jnp.broadcast_to(x, (g,) + x.shape),
      setup.engine.init(setup.parts.params, setup.parts.rest))
                          for _ in range(lanes)])
  lrs = [jnp.full((g,), 1e-3, jnp.float32)] * lanes
  states = jax.block_until_ready(step(init(), lrs))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    states = jax.block_until_ready(step(states, lrs))
    best = min(best, time.perf_counter() - t0)
  return best / (lanes * g)


def cores_per_device() -> int:
  """CPU cores available to each of this process's CPU devices."""
  try:
    cores = len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    cores = os.cpu_count() or 1
  return max(1, cores // max(1, jax.local_device_count()))


def layout(setup: Any, local: int) -> Layout:
  """How ``local`` copies per device run: lanes and group size.

  All of them in one vmap on GPU/TPU; on CPU the fastest per copy,
  measured once per machine and model (see the module docstring); one by
  one for fewer than ``MIN_COPIES_TO_MEASURE`` copies. Across processes,
  process 0's choice (every process compiles the same program).
  """
  if local <= 1:
    return Layout(1, 1)
  if jax.default_backend() != "cpu":
    return Layout(1, local)
  if local < MIN_COPIES_TO_MEASURE or not setup.engine.optimizer.driven:
    return Layout(1, 1)
  if jax.process_count() == 1:
    return _measured_layout(setup, local)
  mine = (np.int32(_measured_layout(setup, local)) if jax.process_index() == 0
          else np.zeros(2, np.int32))
  from jax.experimental import multihost_utils
  return Layout(*(int(v) for v in multihost_utils.broadcast_one_to_all(mine)))


def _search_groups(setup: Any, lanes: int, local: int,
                   start: tuple[int, float] | None = None
                   ) -> tuple[int, float]:
  """(group, seconds per copy): the fastest of 1, 2, 4, ... in ``lanes``
  lanes, stopping after two slower sizes in a row (``start``: a group
  already timed)."""
  per_lane = -(-local // lanes)
  best_g, best_t = start or (1, _time_layout(setup, lanes, 1))
  g, worse = 2 * best_g, 0
  while g <= min(per_lane, MAX_GROUP) and worse < 2:
    t = _time_layout(setup, lanes, g)
    if t < best_t:
      best_g, best_t, worse = g, t, 0
    else:
      worse += 1
    g *= 2
  return best_g, best_t


def _measured_layout(setup: Any, local: int) -> Layout:
  """The cached or measured choice of :func:`layout` on CPU.

  A coordinate search, each step timed (:func:`_time_layout`): the group
  size with one lane per core; twice the lanes at that group (more lanes
  than cores hide each lane's serial stretches; measured best on a 2-core
  Xeon at 32 copies, though within its +-15 % noise), with the group search
  again from there; and one lane holding as many copies per call (a wide
  vmap may beat the lanes).
  """
  key = _key(setup)
  if key not in _MEMORY:
    cached = _load().get(key)
    if cached is not None:
      _MEMORY[key] = cached
  if key in _MEMORY:
    lanes, group = _MEMORY[key]
    lanes = min(lanes, local)
    return Layout(lanes, min(group, -(-local // lanes)))
  lanes = min(cores_per_device(), local)
  group, best = _search_groups(setup, lanes, local)
  choice = Layout(lanes, group)
  if lanes > 1 and 2 * lanes * group <= local:
    more = _time_layout(setup, 2 * lanes, group)
    if more < best:
      group, best = _search_groups(setup, 2 * lanes, local, (group, more))
      choice = Layout(2 * lanes, group)
  if choice.lanes > 1:
    wide = min(choice.lanes * choice.group, local)
    if _time_layout(setup, 1, wide) < best:
      choice = Layout(1, wide)
  _store(key, choice)
  return choice


# -- copies per round from device memory -------------------------------------


def free_bytes(stats: Mapping[str, Any] | None) -> int | None:
  """``bytes_limit - bytes_in_use`` of a ``Device.memory_stats()`` dict.

  Returns:
    The free bytes (>= 0), or None when the device reports no statistics
    (CPU: ``memory_stats()`` is None) or no limit.
  """
  if not stats:
    return None
  limit, used = stats.get("bytes_limit"), stats.get("bytes_in_use")
  if limit is None or used is None or int(limit) <= 0:
    return None
  return max(0, int(limit) - int(used))


def copies_that_fit(free: int | None, per_copy: int, fixed: int,
                    fraction: float = MEMORY_FRACTION) -> int | None:
  """Copies one device can hold at once:

    n = floor((fraction * free - fixed) / per_copy),  at least 1.

  Args:
    free: the device's free bytes (:func:`free_bytes`); None: unknown.
    per_copy: bytes each further copy needs (> 0).
    fixed: bytes needed whatever the number of copies (batches, ...).
    fraction: share of ``free`` to plan for, in (0, 1].

  Returns:
    ``n``, or None when ``free`` is None (no cap). 1 when even one copy
    does not fit (the round then holds one copy per device).
  """
  if free is None:
    return None
  if per_copy <= 0:
    raise ValueError(f"per_copy must be > 0 bytes, got {per_copy}")
  if not 0 < fraction <= 1:
    raise ValueError(f"fraction must be in (0, 1], got {fraction}")
  return max(1, int((fraction * free - fixed) // per_copy))


def reports_memory(devices: Sequence[Any]) -> bool:
  """Whether the devices' platform reports memory statistics (GPU, TPU;
  not CPU, whose ``memory_stats()`` is None)."""
  return any(d.platform != "cpu" for d in devices)


def device_free_bytes(devices: Sequence[Any]) -> int | None:
  """The least free memory of the local ``devices``; None if any of them
  reports no statistics (CPU)."""
  free = []
  for d in devices:
    if d.process_index != jax.process_index():
      continue
    try:
      stats = d.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None  # a backend without the call: no statistics
    f = free_bytes(stats)
    if f is None:
      return None
    free.append(f)
  return min(free) if free else None


def _total(analysis: Any) -> int:
  """Peak device bytes of a compiled program from its memory analysis:
  arguments + outputs - aliased (donated) + temporaries."""
  return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
             - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes)


def step_bytes(setup: Any) -> tuple[int, int]:
  """``(per_copy, fixed)`` device bytes of the vmapped training step.

  XLA's memory analysis of the step compiled for 1 and 2 copies (nothing
  runs): ``per_copy = M(2) - M(1)`` (at least one copy's state),
  ``fixed = M(1) - per_copy`` (at least 0). Cached per model signature.
  """
  key = _key(setup)
  if key in _PROBED:
    return _PROBED[key]
  f, state, _ = _vmapped_step(setup)
  totals = []
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # buffers a copy cannot donate
    for g in (1, 2):
      lrs = jax.ShapeDtypeStruct((g,), jnp.float32)
      analysis = f.lower(_stacked(state, g), lrs).compile().memory_analysis()
      if analysis is None:
        raise RuntimeError("no memory analysis")
      totals.append(_total(analysis))
  state_bytes = sum(_nbytes(x) for x in jax.tree.leaves(state))
  per_copy = max(totals[1] - totals[0], state_bytes, 1)
  fixed = max(totals[0] - per_copy, 0)
  _PROBED[key] = (per_copy, fixed)
  return per_copy, fixed


def _nbytes(x: Any) -> int:
  if _model.is_key(x):
    return int(np.prod(x.shape)) * 8
  return int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize


def chunk_bytes(setup: Any, accumulation_steps: int) -> int:
  """Device bytes of the batches while a chunk runs: the running chunk and
  the prefetched next one, plus the validation batches."""
  batch = sum(_nbytes(x) for x in jax.tree.leaves(setup.feed.first_batch()))
  val = 0 if setup.val is None else sum(
      _nbytes(x) for x in jax.tree.leaves(setup.val))
  return 2 * batch * setup.chunk_steps * accumulation_steps + val


def memory_max_parallel(setup: Any, devices: Sequence[Any],
                        accumulation_steps: int = 1) -> int | None:
  """Copies per device that fit in memory on every device (see the module
  docstring); None on CPU or without memory statistics.

  Args:
    setup: the driver's setup (model, engine, feed, validation data).
    devices: the devices along the copy axis (of all processes).
    accumulation_steps: micro-batches per step.
  """
  if not reports_memory(devices):
    return None  # e.g. CPU: known to every process, no collective needed
  free = device_free_bytes(devices)
  n = None
  if free is not None:
    try:
      per_copy, fixed = step_bytes(setup)
    except Exception:  # pylint: disable=broad-except
      per_copy = fixed = None  # no memory analysis: no cap
    if per_copy is not None:
      n = copies_that_fit(free, per_copy,
                          fixed + chunk_bytes(setup, accumulation_steps))
  if jax.process_count() > 1:
    n = agree_min(n)
  return n


def agree_min(n: int | None) -> int | None:
  """The smallest ``n`` of all processes (None: no cap, on every one)."""
  from jax.experimental import multihost_utils
  mine = np.int64(-1 if n is None else n)
  every = np.asarray(multihost_utils.process_allgather(mine))
  capped = every[every >= 0]
  return int(capped.min()) if capped.size else None
