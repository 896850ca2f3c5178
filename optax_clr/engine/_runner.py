"""Running compiled chunks of steps: one copy, or K copies over a mesh.

A driver describes ONE step of ONE copy as a pure function

  body(carry, consts, shared, x) -> (carry, out)

(``consts``: the copy's own constants, e.g. its LR; ``shared``: inputs
every copy reads, e.g. the validation batches; ``x``: the step's inputs,
``(micro_batches, valid, step_index, per_step)``, ``per_step`` e.g. the
ramp's LR of that step) and this module compiles CHUNKS of
steps of it, for one copy (:func:`single_program`) or for K copies sharded
over a mesh axis and run in vmapped groups on each device
(:func:`population_program`). :func:`drive` then feeds chunk after chunk:
the next chunk is placed on the devices while the current one runs, the host
syncs once per chunk (outputs and a stop flag), and Ctrl-C ends the loop
after the running chunk with every finished chunk kept (the first SIGINT
is a request read between chunks, :mod:`optax_clr._interrupt`; a second one,
or a ``KeyboardInterrupt`` where no handler could be installed, ends it at
once).

Two executions of a chunk:

* ``"scan"``: one compiled ``lax.scan`` over the chunk; no per-step work on
  the host at all. The default on GPU/TPU.
* ``"steps"``: one compiled step per dispatch, indexing the device-resident
  chunk; dispatch is asynchronous and the carry donated, so the host only
  queues work. The default on CPU, where XLA runs the weight gradient of a
  ``lax.conv`` inside a loop body with a naive kernel (jax-ml/jax#12868):
  measured on 2 CPU cores, a width-16 ``nnx.Conv`` CNN on digits, 22 steps,
  47 ms per epoch as steps vs 1418 ms in a rolled scan; the bundled im2col
  CNN runs at the same speed either way (57 vs 54 ms).

Both give the same results to float32 rounding and are deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from optax_clr import _checks
from optax_clr import _interrupt
from optax_clr.engine import _placement

PyTree = Any
EXECUTIONS = ("auto", "scan", "steps")


def resolve_execution(execution: str) -> str:
  """``"steps"`` on CPU, ``"scan"`` elsewhere, for ``"auto"``."""
  _checks.check_choice("execution", execution, EXECUTIONS)
  if execution != "auto":
    return execution
  return "steps" if jax.default_backend() == "cpu" else "scan"


def _index(tree: PyTree, i: Any, axis: int = 0) -> PyTree:
  return jax.tree.map(
      lambda x: jax.lax.dynamic_index_in_dim(x, i, axis, keepdims=False),
      tree)


class Pending:
  """A chunk's outputs, still on the devices until :meth:`get`."""

  def __init__(self, value: Any, steps: int, step_axis: int,
               stacked: bool):
    self._value = value
    self._steps = steps
    self._axis = step_axis
    self._stacked = stacked

  def ready(self) -> None:
    jax.block_until_ready(self._value)

  def get(self) -> PyTree:
    """NumPy outputs with ``steps`` entries along the step axis; steps that
    were not run are NaN (floats), False (bools) or -1 (integers)."""
    value = _placement.fetch(self._value)
    if self._stacked:
      return value
    out = jax.tree.map(lambda *xs: np.stack(xs, self._axis), *value)
    missing = self._steps - len(value)
    return jax.tree.map(lambda x: _pad(x, missing, self._axis), out)


def _pad(x: np.ndarray, missing: int, axis: int) -> np.ndarray:
  if missing <= 0:
    return x
  shape = list(x.shape)
  shape[axis] = missing
  fill = (False if x.dtype == np.bool_ else -1 if np.issubdtype(
      x.dtype, np.integer) else np.nan)
  return np.concatenate([x, np.full(shape, fill, x.dtype)], axis)


