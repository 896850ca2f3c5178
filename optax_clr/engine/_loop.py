"""The one loop every test runs: K copies of a solver, chunk after chunk.

A test is a *solver* (the optimistix pattern): a hashable object with

* ``init(train_state) -> carry`` -- one copy's carry at step 0;
* ``step(spec, carry, consts, val, x) -> (carry, record)`` -- one step of one
  copy (``consts``: the copy's own constants, e.g. its LR; ``val``: the
  validation batches; ``x = (micro_batches, valid, step_index)``); the
  record's ``"recorded"`` entry says whether the step counted;
* ``train_state(carry) -> (train_state, dead)`` -- the model inside.

This module compiles those functions for the blocks of a
:class:`~optax_clr.engine._layout.Plan` (``jit`` with the static
:class:`Program` as key: JAX's own cache keeps them), keeps the copies'
carries on the devices (:class:`Population`), and feeds chunks of batches
(:func:`drive`): the next chunk is placed while the current one runs, the
host reads the records once per chunk, and Ctrl-C ends the loop after the
running chunk with every finished chunk kept (:mod:`optax_clr._interrupt`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from optax_clr import _interrupt
from optax_clr.engine import _layout
from optax_clr.engine import _loss
from optax_clr.engine import _model
from optax_clr.engine import _placement
from optax_clr.engine import _step

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Program:
  """The static key of a block's compiled programs.

  Attributes:
    spec: the step's model, loss and optimizer.
    solver: the test.
    plan: the layout of the block.
    per_copy: every copy has its own batches (a multi-seed test).
  """
  spec: _step.Spec
  solver: Any
  plan: _layout.Plan
  per_copy: bool

  def with_group(self, group: int) -> Program:
    return dataclasses.replace(
        self, plan=dataclasses.replace(self.plan, group=group))


# -- the compiled programs ----------------------------------------------------


def _each(group: int, fn: Callable[..., Any], *trees: Any) -> Any:
  """``fn`` of every copy of a device's group (leading axis ``group``);
  trees that are None are shared by the copies."""
  if group == 1:
    one = [None if t is None else jax.tree.map(lambda x: x[0], t)
           for t in trees]
    return jax.tree.map(lambda x: x[None], fn(*one))
  return jax.vmap(fn, in_axes=tuple(None if t is None else 0
                                    for t in trees))(*trees)


def _specs(prog: Program) -> dict[str, P]:
  plan = prog.plan
  copies, data = plan.copies_axis, plan.data_axis
  return {
      "copies": P(copies),
      "batches": (P(copies, None, None, data) if prog.per_copy
                  else P(None, None, data)),
      "val": P(None, data),
      "scalar": P(),
  }


def _sharded(prog: Program, local: Callable[..., Any], in_specs: tuple,
             out_specs: Any) -> Callable[..., Any]:
  plan = prog.plan
  if plan.mesh is None or not plan.bind:
    return local
  axes = tuple(plan.mesh.shape.items())
  return jax.shard_map(lambda *args: _traced_plain(local, axes, args),
                       mesh=plan.mesh, in_specs=in_specs,
                       out_specs=out_specs, check_vma=False)


def _traced_plain(local: Callable[..., Any], axes: tuple, args: tuple) -> Any:
  """``local(*args)`` inside ``shard_map``, traced as a plain program.

  Under ``shard_map`` every value derived from an input has a type on the
  manual mesh, while a constant the user's code creates (``jnp.array(
  False)``) has none, so code that compares types -- Equinox's
  ``State.set`` (``eval_shape`` of the old and the new value) -- fails on
  state it carries. The step is traced on the local shapes outside any mesh,
  with the mesh's axis names bound, as the user's code is traced without
  optax-clr, and the traced program is evaluated on the shards.
  """
  plain = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      x.shape, x.dtype, weak_type=x.aval.weak_type), args)
  with jax.sharding.use_abstract_mesh(jax.sharding.AbstractMesh((), ())):
    closed, shape = jax.make_jaxpr(local, axis_env=axes, return_shape=True)(
        *plain)
  out = jax.core.eval_jaxpr(closed.jaxpr, closed.consts,
                            *jax.tree.leaves(args))
  return jax.tree.unflatten(jax.tree.structure(shape), out)


def _step_of(prog: Program, val: Any) -> Callable[..., Any]:
  return lambda c, k, x: prog.solver.step(prog.spec, c, k, val, x)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def chunk_program(prog: Program, carry: PyTree, consts: PyTree, val: PyTree,
                  xs: PyTree) -> tuple[PyTree, PyTree]:
  """A chunk of steps of a block (``lax.scan``); records ``[B, steps]``."""
  def local(carry, consts, val, xs):
    step = _step_of(prog, val)
    def one(c, k, own):
      data = (xs[0] if own is None else own, *xs[1:])
      return jax.lax.scan(lambda cc, x: step(cc, k, x), c, data)
    return _each(prog.plan.group, one, carry, consts,
                 xs[0] if prog.per_copy else None)
  s = _specs(prog)
  xs_spec = (s["batches"], s["scalar"], s["scalar"])
  return _sharded(prog, local, (s["copies"], s["copies"], s["val"], xs_spec),
                  (s["copies"], s["copies"]))(carry, consts, val, xs)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def step_program(prog: Program, carry: PyTree, consts: PyTree, val: PyTree,
                 xs: PyTree, i: jax.Array) -> tuple[PyTree, PyTree]:
  """Step ``i`` of a chunk of a block; records ``[B]``."""
  def local(carry, consts, val, xs, i):
    step = _step_of(prog, val)
    at = lambda t, axis=0: jax.tree.map(  # noqa: E731
        lambda x: jax.lax.dynamic_index_in_dim(x, i, axis, False), t)
    rest = at(xs[1:])
    def one(c, k, own):
      return step(c, k, (at(xs[0]) if own is None else at(own), *rest))
    return _each(prog.plan.group, one, carry, consts,
                 xs[0] if prog.per_copy else None)
  s = _specs(prog)
  xs_spec = (s["batches"], s["scalar"], s["scalar"])
  return _sharded(prog, local, (s["copies"], s["copies"], s["val"], xs_spec,
                                s["scalar"]),
                  (s["copies"], s["copies"]))(carry, consts, val, xs, i)


@functools.partial(jax.jit, static_argnums=0)
def eval_program(prog: Program, carry: PyTree, consts: PyTree,
                 val: PyTree) -> dict[str, jax.Array]:
  """Validation metrics of every copy of a block (NaN for a dead copy)."""
  def local(carry, consts, val):
    def one(c, k):
      ts, dead = prog.solver.train_state(c)
      metrics = _step.evaluate_stack(prog.spec, ts, val,
                                     _loss.eval_key(k["seed"], k["copy"]))
      return {n: jnp.where(dead, jnp.nan, v) for n, v in metrics.items()}
    return _each(prog.plan.group, one, carry, consts)
  s = _specs(prog)
  return _sharded(prog, local, (s["copies"], s["copies"], s["val"]),
                  s["copies"])(carry, consts, val)


def _constrain(prog: Program, tree: PyTree) -> PyTree:
  plan = prog.plan
  if plan.mesh is None or not plan.bind or plan.copies_axis is None:
    return tree
  return jax.lax.with_sharding_constraint(
      tree, NamedSharding(plan.mesh, P(plan.copies_axis)))


@functools.partial(jax.jit, static_argnums=0)
def init_program(prog: Program, parts: _model.Parts, seeds: jax.Array,
                 copies: jax.Array) -> PyTree:
  """Carries of copies that start from the same weights, each with its own
  random streams (module-held keys folded with its seed and index)."""
  ts = _step.init(prog.spec, parts)
  def one(seed, copy):
    return prog.solver.init(ts._replace(
        rest=_model.fold_in_keys(ts.rest, seed, copy),
        state=_model.fold_in_keys(ts.state, seed, copy)))
  return _constrain(prog, jax.vmap(one)(seeds, copies))


@functools.partial(jax.jit, static_argnums=(0, 1))
def init_independent_program(prog: Program, model_init: Callable[..., Any],
                             keys: jax.Array, seeds: jax.Array,
                             copies: jax.Array) -> PyTree:
  """Carries of copies that start from ``model_init(key_k)``."""
  wrt = prog.spec.model.wrt
  def one(key, seed, copy):
    _, parts = _model.split(model_init(key), wrt)
    ts = _step.init(prog.spec, parts)
    return prog.solver.init(ts._replace(
        rest=_model.fold_in_keys(ts.rest, seed, copy),
        state=_model.fold_in_keys(ts.state, seed, copy)))
  return _constrain(prog, jax.vmap(one)(keys, seeds, copies))


# -- the copies on the devices -----------------------------------------------


class Block(NamedTuple):
  """One dispatch's copies: their carry and constants (leading axis ``B``)
  and which copies they are (padding repeats the last one)."""
  prog: Program
  carry: PyTree
  consts: PyTree
  index: np.ndarray
  real: np.ndarray


def _context(prog: Program) -> Any:
  return _placement.mesh_context(prog.plan.mesh)


def _put_copies(prog: Program, tree: PyTree) -> PyTree:
  plan = prog.plan
  if plan.mesh is None:
    return jax.device_put(tree)
  if not plan.bind:
    return _placement.put(tree, plan.mesh)
  return _placement.put(tree, plan.mesh, lambda x: P(plan.copies_axis))


def _blocks_of(prog: Program, copies: np.ndarray) -> list[np.ndarray]:
  size = prog.plan.block
  out = []
  for start in range(0, len(copies), size):
    idx = copies[start:start + size]
    out.append(np.concatenate([idx, np.repeat(idx[-1:], size - len(idx))]))
  return out


class Population:
  """K copies of a solver on the devices, in blocks (see the module
  docstring). ``consts`` are host arrays ``[K, ...]``; they must hold
  ``"seed"`` and ``"copy"`` (folded into every key)."""

  def __init__(self, blocks: list[Block], consts: dict[str, np.ndarray],
               val: PyTree):
    self.blocks = blocks
    self.consts = consts
    self.val = val

  @classmethod
  def start(cls, prog: Program, parts: _model.Parts,
            consts: dict[str, np.ndarray], copies: np.ndarray, *,
            val: PyTree = None, model_init: Any = None,
            keys: np.ndarray | None = None) -> Population:
    """The copies ``copies`` at step 0, from ``parts`` (shared weights) or
    from ``model_init(keys[k])``."""
    pop = cls([], consts, None)
    with _context(prog):
      pop.val = None if val is None else _placement.put(
          val, prog.plan.mesh, lambda x: _specs(prog)["val"])
      for idx in _blocks_of(prog, np.asarray(copies)):
        ids = _put_copies(prog, (consts["seed"][idx], consts["copy"][idx]))
        if model_init is None:
          carry = init_program(prog, _placement.put(parts, prog.plan.mesh)
                               if prog.plan.bind else parts, *ids)
        else:
          carry = init_independent_program(
              prog, model_init, _put_copies(prog, jax.random.wrap_key_data(
                  jnp.asarray(keys[idx]))), *ids)
        pop.blocks.append(pop._block(prog, carry, idx))
    return pop

  def _block(self, prog: Program, carry: PyTree, idx: np.ndarray) -> Block:
    real = np.ones(len(idx), bool)
    real[1:] &= idx[1:] != idx[:-1]
    consts = _put_copies(prog, jax.tree.map(lambda v: np.asarray(v)[idx],
                                            self.consts))
    return Block(prog, carry, consts, idx, real)

  @property
  def copies(self) -> np.ndarray:
    """The copies held, in block order."""
    return np.concatenate([b.index[b.real] for b in self.blocks])

  def dispatch(self, xs_of: Callable[[Block], PyTree], num_valid: int,
               blocks: list[int] | None = None) -> list[Any]:
    """Runs one chunk on the blocks (all by default), without waiting;
    returns their pending records."""
    pending = []
    for b in (range(len(self.blocks)) if blocks is None else blocks):
      block = self.blocks[b]
      xs = xs_of(block)
      with _context(block.prog):
        if block.prog.plan.execution == "scan":
          carry, out = chunk_program(block.prog, block.carry, block.consts,
                                     self.val, xs)
        else:
          carry, out = block.carry, []
          for i in range(num_valid):
            carry, o = step_program(block.prog, carry, block.consts,
                                    self.val, xs, np.int32(i))
            out.append(o)
      self.blocks[b] = block._replace(carry=carry)
      pending.append((b, out))
    return pending

  def collect(self, pending: list[Any], num_valid: int
              ) -> dict[str, np.ndarray]:
    """The records of a chunk, ``name -> [copy, step]``, copies in
    ascending order (one read from the devices)."""
    fetched = _placement.fetch([out for _, out in pending])
    rows: dict[int, dict[str, np.ndarray]] = {}
    for (b, _), out in zip(pending, fetched):
      block = self.blocks[b]
      if isinstance(out, list):  # "steps": one record per step
        out = jax.tree.map(lambda *xs: np.stack(xs, 1), *out)
      out = jax.tree.map(lambda x: x[:, :num_valid], out)
      for j in np.flatnonzero(block.real):
        rows[int(block.index[j])] = jax.tree.map(lambda x, j=j: x[j], out)
    return jax.tree.map(lambda *xs: np.stack(xs),
                        *[rows[c] for c in sorted(rows)])

  def regroup(self, prog_of: Callable[[], Program],
              keep: np.ndarray | None = None) -> None:
    """Lays the copies (those in ``keep``, default all) out again in blocks
    of ``prog_of()``'s plan (a new group, or survivors of a selection)."""
    copies = self.copies if keep is None else np.asarray(keep)
    prog = prog_of()
    # A block whose copies and program stay as they are is kept whole:
    # copies one after another (group 1) regroup without moving an array.
    same = {tuple(b.index): b for b in self.blocks if b.prog == prog}
    pieces: dict[int, PyTree] = {}
    blocks = []
    for idx in _blocks_of(prog, copies):
      if tuple(idx) in same:
        blocks.append(same[tuple(idx)])
        continue
      if not pieces:
        for block in self.blocks:
          for j in np.flatnonzero(block.real):
            pieces[int(block.index[j])] = jax.tree.map(
                lambda x, j=j: x[j], block.carry)
      carry = jax.tree.map(lambda *xs: jnp.stack(xs),
                           *[pieces[int(i)] for i in idx])
      with _context(prog):
        blocks.append(self._block(prog, _put_copies(prog, carry), idx))
    self.blocks = blocks

  def evaluate(self, blocks: list[int] | None = None
               ) -> dict[str, np.ndarray]:
    """Validation metrics of every copy held (or of those in ``blocks``),
    ``name -> [copies]`` (ascending)."""
    chosen = [self.blocks[b] for b in (range(len(self.blocks))
                                       if blocks is None else blocks)]
    outs = []
    for block in chosen:
      with _context(block.prog):
        outs.append(eval_program(block.prog, block.carry, block.consts,
                                 self.val))
    return self._in_order(_placement.fetch(outs), chosen)

  def _in_order(self, per_block: list[PyTree],
                blocks: list[Block] | None = None) -> PyTree:
    """Per-block values (leading axis B) as ``[copies]``, ascending."""
    blocks = self.blocks if blocks is None else blocks
    order = np.argsort(np.concatenate([b.index[b.real] for b in blocks]))
    return jax.tree.map(lambda *xs: np.concatenate(xs)[order], *[
        jax.tree.map(lambda x, b=b: x[b.real], f)
        for b, f in zip(blocks, per_block)])

  def read(self, field: Callable[[PyTree], PyTree]) -> PyTree:
    """``field(carry)`` of every copy held, on the host (``[copies, ...]``,
    ascending)."""
    return self._in_order(_placement.fetch([field(b.carry)
                                            for b in self.blocks]))

  def load(self, copy: int, carry: PyTree) -> None:
    """Replaces one copy's carry (a run resumed from a checkpoint)."""
    for b, block in enumerate(self.blocks):
      hits = np.flatnonzero(block.index == copy)
      if hits.size:
        self.blocks[b] = block._replace(carry=jax.tree.map(
            lambda x, v: x.at[hits].set(v), block.carry, carry))

  def carry_of(self, copy: int) -> PyTree:
    """The carry of one copy (on its device)."""
    for block in self.blocks:
      hits = np.flatnonzero((block.index == copy) & block.real)
      if hits.size:
        return jax.tree.map(lambda x: x[int(hits[0])], block.carry)
    raise KeyError(copy)


