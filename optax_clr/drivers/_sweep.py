"""Sweeps: K copies of a model side by side, each at its own hyperparameters.

* :func:`parallel_range_test`: copy ``k`` trains at its own fixed LR
  ``lrs[k]`` (or a per-copy schedule ``schedule_fn(lrs[k])``) for
  ``num_steps``: "which LR trains best over N steps", answered directly.
* :func:`sweep`: copy ``k`` at any injected hyperparameters
  ``{name: configs[name][k]}`` (a full grid by default, or a list of
  configurations): optax's maintainers' answer to "train several models
  with different hyperparameters in parallel" (optax #932:
  ``inject_hyperparams``, values set in the state inside ``vmap``).
* :func:`batch_size_sweep`: LR sweeps at several batch sizes, compared by
  examples seen.

Every copy sees the same batches; each run gets a status (one rule:
:mod:`optax_clr.suggestions._status`), validation metrics before and after
training, windowed mean losses. A copy whose loss turns NaN/inf is frozen
at that step (its state kept with ``jnp.where``, so NaNs never reach its
parameters); every other copy is unaffected.

Multi-host: call ``jax.distributed.initialize()`` on every host, then the
sweep on every host with the same arguments and data; the default mesh
spans every device of every host and every host gets the whole result.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optax_clr import _checks
from optax_clr import _options
from optax_clr import suggestions as _sg
from optax_clr.engine import _loss
from optax_clr.engine import _optimizer
from optax_clr.engine import _population
from optax_clr.engine import _setup
from optax_clr.engine import _step
from optax_clr.optimizers import check_hyperparam_value
from optax_clr.results import as_array
from optax_clr.results import BatchSizeSweepResult
from optax_clr.results import GridSweepResult
from optax_clr.results import ParallelSweepResult

PyTree = Any


@dataclasses.dataclass(frozen=True)
class LRSchedule:
  """Copy ``k``'s LR at step ``t``: ``schedule_fn(lr_k)(t)``."""
  schedule_fn: Callable[..., Any]

  def __call__(self, hyper: dict, t: jax.Array) -> dict:
    return {**hyper, "learning_rate": self.schedule_fn(
        hyper["learning_rate"])(t)}


@dataclasses.dataclass(frozen=True)
class ConfigSchedule:
  """Copy ``k``'s hyperparameters at step ``t``: ``schedule_fn(config_k,
  t)``."""
  schedule_fn: Callable[..., Any]

  def __call__(self, hyper: dict, t: jax.Array) -> dict:
    return dict(self.schedule_fn(hyper, t))


@dataclasses.dataclass(frozen=True)
class Fixed(_step.Frozen):
  """A sweep as a solver: each copy at its own hyperparameters
  (``consts["hyper"]``, through ``schedule(hyper, step)`` when given),
  frozen at its first NaN/inf loss."""
  schedule: Any = None

  def step(self, spec: _step.Spec, carry: _step.Carry, consts: PyTree,
           val: PyTree, x: PyTree) -> tuple[_step.Carry, dict]:
    del val
    micro, ok, t = x
    hyper = dict(consts["hyper"])
    if self.schedule is not None:
      hyper = self.schedule(hyper, t)
    carry, new, loss, active = _step.guarded_step(
        spec, carry, micro, ok,
        _loss.step_key(consts["seed"], consts["copy"], t), hyper)
    return carry, {"loss": jnp.where(active, loss, jnp.nan),
                   "recorded": active,
                   **_optimizer.rescale_record(new.opt_state)}


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


def _check_run(num_steps: Any, window: Any, diverge_threshold: Any) -> None:
  _checks.check_int("num_steps", num_steps, low=1)
  _checks.check_int("window", window, low=1)
  if diverge_threshold is not None:
    _checks.check_number("diverge_threshold", diverge_threshold, low=1.0,
                         low_inclusive=False)