class ChunkProgram:
  """A compiled chunk: ``program(carry, consts, shared, xs, num_valid)``.

  ``xs = (micro, valid, steps, per_step)`` with leaves ``[steps, ...]``
  (``micro`` is ``[K, steps, ...]`` for per-copy batches of a population);
  only the first ``num_valid`` steps are real. Returns ``(carry, Pending)``.
  """

  def __init__(self, run: Callable[..., Any], execution: str,
               step_axis: int, mesh: Mesh | None):
    self._run = run
    self.execution = execution
    self.step_axis = step_axis
    self._mesh = mesh

  def __call__(self, carry: PyTree, consts: PyTree, shared: PyTree,
               xs: PyTree, num_valid: int) -> tuple[PyTree, Pending]:
    steps = int(xs[1].shape[0])
    with _placement.mesh_context(self._mesh):
      if self.execution == "scan":
        carry, out = self._run(carry, consts, shared, xs)
        return carry, Pending(out, steps, self.step_axis, True)
      outs = []
      for i in range(num_valid):
        carry, out = self._run(carry, consts, shared, xs, np.int32(i))
        outs.append(out)
      return carry, Pending(outs, steps, self.step_axis, False)


def single_program(body: Callable[..., Any], execution: str,
                   mesh: Mesh | None = None) -> ChunkProgram:
  """Chunks of ``body`` for one copy (the carry is donated)."""
  if execution == "scan":
    def run(carry, consts, shared, xs):
      return jax.lax.scan(lambda c, x: body(c, consts, shared, x), carry,
                          xs)
    return ChunkProgram(jax.jit(run, donate_argnums=0), "scan", 0, mesh)

  def run_step(carry, consts, shared, xs, i):
    return body(carry, consts, shared, _index(xs, i))
  return ChunkProgram(jax.jit(run_step, donate_argnums=0), "steps", 0, mesh)


def over_copies(fn: Callable[[Any], Any], xs: PyTree, group_size: int,
                lanes: int = 1) -> PyTree:
  """``fn`` of every copy of ``xs`` (leading copy axis), in vmapped groups.

  The copies are split into ``lanes`` contiguous parts that share no data,
  so XLA's CPU runtime runs them concurrently (one per core: a small model's
  step does not keep several cores busy by itself); within a part the copies
  run in vmapped groups of ``group_size`` one after another
  (``lax.map(..., batch_size=group_size)``; one ``vmap`` when the group
  holds them all).
  """
  n = jax.tree.leaves(xs)[0].shape[0]
  def grouped(part):
    size = jax.tree.leaves(part)[0].shape[0]
    if group_size >= size:
      return jax.vmap(fn)(part)
    return jax.lax.map(fn, part, batch_size=group_size)
  if lanes <= 1 or n <= 1:
    return grouped(xs)
  cuts = np.linspace(0, n, min(lanes, n) + 1).astype(int)
  outs = [grouped(jax.tree.map(lambda x, a=a, b=b: x[a:b], xs))
          for a, b in zip(cuts[:-1], cuts[1:])]
  return jax.tree.map(lambda *o: jnp.concatenate(o), *outs)


def population_program(body: Callable[..., Any], execution: str, mesh: Mesh,
                       group_size: int, per_copy_batches: bool,
                       data_axis: str | None = None,
                       lanes: int = 1) -> ChunkProgram:
  """Chunks of ``body`` for K copies sharded over ``mesh``'s copy axis.

  On each device its copies run in ``lanes`` concurrent parts of vmapped
  groups of ``group_size`` (:func:`over_copies`). ``carry`` and ``consts``
  have a leading copy axis; the step inputs are shared by every copy
  (replicated) or, with ``per_copy_batches``, have their own leading copy
  axis (a multi-seed test: each seed its own data order). With a
  ``data_axis`` of the mesh, every copy's batch is split over it (the body averages over it: data
  parallelism within each copy). A mesh without a copy axis (the user's,
  see :func:`optax_clr.drivers._population.user_mesh`) runs every copy on
  all of it, under ``jit`` alone: explicit sharding (``reshard``,
  ``out_sharding``) cannot run inside ``shard_map``.
  """
  axis = _placement.COPY_AXIS

  def compiled(fn, in_specs):
    if axis not in mesh.axis_names:
      return jax.jit(fn, donate_argnums=0)
    return jax.jit(jax.shard_map(
        fn, mesh=mesh, in_specs=in_specs, out_specs=(P(axis), P(axis)),
        check_vma=False), donate_argnums=0)

  # Batch leaves: [K,] steps, A, B, ...: B over the data axis.
  lead = [axis] if per_copy_batches else []
  batches_spec = P(*lead, None, None, data_axis) if data_axis else P(*lead)
  x_specs = (batches_spec, P(), P(), P())  # (micro, valid, step, per_step)

  if execution == "scan":
    def local(carry, consts, shared, xs):
      micro, rest = xs[0], xs[1:]
      def one(args):
        c, k = args[0], args[1]
        m = args[2] if per_copy_batches else micro
        return jax.lax.scan(lambda cc, x: body(cc, k, shared, x), c,
                            (m, *rest))
      args = (carry, consts, micro) if per_copy_batches else (carry, consts)
      return over_copies(one, args, group_size, lanes)
    run = compiled(local, (P(axis), P(axis), P(), x_specs))
    return ChunkProgram(run, "scan", 1, mesh)

  def local_step(carry, consts, shared, xs, i):
    micro, rest = xs[0], _index(xs[1:], i)
    def one(args):
      c, k = args[0], args[1]
      m = _index(args[2] if per_copy_batches else micro, i)
      return body(c, k, shared, (m, *rest))
    args = (carry, consts, micro) if per_copy_batches else (carry, consts)
    return over_copies(one, args, group_size, lanes)
  run = compiled(local_step, (P(axis), P(axis), P(), x_specs, P()))
  return ChunkProgram(run, "steps", 1, mesh)


