"""K copies of a test, from a driver's setup to its records.

:func:`run` is what every population driver calls (the sweep, the grid,
the multi-seed and weight-decay ramps, the classic ramp with ``K = 1``):

1. the layout (:mod:`._layout`): the copies over the devices, the execution
   (``"steps"`` for a CPU step with a convolution), the group (measured on
   the run where worth it), rounds of at most ``max_parallel`` copies (on
   GPU/TPU, of what fits in memory: :mod:`._memory`);
2. the copies' start: every copy from the model's weights, or from
   ``model_init(key_k)`` with ``key_k`` the k-th of
   ``jax.random.split(jax.random.key(seed), K)``; each copy's module-held
   keys folded with its seed and index;
3. the data: the same batches for every copy (array data re-sampled with
   the same seed in every round, an iterable read once and its chunks kept
   for later rounds), or each copy its own feed (each its own data order);
4. :func:`run_population`: round after round through the loop
   (:func:`optax_clr.engine._loop.drive`), with a progress report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from optax_clr import _progress
from optax_clr.engine import _feed
from optax_clr.engine import _layout
from optax_clr.engine import _loop
from optax_clr.engine import _memory
from optax_clr.engine import _model
from optax_clr.engine import _placement
from optax_clr.engine import _setup

PyTree = Any


def program(setup: _setup.Setup, solver: Any, consts: dict[str, Any],
            per_copy: bool, has_conv: bool
            ) -> tuple[_loop.Program, int, list[np.ndarray]]:
  """The floor program of the layout, the copies per device in a round and
  the rounds' copies."""
  options = setup.options
  devices = 1 if setup.copies_axis is None else int(
      setup.mesh.shape[setup.copies_axis])
  execution = options.execution
  if execution == "auto":
    execution = _layout.default_execution(has_conv)
  plan = _layout.Plan(setup.mesh, setup.copies_axis, setup.data_axis,
                      setup.bind, devices, 1, execution)
  prog = _loop.Program(setup.spec, solver, plan, per_copy)
  rounds = rounds_of(setup, prog, consts)
  local = -(-rounds[0].size // devices)
  return (prog.with_group(_layout.default_group(local, options)), local,
          rounds)


def rounds_of(setup: _setup.Setup, prog: _loop.Program,
              consts: dict[str, Any]) -> list[np.ndarray]:
  """The copies of each round: at most ``max_parallel`` (or, on GPU/TPU,
  what fits in memory: :mod:`._memory`)."""
  cap = setup.options.max_parallel
  if cap is None:
    fit = _memory.copies_per_device(setup, prog, consts)
    cap = None if fit is None else fit * prog.plan.devices
  return split_rounds(len(consts["copy"]), prog.plan.devices, cap)


def split_rounds(num_copies: int, devices: int, cap: int | None
                 ) -> list[np.ndarray]:
  """Rounds of at most ``cap`` copies (rounded down to a multiple of the
  devices, at least one per device), balanced: ceil(K / rounds) each."""
  if cap is None or cap >= num_copies:
    return [np.arange(num_copies)]
  cap = max(devices, cap // devices * devices)
  rounds = -(-num_copies // cap)
  size = -(-num_copies // rounds)
  return [np.arange(num_copies)[i:i + size]
          for i in range(0, num_copies, size)]


def _shared_chunks(setup: _setup.Setup, num_steps: int, rounds: int
                   ) -> Callable[[np.ndarray], Any]:
  source = _feed.ChunkSource(setup.feed, num_steps, setup.chunk_steps,
                             setup.options.accumulation_steps, rounds)
  return lambda copies: iter(source)


def _own_chunks(setup: _setup.Setup, feeds: Sequence[Any], num_steps: int
                ) -> Callable[[np.ndarray], Any]:
  """Each copy's own chunks, stacked along a leading copy axis."""
  def chunks(copies):
    iters = []
    for c in copies:
      feeds[c].reset()
      iters.append(_feed.iter_chunks(feeds[c], num_steps, setup.chunk_steps,
                                     setup.options.accumulation_steps))
    while True:
      parts = [next(it, None) for it in iters]
      if any(p is None for p in parts):
        return
      yield _feed.Chunk(
          {int(c): p.batches for c, p in zip(copies, parts)},
          parts[0].valid, parts[0].num_valid, parts[0].exhausted)
  return chunks


def xs_placer(prog: _loop.Program, chunk_steps: int
              ) -> Callable[[Any, int], Callable[[_loop.Block], PyTree]]:
  """``(chunk, first_step) -> (block -> device inputs)``: the chunk's
  batches (shared: placed once; per copy: stacked per block), its valid
  mask and its step indices."""
  plan = prog.plan
  lead = 3 if prog.per_copy else 2
  copies = plan.copies_axis if prog.per_copy else None

  def spec(x):
    return _placement.batch_spec(np.ndim(x), lead, plan.data_axis, copies)

  def xs_for(chunk, first):
    steps = np.arange(first, first + chunk_steps, dtype=np.int32)
    rest = _placement.put((chunk.valid, steps), plan.mesh)
    if not prog.per_copy:
      placed = (_placement.put(chunk.batches, plan.mesh, spec), *rest)
      return lambda block: placed

    def of(block):
      batches = jax.tree.map(lambda *xs: _feed.stack(list(xs)), *[
          chunk.batches[int(c)] for c in block.index])
      return (_placement.put(batches, plan.mesh, spec), *rest)
    return of
  return xs_for


def start(setup: _setup.Setup, consts: dict[str, np.ndarray],
          keys: np.ndarray | None) -> Callable[..., _loop.Population]:
  """``(program, copies) -> Population`` at step 0."""
  options = setup.options

  def begin(prog, copies):
    return _loop.Population.start(
        prog, setup.parts, consts, copies, val=setup.val,
        model_init=options.model_init if options.init == "independent"
        else None, keys=keys)
  return begin


def init_keys(seed: int, num_copies: int) -> np.ndarray:
  """The raw key data of ``jax.random.split(jax.random.key(seed), K)``."""
  return np.asarray(jax.random.key_data(jax.random.split(
      jax.random.key(seed), num_copies)))


def check_model_init(setup: _setup.Setup) -> None:
  """``model_init`` must build the same model (paths, shapes, dtypes)."""
  model_init = setup.options.model_init
  if model_init is None:
    return
  shapes = jax.eval_shape(
      lambda k: _model.split(model_init(k), setup.options.wrt)[1],
      jax.random.key(0))
  _model.check_same_model("model_init(key)", shapes, setup.parts)


def run(setup: _setup.Setup, solver: Any, consts: dict[str, np.ndarray], *,
        num_steps: int, desc: str,
        feeds: Sequence[Any] | None = None, keys: np.ndarray | None = None,
        before: Callable[[_loop.Population], dict] | None = None,
        after: Callable[[_loop.Population], dict] | None = None,
        stop: Callable[[dict], bool] | None = None,
        shown: Callable[[dict], dict] | None = None) -> Run:
  """Runs K copies of ``solver`` (K = the length of ``consts["copy"]``).

  Args:
    setup: the driver's setup.
    solver: the test (:mod:`._loop`).
    consts: per-copy constants ``[K, ...]``, with ``"seed"`` and ``"copy"``.
    num_steps: steps per copy.
    desc: the progress bar's label.
    feeds: each copy its own feed, or None (the setup's feed, shared).
    keys: raw keys of independent initial weights (``init_keys``).
    before, after: ``pop -> {name: [copies]}`` before and after training
      (e.g. validation metrics).
    stop: ``records -> bool``: every copy stopped.
    shown: ``records -> metrics`` for the progress report.
  """
  prog, local, rounds = program(setup, solver, consts, feeds is not None,
                                setup.has_conv)
  chunks = (_shared_chunks(setup, num_steps, len(rounds)) if feeds is None
            else _own_chunks(setup, feeds, num_steps))
  total = len(rounds) * num_steps
  with _progress.reporter(setup.options.progress, desc) as bar:
    state = {"round": 0, "done": 0}

    def report(done, records):
      if bar is not None:
        bar(state["done"] + done, total, {} if shown is None
            else shown(records))

    def after_round(pop):
      state["done"] += num_steps
      return {} if after is None else after(pop)
    return run_population(
        prog, rounds, start=start(setup, consts, keys), chunks=chunks,
        xs_for=xs_placer(prog, setup.chunk_steps), num_steps=num_steps,
        chunk_steps=setup.chunk_steps,
        measure=_layout.may_measure(setup.options, local), local=local,
        report=report, stop=stop, before=before, after=after_round)


class Run(NamedTuple):
  """What :func:`run_population` gathered, copies in order ``0..K-1``.

  Attributes:
    records: ``name -> [K, steps, ...]`` per-step records (steps a copy's
      round did not run are NaN / False / -1).
    exhausted: the data ran out.
    interrupted: Ctrl-C ended the run (every finished chunk is kept).
    before, after: what ``before(pop)`` / ``after(pop)`` returned per copy
      (``name -> [K, ...]``), when every round got that far.
    steps: steps run (of the longest round).
    layout: the plan the copies ended in (its ``config()``).
  """
  records: dict[str, np.ndarray]
  exhausted: bool
  interrupted: bool
  before: dict[str, np.ndarray]
  after: dict[str, np.ndarray]
  steps: int
  layout: dict[str, Any]


def _pad_steps(x: np.ndarray, steps: int) -> np.ndarray:
  missing = steps - x.shape[1]
  if missing <= 0:
    return x
  fill = (False if x.dtype == np.bool_ else -1 if np.issubdtype(
      x.dtype, np.integer) else np.nan)
  shape = (x.shape[0], missing) + x.shape[2:]
  return np.concatenate([x, np.full(shape, fill, x.dtype)], 1)


def run_population(prog: _loop.Program, rounds: list[np.ndarray], *,
                   start: Callable[[_loop.Program, np.ndarray],
                                   _loop.Population],
                   chunks: Callable[[np.ndarray], Iterator[Any]],
                   xs_for: Callable[..., Any], num_steps: int,
                   chunk_steps: int, measure: bool, local: int,
                   report: Callable[[int, dict], Any] | None = None,
                   stop: Callable[[dict], bool] | None = None,
                   before: Callable[[_loop.Population], dict] | None = None,
                   after: Callable[[_loop.Population], dict] | None = None
                   ) -> Run:
  """Runs the copies round after round (a round: copies resident at once).

  The first round measures the layout when ``measure`` (and nothing is
  known of this program yet); later rounds use what it chose.
  """
  record = _layout.MEASURED.get(prog.with_group(1))
  known = None if record is None else record.best()
  if known is not None:
    prog = prog.with_group(known)
  records, befores, afters = [], [], []
  exhausted = interrupted = False
  steps = 0
  chunk_count = -(-num_steps // chunk_steps)
  for r, copies in enumerate(rounds):
    pop = start(prog, copies)
    if before is not None:
      befores.append(before(pop))
    measurer = (_loop.measured_dispatch(local, chunk_count * len(rounds))
                if measure and known is None and r == 0 else None)
    outcome = _loop.drive(pop, chunks(copies), xs_for, num_steps,
                          measure=measurer, report=report, stop=stop)
    prog = pop.blocks[-1].prog
    merged = {k: _loop.concat(outcome.records, k)
              for k in (outcome.records[0] if outcome.records else {})}
    records.append(merged)
    steps = max(steps, outcome.steps)
    exhausted = exhausted or outcome.exhausted
    if outcome.interrupted:
      interrupted = True
      break
    if after is not None:
      afters.append(after(pop))
  out = {}
  if records and records[0]:
    for k in records[0]:
      out[k] = jax.tree.map(
          lambda *xs: np.concatenate([_pad_steps(x, steps) for x in xs]),
          *[r[k] for r in records if k in r])

  def cat(parts: list[dict]) -> dict[str, np.ndarray]:
    if not parts or len(parts) != len(rounds):  # a round did not get there
      return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  return Run(out, exhausted, interrupted, cat(befores), cat(afters), steps,
             {**prog.plan.config(), "rounds": len(rounds),
              "copies_per_round": int(rounds[0].size)})
