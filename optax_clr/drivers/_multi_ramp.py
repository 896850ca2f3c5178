"""S range tests over one LR ramp, side by side in one compiled program.

* :func:`multi_seed_range_test`: one ramp per seed (each its own data order,
  optionally its own initial weights): every suggestion as a median with
  its spread over the seeds.
* :func:`weight_decay_range_test`: one ramp per weight decay (and
  momentum), the first step of Smith's "disciplined approach" (2018): the
  weight decay whose curve reaches the lowest loss and allows the largest
  learning rate.

The copies are vmapped and sharded over the devices as in the sweep
(:mod:`optax_clr.drivers._population`); each stops on its own, and every
ramp equals the :func:`~optax_clr.range_test` with its seed and settings.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from optax_clr import _checks
from optax_clr.drivers import _population
from optax_clr.drivers import _range_test
from optax_clr.drivers import _setup
from optax_clr.optimizers import check_hyperparam_value
from optax_clr.optimizers import sgd as sgd_factory
from optax_clr.results import MultiSeedRangeTestResult
from optax_clr.results import WeightDecayRangeTestResult

PyTree = Any


def _pad_lrs(lrs32: np.ndarray, first: int, count: int) -> np.ndarray:
  out = np.full(count, lrs32[-1], np.float32)
  n = max(0, min(count, lrs32.size - first))
  out[:n] = lrs32[first:first + n]
  return out


def _records(outcome: Any, s: int, num_steps: int, names: tuple[str, ...],
             has_val: bool, every: int | None) -> dict[str, Any]:
  """The ramps' recorded steps as ``[S, num_steps]`` arrays (NaN after a
  ramp stopped), their counts, and the evaluations at their steps."""
  records = outcome.records
  if records:
    rec = _setup.concat(records, "recorded", axis=1).astype(bool)
    loss = _setup.concat(records, "loss", axis=1)
    smooth = _setup.concat(records, "smoothed", axis=1)
  else:
    rec = np.zeros((s, 0), bool)
    loss = smooth = np.zeros((s, 0))
  n = min(rec.shape[1], num_steps)
  rec, loss, smooth = rec[:, :n], loss[:, :n], smooth[:, :n]
  counts = rec.sum(1)
  losses = np.full((s, num_steps), np.nan)
  smoothed = np.full((s, num_steps), np.nan)
  for i in range(s):
    losses[i, :counts[i]] = loss[i][rec[i]]
    smoothed[i, :counts[i]] = smooth[i][rec[i]]
  eval_steps = np.zeros(0, np.int64)
  eval_metrics: dict[str, np.ndarray] = {}
  if has_val and records and every:
    eval_steps = np.arange(every - 1, num_steps, every)
    evaluated = _setup.concat(records, "evaluated", axis=1)[:, :n]
    for k in names:
      vals = np.concatenate([r["metrics"][k] for r in records], 1)[:, :n]
      out = np.full((s, eval_steps.size), np.nan)
      for i in range(s):
        at = np.flatnonzero(evaluated[i] & rec[i])
        out[i, np.searchsorted(eval_steps, at)] = vals[i][at]
      eval_metrics[k] = out
  return {"losses": losses, "smoothed_losses": smoothed,
          "num_recorded": counts, "eval_steps": eval_steps,
          "eval_metrics": eval_metrics}


def run_ramps(model: Any, loss_fn: Callable[..., Any], train_data: Any, *,
              seeds: Sequence[int], hyper: dict[str, np.ndarray] | None,
              own_data: bool, init: str, model_init: Any, start_lr: Any,
              end_lr: Any, num_steps: Any, ramp: str, optimizer: Any,
              batch_size: Any, smoothing: float, diverge_threshold: Any,
              val_data: Any, eval_every: Any, eval_fn: Any, val_batches: int,
              accumulation_steps: int, compute_dtype: Any, wrt: Any,
              step_mode: Any, eval_mode: Any, mesh: Any, group_size: Any,
              execution: str, steps_per_chunk: Any, progress: Any,
              desc: str) -> dict[str, Any]:
  """S ramps, copy ``i`` with seed ``seeds[i]`` and the hyperparameters
  ``hyper[name][i]``; returns the fields of a multi-ramp result."""
  start, end, num_steps, lrs = _range_test.check_ramp(
      start_lr, end_lr, num_steps, ramp, smoothing, diverge_threshold,
      eval_every, val_data)
  _setup.check_common(
      accumulation_steps=accumulation_steps, val_batches=val_batches,
      seed=seeds[0], steps_per_chunk=steps_per_chunk, loss_fn=loss_fn,
      eval_fn=eval_fn, progress=progress, step_mode=step_mode,
      eval_mode=eval_mode, val_data=val_data)
  extra = tuple(hyper or {})
  setup = _setup.prepare(
      model, loss_fn, train_data, optimizer=optimizer,
      driven=("learning_rate",) + extra, batch_size=batch_size,
      seed=seeds[0], val_data=val_data, val_batches=val_batches,
      eval_fn=eval_fn, accumulation_steps=accumulation_steps,
      compute_dtype=compute_dtype, wrt=wrt, step_mode=step_mode,
      eval_mode=eval_mode, execution=execution,
      steps_per_chunk=steps_per_chunk, num_steps=num_steps,
      placeholders={n: 0.0 for n in extra})
  has_val = setup.val is not None
  if has_val and eval_every is None:
    eval_every = max(1, num_steps // 20)
  names = tuple(setup.eval_names)
  _population.check_model_init(model_init, init, setup, wrt)
  plan = _population.plan(len(seeds), mesh, None, group_size, setup)
  consts = _population.stack_consts([
      _range_test.ramp_consts(s, 0, smoothing, diverge_threshold, eval_every)
      for s in seeds])
  if hyper:
    consts["hyper"] = {k: np.asarray(v, np.float32) for k, v in hyper.items()}
  feeds = (_population.seed_feeds(setup.feed, train_data, batch_size, seeds)
           if own_data else None)
  lrs32 = lrs.astype(np.float32)
  outcome = _population.run(
      plan, setup, _range_test.ramp_body(setup.engine, has_val, names,
                                         plan.data_axis), consts,
      init=init, model_init=model_init, wrt=wrt,
      init_keys=[jax.random.key(s) for s in seeds],
      carry_of=_range_test.ramp_carry, feeds=feeds, num_steps=num_steps,
      accumulation_steps=accumulation_steps,
      per_step=lambda first, n: _pad_lrs(lrs32, first, n),
      progress=progress, desc=desc, code_of=_range_test.ramp_code,
      body_key=("ramp", has_val, names, plan.data_axis, extra))
  fields = _records(outcome, len(seeds), num_steps, names, has_val,
                    eval_every)
  codes = outcome.codes
  fields["stop_reasons"] = tuple(_range_test.stop_reason(
      0 if codes is None else int(codes[i]), int(fields["num_recorded"][i]),
      num_steps, outcome.exhausted, outcome.interrupted)
                                 for i in range(len(seeds)))
  fields["lrs"] = lrs32.astype(np.float64)
  fields["eval_lrs"] = fields["lrs"][fields["eval_steps"]]
  fields["config"] = {
      "start_lr": start, "end_lr": end, "num_steps": int(num_steps),
      "ramp": ramp, "smoothing": float(smoothing),
      "diverge_threshold": diverge_threshold, "eval_every": eval_every,
      "init": init, "seeds": list(seeds), **plan.config(),
      **_setup.config_common(
          setup, model=model, batch_size=batch_size,
          accumulation_steps=accumulation_steps, compute_dtype=compute_dtype,
          seed=seeds[0],
          optimizer_description=setup.engine.optimizer.description)}
  return fields


def multi_seed_range_test(
    model: Any,
    loss_fn: Callable[..., Any],
    train_data: Any,
    *,
    num_seeds: int = 5,
    seeds: Any = None,
    init: str = "shared",
    model_init: Callable[[jax.Array], Any] | None = None,
    start_lr: float = _range_test.DEFAULT_START_LR,
    end_lr: float = _range_test.DEFAULT_END_LR,
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
    wrt: Any = nnx.Param,
    step_mode: Any = "train",
    eval_mode: Any = "eval",
    mesh: Mesh | None = None,
    group_size: int | str = "auto",
    execution: str = "auto",
    steps_per_chunk: int | None = None,
    progress: Any = None,
) -> MultiSeedRangeTestResult:
  """S range tests over the same ramp, one per seed, in one program.

  Seed ``s`` samples its own data order (array data; an iterable gives every
  seed the same batches) and its own per-step keys; with
  ``init="independent"`` it also starts from ``model_init(key(s))``. The
  results equal S separate :func:`~optax_clr.range_test` calls.

  Args:
    model, loss_fn, train_data: as in :func:`~optax_clr.range_test`.
    num_seeds: S, when ``seeds`` is not given (seeds ``0 .. S-1``).
    seeds: the seeds themselves (distinct integers >= 0).
    init: ``"shared"`` (every seed starts from ``model``'s weights) or
      ``"independent"`` (from ``model_init(jax.random.key(seed))``).
    model_init: ``key -> model`` for ``init="independent"``.
    mesh: a mesh with an axis ``"copies"`` (default: all devices).
    group_size: seeds vmapped together on a device (``"auto"`` or an int).
    Others: as in :func:`~optax_clr.range_test`.

  Returns:
    A :class:`~optax_clr.MultiSeedRangeTestResult`; ``suggest()`` gives each
    suggestion's median and spread over the seeds.
  """
  seed_list = _population.check_seeds(seeds, num_seeds)
  fields = run_ramps(
      model, loss_fn, train_data, seeds=seed_list, hyper=None, own_data=True,
      init=init, model_init=model_init, start_lr=start_lr, end_lr=end_lr,
      num_steps=num_steps, ramp=ramp, optimizer=optimizer,
      batch_size=batch_size, smoothing=smoothing,
      diverge_threshold=diverge_threshold, val_data=val_data,
      eval_every=eval_every, eval_fn=eval_fn, val_batches=val_batches,
      accumulation_steps=accumulation_steps, compute_dtype=compute_dtype,
      wrt=wrt, step_mode=step_mode, eval_mode=eval_mode, mesh=mesh,
      group_size=group_size, execution=execution,
      steps_per_chunk=steps_per_chunk, progress=progress,
      desc="multi-seed range test")
  fields["config"]["test"] = "multi_seed_range_test"
  return MultiSeedRangeTestResult(seeds=np.asarray(seed_list), **fields)


def _check_grid(name: str, values: Any, low: float, high: float | None
                ) -> list[float]:
  if isinstance(values, (int, float)):
    values = [values]
  out = [float(_checks.check_number(f"{name}[{i}]", v, low=low,
                                    high=high, high_inclusive=False)
               if high is not None else _checks.check_number(
                   f"{name}[{i}]", v, low=low))
         for i, v in enumerate(values)]
  if not out:
    raise ValueError(f"{name} must hold at least one value")
  if len(set(out)) != len(out):
    raise ValueError(f"{name} must be distinct, got {out}")
  return out


def weight_decay_range_test(
    model: Any,
    loss_fn: Callable[..., Any],
    train_data: Any,
    *,
    weight_decays: Sequence[float] = (0.0, 1e-5, 1e-4, 1e-3),
    momenta: Sequence[float] = (0.9,),
    optimizer: Callable[..., Any] | None = None,
    momentum_name: str = "momentum",
    start_lr: float = _range_test.DEFAULT_START_LR,
    end_lr: float = _range_test.DEFAULT_END_LR,
    num_steps: int | None = None,
    ramp: str = "exp",
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
    group_size: int | str = "auto",
    execution: str = "auto",
    steps_per_chunk: int | None = None,
    progress: Any = None,
) -> WeightDecayRangeTestResult:
  """LR range tests at several weight decays (x momenta), side by side.

  Smith (2018, "A disciplined approach to neural network
  hyper-parameters"): run the LR range test at a few weight decays; the
  one whose curve reaches the lowest loss and lets the largest LR train is
  the weight decay to use, and its curve gives the LR bounds; cycle the
  momentum inversely to the LR (0.95 -> 0.85). Every ramp sees the same
  batches and starts from the same weights, so the curves differ only by
  the hyperparameters; ``result.suggest()`` applies the rule and
  ``result.plot()`` draws the loss over LR x weight decay.

  Args:
    model, loss_fn, train_data, batch_size: as in
      :func:`~optax_clr.range_test`.
    weight_decays: the weight decays to compare (>= 0).
    momenta: the momenta to compare (each weight decay at each), in [0, 1).
    optimizer: a factory taking ``learning_rate``, ``weight_decay`` and
      ``momentum_name`` by keyword; default
      :func:`optax_clr.optimizers.sgd` (momentum, L2 weight decay).
    momentum_name: the factory's momentum argument (``"b1"`` for Adam).
    Others: as in :func:`~optax_clr.range_test`.

  Returns:
    A :class:`~optax_clr.WeightDecayRangeTestResult`.
  """
  wds = _check_grid("weight_decays", weight_decays, 0.0, None)
  moms = _check_grid("momenta", momenta, 0.0, 1.0)
  _checks.check_choice("momentum_name", momentum_name, ("momentum", "b1"))
  pairs = list(itertools.product(wds, moms))
  hyper = {"weight_decay": np.array([p[0] for p in pairs]),
           momentum_name: np.array([p[1] for p in pairs])}
  for name, values in hyper.items():
    for v in values:
      check_hyperparam_value(name, float(v))
  seed = _checks.check_int("seed", seed, low=0)
  fields = run_ramps(
      model, loss_fn, train_data, seeds=[seed] * len(pairs), hyper=hyper,
      own_data=False, init="shared", model_init=None, start_lr=start_lr,
      end_lr=end_lr, num_steps=num_steps, ramp=ramp,
      optimizer=optimizer or sgd_factory, batch_size=batch_size,
      smoothing=smoothing, diverge_threshold=diverge_threshold,
      val_data=val_data, eval_every=eval_every, eval_fn=eval_fn,
      val_batches=val_batches, accumulation_steps=accumulation_steps,
      compute_dtype=compute_dtype, wrt=wrt, step_mode=step_mode,
      eval_mode=eval_mode, mesh=mesh, group_size=group_size,
      execution=execution, steps_per_chunk=steps_per_chunk,
      progress=progress, desc="weight-decay range test")
  fields["config"].update(test="weight_decay_range_test",
                          momentum_name=momentum_name)
  return WeightDecayRangeTestResult(
      weight_decays=hyper["weight_decay"], momenta=hyper[momentum_name],
      **fields)