class Outcome(NamedTuple):
  """How :func:`drive` ended: the records of every finished chunk, and
  whether the data ran out or the user interrupted."""
  records: list[PyTree]
  carry: PyTree
  exhausted: bool
  interrupted: bool


def drive(program: ChunkProgram, carry: PyTree, consts: PyTree,
          shared: PyTree, chunks: Iterator[Any], place: Callable[[Any, int], PyTree],
          on_chunk: Callable[[PyTree, Any, int], bool], num_steps: int,
          progress: Callable[[int, int, dict], Any] | None = None,
          metrics_of: Callable[[PyTree], dict] | None = None) -> Outcome:
  """Runs ``chunks`` through ``program`` until done, stopped or interrupted.

  Args:
    program: the compiled chunk.
    carry, consts, shared: the initial carry, the copies' constants and
      the shared inputs (on the devices).
    chunks: host chunks (``_feed.Chunk``).
    place: ``place(chunk, first_step) -> device xs``.
    on_chunk: ``on_chunk(outputs, chunk, steps_done) -> stop`` on the host
      after each chunk (one sync).
    num_steps: the planned total, for progress.
    progress: ``progress(steps_done, num_steps, metrics)`` after each chunk.
    metrics_of: the metrics shown with progress, from a chunk's outputs.
  """
  records: list[PyTree] = []
  done = 0
  exhausted = False
  start = time.perf_counter()
  try:
    with _interrupt.deferred():
      nxt = next(chunks, None)
      pending = None if nxt is None else (place(nxt, 0), nxt)
      exhausted = pending is None
      while pending is not None:
        if _interrupt.requested():  # between chunks: the carry is whole
          return Outcome(records, carry, exhausted, True)
        xs, chunk = pending
        carry, out = program(carry, consts, shared, xs, chunk.num_valid)
        following = None
        if not chunk.exhausted and done + chunk.num_valid < num_steps:
          nxt = next(chunks, None)  # host work overlaps the running chunk
          if nxt is None:
            exhausted = True
          else:
            following = (place(nxt, done + chunk.num_valid), nxt)
        outputs = _trim(out.get(), chunk.num_valid, program.step_axis)
        records.append(outputs)
        done += chunk.num_valid
        exhausted = exhausted or chunk.exhausted
        stop = on_chunk(outputs, chunk, done)
        if progress is not None:
          shown = {} if metrics_of is None else metrics_of(outputs)
          progress(done, num_steps,
                   {**shown, "elapsed": time.perf_counter() - start})
        if stop:
          break
        pending = following
  except KeyboardInterrupt:  # a second Ctrl-C, or no handler of ours
    return Outcome(records, carry, exhausted, True)
  return Outcome(records, carry, exhausted, False)


def _trim(tree: PyTree, count: int, axis: int) -> PyTree:
  """The first ``count`` (real) steps of a chunk's outputs."""
  return jax.tree.map(
      lambda x: np.take(x, np.arange(count), axis=axis), tree)


def steps_array(first: int, count: int) -> np.ndarray:
  return np.arange(first, first + count, dtype=np.int32)


def nan_like(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), tree)
