"""The loss contract: what a loss (or eval) function may take and return.

Calls
-----
``loss_fn(model, batch)`` (``model`` an NNX module, or the params pytree of
a params model), or with per-step randomness as a third argument, as Flax's
examples write it:

* a parameter named ``rngs`` receives ``nnx.Rngs(key)`` (Flax NNX's idiom,
  e.g. ``loss_fn(model, batch, rngs)`` of Flax's MNIST example);
* a parameter named ``key``, ``rng``, ``rng_key``, ``prng_key`` or
  ``dropout_rng`` receives a typed PRNG key (``jax.random.key``; Linen code
  passes it on as ``rngs={"dropout": key}``);
* any other third positional parameter without a default receives
  ``nnx.Rngs(key)`` for an NNX model and a key for a params pytree.

The key is fresh for every step, every micro-batch and every copy of the
model, derived from the run's ``seed`` (see :func:`step_key`).

Returns
-------
A scalar loss, or ``(loss, aux)`` with ``aux`` any pytree (logits, a dict of
metrics, ...). The top-level entries of a dict ``aux`` that are real scalars
become metrics, recorded next to the loss; every other entry (arrays,
nested dicts) is ignored. A metric named ``"loss"`` would collide with the
returned loss, so it is recorded as ``"aux_loss"``: the returned loss is
always ``"loss"``, in training and in evaluation.

An ``eval_fn(model, batch[, rngs]) -> dict`` returns metrics only (its
``"loss"`` entry, if any, is the evaluation loss).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from optax_clr import _checks

KEY_NAMES = ("key", "rng", "rng_key", "prng_key", "dropout_rng")
RENAMED_LOSS = "aux_loss"


def _randomness(fn: Callable[..., Any]) -> tuple[str | None, str | None]:
  """``(kind, keyword)``: kind is "rngs", "key", "positional" or None."""
  try:
    params = list(inspect.signature(fn).parameters.values())
  except (TypeError, ValueError):
    return None, None
  for p in params:
    if p.name == "rngs":
      return "rngs", p.name
    if p.name in KEY_NAMES:
      return "key", p.name
  positional = [p for p in params if p.kind in (
      p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
  if len(positional) >= 3:
    return "positional", None
  return None, None


class LossFn:
  """A user's loss or eval function with its calling convention resolved.

  Instances compare equal when they wrap the same function, so that compiled
  programs cached on them are found again.
  """

  def __init__(self, fn: Callable[..., Any], name: str = "loss_fn"):
    self.fn = _checks.check_callable(name, fn)
    self.name = name
    self.kind, self.keyword = _randomness(fn)

  @property
  def takes_randomness(self) -> bool:
    return self.kind is not None

  def __eq__(self, other: object) -> bool:
    return (isinstance(other, LossFn) and other.fn is self.fn
            and other.name == self.name)

  def __hash__(self) -> int:
    return hash((id(self.fn), self.name))

  def __call__(self, model: Any, batch: Any, key: jax.Array) -> Any:
    if self.kind is None:
      return self.fn(model, batch)
    kind = self.kind
    if kind == "positional":
      kind = "rngs" if isinstance(model, nnx.Module) else "key"
    value = nnx.Rngs(key) if kind == "rngs" else key
    if self.keyword is not None:
      return self.fn(model, batch, **{self.keyword: value})
    return self.fn(model, batch, value)


def _is_scalar_metric(value: Any) -> bool:
  if not (hasattr(value, "shape") and hasattr(value, "dtype")):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  return value.shape == () and (
      jnp.issubdtype(value.dtype, jnp.floating)
      or jnp.issubdtype(value.dtype, jnp.integer))


def metrics_of(aux: Any) -> dict[str, Any]:
  """The scalar metrics of an aux pytree (see the module docstring)."""
  if not isinstance(aux, Mapping):
    return {}
  out = {}
  for name, value in aux.items():
    if _is_scalar_metric(value):
      out[RENAMED_LOSS if str(name) == "loss" else str(name)] = value
  return out


def split_output(out: Any, where: str = "loss_fn") -> tuple[Any, dict]:
  """``loss`` or ``(loss, aux)`` -> ``(loss, metrics)``."""
  if isinstance(out, tuple) and not hasattr(out, "_fields"):
    if len(out) != 2:
      raise ValueError(
          f"{where} must return a loss or a (loss, aux) pair, got a tuple of "
          f"length {len(out)}")
    return out[0], metrics_of(out[1])
  return out, {}


def float32_metrics(metrics: Mapping[str, Any]) -> dict[str, jax.Array]:
  return {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


def _shape_text(x: Any) -> str:
  if hasattr(x, "shape") and hasattr(x, "dtype"):
    return f"an array of shape {tuple(x.shape)} {x.dtype}"
  return type(x).__name__


def check_loss(out: Any, where: str = "loss_fn") -> None:
  """Checks an (abstract) loss output: a real floating scalar loss."""
  loss, _ = split_output(out, where)
  if not (hasattr(loss, "shape") and hasattr(loss, "dtype")):
    raise TypeError(
        f"{where} must return a scalar array loss (or (loss, aux)), got "
        f"{_shape_text(loss)}")
  if loss.shape != ():
    raise ValueError(
        f"{where} must return a scalar loss (or (loss, aux)), got "
        f"{_shape_text(loss)}; did you forget .mean()?")
  if not jnp.issubdtype(loss.dtype, jnp.floating):
    raise TypeError(
        f"{where} must return a floating loss, got dtype {loss.dtype}")


def check_eval(out: Any, where: str = "eval_fn") -> list[str]:
  """Checks an (abstract) eval_fn output: a non-empty dict of real scalars.

  Returns:
    The sorted metric names.
  """
  if not isinstance(out, Mapping):
    raise TypeError(
        f"{where} must return a dict of scalar metrics, got "
        f"{_shape_text(out)}")
  bad = [k for k, v in out.items() if not _is_scalar_metric(v)]
  if bad:
    raise ValueError(
        f"{where} metrics must be scalars, got {bad[0]!r}: "
        f"{_shape_text(out[bad[0]])}")
  if not out:
    raise ValueError(f"{where} returned no metrics")
  return sorted(str(k) for k in out)


def eval_metrics(out: Mapping[str, Any]) -> dict[str, Any]:
  """The metrics of an eval_fn output (checked by :func:`check_eval`)."""
  return {str(k): v for k, v in out.items()}


def step_key(seed: jax.Array, copy: jax.Array, step: jax.Array) -> jax.Array:
  """The key of one step of one copy: ``fold_in(fold_in(key(seed), copy),
  step)``; micro-batches fold in their index on top."""
  base = jax.random.key(jnp.asarray(seed, jnp.uint32))
  return jax.random.fold_in(jax.random.fold_in(base, copy), step)


# The evaluation of a copy draws from its own stream, apart from every step's.
EVAL_STREAM = 2**31 - 1


def eval_key(seed: jax.Array, copy: jax.Array) -> jax.Array:
  """The key of a copy's evaluations (eval mode rarely uses it)."""
  return step_key(seed, copy, EVAL_STREAM)