def run_sweep(model: Any, loss_fn: Any, train_data: Any, options: Any, *,
              hyper: dict[str, np.ndarray], schedule: Any, optimizer: Any,
              val_data: Any, num_steps: int, window: int,
              diverge_threshold: float | None, driven: tuple[str, ...],
              config: dict[str, Any]) -> dict[str, Any]:
  """K copies at the hyperparameters ``hyper`` (name -> ``[K]``); the
  fields every sweep result holds besides them."""
  setup = _setup.prepare(
      model, loss_fn, train_data, options, val_data=val_data,
      optimizer=optimizer, driven=driven,
      placeholders={n: 0.0 for n in driven[1:]}, num_steps=num_steps,
      num_copies=len(next(iter(hyper.values()))))
  _population.check_model_init(setup)
  k = len(next(iter(hyper.values())))
  consts = {"hyper": {n: np.asarray(v, np.float32) for n, v in hyper.items()},
            "seed": np.full(k, options.seed, np.int32),
            "copy": np.arange(k, dtype=np.int32)}
  evaluate = (lambda pop: pop.evaluate()) if setup.val is not None else None
  run = _population.run(
      setup, Fixed(schedule), consts, num_steps=num_steps, desc="sweep",
      keys=_population.init_keys(options.seed, k)
      if options.init == "independent" else None,
      before=evaluate, after=evaluate,
      stop=lambda out: not out["recorded"][:, -1].any())
  _optimizer.warn_if_rescaled(run.records, config["test"])
  losses = run.records.get("loss", np.zeros((k, 0))).astype(np.float64)
  final, mean, diverged, at = _sg.summarize(losses, window,
                                            diverge_threshold)
  steps = losses.shape[1]
  stop = ("interrupted" if run.interrupted else "data_exhausted" if (
      run.exhausted and steps < num_steps) else "completed")
  return {
      "losses": losses, "final_loss": final, "mean_loss": mean,
      "diverged": diverged, "diverged_at": at,
      "eval_metrics": run.after, "initial_metrics": run.before,
      "stop_reason": stop,
      "config": _setup.config(
          setup, **config, **run.layout, num_steps=int(num_steps),
          steps_run=int(steps),
          window=int(window), diverge_threshold=diverge_threshold)}


