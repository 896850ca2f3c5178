"""Train-step machinery shared by the classic and the parallel LR range test.

Both tests compile one pure function

  step(train_state, micro_batches, lr) -> (train_state, metrics)

and differ only in how they drive it (a ramped LR for one copy, or a fixed LR
per copy for K copies sharded over devices).

* The model is a Flax NNX module, trained on its ``nnx.Param`` leaves (any
  other ``nnx.Variable`` state, e.g. batch statistics or RNG counters, is
  carried along), or a plain params pytree (``loss_fn(params, batch)``).
  Everything works on the ``nnx.split`` state, so the user's module is never
  modified.
* The optimizer is ``optax.inject_hyperparams(factory)(learning_rate=...)``
  and each step writes its LR into ``opt_state.hyperparams["learning_rate"]``
  before the update: the LR is data, not a compiled constant, so one compiled
  program serves every LR and ``vmap``s over LRs (the approach optax's
  maintainers suggest for hyperparameter sweeps).
* Gradient accumulation: the step receives ``[A, ...]`` micro-batches and
  averages gradients, losses and aux metrics over them, which for a mean loss
  equals one step on the ``A``-times larger batch.
* Mixed precision: floating params and floating batch leaves are cast to
  ``compute_dtype`` inside the loss only; the master params, the optimizer
  state, the gradients and the returned loss stay float32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from optax_clr import _checks

PyTree = Any

# The default optimizer factory (Smith 2017 ran the range test with SGD and
# momentum 0.9). A module constant so that the compiled-program cache below
# sees the same object on every call.
default_optimizer = functools.partial(optax.sgd, momentum=0.9)


class TrainState(NamedTuple):
  """What one copy of the model carries from step to step.

  Attributes:
    params: float32 master copy of the trainable leaves.
    rest: the model's other state (NNX non-Param variables); ``None`` for a
      plain params pytree.
    opt_state: state of ``inject_hyperparams(factory)``.
  """
  params: PyTree
  rest: PyTree
  opt_state: PyTree


class ModelParts(NamedTuple):
  """A model taken apart: ``graphdef`` is None for a plain params pytree."""
  graphdef: Any
  params: PyTree
  rest: PyTree


def split_model(model: Any) -> ModelParts:
  """Splits an NNX module into (graphdef, Param state, other state).

  A plain pytree of arrays is returned as the params with no graphdef. Leaves
  are copied to fresh buffers so that nothing done later (e.g. buffer
  donation) can touch the user's arrays.
  """
  if isinstance(model, nnx.Module):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  else:
    leaves = jax.tree.leaves(model)
    if not leaves:
      raise ValueError("model has no parameters (an empty pytree)")
    for leaf in leaves:
      if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
        raise TypeError(
            "model must be an nnx.Module or a pytree of arrays, got a leaf "
            f"of type {type(leaf).__name__}")
    graphdef, params, rest = None, model, None
  if not any(jnp.issubdtype(x.dtype, jnp.floating)
             for x in jax.tree.leaves(params)):
    raise ValueError("model has no floating-point parameters to train")
  copy = lambda t: jax.tree.map(jnp.array, t)  # noqa: E731
  return ModelParts(graphdef, copy(params), copy(rest))


def merge_model(graphdef: Any, params: PyTree, rest: PyTree) -> Any:
  """Inverse of :func:`split_model`: a fresh module, or the params pytree."""
  if graphdef is None:
    return params
  return nnx.merge(graphdef, params, rest, copy=True)


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
  ``like`` (keeps a scan carry's dtypes fixed under mixed precision)."""
  return jax.tree.map(lambda x, y: jnp.asarray(x, y.dtype), tree, like)


