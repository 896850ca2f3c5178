"""The one train step every test shares: init, step, evaluate.

Every driver compiles the same pure function of one copy

  step(spec, train_state, micro_batches, key, hyper) -> (train_state, metrics)

and differs only in how it drives it: a ramp writes its LR of the step into
``hyper``, a sweep each copy's own values, ``train`` nothing (the
optimizer's schedules decide). :class:`Spec` holds everything the step
depends on besides its arrays; it is hashable, and the compiled programs
take it as a static argument, so JAX's own compilation cache finds them
again for the same model definition, functions and optimizer.

* **Model** (:mod:`._model`): trained ``params``, carried ``rest`` (NNX
  batch statistics and RNG state, a pytree's non-float arrays), declared
  ``state`` (:func:`~optax_clr.with_state`).
* **Loss** (:mod:`._loss`): called by its signature; ``key`` is this step's.
* **Optimizer** (:mod:`._optimizer`): ``hyper`` is written into its
  ``inject_hyperparams`` state before the update.
* **Accumulation**: the step gets ``[A, ...]`` micro-batches and averages
  gradients, losses and metrics over them: for a mean loss, one step on the
  ``A``-times larger batch.
* **Mixed precision**: floating params and batch leaves are cast to
  ``compute_dtype`` inside the loss only; master params, optimizer state,
  gradients and the loss stay in their own dtype (float32).
* **Modes**: NNX modules run steps in ``step_mode`` and evaluation in
  ``eval_mode`` (:class:`~optax_clr.Options`).
* **Data parallelism**: inside a ``shard_map`` that splits the batch over
  ``data_axis``, the loss, metrics, gradients and carried floating state are
  averaged over it (``lax.pmean``) -- the update of the whole batch; the
  name is bound, so a loss written for ``pmap`` (``lax.pmean(x, "batch")``)
  runs as written.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_clr.engine import _layout
from optax_clr.engine import _loss
from optax_clr.engine import _model
from optax_clr.engine import _optimizer

PyTree = Any


class TrainState(NamedTuple):
  """What one copy of the model carries from step to step."""
  params: PyTree
  rest: PyTree
  state: PyTree
  opt_state: PyTree


@dataclasses.dataclass(frozen=True)
class Spec:
  """What a compiled step depends on besides its arrays (hashable).

  Attributes:
    model: how to rebuild the model from its arrays.
    loss: the loss, with its calling convention.
    eval_fn: the evaluation function, or None (the loss's metrics).
    optimizer: the optimizer (a factory or a built transformation).
    compute_dtype: the dtype of the forward/backward pass, or None.
    step_mode, eval_mode: NNX modes of steps and evaluation.
    data_axis: the mesh axis the batch is split over inside ``shard_map``
      (gradients averaged over it), or None.
  """
  model: _model.ModelDef
  loss: _loss.LossFn
  eval_fn: _loss.LossFn | None
  optimizer: _optimizer.Optimizer
  compute_dtype: Any = None
  step_mode: Any = "train"
  eval_mode: Any = "eval"
  data_axis: str | None = None


def cast_floating(tree: PyTree, dtype: Any) -> PyTree:
  """Casts the floating-point leaves of ``tree`` to ``dtype``."""
  if dtype is None:
    return tree
  def cast(x):
    if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating):
      return jnp.asarray(x, dtype)
    return x
  return jax.tree.map(cast, tree)


def cast_like(tree: PyTree, like: PyTree) -> PyTree:
  """Each leaf of ``tree`` in the dtype of the matching leaf of ``like``
  (keeps a carry's dtypes fixed under mixed precision)."""
  return jax.tree.map(
      lambda x, y: x if _model.is_key(y) else jnp.asarray(x, y.dtype),
      tree, like)


def select_tree(pred: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
  """``jnp.where(pred, a, b)`` leaf by leaf, for a scalar ``pred``."""
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _set_mode(model: Any, mode: Any) -> Any:
  """The model in ``mode``: NNX modules are switched in place (``train()``,
  ``eval()``), Equinox modules get ``eqx.nn.inference_mode`` (BatchNorm,
  Dropout), a callable mode is applied to either."""
  if callable(mode):
    out = mode(model)
    return model if out is None else out
  if hasattr(model, "train") and hasattr(model, "eval"):  # NNX
    if mode == "train":
      model.train()
    elif mode == "eval":
      model.eval()
    return model
  if mode in ("train", "eval") and type(model).__module__.split(".")[0] != (
      "builtins"):
    eqx = sys.modules.get("equinox")
    if eqx is not None and isinstance(model, eqx.Module):
      return eqx.nn.inference_mode(model, mode == "eval")
  return model


def apply(spec: Spec, fn: _loss.LossFn, params: PyTree, rest: PyTree,
          state: PyTree, batch: PyTree, key: jax.Array, mode: Any
          ) -> tuple[Any, PyTree]:
  """``fn`` on the model rebuilt from its arrays, in ``compute_dtype``;
  returns its output and the model's carried arrays after the call."""
  params = cast_floating(params, spec.compute_dtype)
  batch = cast_floating(batch, spec.compute_dtype)
  model = _set_mode(spec.model.build(params, rest), mode)
  out = fn(model, state, batch, key)
  return out, cast_like(spec.model.rest_after(model, rest), rest)


def loss_and_aux(spec: Spec, params: PyTree, rest: PyTree, state: PyTree,
                 batch: PyTree, key: jax.Array
                 ) -> tuple[jax.Array, tuple[dict, PyTree, PyTree]]:
  """float32 loss and ``(metrics, new_rest, new_state)``; differentiable in
  ``params``."""
  out, new_rest = apply(spec, spec.loss, params, rest, state, batch, key,
                        spec.step_mode)
  loss, metrics, new_state = _loss.split_output(out, spec.loss, state)
  if new_state is not None:
    new_state = cast_like(new_state, state)
  return (jnp.asarray(loss, jnp.float32),
          (_loss.float32_metrics(metrics), new_rest, new_state))


def _grads(spec: Spec, ts: TrainState, micro: PyTree, key: jax.Array):
  """Mean loss, metrics and gradients over ``A`` micro-batches, and the
  carried arrays after them."""
  grad_fn = jax.value_and_grad(
      lambda p, r, s, b, k: loss_and_aux(spec, p, r, s, b, k), has_aux=True)
  num_micro = jax.tree.leaves(micro)[0].shape[0]
  if num_micro == 1:
    (loss, (metrics, rest, state)), grads = grad_fn(
        ts.params, ts.rest, ts.state, jax.tree.map(lambda x: x[0], micro),
        key)
    return loss, metrics, grads, rest, state

  def body(carry, x):
    loss_sum, metric_sum, grad_sum, rest, state = carry
    batch, i = x
    (loss, (metrics, rest, state)), grads = grad_fn(
        ts.params, rest, state, batch, jax.random.fold_in(key, i))
    add = lambda a, b: jax.tree.map(jnp.add, a, b)  # noqa: E731
    return (loss_sum + loss, add(metric_sum, metrics), add(grad_sum, grads),
            rest, state), None

  first = jax.tree.map(lambda x: x[0], micro)
  shapes = jax.eval_shape(
      lambda: loss_and_aux(spec, ts.params, ts.rest, ts.state, first, key))
  zeros = lambda t: jax.tree.map(  # noqa: E731
      lambda s: jnp.zeros(s.shape, s.dtype), t)
  carry = (jnp.float32(0), zeros(shapes[1][0]), zeros(ts.params), ts.rest,
           ts.state)
  (loss, metrics, grads, rest, state), _ = jax.lax.scan(
      body, carry, (micro, jnp.arange(num_micro)))
  mean = lambda t: jax.tree.map(lambda x: x / num_micro, t)  # noqa: E731
  return loss / num_micro, mean(metrics), mean(grads), rest, state


def _pmean_floating(tree: PyTree, axis: str) -> PyTree:
  return jax.tree.map(
      lambda x: jax.lax.pmean(x, axis) if jnp.issubdtype(
          x.dtype, jnp.floating) else x, tree)


def step(spec: Spec, ts: TrainState, micro: PyTree, key: jax.Array,
         hyper: Mapping[str, jax.Array]) -> tuple[TrainState, dict]:
  """One update on micro-batches ``[A, ...]`` with ``hyper`` (e.g.
  ``{"learning_rate": lr}``) written into the optimizer state first.

  Returns:
    The new state and ``{"loss": ..., **metrics}`` of this step (computed
    before the update).
  """
  loss, metrics, grads, rest, state = _grads(spec, ts, micro, key)
  if spec.data_axis is not None:
    loss, metrics, grads, rest, state = _pmean_floating(
        (loss, metrics, grads, rest, state), spec.data_axis)
  opt_state = _optimizer.set_driven(ts.opt_state, hyper)
  first = jax.tree.map(lambda x: x[0], micro)
  value_fn = lambda p: loss_and_aux(  # noqa: E731
      spec, p, ts.rest, ts.state, first, key)[0]
  updates, opt_state = spec.optimizer.update(
      grads, opt_state, ts.params, value=loss, value_fn=value_fn)
  params = optax.apply_updates(ts.params, updates)
  return TrainState(params, rest, state, opt_state), {"loss": loss,
                                                      **metrics}


class Carry(NamedTuple):
  """A copy's carry in a sweep, ``fit`` or ``train``: the model, and
  whether a NaN/inf loss froze it."""
  state: TrainState
  dead: jax.Array


class Frozen:
  """What a solver whose carry is a :class:`Carry` has: its start, and the
  model inside (``dead`` copies are evaluated as NaN)."""

  def init(self, ts: TrainState) -> Carry:
    return Carry(ts, jnp.bool_(False))

  def train_state(self, carry: Carry) -> tuple[TrainState, jax.Array]:
    return carry.state, carry.dead


def guarded_step(spec: Spec, carry: Carry, micro: PyTree, ok: jax.Array,
                 key: jax.Array, hyper: Mapping[str, jax.Array]
                 ) -> tuple[Carry, TrainState, jax.Array, jax.Array]:
  """:func:`step` on a valid (``ok``), live copy; a NaN/inf loss freezes
  the copy at that step (its state kept with ``jnp.where``, so NaNs never
  reach its parameters).

  Returns:
    ``(carry, the state the update produced, loss, active)``; ``active``:
    the step counted (valid, copy not frozen before it).
  """
  new, metrics = step(spec, carry.state, micro, key, hyper)
  loss = metrics["loss"]
  active = ok & ~carry.dead
  finite = jnp.isfinite(loss)
  state = select_tree(active & finite, new, carry.state)
  return Carry(state, carry.dead | (active & ~finite)), new, loss, active


def init(spec: Spec, parts: _model.Parts) -> TrainState:
  return TrainState(parts.params, parts.rest, parts.state,
                    spec.optimizer.tx.init(parts.params))


def evaluate(spec: Spec, ts: TrainState, batch: PyTree, key: jax.Array
             ) -> dict[str, jax.Array]:
  """Validation metrics of one batch (float32 scalars), in ``eval_mode``
  with the copy's current carried arrays and state. ``eval_fn``'s metrics,
  or by default the loss's metrics plus ``"loss"``."""
  fn = spec.eval_fn or spec.loss
  out, _ = apply(spec, fn, ts.params, ts.rest, ts.state, batch, key,
                 spec.eval_mode)
  if spec.eval_fn is None:
    loss, metrics, _ = _loss.split_output(out, fn, ts.state)
    metrics = {**metrics, "loss": loss}
  else:
    metrics = {str(k): v for k, v in out.items()}
  metrics = _loss.float32_metrics(metrics)
  if spec.data_axis is not None:
    metrics = _pmean_floating(metrics, spec.data_axis)
  return metrics


def evaluate_stack(spec: Spec, ts: TrainState, val: PyTree, key: jax.Array
                   ) -> dict[str, jax.Array]:
  """Mean metrics over a stack of validation batches ``[V, ...]``."""
  num = jax.tree.leaves(val)[0].shape[0]
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num))
  per_batch = jax.lax.map(lambda x: evaluate(spec, ts, x[0], x[1]),
                          (val, keys))
  return {k: v.mean(0) for k, v in per_batch.items()}


def _probe(spec: Spec, params: PyTree, rest: PyTree, state: PyTree,
           batch: PyTree) -> tuple[Any, dict]:
  """The loss and metrics of one batch (traced, never run)."""
  out, _ = apply(spec, spec.loss, params, rest, state, batch,
                 jax.random.key(0), spec.step_mode)
  loss, metrics, _ = _loss.split_output(out, spec.loss, state)
  if not isinstance(loss, (jax.Array, np.ndarray, np.generic, int, float)):
    # Refused here, by name: jax would reject e.g. a str output without
    # saying it came from the loss.
    _loss.check_loss(loss, spec.loss.name)
  return loss, metrics


# Traced through jit so that JAX's trace cache serves a repeated call with
# the same model, loss and shapes (a warm sweep traces nothing).
_cached_probe = jax.jit(_probe, static_argnums=0)


def check_loss(spec: Spec, parts: _model.Parts, batch: PyTree
               ) -> tuple[list[str], bool]:
  """Checks the loss on one batch by tracing it (nothing is compiled);
  returns the names of its metrics and whether it holds a convolution."""
  args = (parts.params, parts.rest, parts.state, batch)
  if spec.data_axis is None:
    traced = _cached_probe.trace(spec, *args)
    jaxpr, (loss, metrics) = traced.jaxpr, traced.out_info
  else:  # inside the caller's binding of the axis name (not cacheable)
    jaxpr, (loss, metrics) = jax.make_jaxpr(
        functools.partial(_probe, spec), return_shape=True)(*args)
  _loss.check_loss(loss, spec.loss.name)
  return sorted(metrics), _layout.has_convolution(jaxpr)


def check_eval(spec: Spec, parts: _model.Parts, batch: PyTree) -> list[str]:
  """Checks evaluation on one batch; returns the metric names."""
  key = jax.random.key(0)
  if spec.eval_fn is not None:
    out, _ = jax.eval_shape(
        lambda p, r, s, b: apply(spec, spec.eval_fn, p, r, s, b, key,
                                 spec.eval_mode),
        parts.params, parts.rest, parts.state, batch)
    _loss.check_eval(out, spec.eval_fn.name)
  ts = TrainState(parts.params, parts.rest, parts.state, None)
  metrics = jax.eval_shape(lambda t, b: evaluate(
      dataclasses.replace(spec, data_axis=None), t, b, key), ts, batch)
  return sorted(metrics)
