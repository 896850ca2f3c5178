"""K copies of a model trained side by side: planning and running.

Shared by the sweep (K LRs, one data order) and the multi-seed range test
(S seeds, each its own data order).

Planning (:func:`plan`)
  The copies are split over the mesh's ``"copies"`` axis (default: every
  device); K is padded with copies of the last one to a multiple of the
  device count (their results are dropped). ``max_parallel`` bounds how
  many copies are resident at once: K is then run in *rounds* of at most
  that many copies, one after another, by the same compiled program. On
  GPU/TPU, without ``max_parallel``, the bound is what fits in device
  memory (:func:`optax_clr.engine._autotune.memory_max_parallel`). On each
  device the local copies run in vmapped groups of ``group_size``, split
  into ``lanes`` concurrent parts (:mod:`optax_clr.engine._autotune`
  chooses both). Without ``mesh``, under
  ``jax.set_mesh`` of a mesh with no ``"copies"`` axis (a model written
  for explicit sharding, e.g. Flax's MiniGPT), the copies instead run side
  by side on that mesh (:func:`user_mesh`), each laid out as the model.

Running (:func:`run`)
  Per round: the initial states are built on the devices (shared weights
  tiled, or ``model_init(key)`` per copy, each copy's module-held RNG keys
  folded with its seed and index), then chunk after chunk is fed
  (:func:`optax_clr.engine._runner.drive`). Array data are re-sampled with
  the same seed in every round; an iterable is read once and its chunks are
  kept on the host for later rounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from optax_clr import _checks
from optax_clr import _interrupt
from optax_clr import _progress
from optax_clr.drivers import _range_test
from optax_clr.drivers import _setup
from optax_clr.engine import _autotune
from optax_clr.engine import _feed
from optax_clr.engine import _loss
from optax_clr.engine import _model
from optax_clr.engine import _placement
from optax_clr.engine import _runner

PyTree = Any
INITS = ("shared", "independent")


@dataclasses.dataclass(frozen=True)
class Plan:
  """How K copies are laid out.

  Attributes:
    num_copies: K.
    mesh: the mesh (its ``"copies"`` axis splits the copies).
    devices: devices along the copy axis.
    per_round: copies resident at once (a multiple of ``devices``).
    rounds: rounds needed for K copies.
    local: copies per device in a round.
    group_size: copies vmapped together on a device.
    lanes: concurrent parts the local copies are split into (CPU: one per
      core; see :func:`optax_clr.engine._runner.over_copies`).
    data_axis: a mesh axis that splits every copy's batch (data
      parallelism within each copy), or None.
    memory_cap: the copies per round that fit in device memory when
      ``max_parallel`` was not given (None: unknown, e.g. on CPU).
    on_user_mesh: the copies run side by side on the user's mesh, which
      has no copy axis (:func:`user_mesh`).
  """
  num_copies: int
  mesh: Mesh
  devices: int
  per_round: int
  rounds: int
  local: int
  group_size: int
  data_axis: str | None = None
  memory_cap: int | None = None
  on_user_mesh: bool = False
  lanes: int = 1

  def batch_axis(self) -> str | None:
    """The mesh axis the batches are split over (on the user's mesh the
    compiler averages over it, so ``data_axis`` is None there)."""
    if self.on_user_mesh:
      return _placement.resolve_data_axis(self.mesh, None)
    return self.data_axis

  def sharding(self) -> Any:
    """Of arrays with a leading copy axis (None: as their types say)."""
    if self.on_user_mesh:
      return None
    return NamedSharding(self.mesh, P(_placement.COPY_AXIS))

  def round_slice(self, r: int) -> np.ndarray:
    """Indices of round ``r``'s copies (padding repeats the last copy)."""
    idx = np.arange(r * self.per_round, (r + 1) * self.per_round)
    return np.minimum(idx, self.num_copies - 1)

  def config(self) -> dict[str, Any]:
    return {"copies_per_round": self.per_round, "rounds": self.rounds,
            "devices": self.devices, "group_size": self.group_size,
            "lanes": self.lanes,
            "data_axis": self.data_axis, "memory_cap": self.memory_cap,
            "mesh": {str(k): int(v) for k, v in self.mesh.shape.items()}}


