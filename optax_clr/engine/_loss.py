"""The loss contract: how a loss (or eval) function is called, what it returns.

Calls: read from the signature, never guessed
----------------------------------------------
``loss_fn(model, [state,] *data, [rngs= | key=])``:

* ``model``: the first parameter: an NNX module, a pytree (an Equinox
  module, Linen params) -- the model being trained;
* ``state``: the second, for a model declared with
  :func:`~optax_clr.with_state`;
* the data: the remaining positional parameters without a default. One
  receives the whole batch (any pytree); ``n > 1`` of them (``loss(params,
  x, y)``) receive the ``n`` elements of a tuple batch, spread (other
  batches are refused with the rule);
* randomness, by name only: a parameter named ``rngs`` receives
  ``nnx.Rngs(key)`` (Flax NNX's idiom, ``loss_fn(model, batch, rngs)``); one
  named ``key``, ``rng``, ``rng_key``, ``prng_key`` or ``*_rng``
  (``dropout_rng``, the VAE's ``z_rng``) a typed PRNG key (Equinox and
  Linen code pass it on). The key is fresh for
  every step, micro-batch and copy, derived from the run's ``seed``.

Returns
-------
* a scalar loss, or ``(loss, aux)``: the top-level real scalars of a dict
  ``aux`` are metrics, recorded next to the loss (a metric named ``"loss"``
  is recorded as ``"aux_loss"``); an array ``aux`` (logits) is not used;
* with declared state: ``(loss, new_state)`` or ``(loss, (new_state,
  aux))``; ``new_state`` must match the state's paths, shapes, dtypes (and,
  under explicit sharding, shardings), or be a dict replacing some of its
  entries -- what Linen's ``apply(..., mutable=["batch_stats"])`` returns
  for a state ``{"batch_stats": ...}`` or a Flax ``TrainState``.

State is never dropped in silence: without declared state, an ``aux``
that looks like state -- an ``eqx.nn.State``, or a dict holding arrays that
are not scalars (Linen's ``{"batch_stats": ...}``) -- is refused, naming
:func:`~optax_clr.with_state`.

An ``eval_fn(model, [state,] *data, [rngs=])`` returns a dict of scalar
metrics (its ``"loss"`` entry, if any, is the evaluation loss).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optax_clr import _checks
from optax_clr.engine import _model

KEY_NAMES = ("key", "rng", "rng_key", "prng_key")
KEY_SUFFIX = "_rng"  # Linen's names for the key of one use: z_rng, noise_rng


def is_key_name(name: str) -> bool:
  """A parameter that receives a PRNG key, by its name."""
  return name in KEY_NAMES or (name.endswith(KEY_SUFFIX)
                               and len(name) > len(KEY_SUFFIX))
RENAMED_LOSS = "aux_loss"
RULE = ("loss_fn(model, [state,] batch | *batch_elements, [rngs= | key=])")


@dataclasses.dataclass(frozen=True)
class LossFn:
  """A user's loss or eval function with its calling convention resolved
  (hashable: part of the compiled programs' static arguments).

  Attributes:
    fn: the function.
    name: ``"loss_fn"`` or ``"eval_fn"``, for messages.
    random: ``"rngs"``, ``"key"`` or None: what its randomness parameter
      takes.
    random_name: the name of that parameter.
    spread: the number of data parameters a tuple batch is spread over
      (1: the batch is passed whole).
    stateful: it takes the declared state after the model.
  """
  fn: Callable[..., Any]
  name: str
  random: str | None
  random_name: str | None
  spread: int
  stateful: bool

  def __call__(self, model: Any, state: Any, batch: Any,
               key: jax.Array) -> Any:
    args = [model] + ([state] if self.stateful else [])
    args += list(batch) if self.spread > 1 else [batch]
    if self.random is None:
      return self.fn(*args)
    value = nnx.Rngs(key) if self.random == "rngs" else key
    return self.fn(*args, **{self.random_name: value})


def _parameters(fn: Callable[..., Any]) -> list[inspect.Parameter] | None:
  try:
    return list(inspect.signature(fn).parameters.values())
  except (TypeError, ValueError):
    return None


def resolve(fn: Any, name: str, stateful: bool, batch: Any) -> LossFn:
  """Reads ``fn``'s signature (module docstring) against an example batch.

  Raises:
    TypeError: ``fn`` is not callable, or its data parameters do not fit the
      batch; the message states the rule.
  """
  fn = _checks.check_callable(name, fn)
  params = _parameters(fn)
  if params is None:  # a builtin or C function: the plain call
    return LossFn(fn, name, None, None, 1, stateful)
  random = random_name = None
  for p in params:
    if p.name == "rngs" or is_key_name(p.name):
      random, random_name = ("rngs" if p.name == "rngs" else "key"), p.name
      break
  positional = [p for p in params
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                and p.name != random_name]
  varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
  lead = 2 if stateful else 1
  required = [p for p in positional[lead:] if p.default is p.empty]
  spread = len(required)
  if len(positional) < lead and not varargs:
    what = "the model and the state" if stateful else "the model"
    raise TypeError(f"{name} must take {what} first ({RULE}); its "
                    f"signature is {inspect.signature(fn)}")
  if spread == 0:
    if not varargs and len(positional) <= lead:
      raise TypeError(
          f"{name} takes no batch: {RULE}; its signature is "
          f"{inspect.signature(fn)}")
    spread = 1
  if spread > 1 and not (isinstance(batch, (tuple, list)) and
                         len(batch) == spread):
    names = ", ".join(p.name for p in required)
    got = (f"a {type(batch).__name__} of {len(batch)}" if isinstance(
        batch, (tuple, list)) else _checks.describe(batch))
    hint = ""
    if not stateful and any("state" in p.name for p in required):
      hint = ("; if its first argument after the model is state, declare it: "
              "model=optax_clr.with_state(model, state)")
    raise TypeError(
        f"{name} takes {spread} data arguments ({names}) after the model, so "
        f"each batch must be a tuple of {spread} (spread over them), got "
        f"{got}; rule: {RULE}{hint}")
  return LossFn(fn, name, random, random_name, spread, stateful)


def _is_scalar(value: Any) -> bool:
  if not (hasattr(value, "shape") and hasattr(value, "dtype")):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  return value.shape == () and (
      jnp.issubdtype(value.dtype, jnp.floating)
      or jnp.issubdtype(value.dtype, jnp.integer))


def metrics_of(aux: Any) -> dict[str, Any]:
  """The scalar metrics of an aux (see the module docstring)."""
  if not isinstance(aux, Mapping):
    return {}
  return {RENAMED_LOSS if str(k) == "loss" else str(k): v
          for k, v in aux.items() if _is_scalar(v)}


def _state_like(aux: Any) -> str | None:
  """Where ``aux`` holds what looks like model state, in words."""
  eqx = sys.modules.get("equinox")  # optional: only if the user has it
  found = []

  def visit(x, path):
    if eqx is not None and isinstance(x, eqx.nn.State):
      found.append(f"an eqx.nn.State at aux{path}")
      return
    if isinstance(x, Mapping):
      arrays = [k for k, v in x.items() if any(
          np.ndim(leaf) > 0 for leaf in jax.tree.leaves(v))]
      if arrays:
        found.append(f"a dict with non-scalar entries {sorted(map(str, arrays))[:3]} "
                     f"at aux{path}")
        return
    if isinstance(x, (tuple, list)):
      for i, v in enumerate(x):
        visit(v, f"{path}[{i}]")
  visit(aux, "")
  return found[0] if found else None


def split_output(out: Any, fn: LossFn, state: Any = None
                 ) -> tuple[Any, dict[str, Any], Any]:
  """``(loss, metrics, new_state)`` of a loss output (abstract or real).

  Raises:
    ValueError: the output breaks the contract (module docstring); the
      message names what was returned and the rule.
  """
  where = fn.name
  pair = isinstance(out, tuple) and not hasattr(out, "_fields")
  if pair and len(out) != 2:
    raise ValueError(f"{where} must return a loss or a (loss, aux) pair, got "
                     f"a tuple of length {len(out)}")
  if fn.stateful:
    if not pair:
      raise ValueError(
          f"{where}: the model has declared state (with_state), so it must "
          "return (loss, new_state) or (loss, (new_state, aux)); got "
          f"{_checks.describe(out)}")
    metrics, new_state = _split_state(out[1], state, where)
    return out[0], metrics, new_state
  if not pair:
    return out, {}, None
  loss, aux = out
  found = _state_like(aux)
  if found is not None:
    raise ValueError(
        f"{where} returned {found}, which looks like model state; it would be "
        "dropped. Declare it: model=optax_clr.with_state(model, state), with "
        f"the loss returning (loss, new_state) -- or return only scalar "
        f"metrics (or an array) as aux")
  return loss, metrics_of(aux), None


def _replaced(state: Any, update: Any) -> Any:
  """``state`` with some of its entries replaced by the mapping ``update``
  (Linen's ``apply(..., mutable=[...])`` returns the collections it
  mutated, ``{"batch_stats": ...}``), or None when ``update`` is not such a
  mapping: ``state`` a dict holding every key of ``update``, or a dataclass
  (a Flax ``TrainState``) with a field of each name."""
  if not isinstance(update, Mapping) or not update:
    return None
  if isinstance(state, Mapping):
    if not set(update) <= set(state):
      return None
    merged = {**state, **update}
    return merged if type(state) is dict else type(state)(merged)
  if dataclasses.is_dataclass(state) and not isinstance(state, type):
    names = {f.name for f in dataclasses.fields(state)}
    if all(isinstance(k, str) for k in update) and set(update) <= names:
      replace = getattr(state, "replace", None)
      return (replace(**update) if callable(replace)
              else dataclasses.replace(state, **update))
  return None


def _split_state(rest: Any, state: Any, where: str) -> tuple[dict, Any]:
  """``(metrics, new_state)`` of what follows the loss: ``new_state`` or
  ``(new_state, aux)``; ``new_state`` may also be a mapping that replaces
  some entries of the state (:func:`_replaced`)."""
  want = jax.tree.structure(state)
  pair = isinstance(rest, tuple) and len(rest) == 2
  if jax.tree.structure(rest) == want:
    new_state, aux = rest, None
  elif pair and jax.tree.structure(rest[0]) == want:
    new_state, aux = rest
  elif (merged := _replaced(state, rest)) is not None:
    new_state, aux = merged, None
  elif pair and (merged := _replaced(state, rest[0])) is not None:
    new_state, aux = merged, rest[1]
  else:
    got = rest[0] if pair else rest
    raise ValueError(
        f"{where} must return (loss, new_state) or (loss, (new_state, aux)) "
        "with new_state shaped like the declared state (or a dict replacing "
        f"some of its entries): {_model.difference(got, state)}")
  detail = _model.difference(new_state, state)
  if detail is not None:
    raise ValueError(f"{where} returned a new_state unlike the declared "
                     f"state: {detail}")
  return metrics_of(aux), new_state


def float32_metrics(metrics: Mapping[str, Any]) -> dict[str, jax.Array]:
  return {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


def _shape_text(x: Any) -> str:
  if hasattr(x, "shape") and hasattr(x, "dtype"):
    return f"an array of shape {tuple(x.shape)} {x.dtype}"
  return type(x).__name__


def check_loss(loss: Any, where: str = "loss_fn") -> None:
  """Checks an (abstract) loss: a real floating scalar."""
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
  """Checks an (abstract) eval_fn output: a non-empty dict of real scalars;
  returns the sorted metric names."""
  if not isinstance(out, Mapping):
    raise TypeError(
        f"{where} must return a dict of scalar metrics, got "
        f"{_shape_text(out)}")
  bad = [k for k, v in out.items() if not _is_scalar(v)]
  if bad:
    raise ValueError(
        f"{where} metrics must be scalars, got {bad[0]!r}: "
        f"{_shape_text(out[bad[0]])}")
  if not out:
    raise ValueError(f"{where} returned no metrics")
  return sorted(str(k) for k in out)


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
