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

import dataclasses
import functools
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from optax_clr import _checks
from optax_clr.optimizers import _hyperparams
from optax_clr.optimizers import MOMENTUM_NAMES

LEARNING_RATE = _hyperparams.LEARNING_RATE

# Smith (2017) ran the range test with SGD and momentum 0.9. A module
# constant, so that compiled programs cached per optimizer find it again.
DEFAULT_FACTORY = functools.partial(optax.sgd, momentum=0.9)

_FIX = ("pass a factory instead, e.g. optimizer=lambda lr: optax.adamw(lr), "
        "or inject the LR: optimizer=optax.inject_hyperparams(optax.adamw)("
        "learning_rate=1e-3)")


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """An optimizer ready for the engine (hashable: it is part of the
  compiled programs' static arguments, so the same factory or transformation
  finds its compiled programs again).

  Attributes:
    source: a factory ``learning_rate -> GradientTransformation`` (built,
      with ``driven`` injected, when traced) or a built transformation.
    driven: hyperparameters the driver sets before every update (empty for
      ``train``, whose optimizer follows its own schedules).
    placeholders: ``((name, initial value), ...)`` of the driven names.
    description: a JSON-able name for results (``"optax.adamw"``).
    lr_schedule: for a built transformation without injected LR (e.g.
      ``optax.adamw(schedule)``), its LR schedule, to log the LR applied.
  """
  source: Any
  driven: tuple[str, ...]
  placeholders: tuple[tuple[str, float], ...] = ()
  description: str = dataclasses.field(default="", compare=False)
  lr_schedule: Any = dataclasses.field(default=None, compare=False)

  @property
  def tx(self) -> optax.GradientTransformation:
    if isinstance(self.source, optax.GradientTransformation):
      return self.source
    return _factory_tx(self.source, self.driven, dict(self.placeholders))

  def update(self, grads: Any, opt_state: Any, params: Any, *, value: Any,
             value_fn: Callable[[Any], Any]) -> tuple[Any, Any]:
    """``tx.update``; a ``GradientTransformationExtraArgs`` (e.g. with
    ``optax.contrib.reduce_on_plateau``) also gets the loss as ``value``,
    the gradient as ``grad`` and ``value_fn(params)`` (line searches)."""
    tx = self.tx
    if isinstance(tx, optax.GradientTransformationExtraArgs):
      return tx.update(grads, opt_state, params, value=value, grad=grads,
                       value_fn=value_fn)
    return tx.update(grads, opt_state, params)


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
    names = sorted(_hyperparams.find_hyperparams(jax.eval_shape(
        optimizer.init, params))[paths[0]].hyperparams)
    return Optimizer(optimizer, driven, (),
                     "inject_hyperparams(" + ", ".join(names) + ")")
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
  return Optimizer(optimizer, driven, tuple(sorted(placeholders.items())),
                   describe(optimizer))


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
  return Optimizer(tx, (), (), kind, lr_schedule=find_lr_schedule(tx))


def find_lr_schedule(tx: Any) -> Callable[..., Any] | None:
  """The LR inside a built optax transformation such as
  ``optax.adamw(schedule)`` or ``optax.sgd(0.1)``, as a schedule: found in
  the closures of its update function (``scale_by_learning_rate`` keeps a
  schedule as ``learning_rate`` and a constant as ``scale``'s negative
  ``step_size``), or, for an object's method such as ``optax.MultiSteps``,
  in the transformations it holds (its inner optimizer: the LR its
  accumulated updates apply, logged on every micro-step); None when it
  cannot be found."""
  seen: set[int] = set()

  def visit(fn: Any, depth: int) -> Any:
    code = getattr(fn, "__code__", None)
    if code is None or depth > 12 or id(fn) in seen:
      return None
    seen.add(id(fn))
    owner = getattr(fn, "__self__", None)
    if owner is not None:  # a method, e.g. optax.MultiSteps.update: the
      # transformations the object holds (MultiSteps' inner optimizer)
      for item in vars(owner).values() if hasattr(owner, "__dict__") else ():
        found = visit(getattr(item, "update", None), depth + 1)
        if found is not None:
          return found
      return None
    cells = dict(zip(code.co_freevars, fn.__closure__ or ()))
    if "learning_rate" in cells and "m" in cells:  # scale_by_learning_rate
      value = cells["learning_rate"].cell_contents
      return value if callable(value) else None
    step = cells.get("step_size")
    if step is not None and fn.__qualname__.startswith("scale.<locals>"):
      value = step.cell_contents
      if isinstance(value, (int, float)) and value < 0:
        return lambda count, lr=-float(value): jnp.float32(lr)
    for cell in cells.values():
      try:
        value = cell.cell_contents
      except ValueError:
        continue
      for item in value if isinstance(value, (tuple, list)) else (value,):
        found = visit(getattr(item, "update", item), depth + 1)
        if found is not None:
          return found
    return None
  return visit(getattr(tx, "update", None), 0)


