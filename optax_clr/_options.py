"""The options every driver shares, checked once, in one frozen object.

Each driver takes the model, the loss, the data and its own few arguments,
plus ``options``: an :class:`Options` (reused across calls), and/or any of
its fields as keywords, which override it for that call::

  opts = clr.Options(batch_size=64, seed=1)
  clr.range_test(model, loss_fn, train, options=opts)
  clr.parallel_range_test(model, loss_fn, train, options=opts, num_lrs=8)
  clr.range_test(model, loss_fn, train, batch_size=64)   # same as Options(...)

A wrong value is refused when the object is built, naming the field, the
value and what is allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from optax_clr import _checks

NNX_MODES = ("train", "eval", "as_is")
EXECUTIONS = ("auto", "scan", "steps")
INITS = ("shared", "independent")


@dataclasses.dataclass(frozen=True)
class Options:
  """What every driver shares.

  Attributes:
    batch_size: examples per (micro-)batch; required for array data,
      ignored for an iterable of batches.
    seed: seed of the batch order (epoch ``e`` visits the examples in the
      permutation ``np.random.default_rng((seed, e))``), of the per-step keys
      of a loss that takes ``rngs``/``key``, and of independent initial
      weights; >= 0.
    accumulation_steps: micro-batches per step; gradients, losses and
      metrics are averaged over them (the effective batch is that many
      times larger).
    compute_dtype: e.g. ``jnp.bfloat16``: the forward/backward pass runs in
      it; master weights, optimizer state and the loss stay float32.
    eval_fn: ``eval_fn(model, batch) -> dict`` of scalar validation metrics
      (default: the loss's metrics plus ``"loss"``); needs ``val_data``.
    val_batches: batches read (once) from an iterable ``val_data``.
    wrt: the NNX filter of the trained variables (as ``nnx.Optimizer``).
    step_mode, eval_mode: ``"train"``, ``"eval"``, ``"as_is"`` or a
      callable ``fn(model)``: the NNX mode of the steps and of evaluation.
    init: how the copies of a population test start: ``"shared"`` (all
      from ``model``'s weights) or ``"independent"`` (copy ``k`` from
      ``model_init(key_k)``).
    model_init: ``key -> model`` for ``init="independent"``.
    mesh: a ``jax.sharding.Mesh``: with an axis ``"copies"``, a population's
      copies are split over it; its data axis splits every batch. Default:
      every device for the copies of a population test; under
      ``jax.set_mesh``, that mesh (explicit sharding).
    data_axis: the name of the axis the batch is split over (data
      parallelism within each copy). With no mesh, a mesh with that one axis
      over every device is made, and the name is bound for the loss: code
      written for ``pmap`` (``lax.pmean(x, "batch")``, Flax's
      ``BatchNorm(axis_name="batch")``) runs as written.
    max_parallel: most copies resident at once (a population then runs in
      rounds); default: all on CPU, what fits in memory on GPU/TPU.
    group_size: copies vmapped together in one dispatch per device:
      ``"auto"`` (one after another, batched only where measured faster;
      all on GPU/TPU) or an int.
    execution: ``"scan"`` (a compiled chunk of steps per dispatch),
      ``"steps"`` (one compiled step per dispatch, queued without waiting)
      or ``"auto"`` (``"steps"`` on CPU for models with convolutions, whose
      gradient XLA's CPU backend computes slowly inside a loop; else
      ``"scan"``).
    steps_per_chunk: steps per compiled chunk (one host read per chunk).
    progress: None (a bar in interactive sessions), True, False, or
      ``progress(done, total, metrics)`` called after each chunk.
  """
  batch_size: int | None = None
  seed: int = 0
  accumulation_steps: int = 1
  compute_dtype: Any = None
  eval_fn: Callable[..., Any] | None = None
  val_batches: int = 4
  wrt: Any = nnx.Param
  step_mode: Any = "train"
  eval_mode: Any = "eval"
  init: str = "shared"
  model_init: Callable[..., Any] | None = None
  mesh: Mesh | None = None
  data_axis: str | None = None
  max_parallel: int | None = None
  group_size: int | str = "auto"
  execution: str = "auto"
  steps_per_chunk: int | None = None
  progress: Any = None

  def __post_init__(self):
    if self.batch_size is not None:
      _checks.check_int("batch_size", self.batch_size, low=1)
    _checks.check_int("seed", self.seed, low=0)
    _checks.check_int("accumulation_steps", self.accumulation_steps, low=1)
    object.__setattr__(self, "compute_dtype",
                       check_compute_dtype(self.compute_dtype))
    _checks.check_optional_callable("eval_fn", self.eval_fn)
    _checks.check_int("val_batches", self.val_batches, low=1)
    check_mode("step_mode", self.step_mode)
    check_mode("eval_mode", self.eval_mode)
    _checks.check_choice("init", self.init, INITS)
    _checks.check_optional_callable("model_init", self.model_init)
    if self.init == "independent" and self.model_init is None:
      raise ValueError(
          "init='independent' needs model_init: key -> model (e.g. "
          "lambda key: CNN(rngs=nnx.Rngs(key)))")
    if self.init == "shared" and self.model_init is not None:
      raise ValueError("model_init is only used with init='independent'")
    if self.mesh is not None and not isinstance(self.mesh, Mesh):
      raise TypeError(f"mesh must be a jax.sharding.Mesh, got "
                      f"{_checks.describe(self.mesh)}")
    if self.data_axis is not None and not (
        isinstance(self.data_axis, str) and self.data_axis):
      raise TypeError(f"data_axis must be an axis name (a non-empty str), "
                      f"got {_checks.describe(self.data_axis)}")
    if self.mesh is not None and self.data_axis is not None and (
        self.data_axis not in self.mesh.axis_names):
      raise ValueError(
          f"data_axis={self.data_axis!r} is not an axis of the mesh; its "
          f"axes are {list(self.mesh.axis_names)}")
    if self.max_parallel is not None:
      _checks.check_int("max_parallel", self.max_parallel, low=1)
    if self.group_size != "auto":
      _checks.check_int("group_size", self.group_size, low=1)
    _checks.check_choice("execution", self.execution, EXECUTIONS)
    if self.steps_per_chunk is not None:
      _checks.check_int("steps_per_chunk", self.steps_per_chunk, low=1)
    if not any(self.progress is v for v in (None, True, False)):
      _checks.check_callable("progress", self.progress)

  def replace(self, **changes: Any) -> Options:
    """A copy with ``changes`` (checked like the constructor)."""
    return resolve(self, changes, "Options.replace")


FIELDS = tuple(f.name for f in dataclasses.fields(Options))


def resolve(options: Options | None, overrides: Mapping[str, Any],
            where: str) -> Options:
  """``options`` (default ``Options()``) with the keyword ``overrides``.

  Raises:
    TypeError: an override is not an :class:`Options` field, or
      ``options`` is not an :class:`Options`.
  """
  if options is None:
    options = Options()
  elif not isinstance(options, Options):
    raise TypeError(f"options must be an optax_clr.Options, got "
                    f"{_checks.describe(options)}")
  unknown = sorted(set(overrides) - set(FIELDS))
  if unknown:
    raise TypeError(
        f"{where}() got an unexpected keyword argument {unknown[0]!r} (not "
        f"one of its arguments, nor an Options field: {', '.join(FIELDS)})")
  if not overrides:
    return options
  return dataclasses.replace(options, **overrides)


def check_mode(name: str, mode: Any) -> Any:
  """An NNX mode: one of :data:`MODES`, or a callable ``fn(model)``."""
  if callable(mode):
    return mode
  return _checks.check_choice(name, mode, NNX_MODES)


def check_compute_dtype(compute_dtype: Any) -> Any:
  """None or a floating dtype (e.g. ``jnp.bfloat16``)."""
  if compute_dtype is None:
    return None
  try:
    dtype = jnp.dtype(compute_dtype)
  except TypeError as e:
    raise TypeError(
        f"compute_dtype must be None or a floating dtype, got "
        f"{_checks.describe(compute_dtype)}") from e
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"compute_dtype must be a floating dtype, got {dtype}")
  return dtype


def describe(options: Options) -> dict[str, Any]:
  """The JSON-able record of the options a result was computed with."""
  name = lambda f: None if f is None else getattr(  # noqa: E731
      f, "__qualname__", type(f).__name__)
  return {
      "batch_size": options.batch_size, "seed": int(options.seed),
      "accumulation_steps": int(options.accumulation_steps),
      "compute_dtype": (None if options.compute_dtype is None
                        else str(options.compute_dtype)),
      "eval_fn": name(options.eval_fn),
      "val_batches": int(options.val_batches),
      "init": options.init, "data_axis": options.data_axis,
      "max_parallel": options.max_parallel,
  }