def check_mesh(mesh: Any) -> Mesh:
  if mesh is None:
    return _placement.copy_mesh()
  if not isinstance(mesh, Mesh) or _placement.COPY_AXIS not in (
      mesh.axis_names):
    raise ValueError(
        f"mesh must be a jax.sharding.Mesh with an axis named "
        f"{_placement.COPY_AXIS!r}, got {_checks.describe(mesh)}")
  return mesh


def user_mesh(mesh: Any) -> Mesh | None:
  """The mesh set with ``jax.set_mesh``, when ``mesh`` is None and it has no
  ``"copies"`` axis: the copies then run side by side on it, all on every
  device (``shard_map``, which splits copies over devices, cannot run
  models written for explicit sharding)."""
  ambient = None if mesh is not None else _placement.ambient_mesh()
  if ambient is None or _placement.COPY_AXIS in ambient.axis_names:
    return None
  return ambient


def _user_mesh_plan(num_copies: int, mesh: Mesh, max_parallel: Any,
                    group_size: Any) -> Plan:
  cap = num_copies if max_parallel is None else min(num_copies, max_parallel)
  rounds = -(-num_copies // cap)
  per_round = -(-num_copies // rounds)
  g = per_round if group_size == "auto" else min(int(group_size), per_round)
  return Plan(num_copies, mesh, 1, per_round, rounds, per_round, g,
              on_user_mesh=True)


def plan(num_copies: int, mesh: Any, max_parallel: Any, group_size: Any,
         setup: _setup.Setup, accumulation_steps: int = 1) -> Plan:
  """Lays K copies out over the mesh (see the module docstring); without
  ``max_parallel``, on GPU/TPU, as many copies per round as fit in device
  memory (:func:`optax_clr.engine._autotune.memory_max_parallel`)."""
  on_user = user_mesh(mesh)
  mesh = check_mesh(mesh) if on_user is None else on_user
  if max_parallel is not None:
    _checks.check_int("max_parallel", max_parallel, low=1)
  if group_size != "auto":
    _checks.check_int("group_size", group_size, low=1)
  if on_user is not None:
    return _user_mesh_plan(num_copies, mesh, max_parallel, group_size)
  n_dev = mesh.shape[_placement.COPY_AXIS]
  cap = -(-num_copies // n_dev) * n_dev
  memory_cap = None
  if max_parallel is None:
    fit = _autotune.memory_max_parallel(setup, mesh.devices.ravel(),
                                        accumulation_steps)
    memory_cap = None if fit is None else fit * n_dev
    max_parallel = memory_cap
  if max_parallel is not None:
    cap = min(cap, max(n_dev, max_parallel // n_dev * n_dev))
  rounds = -(-num_copies // cap)
  # Balance the rounds: ceil(K / rounds) copies each, padded to the devices.
  per_round = -(-(-(-num_copies // rounds)) // n_dev) * n_dev
  local = per_round // n_dev
  if group_size == "auto":
    layout = _autotune.layout(setup, local)
  else:
    layout = _autotune.Layout(1, min(int(group_size), local))
  data_axis = _placement.resolve_data_axis(mesh, None)
  return Plan(num_copies, mesh, n_dev, per_round, rounds, local,
              layout.group, data_axis, memory_cap, lanes=layout.lanes)


def check_seeds(seeds: Any, num_seeds: Any) -> list[int]:
  """Distinct seeds >= 0 (default ``0 .. num_seeds - 1``)."""
  if seeds is None:
    n = _checks.check_int("num_seeds", num_seeds, low=1)
    return list(range(n))
  if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
    raise TypeError(f"seeds must be a list of integers, got "
                    f"{_checks.describe(seeds)}")
  out = [_checks.check_int(f"seeds[{i}]", s, low=0)
         for i, s in enumerate(seeds)]
  if not out:
    raise ValueError("seeds must hold at least one seed, got none")
  if len(set(out)) != len(out):
    raise ValueError(f"seeds must be distinct, got {out}")
  return out


def stack_consts(consts: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
  return {k: np.stack([c[k] for c in consts]) for k in consts[0]}


def seed_feeds(feed: Any, train_data: Any, batch_size: Any,
               seeds: Sequence[int]) -> list[Any] | None:
  """One feed per seed for array data (each its own order); None for an
  iterable, whose batches every seed shares."""
  if not isinstance(feed, _feed.ArrayFeed):
    return None
  return [feed] + [_feed.make_feed(train_data, batch_size, s)
                   for s in seeds[1:]]


def _init_program(setup: _setup.Setup, plan_: Plan, independent: bool,
                  model_init: Any, wrt: Any) -> Callable[..., Any]:
  engine = setup.engine

  def fold(state, seeds, copies):
    rest = jax.vmap(_model.fold_in_keys)(state.rest, seeds, copies)
    return state._replace(rest=rest)

  if independent:
    def init(keys, seeds, copies):
      def one(key):
        parts = _model.split(model_init(key), wrt)
        return engine.init(parts.params, parts.rest)
      return fold(jax.vmap(one)(keys), seeds, copies)
  else:
    def init(params, rest, seeds, copies):
      state = engine.init(params, rest)
      k = seeds.shape[0]
      tile = lambda x: jnp.broadcast_to(x, (k,) + x.shape)  # noqa: E731
      return fold(jax.tree.map(tile, state), seeds, copies)
  return jax.jit(init, out_shardings=plan_.sharding())


def check_model_init(model_init: Any, init: str, setup: _setup.Setup,
                     wrt: Any) -> None:
  """``model_init`` must build the same model (paths, shapes, dtypes)."""
  _checks.check_choice("init", init, INITS)
  if init == "independent" and model_init is None:
    raise ValueError(
        "init='independent' needs model_init: key -> model (e.g. "
        "lambda key: CNN(rngs=nnx.Rngs(key)))")
  if init == "shared" and model_init is not None:
    raise ValueError("model_init is only used with init='independent'")
  if model_init is None:
    return
  _checks.check_callable("model_init", model_init)
  shapes = jax.eval_shape(lambda k: _model.split(model_init(k), wrt),
                          jax.random.key(0))
  _model.check_same_model("model_init(key)", _model.ModelParts(
      None, shapes.params, shapes.rest), setup.parts)


class Outcome(NamedTuple):
  """What :func:`run` returns.

  Attributes:
    records: the chunks' host outputs, copy axis first (rounds
      concatenated, padding dropped).
    interrupted: Ctrl-C ended the run (what finished is kept).
    exhausted: the data ran out.
    codes: ``code_of(carry)`` of every copy (None if interrupted).
    initial_metrics, final_metrics: validation metrics (name -> [K]) before
      and after training, when ``evaluate`` is given.
  """
  records: list[dict[str, np.ndarray]]
  interrupted: bool
  exhausted: bool
  codes: np.ndarray | None
  initial_metrics: dict[str, np.ndarray]
  final_metrics: dict[str, np.ndarray]


def _eval_program(setup: _setup.Setup, plan_: Plan,
                  state_of: Callable[[Any], Any]) -> Callable[..., Any]:
  """Validation metrics of every copy; NaN for a copy whose state died."""
  engine = setup.engine
  axis = _placement.COPY_AXIS

  def local(carry, consts, val):
    def one(args):
      c, k = args
      state, dead = state_of(c)
      key = _loss.eval_key(k["seed"], k["copy"])
      metrics = engine.evaluate_stack(state.params, state.rest, val, key)
      return {n: jnp.where(dead, jnp.nan, v) for n, v in metrics.items()}
    return _runner.over_copies(one, (carry, consts), plan_.group_size,
                               plan_.lanes)
  if plan_.on_user_mesh:
    return jax.jit(local)
  return jax.jit(jax.shard_map(local, mesh=plan_.mesh,
                               in_specs=(P(axis), P(axis), P()),
                               out_specs=P(axis), check_vma=False))


def run(plan_: Plan, setup: _setup.Setup, body: Callable[..., Any],
        consts: dict[str, Any], *, init: str, model_init: Any, wrt: Any,
        init_keys: Sequence[Any], carry_of: Callable[[Any], Any],
        feeds: list[Any] | None, num_steps: int, accumulation_steps: int,
        per_step: Callable[[int, int], Any] | None, progress: Any, desc: str,
        code_of: Callable[[Any], Any] | None = None,
        state_of: Callable[[Any], Any] | None = None,
        body_key: Any = None) -> Outcome:
  """Runs every round of the plan (see the module docstring).

  Args:
    plan_: the layout.
    setup: the driver's setup.
    body: one step of one copy (``_runner`` convention).
    consts: per-copy constants, leaves ``[K, ...]``; must hold ``"seed"``
      and ``"copy"`` (they fold into keys).
    init, model_init, wrt, init_keys: how the copies start.
    carry_of: ``TrainState -> carry`` of one copy.
    feeds: per-copy feeds (each its own data order), or None for the
      setup's feed, shared by every copy.
    num_steps, accumulation_steps: the run's length and micro-batches.
    per_step: ``(first_step, count) -> [count, ...]`` per-step inputs.
    progress, desc: the progress reporter.
    code_of: ``carry -> [K]`` codes to return (e.g. why a ramp stopped).
    state_of: ``carry -> (TrainState, dead)``: when given (and the setup has
      validation data), every copy is evaluated before and after training.
    body_key: what identifies ``body``'s compiled program (two bodies with
      the same key must compute the same thing).
  """
  mesh = plan_.mesh
  per_copy_batches = feeds is not None
  independent = init == "independent"
  programs = _programs(plan_, setup, body, body_key, per_copy_batches,
                       independent, model_init, wrt, carry_of, state_of)
  shared_val = None if setup.val is None else _placement.put(setup.val, mesh)
  chunk_steps = setup.chunk_steps
  shared_source = None
  if not per_copy_batches:
    shared_source = _feed.ChunkSource(setup.feed, num_steps, chunk_steps,
                                      accumulation_steps, plan_.rounds)
  place = _placer(plan_, per_step, chunk_steps, per_copy_batches)
  rounds: list[list[dict]] = []
  codes, initial, final = [], [], []
  interrupted = exhausted = False
  total = plan_.rounds * num_steps
  # Ctrl-C between rounds (evaluation) also ends the run at the next chunk.
  with _interrupt.deferred(), _progress.reporter(progress, desc) as report:
    for r in range(plan_.rounds):
      idx = plan_.round_slice(r)
      keep = slice(0, min(plan_.per_round,
                          plan_.num_copies - r * plan_.per_round))
      with _placement.mesh_context(mesh):
        carry, copy_consts = _start_round(plan_, setup, programs, consts,
                                          idx, independent, init_keys)
        if programs.evaluate is not None:
          initial.append(_placement.fetch(programs.evaluate(
              carry, copy_consts, shared_val)))
      if per_copy_batches:
        chunks = _stacked_chunks([feeds[i] for i in idx], num_steps,
                                 chunk_steps, accumulation_steps)
      else:
        chunks = iter(shared_source)
      offset = r * num_steps
      outcome = _runner.drive(
          programs.step, carry, copy_consts, shared_val, chunks, place,
          lambda out, chunk, done: _all_stopped(out), num_steps,
          None if report is None else
          (lambda done, _, m, o=offset: report(o + done, total, m)))
      rounds.append([jax.tree.map(lambda x: x[keep], rec)
                     for rec in outcome.records])
      exhausted = exhausted or outcome.exhausted
      if outcome.interrupted:
        interrupted = True
        break
      if code_of is not None:
        codes.append(_placement.fetch(code_of(outcome.carry))[keep])
      if programs.evaluate is not None:
        with _placement.mesh_context(mesh):
          final.append(_placement.fetch(programs.evaluate(
              outcome.carry, copy_consts, shared_val)))
  cut = lambda parts: {k: np.concatenate(  # noqa: E731
      [p[k] for p in parts])[:plan_.num_copies] for k in (
          parts[0] if parts else {})}
  return Outcome(_merge_rounds(rounds), interrupted, exhausted,
                 None if interrupted or not codes else np.concatenate(codes),
                 cut(initial) if len(initial) == plan_.rounds else {},
                 cut(final) if len(final) == plan_.rounds else {})


class _Programs(NamedTuple):
  """The compiled pieces of a population run (cached on the engine)."""
  step: Callable[..., Any]
  init: Callable[..., Any]
  carry: Callable[..., Any]
  evaluate: Callable[..., Any] | None


def _programs(plan_: Plan, setup: _setup.Setup, body: Callable[..., Any],
              body_key: Any, per_copy_batches: bool, independent: bool,
              model_init: Any, wrt: Any, carry_of: Callable[[Any], Any],
              state_of: Callable[[Any], Any] | None) -> _Programs:
  """The step, init, carry and (with validation data) evaluation programs;
  each is built once per engine and layout."""
  engine = setup.engine
  mesh = plan_.mesh
  step = engine.program(
      ("population", setup.execution, mesh, plan_.local, plan_.group_size,
       plan_.lanes, per_copy_batches, body_key, plan_.data_axis),
      lambda: _runner.population_program(
          body, setup.execution, mesh, plan_.group_size, per_copy_batches,
          plan_.data_axis, plan_.lanes))
  init_fn = engine.program(
      ("population_init", mesh, plan_.per_round, independent, model_init,
       wrt), lambda: _init_program(setup, plan_, independent, model_init,
                                   wrt))
  carry_fn = engine.program(
      ("population_carry", carry_of, mesh),
      lambda: jax.jit(jax.vmap(carry_of), out_shardings=plan_.sharding()))
  evaluate = None
  if state_of is not None and setup.val is not None:
    evaluate = engine.program(
        ("population_eval", mesh, plan_.local, plan_.group_size, plan_.lanes,
         state_of),
        lambda: _eval_program(setup, plan_, state_of))
  return _Programs(step, init_fn, carry_fn, evaluate)


def _start_round(plan_: Plan, setup: _setup.Setup, programs: _Programs,
                 consts: dict[str, Any], idx: Any, independent: bool,
                 init_keys: Sequence[Any]) -> tuple[Any, Any]:
  """The carry and constants of the copies ``idx``, placed on the mesh."""
  mesh = plan_.mesh
  put = _placement.put if plan_.on_user_mesh else _placement.put_copies
  on_copies = lambda v: put(np.asarray(v)[idx], mesh)  # noqa: E731
  copy_ids = (on_copies(consts["seed"]), on_copies(consts["copy"]))
  if independent:
    keys = jax.random.key_data(jnp.stack(list(init_keys)))
    state = programs.init(jax.random.wrap_key_data(on_copies(keys)),
                          *copy_ids)
  else:
    parts = (setup.parts.params, setup.parts.rest)
    state = programs.init(*(_range_test.keep_shardings(parts, mesh)
                            if plan_.on_user_mesh else
                            _placement.put(parts, mesh)), *copy_ids)
  return programs.carry(state), jax.tree.map(on_copies, consts)


def _placer(plan_: Plan, per_step: Callable[[int, int], Any] | None,
            chunk_steps: int, per_copy_batches: bool
            ) -> Callable[[Any, int], Any]:
  """``(chunk, first_step) -> program inputs`` on the plan's mesh."""
  mesh = plan_.mesh
  lead = 3 if per_copy_batches else 2
  copy_axis = (_placement.COPY_AXIS if per_copy_batches
               and not plan_.on_user_mesh else None)

  def place(chunk, first):
    extra = None if per_step is None else per_step(first, chunk_steps)
    micro = _placement.put(chunk.batches, mesh, lambda x: (
        _placement.batch_spec(np.ndim(x), lead, plan_.batch_axis(),
                              copy_axis)))
    rest = _placement.put((chunk.valid, _runner.steps_array(
        first, chunk_steps), extra), mesh)
    return (micro, *rest)
  return place


def _all_stopped(out: dict[str, np.ndarray]) -> bool:
  """No copy recorded the chunk's last step: every copy stopped."""
  return not out["recorded"][:, -1].any()


def _stacked_chunks(feeds: list[Any], num_steps: int, chunk_steps: int,
                    accumulation: int):
  """Chunks of S feeds stacked along a leading copy axis."""
  for f in feeds:
    f.reset()
  iters = [_feed.iter_chunks(f, num_steps, chunk_steps, accumulation)
           for f in feeds]
  while True:
    parts = [next(it, None) for it in iters]
    if any(p is None for p in parts):
      return
    batches = jax.tree.map(lambda *xs: _feed.stack(list(xs)),
                           *[p.batches for p in parts])
    yield _feed.Chunk(batches, parts[0].valid, parts[0].num_valid,
                      parts[0].exhausted)


def _merge_rounds(round_records: list[list[dict]]) -> list[dict]:
  """Chunk records of every round, concatenated along the copy axis (a
  round interrupted early contributes only the chunks it finished)."""
  if not round_records:
    return []
  n = min(len(r) for r in round_records)
  return [jax.tree.map(lambda *xs: np.concatenate(xs, 0),
                       *[r[i] for r in round_records]) for i in range(n)]
