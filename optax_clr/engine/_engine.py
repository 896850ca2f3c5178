"""The one train step shared by every driver: init, step, evaluate.

All three drivers (``range_test``, ``parallel_range_test``, ``train``)
compile the same pure function

  step(train_state, micro_batches, key, hyper) -> (train_state, metrics)

and differ only in how they drive it: the classic test ramps
``hyper["learning_rate"]`` over the steps of one copy, the sweep gives each
of K copies its own value, ``train`` passes no ``hyper`` and lets the
optimizer's schedules decide.

* **Model**: an NNX module trained on its ``wrt`` leaves (other state is
  carried along), or a params pytree (:mod:`._model`).
* **Loss**: ``loss_fn(model, batch[, rngs])`` returning a loss or
  ``(loss, aux)`` (:mod:`._loss`); ``key`` is this step's key.
* **Optimizer**: an ``inject_hyperparams`` transformation; ``hyper`` is
  written into its state before the update (:mod:`._optimizer`).
* **Accumulation**: the step receives ``[A, ...]`` micro-batches and
  averages gradients, losses and metrics over them: for a mean loss, one
  step on the ``A``-times larger batch.
* **Mixed precision**: floating params and batch leaves are cast to
  ``compute_dtype`` inside the loss only; master params, optimizer state,
  gradients and the returned loss stay in their own dtype (float32).
* **Modes**: NNX modules run steps in ``step_mode`` and evaluation in
  ``eval_mode``: ``"train"`` (``model.train()``: dropout on, batch
  statistics updated), ``"eval"`` (``model.eval()``), ``"as_is"`` (the
  attributes the user set, e.g. frozen BatchNorm for fine-tuning), or a
  callable ``fn(model)`` that sets them.

Compiled programs are cached on the engine (:attr:`Engine.programs`, keyed
by what the driver needs: the chunk shape, mesh, group size...), and engines
are cached on the identity of the graphdef, functions, optimizer and
settings (:func:`get_engine`), so repeated tests of one model reuse them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_clr import _checks
from optax_clr.engine import _loss
from optax_clr.engine import _model
from optax_clr.engine import _optimizer

PyTree = Any
MODES = ("train", "eval", "as_is")


class TrainState(NamedTuple):
  """What one copy of the model carries from step to step.

  Attributes:
    params: master copy of the trained leaves.
    rest: the model's other state (NNX non-``wrt`` variables); ``None`` for
      a params pytree.
    opt_state: the optimizer state (an ``inject_hyperparams`` state inside).
  """
  params: PyTree
  rest: PyTree
  opt_state: PyTree


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
  """Casts each leaf of ``tree`` to the dtype of the matching leaf of
  ``like`` (keeps a carry's dtypes fixed under mixed precision)."""
  return jax.tree.map(
      lambda x, y: x if _model.is_key(y) else jnp.asarray(x, y.dtype),
      tree, like)


def select_tree(pred: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
  """``jnp.where(pred, a, b)`` leaf by leaf, for a scalar ``pred``."""
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def check_mode(name: str, mode: Any) -> Any:
  if callable(mode):
    return mode
  return _checks.check_choice(name, mode, MODES)


def _set_mode(model: Any, mode: Any) -> None:
  if callable(mode):
    mode(model)
  elif mode == "train" and hasattr(model, "train"):
    model.train()
  elif mode == "eval" and hasattr(model, "eval"):
    model.eval()


class Engine:
  """The pure step of one model / loss / optimizer / settings combination.

  Attributes:
    programs: compiled programs of the drivers, by key (see
      :meth:`program`).
  """

  def __init__(self, graphdef: Any, wrt: Any, loss: _loss.LossFn,
               eval_fn: _loss.LossFn | None, optimizer: _optimizer.Optimizer,
               compute_dtype: Any = None, step_mode: Any = "train",
               eval_mode: Any = "eval"):
    self.graphdef = graphdef
    self.wrt = wrt
    self.loss = loss
    self.eval_fn = eval_fn
    self.optimizer = optimizer
    self.tx = optimizer.tx
    self.compute_dtype = compute_dtype
    self.step_mode = step_mode
    self.eval_mode = eval_mode
    self.programs: dict[Any, Callable[..., Any]] = {}

  def program(self, key: Any, build: Callable[[], Callable[..., Any]]
              ) -> Callable[..., Any]:
    """The compiled program under ``key``, built once by ``build()``."""
    if key not in self.programs:
      self.programs[key] = build()
    return self.programs[key]

  # -- model application ------------------------------------------------------

  def apply(self, fn: _loss.LossFn, params: PyTree, rest: PyTree,
            batch: PyTree, key: jax.Array, mode: Any) -> tuple[Any, PyTree]:
    """``fn(model, batch[, rngs])`` in ``compute_dtype``; returns its output
    and the updated non-trained state."""
    params = cast_floating(params, self.compute_dtype)
    batch = cast_floating(batch, self.compute_dtype)
    if self.graphdef is None:
      return fn(params, batch, key), rest
    # Fresh Variables that belong to this trace, so the forward pass may
    # update them (batch statistics, RNG counts).
    model = _model.merge(self.graphdef, params, rest)
    _set_mode(model, mode)
    out = fn(model, batch, key)
    new_rest = _model.split(model, self.wrt).rest
    return out, cast_like(new_rest, rest)

  def loss_and_metrics(self, params: PyTree, rest: PyTree, batch: PyTree,
                       key: jax.Array
                       ) -> tuple[jax.Array, tuple[dict, PyTree]]:
    """float32 loss and ``(metrics, new_rest)``; differentiable in params."""
    out, new_rest = self.apply(self.loss, params, rest, batch, key,
                               self.step_mode)
    loss, metrics = _loss.split_output(out, self.loss.name)
    return (jnp.asarray(loss, jnp.float32),
            (_loss.float32_metrics(metrics), new_rest))

  def evaluate(self, params: PyTree, rest: PyTree, batch: PyTree,
               key: jax.Array) -> dict[str, jax.Array]:
    """Validation metrics of one batch (float32 scalars), in ``eval_mode``.

    ``eval_fn(model, batch) -> dict``; by default ``loss_fn``'s metrics
    plus ``"loss"``.
    """
    if self.eval_fn is None:
      out, _ = self.apply(self.loss, params, rest, batch, key,
                          self.eval_mode)
      loss, metrics = _loss.split_output(out, self.loss.name)
      metrics = {**metrics, "loss": loss}
    else:
      out, _ = self.apply(self.eval_fn, params, rest, batch, key,
                          self.eval_mode)
      metrics = _loss.eval_metrics(out)
    return _loss.float32_metrics(metrics)

  def evaluate_stack(self, params: PyTree, rest: PyTree, val: PyTree,
                     key: jax.Array) -> dict[str, jax.Array]:
    """Mean metrics over a stack of validation batches ``[V, ...]``."""
    num = jax.tree.leaves(val)[0].shape[0]
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(num))
    per_batch = jax.lax.map(
        lambda x: self.evaluate(params, rest, x[0], x[1]), (val, keys))
    return {k: v.mean(0) for k, v in per_batch.items()}

  # -- training ---------------------------------------------------------------

  def init(self, params: PyTree, rest: PyTree) -> TrainState:
    return TrainState(params, rest, self.tx.init(params))

  def grads(self, params: PyTree, rest: PyTree, micro: PyTree,
            key: jax.Array) -> tuple[jax.Array, dict, PyTree, PyTree]:
    """Mean loss, metrics and gradients over ``A`` micro-batches."""
    grad_fn = jax.value_and_grad(self.loss_and_metrics, has_aux=True)
    num_micro = jax.tree.leaves(micro)[0].shape[0]
    if num_micro == 1:
      (loss, (metrics, rest)), grads = grad_fn(
          params, rest, jax.tree.map(lambda x: x[0], micro), key)
      return loss, metrics, grads, rest

    def body(carry, x):
      loss_sum, metric_sum, grad_sum, rest = carry
      batch, i = x
      (loss, (metrics, rest)), grads = grad_fn(
          params, rest, batch, jax.random.fold_in(key, i))
      add = lambda a, b: jax.tree.map(jnp.add, a, b)  # noqa: E731
      return (loss_sum + loss, add(metric_sum, metrics),
              add(grad_sum, grads), rest), None

    first = jax.tree.map(lambda x: x[0], micro)
    metric_shape = jax.eval_shape(self.loss_and_metrics, params, rest, first,
                                  key)[1][0]
    zeros = lambda t: jax.tree.map(  # noqa: E731
        lambda s: jnp.zeros(s.shape, s.dtype), t)
    carry = (jnp.float32(0), zeros(metric_shape), zeros(params), rest)
    (loss, metrics, grads, rest), _ = jax.lax.scan(
        body, carry, (micro, jnp.arange(num_micro)))
    scale = 1.0 / num_micro
    mean = lambda t: jax.tree.map(lambda x: x * scale, t)  # noqa: E731
    return loss * scale, mean(metrics), mean(grads), rest

  def step(self, state: TrainState, micro: PyTree, key: jax.Array,
           hyper: Mapping[str, jax.Array], data_axis: str | None = None
           ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One update on micro-batches ``[A, ...]`` with ``hyper`` (e.g.
    ``{"learning_rate": lr}``) written into the optimizer state first.

    Inside a ``shard_map`` whose ``data_axis`` splits the batch, the loss,
    metrics, gradients and floating model state (batch statistics) are
    averaged over that axis (``lax.pmean``): the update of the whole batch,
    as in data-parallel training.

    Returns:
      The new state and ``{"loss": ..., **metrics}`` of this step (computed
      before the update).
    """
    loss, metrics, grads, rest = self.grads(state.params, state.rest, micro,
                                            key)
    if data_axis is not None:
      mean = lambda t: jax.tree.map(  # noqa: E731
          lambda x: jax.lax.pmean(x, data_axis) if jnp.issubdtype(
              x.dtype, jnp.floating) else x, t)
      loss, metrics, grads, rest = mean((loss, metrics, grads, rest))
    opt_state = _optimizer.set_driven(state.opt_state, hyper)
    updates, opt_state = self.tx.update(grads, opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, rest, opt_state), {"loss": loss, **metrics}

  # -- checks (abstract evaluation, nothing compiled) -------------------------

  def check_loss(self, parts: _model.ModelParts, batch: PyTree) -> list[str]:
    """Checks ``loss_fn`` on one batch with ``jax.eval_shape``; returns the
    names of its metrics."""
    key = jax.random.key(0)

    def probe(p, r, b):
      out, _ = self.apply(self.loss, p, r, b, key, self.step_mode)
      loss, metrics = _loss.split_output(out, self.loss.name)
      if not isinstance(loss, (jax.Array, np.ndarray, np.generic, int,
                               float)):
        # Refused here, by name: jax would reject e.g. a str as an output
        # without saying it came from the loss function. (The pair keeps
        # check_loss from splitting a tuple loss a second time.)
        _loss.check_loss((loss, None), self.loss.name)
      return loss, metrics
    loss, metrics = jax.eval_shape(probe, parts.params, parts.rest, batch)
    _loss.check_loss(loss, self.loss.name)
    return sorted(metrics)

  def check_eval(self, parts: _model.ModelParts, batch: PyTree) -> list[str]:
    """Checks evaluation on one batch; returns the metric names."""
    key = jax.random.key(0)
    if self.eval_fn is not None:
      out, _ = jax.eval_shape(
          lambda p, r, b: self.apply(self.eval_fn, p, r, b, key,
                                     self.eval_mode),
          parts.params, parts.rest, batch)
      _loss.check_eval(out, self.eval_fn.name)
    metrics = jax.eval_shape(
        lambda p, r, b: self.evaluate(p, r, b, key), parts.params,
        parts.rest, batch)
    return sorted(metrics)

  def logged(self, opt_state: PyTree) -> dict[str, jax.Array]:
    """The LR and momentum the last update used (NaN where none)."""
    return _optimizer.logged_hyperparams(opt_state)


@functools.lru_cache(maxsize=64)
def _cached_engine(*key: Any) -> Engine:
  return Engine(*key)


def get_engine(graphdef: Any, wrt: Any, loss: _loss.LossFn,
               eval_fn: _loss.LossFn | None,
               optimizer: _optimizer.Optimizer, compute_dtype: Any = None,
               step_mode: Any = "train", eval_mode: Any = "eval") -> Engine:
  """A cached :class:`Engine`, or a fresh one for unhashable arguments."""
  key = (graphdef, wrt, loss, eval_fn, optimizer, compute_dtype, step_mode,
         eval_mode)
  try:
    hash(key)
  except TypeError:
    return Engine(*key)
  return _cached_engine(*key)


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


def dtype_name(dtype: Any) -> str | None:
  return None if dtype is None else str(np.dtype(dtype))
