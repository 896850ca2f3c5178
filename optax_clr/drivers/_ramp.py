"""The LR range test (Smith 2017): the LR ramped over the steps of a run.

* :func:`range_test`: one ramp;
* :func:`multi_seed_range_test`: one ramp per seed (each its own data order
  and keys, optionally its own initial weights), side by side;
* :func:`weight_decay_range_test`: one ramp per weight decay (x momentum),
  the first step of Smith's "disciplined approach" (2018).

The LR of step ``i`` of ``num_steps``:

  exp:     lr_i = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))
  linear:  lr_i = start_lr + (end_lr - start_lr) * i / (num_steps - 1)

so the last step uses ``end_lr`` exactly (as torch-lr-finder; fastai divides
by ``num_steps`` and never reaches it). The ramp is computed on the host in
float64 and given to the steps as data: one compiled program serves every
ramp. The loss is smoothed by a bias-corrected exponential moving average
(fastai, Lightning):

  avg_i = beta * avg_{i-1} + (1 - beta) * loss_i,   avg_{-1} = 0
  smoothed_i = avg_i / (1 - beta ** (i + 1)),        beta = 1 - smoothing

and a ramp stops when ``smoothed_i > diverge_threshold * min_{j<=i}
smoothed_j`` (``"diverged"``: the loss blew up, as a ramp's loss is meant
to) or when a loss is NaN/inf (``"nonfinite"``); the step that stops it is
the last one recorded. Data that run out end it with what was recorded
(``"data_exhausted"``), and so does Ctrl-C (``"interrupted"``).

Everything per step (the ramp, the EMA, the stop, the optional evaluation)
runs in the compiled chunk; a stopped ramp's remaining steps are no-ops,
and the host looks at one flag per chunk. Smith's accuracy-based variant:
pass ``val_data`` (and ``eval_every``); ``eval_metrics["accuracy"]``
against ``eval_lrs`` gives the accuracy bounds.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optax_clr import _checks
from optax_clr import _options
from optax_clr.engine import _feed
from optax_clr.engine import _loss
from optax_clr.engine import _optimizer
from optax_clr.engine import _population
from optax_clr.engine import _setup
from optax_clr.engine import _step
from optax_clr.optimizers import check_hyperparam_value
from optax_clr.optimizers import sgd as sgd_factory
from optax_clr.results import MultiSeedRangeTestResult
from optax_clr.results import RangeTestResult
from optax_clr.results import WeightDecayRangeTestResult

PyTree = Any
RAMPS = ("exp", "linear")
# Training from scratch needs a ramp of a few epochs (Smith 2017), not the
# 100 steps fastai uses for fine-tuning: at least this many steps per decade
# of LR, so that the smoothed loss can follow the ramp.
STEPS_PER_DECADE = 40
DEFAULT_START_LR = 1e-6
DEFAULT_END_LR = 10.0
STOP_CODES = {1: "diverged", 2: "nonfinite"}


def default_num_steps(start_lr: float, end_lr: float) -> int:
  """``STEPS_PER_DECADE`` steps per decade of the ramp, at least 100."""
  decades = math.log10(end_lr / start_lr)
  return max(100, int(math.ceil(STEPS_PER_DECADE * decades)))


def ramp_lrs(start_lr: float, end_lr: float, num_steps: int,
             ramp: str = "exp") -> np.ndarray:
  """The ramp's ``[num_steps]`` LRs in float64; the first and last are
  exactly ``start_lr`` and ``end_lr``."""
  t = np.arange(num_steps) / (num_steps - 1)
  if ramp == "exp":
    lrs = start_lr * (end_lr / start_lr) ** t
  else:
    lrs = start_lr + (end_lr - start_lr) * t
  lrs[0], lrs[-1] = start_lr, end_lr
  return lrs


@dataclasses.dataclass(frozen=True)
class RampSettings:
  """A ramp's checked arguments (see :func:`range_test`)."""
  start_lr: float
  end_lr: float
  num_steps: int
  ramp: str
  smoothing: float
  diverge_threshold: float | None
  eval_every: int | None

  @classmethod
  def check(cls, start_lr: Any, end_lr: Any, num_steps: Any, ramp: Any,
            smoothing: Any, diverge_threshold: Any, eval_every: Any,
            val_data: Any) -> RampSettings:
    start = _checks.check_number("start_lr", start_lr, low=0.0,
                                 low_inclusive=False)
    end = _checks.check_number("end_lr", end_lr, low=0.0,
                               low_inclusive=False)
    _checks.check_order("start_lr", start, "end_lr", end, strict=True)
    if np.float32(start) >= np.float32(end):
      raise ValueError(
          f"start_lr={start!r} and end_lr={end!r} are equal in float32, the "
          "precision the steps use; make end_lr larger")
    if num_steps is None:
      num_steps = default_num_steps(start, end)
    num_steps = _checks.check_int("num_steps", num_steps, low=2)
    _checks.check_choice("ramp", ramp, RAMPS)
    _checks.check_number("smoothing", smoothing, low=0.0, high=1.0,
                         low_inclusive=False)
    if diverge_threshold is not None:
      _checks.check_number("diverge_threshold", diverge_threshold, low=1.0,
                           low_inclusive=False)
    if eval_every is not None:
      _checks.check_int("eval_every", eval_every, low=1)
      if val_data is None:
        raise ValueError("eval_every needs val_data")
    elif val_data is not None:
      eval_every = max(1, num_steps // 20)
    out = cls(start, end, num_steps, ramp, float(smoothing),
              None if diverge_threshold is None else float(diverge_threshold),
              eval_every)
    lrs = out.lrs32()
    bad = np.flatnonzero(~np.isfinite(lrs) | ~(lrs > 0))
    if bad.size:
      raise ValueError(
          f"start_lr={start!r}, end_lr={end!r}: the ramp's LR at step "
          f"{int(bad[0])} is not a positive float32")
    if np.any(np.diff(lrs) <= 0):
      raise ValueError(
          f"start_lr={start!r}, end_lr={end!r}, num_steps={num_steps}: "
          "consecutive LRs of the ramp are equal in float32; widen the range "
          "or take fewer steps")
    return out

  def lrs32(self) -> np.ndarray:
    """The float32 LRs the steps use."""
    with np.errstate(over="ignore"):
      return ramp_lrs(self.start_lr, self.end_lr, self.num_steps,
                      self.ramp).astype(np.float32)

  def consts(self, seeds: Sequence[int], copies: Sequence[int],
             hyper: dict[str, np.ndarray] | None = None
             ) -> dict[str, Any]:
    """Per-copy constants of K ramps."""
    k = len(seeds)
    full = lambda v, dtype: np.full(k, v, dtype)  # noqa: E731
    return {
        "seed": np.asarray(seeds, np.int32),
        "copy": np.asarray(copies, np.int32),
        "lrs": np.broadcast_to(self.lrs32(), (k, self.num_steps)).copy(),
        "beta": full(1.0 - self.smoothing, np.float32),
        "threshold": full(self.diverge_threshold or 0.0, np.float32),
        "use_threshold": full(self.diverge_threshold is not None, np.bool_),
        "eval_every": full(self.eval_every or 1, np.int32),
        "hyper": {n: np.asarray(v, np.float32) for n, v in (
            hyper or {}).items()},
    }

  def config(self) -> dict[str, Any]:
    return {"start_lr": self.start_lr, "end_lr": self.end_lr,
            "num_steps": int(self.num_steps), "ramp": self.ramp,
            "smoothing": self.smoothing,
            "diverge_threshold": self.diverge_threshold,
            "eval_every": self.eval_every}


class RampCarry(NamedTuple):
  """One ramp's carry: the model, the EMA, its best value, whether (and
  why: 1 diverged, 2 nonfinite) it stopped."""
  state: _step.TrainState
  avg: jax.Array
  best: jax.Array
  stopped: jax.Array
  code: jax.Array


@dataclasses.dataclass(frozen=True)
class Ramp:
  """The ramp as a solver: update at the step's LR, EMA, stop, evaluate.

  Attributes:
    eval_names: the validation metrics (empty: no evaluation).
  """
  eval_names: tuple[str, ...] = ()

  def init(self, ts: _step.TrainState) -> RampCarry:
    return RampCarry(ts, jnp.float32(0), jnp.float32(jnp.inf),
                     jnp.bool_(False), jnp.int32(0))

  def train_state(self, carry: RampCarry) -> tuple[_step.TrainState, Any]:
    return carry.state, jnp.bool_(False)

  def step(self, spec: _step.Spec, carry: RampCarry, consts: PyTree,
           val: PyTree, x: PyTree) -> tuple[RampCarry, dict]:
    micro, ok, t = x
    lrs = consts["lrs"]
    lr = lrs[jnp.minimum(t, lrs.shape[0] - 1)]
    key = _loss.step_key(consts["seed"], consts["copy"], t)
    new, metrics = _step.step(spec, carry.state, micro, key,
                              {**consts["hyper"], "learning_rate": lr})
    loss = metrics["loss"]
    active = ok & ~carry.stopped
    finite = jnp.isfinite(loss)
    beta = consts["beta"]
    avg = beta * carry.avg + (1 - beta) * loss
    smoothed = avg / (1 - beta ** (t + 1).astype(jnp.float32))
    best = jnp.minimum(carry.best, smoothed)
    diverged = consts["use_threshold"] & (
        smoothed > consts["threshold"] * best)
    keep = active & finite
    stop = active & (~finite | diverged)
    state = _step.select_tree(keep, new, carry.state)
    carry = RampCarry(
        state, jnp.where(keep, avg, carry.avg),
        jnp.where(keep, best, carry.best), carry.stopped | stop,
        jnp.where(stop, jnp.where(finite, 1, 2), carry.code))
    out = {"lr": lr, "loss": loss, "smoothed": smoothed, "recorded": active,
           **_optimizer.rescale_record(new.opt_state)}
    if self.eval_names:
      do = keep & ((t + 1) % consts["eval_every"] == 0)
      nan = {k: jnp.float32(jnp.nan) for k in self.eval_names}
      out["evaluated"] = do
      out["metrics"] = jax.lax.cond(
          do, lambda: _step.evaluate_stack(
              spec, state, val, _loss.eval_key(consts["seed"],
                                               consts["copy"])),
          lambda: nan)
    return carry, out


def _stop_reason(code: int, recorded: int, num_steps: int, exhausted: bool,
                 interrupted: bool) -> str:
  if code in STOP_CODES:
    return STOP_CODES[code]
  if interrupted and recorded < num_steps:
    return "interrupted"
  if exhausted and recorded < num_steps:
    return "data_exhausted"
  return "completed"


def run_ramps(model: Any, loss_fn: Any, train_data: Any, options: Any, *,
              settings: RampSettings, val_data: Any, optimizer: Any,
              seeds: Sequence[int], own_data: bool,
              hyper: dict[str, np.ndarray] | None = None,
              desc: str = "range test") -> dict[str, Any]:
  """K ramps side by side (copy ``i``: seed ``seeds[i]``, hyperparameters
  ``hyper[name][i]``); the fields of a multi-ramp result."""
  extra = tuple(hyper or {})
  setup = _setup.prepare(
      model, loss_fn, train_data, options, val_data=val_data,
      optimizer=optimizer, driven=("learning_rate",) + extra,
      placeholders={n: 0.0 for n in extra}, num_steps=settings.num_steps,
      num_copies=len(seeds))
  _population.check_model_init(setup)
  solver = Ramp(tuple(setup.eval_names) if setup.val is not None else ())
  consts = settings.consts(seeds, [0] * len(seeds), hyper)
  feeds = None
  if own_data and isinstance(setup.feed, _feed.ArrayFeed):
    feeds = [_feed.make_feed(train_data, options.batch_size, s)
             for s in seeds]
  keys = None
  if options.init == "independent":
    keys = np.stack([np.asarray(jax.random.key_data(jax.random.key(s)))
                     for s in seeds])
  run = _population.run(
      setup, solver, consts, num_steps=settings.num_steps, desc=desc,
      feeds=feeds, keys=keys,
      stop=lambda out: not out["recorded"][:, -1].any(),
      after=lambda pop: {"code": pop.read(lambda c: c.code)},
      shown=_last_loss)
  _optimizer.warn_if_rescaled(run.records, desc)
  fields = _ramp_fields(run, settings, solver.eval_names, len(seeds))
  fields["config"] = _setup.config(
      setup, **settings.config(), **run.layout,
      adaptive=_optimizer.is_adaptive(setup.spec.optimizer,
                                      setup.parts.params))
  return fields


def _last_loss(out: dict[str, np.ndarray]) -> dict[str, float]:
  rec = out["recorded"][0]
  if not rec.any():
    return {}
  i = int(np.flatnonzero(rec)[-1])
  return {"lr": float(out["lr"][0, i]), "loss": float(out["loss"][0, i]),
          "smoothed_loss": float(out["smoothed"][0, i])}


def _ramp_fields(run: Any, settings: RampSettings, names: tuple[str, ...],
                 k: int) -> dict[str, Any]:
  """Every ramp's recorded steps as ``[K, num_steps]`` (NaN after it
  stopped), its count, its stop reason and its evaluations."""
  n = settings.num_steps
  rec = run.records.get("recorded", np.zeros((k, 0), bool)).astype(bool)
  counts = rec.sum(1)
  losses = np.full((k, n), np.nan)
  smoothed = np.full((k, n), np.nan)
  for i in range(k):
    if counts[i]:  # none when interrupted before the first chunk
      losses[i, :counts[i]] = run.records["loss"][i][rec[i]]
      smoothed[i, :counts[i]] = run.records["smoothed"][i][rec[i]]
  eval_steps = np.zeros(0, np.int64)
  metrics: dict[str, np.ndarray] = {}
  if names and settings.eval_every:
    eval_steps = np.arange(settings.eval_every - 1, n, settings.eval_every)
    done = run.records.get("evaluated", np.zeros((k, 0), bool)) & rec
    for name in names:
      vals = run.records["metrics"][name] if run.records else None
      out = np.full((k, eval_steps.size), np.nan)
      for i in range(k):
        at = np.flatnonzero(done[i])
        if at.size:
          out[i, np.searchsorted(eval_steps, at)] = vals[i][at]
      metrics[name] = out
  codes = run.after.get("code", np.zeros(k, np.int32))
  lrs = settings.lrs32().astype(np.float64)
  return {
      "lrs": lrs, "losses": losses, "smoothed_losses": smoothed,
      "num_recorded": counts,
      "stop_reasons": tuple(_stop_reason(
          int(codes[i]), int(counts[i]), n, run.exhausted, run.interrupted)
          for i in range(k)),
      "eval_steps": eval_steps, "eval_lrs": lrs[eval_steps],
      "eval_metrics": metrics}


def range_test(
    model: Any,
    loss_fn: Callable[..., Any],
    train_data: Any,
    *,
    val_data: Any = None,
    optimizer: Any = None,
    start_lr: float = DEFAULT_START_LR,
    end_lr: float = DEFAULT_END_LR,
    num_steps: int | None = None,
    ramp: str = "exp",
    smoothing: float = 0.05,
    diverge_threshold: float | None = 4.0,
    eval_every: int | None = None,
    options: _options.Options | None = None,
    **option_fields: Any,
) -> RangeTestResult:
  """Runs the LR range test: one model, the LR ramped every step.

  Args:
    model: an ``nnx.Module`` (trained on its ``wrt`` variables; other NNX
      state such as batch statistics is carried along), an Equinox module
      or any pytree (its floating arrays trained), or
      :func:`~optax_clr.with_state` ``(model, state)``. Not modified: the
      test works on a copy.
    loss_fn: ``loss_fn(model, batch)`` (or with ``rngs``/``key``, the
      declared state, a tuple batch spread) returning a scalar loss or
      ``(loss, aux)`` (see :mod:`optax_clr.engine._loss`).
    train_data: a pytree of arrays with a leading example axis (sampled in
      batches of ``batch_size`` with a seeded permutation per epoch; a
      ``Dataset`` works through its ``as_batch()``), or an iterable of
      batches (lists, generators, loaders), read lazily.
    val_data: validation data for Smith's accuracy variant: one batch (a
      pytree of arrays, evaluated whole) or an iterable whose first
      ``val_batches`` batches are read once and reused.
    optimizer: a factory ``learning_rate -> optax.GradientTransformation``,
      an injected transformation, an ``nnx.Optimizer`` or its ``tx`` (see
      :mod:`optax_clr.engine._optimizer`); default SGD with momentum 0.9.
    start_lr: LR of the first step, > 0.
    end_lr: LR of the last step, > ``start_lr`` (in float32 too).
    num_steps: steps of the ramp, >= 2; default: 40 per decade of LR (280
      for the default 1e-6 -> 10), the few epochs Smith recommends for
      training from scratch rather than fastai's 100 (made for fine-tuning).
    ramp: ``"exp"`` (geometric, the default) or ``"linear"`` (Smith's
      original).
    smoothing: EMA factor in (0, 1]; ``beta = 1 - smoothing`` (1: none).
    diverge_threshold: stop when the smoothed loss exceeds this multiple of
      the best smoothed loss so far (> 1); None disables the check.
    eval_every: evaluate after every ``eval_every`` steps (default with
      ``val_data``: about 20 evaluations over the ramp).
    options: an :class:`~optax_clr.Options` (batch size, seed,
      accumulation, precision, mesh, progress...).
    **option_fields: any :class:`~optax_clr.Options` field, overriding
      ``options`` (e.g. ``batch_size=64``).

  Returns:
    A :class:`~optax_clr.RangeTestResult` with every recorded step, also
    when the test diverged, ran out of data or was interrupted.

  Examples:
    A linear regression as a params pytree with a dict batch:

    >>> import jax.numpy as jnp, numpy as np
    >>> import optax_clr as clr
    >>> x = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    >>> data = {"x": x, "y": x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32)}
    >>> def loss_fn(params, batch):
    ...   return jnp.mean((batch["x"] @ params["w"] - batch["y"]) ** 2)
    >>> res = clr.range_test({"w": jnp.zeros(4)}, loss_fn, data,
    ...                      batch_size=32, start_lr=1e-3, end_lr=10.0,
    ...                      num_steps=100, progress=False)
    >>> res.stop_reason  # the loss blew up before the LR reached end_lr
    'diverged'
    >>> s = res.suggest()
    >>> s.base_lr < s.max_lr < float(res.lrs[-1])
    True
  """
  options = _options.resolve(options, option_fields, "range_test")
  settings = RampSettings.check(start_lr, end_lr, num_steps, ramp, smoothing,
                                diverge_threshold, eval_every, val_data)
  fields = run_ramps(model, loss_fn, train_data, options, settings=settings,
                     val_data=val_data, optimizer=optimizer,
                     seeds=[options.seed], own_data=False)
  n = int(fields["num_recorded"][0])
  evals = fields["eval_steps"]
  keep = evals < n
  return RangeTestResult(
      lrs=fields["lrs"][:n], losses=fields["losses"][0, :n],
      smoothed_losses=fields["smoothed_losses"][0, :n],
      stop_reason=fields["stop_reasons"][0], eval_steps=evals[keep],
      eval_lrs=fields["eval_lrs"][keep],
      eval_metrics={k: v[0, keep] for k, v in fields["eval_metrics"].items()},
      config={**fields["config"], "test": "range_test"})


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


def multi_seed_range_test(
    model: Any,
    loss_fn: Callable[..., Any],
    train_data: Any,
    *,
    val_data: Any = None,
    optimizer: Any = None,
    num_seeds: int = 5,
    seeds: Sequence[int] | None = None,
    start_lr: float = DEFAULT_START_LR,
    end_lr: float = DEFAULT_END_LR,
    num_steps: int | None = None,
    ramp: str = "exp",
    smoothing: float = 0.05,
    diverge_threshold: float | None = 4.0,
    eval_every: int | None = None,
    options: _options.Options | None = None,
    **option_fields: Any,
) -> MultiSeedRangeTestResult:
  """S range tests over the same ramp, one per seed, side by side.

  Seed ``s`` samples its own data order (array data; an iterable gives
  every seed the same batches) and its own per-step keys; with
  ``init="independent"`` it also starts from ``model_init(key(s))``. The
  results equal S separate :func:`~optax_clr.range_test` calls.

  Args:
    model, loss_fn, train_data, val_data, optimizer: as in
      :func:`~optax_clr.range_test`.
    num_seeds: S, when ``seeds`` is not given (seeds ``0 .. S-1``).
    seeds: the seeds themselves (distinct integers >= 0).
    start_lr, end_lr, num_steps, ramp, smoothing: the ramp, as in
      :func:`~optax_clr.range_test`.
    diverge_threshold, eval_every: as in :func:`~optax_clr.range_test`.
    options: as in :func:`~optax_clr.range_test` (``init``/``model_init``:
      each seed's own initial weights).
    **option_fields: :class:`~optax_clr.Options` fields, overriding
      ``options``.

  Returns:
    A :class:`~optax_clr.MultiSeedRangeTestResult`; ``suggest()`` gives each
    suggestion's median and spread over the seeds.
  """
  options = _options.resolve(options, option_fields, "multi_seed_range_test")
  seed_list = check_seeds(seeds, num_seeds)
  settings = RampSettings.check(start_lr, end_lr, num_steps, ramp, smoothing,
                                diverge_threshold, eval_every, val_data)
  fields = run_ramps(model, loss_fn, train_data, options, settings=settings,
                     val_data=val_data, optimizer=optimizer, seeds=seed_list,
                     own_data=True, desc="multi-seed range test")
  fields["config"].update(test="multi_seed_range_test", seeds=seed_list)
  return MultiSeedRangeTestResult(seeds=np.asarray(seed_list), **fields)


def _check_grid(name: str, values: Any, low: float, high: float | None
                ) -> list[float]:
  if isinstance(values, (int, float)):
    values = [values]
  out = [float(_checks.check_number(f"{name}[{i}]", v, low=low, high=high,
                                    high_inclusive=False)
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
    val_data: Any = None,
    start_lr: float = DEFAULT_START_LR,
    end_lr: float = DEFAULT_END_LR,
    num_steps: int | None = None,
    ramp: str = "exp",
    smoothing: float = 0.05,
    diverge_threshold: float | None = 4.0,
    eval_every: int | None = None,
    options: _options.Options | None = None,
    **option_fields: Any,
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
    model, loss_fn, train_data, val_data: as in
      :func:`~optax_clr.range_test`.
    weight_decays: the weight decays to compare (>= 0).
    momenta: the momenta to compare (each weight decay at each), in [0, 1).
    optimizer: a factory taking ``learning_rate``, ``weight_decay`` and
      ``momentum_name`` by keyword; default
      :func:`optax_clr.optimizers.sgd` (momentum, L2 weight decay).
    momentum_name: the factory's momentum argument (``"b1"`` for Adam).
    start_lr, end_lr, num_steps, ramp, smoothing: the ramp, as in
      :func:`~optax_clr.range_test`.
    diverge_threshold, eval_every, options: as in
      :func:`~optax_clr.range_test`.
    **option_fields: :class:`~optax_clr.Options` fields, overriding
      ``options``.

  Returns:
    A :class:`~optax_clr.WeightDecayRangeTestResult`.
  """
  options = _options.resolve(options, option_fields,
                             "weight_decay_range_test")
  wds = _check_grid("weight_decays", weight_decays, 0.0, None)
  moms = _check_grid("momenta", momenta, 0.0, 1.0)
  _checks.check_choice("momentum_name", momentum_name, ("momentum", "b1"))
  settings = RampSettings.check(start_lr, end_lr, num_steps, ramp, smoothing,
                                diverge_threshold, eval_every, val_data)
  pairs = list(itertools.product(wds, moms))
  hyper = {"weight_decay": np.array([p[0] for p in pairs]),
           momentum_name: np.array([p[1] for p in pairs])}
  for name, values in hyper.items():
    for v in values:
      check_hyperparam_value(name, float(v))
  fields = run_ramps(
      model, loss_fn, train_data, options, settings=settings,
      val_data=val_data, optimizer=optimizer or sgd_factory,
      seeds=[options.seed] * len(pairs), own_data=False, hyper=hyper,
      desc="weight-decay range test")
  fields["config"].update(test="weight_decay_range_test",
                          momentum_name=momentum_name)
  return WeightDecayRangeTestResult(
      weight_decays=hyper["weight_decay"], momenta=hyper[momentum_name],
      **fields)