def set_driven(opt_state: Any, values: Mapping[str, jax.Array]) -> Any:
  """Writes ``values`` into every inject state that holds them (in-graph)."""
  if not values:
    return opt_state
  return _hyperparams.replace_hyperparams(
      opt_state, None, values,
      lambda old, v: jnp.asarray(v, jnp.asarray(old).dtype))


def applied_hyperparams(opt: Optimizer, before: Any, after: Any
                        ) -> dict[str, jax.Array]:
  """The LR and momentum an update applied (float32; NaN where unknown).

  The LR is the injected value the update used (read from the state after
  it), else ``lr_schedule(count)`` of a built transformation such as
  ``optax.adamw(schedule)`` (the count before the update), times the scale
  of any ``reduce_on_plateau`` in the chain.
  """
  nan = jnp.array(jnp.nan, jnp.float32)
  out = {"learning_rate": nan, "momentum": nan}
  for state in _hyperparams.find_hyperparams(after).values():
    hyper = {k: _hyperparams.unwrap(v) for k, v in state.hyperparams.items()}
    if LEARNING_RATE in hyper and jnp.ndim(hyper[LEARNING_RATE]) == 0:
      out["learning_rate"] = jnp.asarray(hyper[LEARNING_RATE], jnp.float32)
      name = next((n for n in MOMENTUM_NAMES if n in hyper), None)
      if name is not None:
        out["momentum"] = jnp.asarray(hyper[name], jnp.float32)
      break
  else:
    count = _hyperparams.schedule_count(before)
    if opt.lr_schedule is not None:
      out["learning_rate"] = jnp.asarray(
          opt.lr_schedule(0 if count is None else count), jnp.float32)
  return _hyperparams.applied(out, after)


def rescale_record(opt_state: Any) -> dict[str, jax.Array]:
  """``{"lr_scale": s}`` when a ``reduce_on_plateau`` in the chain scales
  the LR the driver sets (for :func:`warn_if_rescaled`); else nothing."""
  scale = _hyperparams.plateau_scale(opt_state)
  return {} if scale is None else {"lr_scale": scale}


def warn_if_rescaled(records: Mapping[str, Any], test: str) -> None:
  """Says when a plateau scaled the LRs a range test or sweep set: its
  results are reported against the LRs it set, not the ones applied."""
  scale = records.get("lr_scale")
  if scale is None:
    return
  scale = np.asarray(scale)[np.asarray(records["recorded"], bool)]
  low = scale[scale != 1.0]
  if low.size:
    warnings.warn(
        f"{test}: the optimizer's reduce_on_plateau scaled the learning rate "
        f"it was set (down to x{float(low.min()):.3g}); the results are "
        "reported against the LRs the test set, not the ones applied",
        RuntimeWarning, stacklevel=3)


def is_adaptive(opt: Optimizer, params: Any) -> bool:
  """Whether the optimizer keeps a second-moment estimate -- a state field
  named ``nu`` (Adam, AdamW, NAdam, RMSProp, AdaBelief...): its LR range
  test blows up far above its best LR (the rule book's divisor)."""
  has_nu = lambda x: "nu" in getattr(x, "_fields", ())  # noqa: E731
  return any(has_nu(x) for x in jax.tree.leaves(
      jax.eval_shape(opt.tx.init, params), is_leaf=has_nu))
