"""The optimizer a driver was given, made into one the engine can drive.

The range tests set hyperparameters (the learning rate; in a grid sweep also
e.g. ``weight_decay``) before every update; ``train`` follows the schedules
inside the optimizer. Both store the values in an
``optax.inject_hyperparams`` state, so they are data, not compiled constants:
one compiled program serves every LR and ``vmap``s over LRs (the approach
optax's maintainers suggest for hyperparameter sweeps, optax #932).

What the range tests accept as ``optimizer``:

* a factory ``learning_rate -> optax.GradientTransformation`` (e.g.
  ``optax.adam``, ``functools.partial(optax.sgd, momentum=0.9)``,
  ``lambda lr: optax.chain(optax.clip(1.0), optax.adamw(lr))``);
* a transformation whose state holds an injected, unscheduled
  ``learning_rate`` (``optax.inject_hyperparams(optax.adamw)(
  learning_rate=1e-3)``, alone or inside ``optax.chain``/``MultiSteps``);
* a ``flax.nnx.Optimizer`` or its ``tx``, under the same rule.

A transformation that closes over its learning rate (``optax.adamw(1e-3)``)
cannot be driven; the error shows the one-line fix.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from optax_clr import _checks
from optax_clr.optimizers import _hyperparams
from optax_clr.optimizers import MOMENTUM_NAMES

LEARNING_RATE = "learning_rate"

# Smith (2017) ran the range test with SGD and momentum 0.9. A module
# constant, so that compiled programs cached per optimizer find it again.
DEFAULT_FACTORY = functools.partial(optax.sgd, momentum=0.9)

_FIX = ("pass a factory instead, e.g. optimizer=lambda lr: optax.adamw(lr), "
        "or inject the LR: optimizer=optax.inject_hyperparams(optax.adamw)("
        "learning_rate=1e-3)")


class Optimizer(NamedTuple):
  """An optimizer ready for the engine.

  Attributes:
    tx: the transformation whose state holds the driven hyperparameters.
    description: a JSON-able name for results (``"optax.adamw"``).
    driven: hyperparameters the driver sets before every update (empty for
      ``train``, whose optimizer follows its own schedules).
  """
  tx: optax.GradientTransformation
  description: str
  driven: tuple[str, ...]


def describe(fn: Any) -> str:
  """A readable, JSON-able name of an optimizer factory or object."""
  if isinstance(fn, functools.partial):
    args = [describe(a) if callable(a) else repr(a) for a in fn.args]
    args += [f"{k}={v!r}" for k, v in fn.keywords.items()]
    return f"{describe(fn.func)}({', '.join(args)})"
  name = getattr(fn, "__qualname__", None)
  if name == "<lambda>" or (name or "").endswith(".<lambda>"):
    try:  # the lambda's own text says what it builds
      source = " ".join(inspect.getsource(fn).split())
      start = source.index("lambda")
      return _balanced(source[start:])
    except (OSError, TypeError, ValueError):
      pass
  if name is None:
    return type(fn).__name__
  module = getattr(fn, "__module__", None) or ""
  if module.startswith("optax"):
    module = "optax"
  return f"{module}.{name}" if module else name


def _balanced(text: str) -> str:
  """The lambda expression at the start of ``text``, up to the comma or
  bracket that closes its context."""
  depth = 0
  for i, ch in enumerate(text):
    if ch in "([{":
      depth += 1
    elif ch in ")]}":
      if depth == 0:
        return text[:i].strip()
      depth -= 1
    elif ch == "," and depth == 0:
      return text[:i].strip()
  return text.strip()


def _factory_tx(factory: Callable[..., Any], driven: Sequence[str],
                placeholders: Mapping[str, float]
                ) -> optax.GradientTransformation:
  """``inject_hyperparams`` over a factory, injecting exactly ``driven``
  (the factory's other arguments stay whatever the user bound)."""
  def build(**hp):
    lr = hp.pop(LEARNING_RATE)
    return factory(lr, **hp)
  build.__signature__ = inspect.Signature(
      [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in driven])
  return optax.inject_hyperparams(build)(
      **{n: placeholders.get(n, 0.0) for n in driven})


def _unwrap_nnx(optimizer: Any) -> Any:
  """An ``nnx.Optimizer``'s ``tx``; an ``optax.MultiSteps`` (which is no
  ``GradientTransformation`` subclass) as its transformation."""
  if isinstance(optimizer, nnx.Optimizer):
    optimizer = optimizer.tx
  if isinstance(optimizer, optax.MultiSteps):
    return optimizer.gradient_transformation()
  return optimizer


def _inject_paths(tx: optax.GradientTransformation, params: Any,
                  driven: Sequence[str]) -> list[str]:
  """Paths of the inject states that hold every driven name, unscheduled."""
  state = jax.eval_shape(tx.init, params)
  paths = []
  for path, x in _hyperparams.find_hyperparams(state).items():
    scheduled = set(getattr(x, "hyperparams_states", {}))
    names = set(x.hyperparams)
    if all(n in names for n in driven):
      bad = [n for n in driven if n in scheduled]
      if bad:
        raise ValueError(
            f"optimizer: its {bad[0]} is a schedule, which a range test "
            f"cannot override; {_FIX}")
      paths.append(path)
  return paths


def for_range_test(optimizer: Any, params: Any,
                   driven: Sequence[str] = (LEARNING_RATE,),
                   placeholders: Mapping[str, float] | None = None
                   ) -> Optimizer:
  """Resolves a range test's ``optimizer`` (see the module docstring).

  Args:
    optimizer: None (SGD, momentum 0.9), a factory, an injected
      transformation, an ``nnx.Optimizer`` or its ``tx``.
    params: the trained params (abstract shapes suffice), to look inside the
      transformation's state.
    driven: the hyperparameters the test sets, ``learning_rate`` first.
    placeholders: initial values of the driven names (overwritten before
      the first update; they fix the stored dtype).

  Raises:
    TypeError, ValueError: with the one-line fix, when it cannot be driven.
  """
  driven = tuple(driven)
  placeholders = {LEARNING_RATE: 1e-3, **(placeholders or {})}
  if optimizer is None:
    optimizer = DEFAULT_FACTORY
  optimizer = _unwrap_nnx(optimizer)
  if isinstance(optimizer, optax.GradientTransformation):
    paths = _inject_paths(optimizer, params, driven)
    if not paths:
      raise TypeError(
          "optimizer: a range test sets the learning rate at every step, but "
          "this optax.GradientTransformation fixes it inside (no injected "
          f"{' and '.join(driven)} in its state); {_FIX}")
    return Optimizer(optimizer, "inject_hyperparams(" + ", ".join(
        sorted(_hyperparams.find_hyperparams(jax.eval_shape(
            optimizer.init, params))[paths[0]].hyperparams)) + ")", driven)
  if not callable(optimizer):
    raise TypeError(
        "optimizer must be a factory learning_rate -> "
        "optax.GradientTransformation, an injected transformation or an "
        f"nnx.Optimizer, got {_checks.describe(optimizer)}")
  try:
    built = optimizer(placeholders[LEARNING_RATE])
  except Exception as e:  # the message says what the factory must accept
    raise TypeError(
        "optimizer must be a factory learning_rate -> "
        f"optax.GradientTransformation; optimizer(1e-3) raised "
        f"{type(e).__name__}: {e}") from e
  if not (hasattr(built, "init") and hasattr(built, "update")):
    raise TypeError(
        "optimizer must be a factory learning_rate -> "
        f"optax.GradientTransformation, got {type(built).__name__} from "
        "optimizer(1e-3)")
  return Optimizer(_cached_factory_tx(optimizer, driven, placeholders),
                   describe(optimizer), driven)


@functools.lru_cache(maxsize=64)
def _factory_tx_by_key(factory, driven, placeholders):
  return _factory_tx(factory, driven, dict(placeholders))


def _cached_factory_tx(factory: Callable[..., Any], driven: tuple[str, ...],
                       placeholders: Mapping[str, float]
                       ) -> optax.GradientTransformation:
  """The same transformation object for the same factory, so that engines
  (and their compiled programs) cached on it are found again."""
  key = tuple(sorted(placeholders.items()))
  try:
    return _factory_tx_by_key(factory, driven, key)
  except TypeError:  # an unhashable factory
    return _factory_tx(factory, driven, placeholders)


def for_training(optimizer: Any) -> Optimizer:
  """``train``'s optimizer: a transformation or an ``nnx.Optimizer``, used
  as it is (its schedules drive the LR and momentum)."""
  tx = _unwrap_nnx(optimizer)
  if not isinstance(tx, optax.GradientTransformation):
    hint = ""
    if callable(tx):
      hint = ("; train follows the optimizer's own schedules, so pass a "
              "built transformation, e.g. optax_clr.cyclic_sgd(schedule, "
              "0.9) or optax.adamw(schedule)")
    raise TypeError(
        "optimizer must be an optax.GradientTransformation or an "
        f"nnx.Optimizer, got {_checks.describe(tx)}{hint}")
  kind = ("nnx.Optimizer" if isinstance(optimizer, nnx.Optimizer)
          else "optax.GradientTransformation")
  return Optimizer(tx, kind, ())


def set_driven(opt_state: Any, values: Mapping[str, jax.Array]) -> Any:
  """Writes ``values`` into every inject state that holds them (in-graph)."""
  if not values:
    return opt_state
  return _hyperparams.replace_hyperparams(
      opt_state, None, values,
      lambda old, v: jnp.asarray(v, jnp.asarray(old).dtype))


def logged_hyperparams(opt_state: Any) -> dict[str, jax.Array]:
  """``learning_rate`` and ``momentum`` (``momentum`` or ``b1``) as stored
  after an update (the values it used), float32; NaN where there is none."""
  nan = jnp.array(jnp.nan, jnp.float32)
  found = _hyperparams.find_hyperparams(opt_state)
  out = {"learning_rate": nan, "momentum": nan}
  for state in found.values():
    hyper = {k: _hyperparams.unwrap(v) for k, v in state.hyperparams.items()}
    if LEARNING_RATE in hyper and jnp.ndim(hyper[LEARNING_RATE]) == 0:
      out["learning_rate"] = jnp.asarray(hyper[LEARNING_RATE], jnp.float32)
      name = next((n for n in MOMENTUM_NAMES if n in hyper), None)
      if name is not None:
        out["momentum"] = jnp.asarray(hyper[name], jnp.float32)
      break
  return out