# -- feeding chunks -------------------------------------------------------------


class Outcome(NamedTuple):
  """How :func:`drive` ended: the records of every finished chunk, whether
  the data ran out or the user interrupted, and the steps done."""
  records: list[dict[str, np.ndarray]]
  exhausted: bool
  interrupted: bool
  steps: int


def drive(pop: Population, chunks: Iterator[Any],
          xs_for: Callable[[Any, int], Callable[[Block], PyTree]],
          num_steps: int, *, measure: Callable[..., Any] | None = None,
          report: Callable[[int, dict], Any] | None = None,
          stop: Callable[[dict], bool] | None = None) -> Outcome:
  """Runs ``chunks`` through the population until done, stopped or
  interrupted.

  Args:
    pop: the copies.
    chunks: host chunks (``_feed.Chunk``).
    xs_for: ``xs_for(chunk, first_step) -> (block -> device inputs)``.
    num_steps: the planned total.
    measure: ``measure(pop, xs_of, chunk, index) -> pending`` runs a chunk
      while measuring layouts (:func:`measured_dispatch`); None: plain.
    report: ``report(steps_done, records)`` after each chunk.
    stop: ``stop(records) -> bool`` after each chunk: every copy stopped.
  """
  records: list[dict[str, np.ndarray]] = []
  done, exhausted, index = 0, False, 0
  try:
    with _interrupt.deferred():
      chunk = next(chunks, None)
      exhausted = chunk is None
      while chunk is not None:
        if _interrupt.requested():  # between chunks: every carry is whole
          return Outcome(records, exhausted, True, done)
        xs_of = xs_for(chunk, done)
        if measure is not None:
          pending = measure(pop, xs_of, chunk, index)
        else:
          pending = pop.dispatch(xs_of, chunk.num_valid)
        following = None
        if not chunk.exhausted and done + chunk.num_valid < num_steps:
          following = next(chunks, None)  # host work overlaps the chunk
          exhausted = following is None
        out = pop.collect(pending, chunk.num_valid)
        records.append(out)
        done += chunk.num_valid
        index += 1
        exhausted = exhausted or chunk.exhausted
        if report is not None:
          report(done, out)
        if stop is not None and stop(out):
          break
        chunk = following
  except KeyboardInterrupt:  # a second Ctrl-C, or no handler of ours
    return Outcome(records, exhausted, True, done)
  return Outcome(records, exhausted, False, done)


