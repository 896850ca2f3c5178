"""Sweeps over any injected hyperparameters, and grids of them.

optax's maintainers answer "train several models with different
hyperparameters in parallel" (optax #932) with ``inject_hyperparams`` and
setting the value in the state inside ``vmap``; :func:`sweep` does that for
every hyperparameter of the optimizer at once: copy ``k`` trains with
``{name: configs[name][k]}`` written into its optimizer state before every
update, all K copies in one compiled program, sharded over the devices like
the LR sweep. With ``schedule_fn`` a configuration may instead parametrise
per-step schedules (e.g. CLR bounds).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from optax_clr import _checks
from optax_clr.drivers import _population
from optax_clr.drivers import _setup
from optax_clr.drivers import _sweep
from optax_clr.engine import _optimizer
from optax_clr.optimizers import check_hyperparam_value
from optax_clr.results import as_array
from optax_clr.results import BatchSizeSweepResult
from optax_clr.results import GridSweepResult


def expand(hyperparams: Any, grid: bool) -> dict[str, np.ndarray]:
  """Configurations from ``{name: values}`` (a full grid, or zipped) or a
  list of ``{name: value}`` dicts; values checked as real numbers."""
  if isinstance(hyperparams, dict):
    if not hyperparams:
      raise ValueError("hyperparams must name at least one hyperparameter")
    values = {str(k): as_array(f"hyperparams[{k!r}]", np.ravel(v) if (
        np.ndim(v)) else [v], np.float64, 1) for k, v in hyperparams.items()}
    for name, v in values.items():
      if v.size == 0:
        raise ValueError(f"hyperparams[{name!r}] is empty")
      if not np.isfinite(v).all():
        raise ValueError(f"hyperparams[{name!r}] must be finite, got "
                         f"{v.tolist()}")
    if grid:
      combos = list(itertools.product(*values.values()))
      return {n: np.array([c[i] for c in combos]) for i, n in enumerate(
          values)}
    sizes = {n: v.size for n, v in values.items()}
    if len(set(sizes.values())) != 1:
      raise ValueError(f"with grid=False every hyperparameter needs one value "
                       f"per configuration, got sizes {sizes}")
    return values
  if isinstance(hyperparams, (list, tuple)) and hyperparams and all(
      isinstance(c, dict) for c in hyperparams):
    names = list(hyperparams[0])
    for i, c in enumerate(hyperparams):
      if list(c) != names:
        raise ValueError(f"hyperparams[{i}] has names {list(c)}, but "
                         f"hyperparams[0] has {names}")
    return expand({n: [c[n] for c in hyperparams] for n in names},
                  grid=False)
  raise TypeError("hyperparams must be a dict name -> values or a non-empty "
                  "list of dicts name -> value, got "
                  f"{_checks.describe(hyperparams)}")


def driven_names(configs: dict[str, np.ndarray],
                 schedule_fn: Callable[..., Any] | None) -> tuple[str, ...]:
  """The optimizer hyperparameters a sweep sets: the configuration names,
  or the keys ``schedule_fn(config, step)`` returns; ``learning_rate``
  first."""
  if schedule_fn is None:
    names = list(configs)
  else:
    _checks.check_callable("schedule_fn", schedule_fn)
    try:
      out = jax.eval_shape(schedule_fn, {n: jnp.float32(0.1) for n in configs},
                           jnp.int32(0))
    except Exception as e:  # pylint: disable=broad-except
      raise TypeError(
          "schedule_fn must map (config, step) to a dict of hyperparameter "
          f"values; calling it on traced values raised {type(e).__name__}: "
          f"{' '.join(str(e).split())[:200]}") from e
    if not isinstance(out, dict) or not out:
      raise TypeError(f"schedule_fn must return a non-empty dict name -> "
                      f"value, got {_checks.describe(out)}")
    bad = [n for n, v in out.items() if getattr(v, "shape", None) != ()]
    if bad:
      raise ValueError(f"schedule_fn must return scalars, got {bad[0]!r} of "
                       f"shape {getattr(out[bad[0]], 'shape', None)}")
    names = list(out)
  if _optimizer.LEARNING_RATE not in names:
    raise ValueError(
        "a sweep must set learning_rate (as a configuration name, or in what "
        f"schedule_fn returns); got {names}")
  names.remove(_optimizer.LEARNING_RATE)
  return (_optimizer.LEARNING_RATE, *names)


def sweep(
    model: Any,
    loss_fn: Callable[..., Any],
    train_data: Any,
    *,
    hyperparams: Any,
    grid: bool = True,
    schedule_fn: Callable[..., Any] | None = None,
    optimizer: Any = None,
    num_steps: int = 50,
    batch_size: int | None = None,
    window: int = 10,
    diverge_threshold: float | None = 4.0,
    val_data: Any = None,
    eval_fn: Callable[..., Any] | None = None,
    val_batches: int = 4,
    accumulation_steps: int = 1,
    compute_dtype: Any = None,
    init: str = "shared",
    model_init: Callable[[jax.Array], Any] | None = None,
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
) -> GridSweepResult:
  """Trains one copy of ``model`` per hyperparameter configuration.

  Example::

    result = clr.sweep(model, loss_fn, data, batch_size=64,
                       optimizer=optax.adamw,
                       hyperparams={"learning_rate": [1e-3, 3e-3, 1e-2],
                                    "weight_decay": [0.0, 1e-4, 1e-3]})
    axes, acc = result.grid("learning_rate", "weight_decay")  # 3 x 3

  Args:
    model, loss_fn, train_data, batch_size: as in
      :func:`~optax_clr.parallel_range_test`.
    hyperparams: ``{name: values}`` or a list of ``{name: value}``
      configurations. Names are the optimizer's injected hyperparameters
      (``learning_rate``, ``weight_decay``, ``momentum``, ``b1``...), or,
      with ``schedule_fn``, whatever it reads.
    grid: for a dict, every combination (Cartesian product; default) or
      the values zipped (one configuration per index).
    schedule_fn: optional ``(config, step) -> {name: value}`` giving the
      hyperparameters of each step from a configuration (traced: use
      ``jax.numpy``), e.g. ``lambda c, t: {"learning_rate":
      clr.cyclic_schedule(c["base"], c["max"], 100)(t)}``.
    optimizer: a factory taking ``learning_rate`` and the other swept names
      as keywords (``optax.adamw``, ``functools.partial(optax.sgd,
      nesterov=True)``), or a transformation whose injected state holds
      them; default SGD with momentum 0.9.
    Others: as in :func:`~optax_clr.parallel_range_test`.

  Returns:
    A :class:`~optax_clr.GridSweepResult`.
  """
  configs = expand(hyperparams, grid)
  names = driven_names(configs, schedule_fn)
  _checks.check_int("num_steps", num_steps, low=1)
  _checks.check_int("window", window, low=1)
  if diverge_threshold is not None:
    _checks.check_number("diverge_threshold", diverge_threshold, low=1.0,
                         low_inclusive=False)
  _setup.check_common(
      accumulation_steps=accumulation_steps, val_batches=val_batches,
      seed=seed, steps_per_chunk=steps_per_chunk, loss_fn=loss_fn,
      eval_fn=eval_fn, progress=progress, step_mode=step_mode,
      eval_mode=eval_mode, val_data=val_data)
  _checks.check_choice("init", init, _population.INITS)
  if schedule_fn is None:
    for name, values in configs.items():
      for v in np.unique(values):
        check_hyperparam_value(name, float(v), f"hyperparams[{name!r}]")
  setup = _setup.prepare(
      model, loss_fn, train_data, optimizer=optimizer, driven=names,
      batch_size=batch_size, seed=seed, val_data=val_data,
      val_batches=val_batches, eval_fn=eval_fn,
      accumulation_steps=accumulation_steps, compute_dtype=compute_dtype,
      wrt=wrt, step_mode=step_mode, eval_mode=eval_mode, execution=execution,
      steps_per_chunk=steps_per_chunk, num_steps=num_steps,
      placeholders={n: 0.0 for n in names[1:]})
  _population.check_model_init(model_init, init, setup, wrt)
  hyper = {n: v.astype(np.float32) for n, v in configs.items()}
  run = _sweep.run_sweep(
      setup, hyper, model=model,
      hyper_fn=None if schedule_fn is None else _config_fn(schedule_fn),
      init=init, model_init=model_init, wrt=wrt, seed=seed,
      num_steps=num_steps, window=window,
      diverge_threshold=diverge_threshold,
      accumulation_steps=accumulation_steps, max_parallel=max_parallel,
      group_size=group_size, mesh=mesh, progress=progress,
      config={"test": "sweep", "names": list(configs), "grid": bool(grid),
              "driven": list(names), "batch_size": batch_size,
              "compute_dtype": compute_dtype,
              "schedule_fn": None if schedule_fn is None
              else _optimizer.describe(schedule_fn)})
  return GridSweepResult(configs=configs, **run._asdict())


_CONFIG_FNS: dict[int, tuple[Any, Any]] = {}


def _config_fn(schedule_fn: Callable[..., Any]) -> Callable[..., Any]:
  """The sweep body's ``hyper_fn`` for a ``schedule_fn``: one object per
  function, so its compiled program is found again."""
  got = _CONFIG_FNS.get(id(schedule_fn))
  if got is None or got[0] is not schedule_fn:
    got = (schedule_fn, lambda hyper, t: dict(schedule_fn(hyper, t)))
    _CONFIG_FNS[id(schedule_fn)] = got
  return got[1]


def batch_size_sweep(
    model: Any,
    loss_fn: Callable[..., Any],
    train_data: Any,
    *,
    batch_sizes: Any,
    num_examples: int,
    lrs: Any = None,
    num_lrs: int = 8,
    min_lr: float = 1e-4,
    max_lr: float = 1.0,
    **kwargs: Any,
) -> BatchSizeSweepResult:
  """LR sweeps at several batch sizes, each for ``num_examples`` examples.

  Copies of one batch size share an array shape, copies of different
  batch sizes cannot: each batch size is one compiled program (the LR axis
  vmapped within it, as :func:`~optax_clr.parallel_range_test`), run one
  after another. Comparing them by examples seen, not steps, is fair to
  the small batches (Smith 2018: the larger batch allows the larger LR).

  Args:
    model, loss_fn, train_data: as in
      :func:`~optax_clr.parallel_range_test` (``train_data`` as arrays).
    batch_sizes: the batch sizes (distinct, >= 1).
    num_examples: examples each run trains on: ``num_examples //
      batch_size`` steps.
    lrs, num_lrs, min_lr, max_lr: the LRs of every sweep.
    **kwargs: other arguments of :func:`~optax_clr.parallel_range_test`.

  Returns:
    A :class:`~optax_clr.BatchSizeSweepResult`.
  """
  if isinstance(batch_sizes, (int, np.integer)) or not batch_sizes:
    raise ValueError("batch_sizes must be a non-empty list of integers")
  sizes = sorted({_checks.check_int(f"batch_sizes[{i}]", b, low=1)
                  for i, b in enumerate(batch_sizes)})
  if len(sizes) != len(batch_sizes):
    raise ValueError(f"batch_sizes must be distinct, got {list(batch_sizes)}")
  num_examples = _checks.check_int("num_examples", num_examples, low=1,
                                   high=None)
  short = [b for b in sizes if num_examples // b < 1]
  if short:
    raise ValueError(f"num_examples={num_examples} gives batch size "
                     f"{short[0]} no step; use num_examples >= {max(sizes)}")
  sweeps = []
  for b in sizes:
    sweeps.append(_sweep.parallel_range_test(
        model, loss_fn, train_data, lrs=lrs, num_lrs=num_lrs, min_lr=min_lr,
        max_lr=max_lr, batch_size=b, num_steps=num_examples // b, **kwargs))
  return BatchSizeSweepResult(tuple(sizes), tuple(sweeps), num_examples)