def parallel_range_test(
    model: Any,
    loss_fn: Callable[..., Any],
    train_data: Any,
    *,
    val_data: Any = None,
    optimizer: Any = None,
    lrs: Any = None,
    num_lrs: int = 16,
    min_lr: float = 1e-4,
    max_lr: float = 1.0,
    num_steps: int = 50,
    schedule_fn: Callable[[jax.Array], Callable[..., Any]] | None = None,
    window: int = 10,
    diverge_threshold: float | None = 4.0,
    options: _options.Options | None = None,
    **option_fields: Any,
) -> ParallelSweepResult:
  """Trains K copies of ``model``, one per LR, side by side.

  Args:
    model, loss_fn, train_data, optimizer: as in
      :func:`~optax_clr.range_test` (the LR is set for every step).
    val_data: validation data; every copy is evaluated before and after
      training (NaN for copies that hit a NaN/inf loss).
    lrs: the K LRs (any order; the result is sorted ascending). Default:
      ``num_lrs`` LRs log-spaced from ``min_lr`` to ``max_lr``.
    num_lrs: K for the default grid, >= 1.
    min_lr: smallest LR of the default grid, > 0.
    max_lr: largest LR of the default grid, > ``min_lr``.
    num_steps: training steps per copy, >= 1.
    schedule_fn: optional ``lr_k -> optax.Schedule``: copy k's LR at step t
      is ``schedule_fn(lr_k)(t)`` (e.g. ``lambda lr: cyclic_schedule(lr / 4,
      lr, 5)``); called on a traced ``lr_k``, so it must be jittable.
    window: ``mean_loss`` averages the finite losses of the last ``window``
      steps.
    diverge_threshold: a run diverged when a loss is NaN/inf, or when its
      final ``mean_loss`` exceeds this multiple of its initial loss; None
      keeps only the NaN/inf criterion.
    options: an :class:`~optax_clr.Options` (``batch_size``, ``seed``,
      ``init``/``model_init`` for independent initial weights, ``mesh``,
      ``max_parallel``, ``group_size``...).
    **option_fields: its fields, overriding ``options``.

  Returns:
    A :class:`~optax_clr.ParallelSweepResult`; its ``best_lr`` and
    ``suggest()`` use only the runs that trained.
  """
  options = _options.resolve(options, option_fields, "parallel_range_test")
  grid = lr_grid(lrs, num_lrs, min_lr, max_lr)
  _check_run(num_steps, window, diverge_threshold)
  check_schedule_fn(schedule_fn)
  fields = run_sweep(
      model, loss_fn, train_data, options,
      hyper={_optimizer.LEARNING_RATE: grid},
      schedule=None if schedule_fn is None else LRSchedule(schedule_fn),
      optimizer=optimizer, val_data=val_data, num_steps=num_steps,
      window=window, diverge_threshold=diverge_threshold,
      driven=(_optimizer.LEARNING_RATE,),
      config={"test": "parallel_range_test", "num_lrs": int(grid.size),
              "min_lr": float(grid[0]), "max_lr": float(grid[-1]),
              "schedule_fn": None if schedule_fn is None
              else _optimizer.describe(schedule_fn)})
  return ParallelSweepResult(lrs=grid, **fields)


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
    val_data: Any = None,
    num_steps: int = 50,
    window: int = 10,
    diverge_threshold: float | None = 4.0,
    options: _options.Options | None = None,
    **option_fields: Any,
) -> GridSweepResult:
  """Trains one copy of ``model`` per hyperparameter configuration.

  Example::

    result = clr.sweep(model, loss_fn, data, batch_size=64,
                       optimizer=optax.adamw,
                       hyperparams={"learning_rate": [1e-3, 3e-3, 1e-2],
                                    "weight_decay": [0.0, 1e-4, 1e-3]})
    axes, acc = result.grid("learning_rate", "weight_decay")  # 3 x 3

  Args:
    model, loss_fn, train_data: as in :func:`~optax_clr.range_test`.
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
    val_data, num_steps, window, diverge_threshold, options: as in
      :func:`~optax_clr.parallel_range_test`.
    **option_fields: :class:`~optax_clr.Options` fields, overriding
      ``options``.

  Returns:
    A :class:`~optax_clr.GridSweepResult`.
  """
  options = _options.resolve(options, option_fields, "sweep")
  configs = expand(hyperparams, grid)
  names = driven_names(configs, schedule_fn)
  _check_run(num_steps, window, diverge_threshold)
  if schedule_fn is None:
    for name, values in configs.items():
      for v in np.unique(values):
        check_hyperparam_value(name, float(v), f"hyperparams[{name!r}]")
  fields = run_sweep(
      model, loss_fn, train_data, options, hyper=configs,
      schedule=None if schedule_fn is None else ConfigSchedule(schedule_fn),
      optimizer=optimizer, val_data=val_data, num_steps=num_steps,
      window=window, diverge_threshold=diverge_threshold, driven=names,
      config={"test": "sweep", "names": list(configs), "grid": bool(grid),
              "driven": list(names),
              "schedule_fn": None if schedule_fn is None
              else _optimizer.describe(schedule_fn)})
  return GridSweepResult(configs=configs, **fields)


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
    options: _options.Options | None = None,
    **kwargs: Any,
) -> BatchSizeSweepResult:
  """LR sweeps at several batch sizes, each for ``num_examples`` examples.

  Copies of one batch size share an array shape, copies of different
  batch sizes cannot: each batch size is its own sweep, run one after
  another. Comparing them by examples seen, not steps, is fair to the
  small batches (Smith 2018: the larger batch allows the larger LR).

  Args:
    model, loss_fn, train_data: as in
      :func:`~optax_clr.parallel_range_test` (``train_data`` as arrays).
    batch_sizes: the batch sizes (distinct, >= 1).
    num_examples: examples each run trains on: ``num_examples //
      batch_size`` steps.
    lrs, num_lrs, min_lr, max_lr: the LRs of every sweep.
    options: as in :func:`~optax_clr.parallel_range_test` (its
      ``batch_size`` is replaced by each of ``batch_sizes``).
    **kwargs: other arguments of :func:`~optax_clr.parallel_range_test`
      and Options fields.

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
  if "batch_size" in kwargs:
    raise TypeError("batch_size_sweep takes batch_sizes=, not batch_size=")
  sweeps = [parallel_range_test(
      model, loss_fn, train_data, lrs=lrs, num_lrs=num_lrs, min_lr=min_lr,
      max_lr=max_lr, num_steps=num_examples // b, options=options,
      batch_size=b, **kwargs) for b in sizes]
  return BatchSizeSweepResult(tuple(sizes), tuple(sweeps), num_examples)