def concat(records: list[dict[str, np.ndarray]], name: str) -> np.ndarray:
  """One record over every chunk: ``[copies, steps, ...]`` (leaf by leaf
  for a nested record)."""
  return jax.tree.map(lambda *xs: np.concatenate(xs, 1),
                      *[r[name] for r in records])


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
  start = time.perf_counter()
  out = fn()
  jax.block_until_ready(out)
  return out, time.perf_counter() - start


def compile_seconds(block: Block, val: PyTree, xs: PyTree) -> float:
  """Compiles (or finds) a block's program ahead of time; its seconds."""
  prog = block.prog
  start = time.perf_counter()
  with _context(prog):
    if prog.plan.execution == "scan":
      chunk_program.lower(prog, block.carry, block.consts, val,
                          xs).compile()
    else:
      step_program.lower(prog, block.carry, block.consts, val, xs,
                         np.int32(0)).compile()
  return time.perf_counter() - start


def measured_dispatch(local: int, total_chunks: int) -> Callable[..., Any]:
  """A ``measure`` for :func:`drive` that chooses the group on the run
  itself (:mod:`._layout`): chunk 0 times the floor (copies one after
  another); chunk 1, when the budget allows, runs the first copies in a
  vmapped group; from chunk 2 on every copy runs in the faster layout."""
  state: dict[str, Any] = {}

  def measure(pop: Population, xs_of: Callable[[Block], PyTree], chunk: Any,
              index: int) -> list[Any]:
    floor = pop.blocks[-1].prog.with_group(1)
    record = _layout.measured(floor)
    if "settle" in state:
      group = state.pop("settle")
      pop.regroup(lambda: floor.with_group(group))
    if index == 0:
      if 1 not in record.compile_seconds:
        record.compile_seconds[1] = compile_seconds(
            pop.blocks[0], pop.val, xs_of(pop.blocks[0]))
      first, t = _timed(lambda: pop.dispatch(xs_of, chunk.num_valid, [0]))
      record.per_copy_step[1] = t / (floor.plan.block * chunk.num_valid)
      state["try"] = _layout.try_group(
          record, local, t, record.compile_seconds[1], floor.plan.block,
          total_chunks * len(pop.blocks))
      return first + pop.dispatch(xs_of, chunk.num_valid,
                                  list(range(1, len(pop.blocks))))
    group = state.pop("try", None)
    if index != 1 or group is None:
      return pop.dispatch(xs_of, chunk.num_valid)
    copies = pop.copies
    split = group * floor.plan.devices
    _regroup_split(pop, floor.with_group(group), copies[:split], floor,
                   copies[split:])
    record.compile_seconds[group] = compile_seconds(
        pop.blocks[0], pop.val, xs_of(pop.blocks[0]))
    first, t = _timed(lambda: pop.dispatch(xs_of, chunk.num_valid, [0]))
    record.per_copy_step[group] = t / (split * chunk.num_valid)
    state["settle"] = record.best() or 1
    return first + pop.dispatch(xs_of, chunk.num_valid,
                                list(range(1, len(pop.blocks))))
  return measure


def _regroup_split(pop: Population, head_prog: Program, head: np.ndarray,
                   tail_prog: Program, tail: np.ndarray) -> None:
  """The copies ``head`` in blocks of ``head_prog``, the rest in blocks of
  ``tail_prog``."""
  before = pop.blocks
  pop.regroup(lambda: head_prog, head)
  head_blocks = pop.blocks
  pop.blocks = before
  tail_blocks: list[Block] = []
  if len(tail):
    pop.regroup(lambda: tail_prog, tail)
    tail_blocks = pop.blocks
  pop.blocks = head_blocks + tail_blocks