def select_tree(pred: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
  """``jnp.where(pred, a, b)`` leaf by leaf, for a scalar ``pred``."""
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def split_loss_output(out: Any, where: str = "loss_fn") -> tuple[Any, dict]:
  """``loss`` or ``(loss, aux_dict)`` -> ``(loss, aux_dict)``."""
  if isinstance(out, tuple):
    if len(out) != 2:
      raise ValueError(
          f"{where} must return a loss or a (loss, aux) pair, got a tuple of "
          f"length {len(out)}")
    loss, aux = out
    if aux is None:
      aux = {}
    if not isinstance(aux, Mapping):
      raise TypeError(
          f"{where} must return (loss, aux) with aux a dict of scalar "
          f"metrics, got aux of type {type(aux).__name__}")
    return loss, dict(aux)
  return out, {}


def float32_metrics(metrics: Mapping[str, Any]) -> dict[str, jax.Array]:
  return {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


def default_unroll() -> int:
  """Default ``unroll`` of the ``lax.scan`` over the steps of a chunk: 1.

  Measured on XLA:CPU (2 cores, jax 0.10.2) with the bundled CNN on digits,
  batch 64, per step: Python loop of a jitted step 2.7-3.7 ms; ``lax.scan``
  unroll=1 2.4 ms, unroll=2 2.4 ms, unroll=5 2.4 ms, unroll=10 2.4 ms;
  ``lax.fori_loop`` 2.4 ms. Unrolling buys nothing here while compile time
  grows with every unrolled copy of the step (1.2 s at 1, 1.5 s at 2, 2.6 s
  at 5, 5.1 s at 10 for the whole first call). On GPU/TPU a loop iteration
  costs a few microseconds, so the same choice holds there.
  """
  return 1


class Engine:
  """The pure step function of one model/loss/optimizer combination.

  Instances are cached (:func:`get_engine`) on the identity of the graphdef,
  the loss and eval functions, the optimizer factory and the static settings,
  so repeated range tests of the same model reuse compiled programs.
  """

  def __init__(self, graphdef: Any, loss_fn: Callable[..., Any],
               optimizer: Callable[..., optax.GradientTransformation],
               eval_fn: Callable[..., Any] | None, compute_dtype: Any,
               unroll: int):
    self.graphdef = graphdef
    self.loss_fn = loss_fn
    self.optimizer = optimizer
    self.eval_fn = eval_fn
    self.compute_dtype = compute_dtype
    self.unroll = unroll

    # A named wrapper so that only learning_rate is injected: the factory's
    # other arguments (momentum, nesterov...) stay whatever the user bound.
    def factory(learning_rate):
      return optimizer(learning_rate)
    self.tx = optax.inject_hyperparams(factory)(learning_rate=1e-3)

  # -- model application ------------------------------------------------------

  def _apply(self, fn: Callable[..., Any], params: PyTree, rest: PyTree,
             batch: PyTree, *, train: bool) -> tuple[Any, PyTree]:
    """Calls ``fn(model, batch)`` (or ``fn(params, batch)``) in
    ``compute_dtype``; returns its output and the updated non-Param state."""
    params = cast_floating(params, self.compute_dtype)
    batch = cast_floating(batch, self.compute_dtype)
    if self.graphdef is None:
      return fn(params, batch), rest
    # copy=True: fresh Variables that belong to this trace, so the forward
    # pass may update them (a State holds the Variable objects themselves,
    # which were created in an outer trace).
    model = nnx.merge(self.graphdef, params, rest, copy=True)
    # Train mode for the range test's steps, eval mode (Dropout off,
    # BatchNorm on running averages) for validation; modules without these
    # attributes are unaffected.
    if train:
      model.train()
    else:
      model.eval()
    out = fn(model, batch)
    _, _, new_rest = nnx.split(model, nnx.Param, ...)
    return out, cast_like(new_rest, rest)

  def loss_and_aux(self, params: PyTree, rest: PyTree, batch: PyTree
                   ) -> tuple[jax.Array, tuple[dict, PyTree]]:
    """float32 loss and ``(aux, new_rest)``; differentiable in ``params``."""
    out, new_rest = self._apply(self.loss_fn, params, rest, batch, train=True)
    loss, aux = split_loss_output(out)
    return jnp.asarray(loss, jnp.float32), (float32_metrics(aux), new_rest)

  def evaluate(self, params: PyTree, rest: PyTree, batch: PyTree
               ) -> dict[str, jax.Array]:
    """Validation metrics of one batch (float32 scalars).

    ``eval_fn(model, batch) -> dict``; by default ``loss_fn``'s aux metrics
    plus ``"loss"``.
    """
    if self.eval_fn is None:
      out, _ = self._apply(self.loss_fn, params, rest, batch, train=False)
      loss, aux = split_loss_output(out)
      metrics = {**aux, "loss": loss}
    else:
      metrics, _ = self._apply(self.eval_fn, params, rest, batch, train=False)
      if not isinstance(metrics, Mapping):
        raise TypeError(
            "eval_fn must return a dict of scalar metrics, got "
            f"{type(metrics).__name__}")
    return float32_metrics(metrics)

  def evaluate_stack(self, params: PyTree, rest: PyTree, val: PyTree
                     ) -> dict[str, jax.Array]:
    """Mean metrics over a stack of validation batches ``[V, ...]``."""
    per_batch = jax.lax.map(lambda b: self.evaluate(params, rest, b), val)
    return {k: v.mean(0) for k, v in per_batch.items()}

  # -- training ---------------------------------------------------------------

  def init(self, params: PyTree, rest: PyTree) -> TrainState:
    return TrainState(params, rest, self.tx.init(params))

  def grads(self, params: PyTree, rest: PyTree, micro: PyTree
            ) -> tuple[jax.Array, dict, PyTree, PyTree]:
    """Mean loss, aux and gradients over ``A`` micro-batches ``[A, ...]``."""
    grad_fn = jax.value_and_grad(self.loss_and_aux, has_aux=True)
    num_micro = jax.tree.leaves(micro)[0].shape[0]
    if num_micro == 1:
      (loss, (aux, rest)), grads = grad_fn(
          params, rest, jax.tree.map(lambda x: x[0], micro))
      return loss, aux, grads, rest

    def body(carry, batch):
      loss_sum, aux_sum, grad_sum, rest = carry
      (loss, (aux, rest)), grads = grad_fn(params, rest, batch)
      add = lambda a, b: jax.tree.map(jnp.add, a, b)  # noqa: E731
      return (loss_sum + loss, add(aux_sum, aux), add(grad_sum, grads),
              rest), None

    first = jax.tree.map(lambda x: x[0], micro)
    aux_shape = jax.eval_shape(self.loss_and_aux, params, rest, first)[1][0]
    zeros = lambda t: jax.tree.map(  # noqa: E731
        lambda s: jnp.zeros(s.shape, s.dtype), t)
    carry = (jnp.float32(0), zeros(aux_shape), zeros(params), rest)
    (loss, aux, grads, rest), _ = jax.lax.scan(
        body, carry, micro, unroll=min(self.unroll, num_micro))
    scale = 1.0 / num_micro
    mean = lambda t: jax.tree.map(lambda x: x * scale, t)  # noqa: E731
    return loss * scale, mean(aux), mean(grads), rest

  def step(self, state: TrainState, micro: PyTree, lr: jax.Array
           ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step at learning rate ``lr`` on micro-batches
    ``[A, ...]``; returns the new state and ``{"loss": ..., **aux}``."""
    loss, aux, grads, rest = self.grads(state.params, state.rest, micro)
    opt_state = set_learning_rate(state.opt_state, lr)
    updates, opt_state = self.tx.update(grads, opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, rest, opt_state), {"loss": loss, **aux}


def set_learning_rate(opt_state: Any, lr: jax.Array) -> Any:
  """Writes ``lr`` into an ``inject_hyperparams`` state (functionally)."""
  hyper = opt_state.hyperparams
  old = hyper["learning_rate"]
  return opt_state._replace(hyperparams={
      **hyper, "learning_rate": jnp.asarray(lr, old.dtype)})


@functools.lru_cache(maxsize=32)
def get_engine(graphdef: Any, loss_fn: Callable[..., Any],
               optimizer: Callable[..., Any], eval_fn: Any,
               compute_dtype: Any, unroll: int) -> Engine:
  """A cached :class:`Engine` (compiled programs hang off the instance)."""
  return Engine(graphdef, loss_fn, optimizer, eval_fn, compute_dtype, unroll)


def engine_for(graphdef: Any, loss_fn: Callable[..., Any],
               optimizer: Callable[..., Any], eval_fn: Any,
               compute_dtype: Any, unroll: int) -> Engine:
  """:func:`get_engine`, falling back to a fresh Engine for unhashable
  arguments (e.g. a callable object that defines ``__eq__``)."""
  key = (graphdef, loss_fn, optimizer, eval_fn, compute_dtype, unroll)
  try:
    hash(key)
  except TypeError:
    return Engine(*key)
  return get_engine(*key)


# ----------------------------------------------------------------------------
# Up-front checks shared by both tests.


def check_compute_dtype(compute_dtype: Any) -> Any:
  """None or a floating dtype (e.g. ``jnp.bfloat16``)."""
  if compute_dtype is None:
    return None
  try:
    dtype = jnp.dtype(compute_dtype)
  except TypeError as e:
    raise TypeError(
        f"compute_dtype must be None or a floating dtype, got "
        f"{compute_dtype!r}") from e
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
        f"compute_dtype must be a floating dtype, got {dtype}")
  return dtype


def check_unroll(unroll: Any) -> int:
  if unroll is None:
    return default_unroll()
  if unroll is True:
    raise ValueError("unroll must be an integer >= 1 (use steps_per_chunk for "
                     "a fully unrolled chunk), got True")
  return _checks.check_int("unroll", unroll, low=1)


def check_optimizer(optimizer: Any) -> Callable[..., Any]:
  """The factory, after checking it builds a GradientTransformation."""
  if optimizer is None:
    return default_optimizer
  _checks.check_callable("optimizer", optimizer)
  try:
    tx = optimizer(1e-3)
  except Exception as e:  # the message says what the factory must accept
    raise TypeError(
        "optimizer must be a factory learning_rate -> "
        f"optax.GradientTransformation; optimizer(1e-3) raised {e!r}") from e
  if not (hasattr(tx, "init") and hasattr(tx, "update")):
    raise TypeError(
        "optimizer must be a factory learning_rate -> "
        f"optax.GradientTransformation, got {type(tx).__name__} from "
        "optimizer(1e-3)")
  return optimizer


def check_loss_shapes(engine: Engine, parts: ModelParts, batch: PyTree,
                      ) -> None:
  """Checks with ``jax.eval_shape`` (no compilation) that ``loss_fn``
  returns a floating scalar and a dict of scalar metrics on ``batch``."""
  out, _ = jax.eval_shape(
      lambda p, r, b: engine._apply(engine.loss_fn, p, r, b, train=True),
      parts.params, parts.rest, batch)
  loss, aux = split_loss_output(out)
  if not hasattr(loss, "shape"):
    raise TypeError(
        f"loss_fn must return a scalar array loss, got {type(loss).__name__}")
  if loss.shape != ():
    raise ValueError(
        f"loss_fn must return a scalar loss, got shape {loss.shape}")
  if not jnp.issubdtype(loss.dtype, jnp.floating):
    raise TypeError(f"loss_fn must return a floating loss, got {loss.dtype}")
  for name, value in aux.items():
    if getattr(value, "shape", None) != ():
      raise ValueError(
          f"loss_fn's aux metrics must be scalars, got {name!r} of shape "
          f"{getattr(value, 'shape', type(value).__name__)}")


def check_eval_shapes(engine: Engine, parts: ModelParts, batch: PyTree
                      ) -> list[str]:
  """Checks that evaluation returns scalar metrics; returns their names."""
  metrics = jax.eval_shape(engine.evaluate, parts.params, parts.rest, batch)
  for name, value in metrics.items():
    if value.shape != ():
      raise ValueError(
          f"eval_fn metrics must be scalars, got {name!r} of shape "
          f"{value.shape}")
  if not metrics:
    raise ValueError("eval_fn returned no metrics")
  return sorted(metrics)


def dtype_name(dtype: Any) -> str | None:
  return None if dtype is None else str(np.dtype(dtype))
