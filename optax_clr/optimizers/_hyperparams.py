"""Reading and writing the hyperparameters held in an optimizer state.

``optax.inject_hyperparams`` keeps every numeric hyperparameter in an
``InjectHyperparamsState`` (``InjectStatefulHyperparamsState`` since optax
0.2.5) somewhere inside the optimizer state: at the top, inside an
``optax.chain`` or ``optax.MultiSteps``, or inside a ``flax.nnx.Optimizer``'s
``opt_state`` (where each leaf is an nnx Variable). The functions here find
those states by their tree path (``jax.tree_util.keystr``, e.g. ``"[1]"`` for
the second element of a chain), so a state with several of them (a chain of
two injected transformations, ``optax.multi_transform``) is addressed with
``path=``.

Why ``optax.tree_utils.tree_get(state, "learning_rate")`` fails for a
scheduled LR: ``inject_hyperparams`` keeps a scheduled hyperparameter twice,
its current value in ``hyperparams`` and its schedule's state in
``hyperparams_states``, and ``tree_get`` refuses a name that matches several
leaves ("Found multiple values"). :func:`get_hyperparams` reads
``hyperparams`` only.

An optimizer built without ``inject_hyperparams``, e.g.
``optax.adamw(learning_rate=schedule)``, keeps only a step count
(``ScaleByScheduleState.count``): the value is ``schedule(count - 1)`` after
``count >= 1`` updates. :func:`get_hyperparams` computes it when given the
schedule (``schedules={"learning_rate": schedule}``) and otherwise explains
this.

``optax.contrib.reduce_on_plateau`` scales every update by its ``scale``
(in its ``ReduceLROnPlateauState``), so the LR an update applies is the
injected (or scheduled) LR times that scale: :func:`get_hyperparams`
reports the ``learning_rate`` applied, the scale included
(:func:`plateau_scale`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_clr import _checks

__all__ = ["find_hyperparams", "get_hyperparams", "get_step",
           "set_hyperparams"]

LEARNING_RATE = "learning_rate"

INJECT_STATES = (
    optax.schedules.InjectStatefulHyperparamsState,
    optax.schedules.InjectHyperparamsState,
)

# Allowed ranges of well-known hyperparameters (set_hyperparams checks them).
_RANGES: dict[str, dict[str, Any]] = {
    "learning_rate": dict(low=0.0, low_inclusive=False),
    "momentum": dict(low=0.0, high=1.0, high_inclusive=False),
    "b1": dict(low=0.0, high=1.0, high_inclusive=False),
    "b2": dict(low=0.0, high=1.0, high_inclusive=False),
    "decay": dict(low=0.0, high=1.0, high_inclusive=False),
    "weight_decay": dict(low=0.0),
    "eps": dict(low=0.0),
}


def is_inject_state(x: Any) -> bool:
  return isinstance(x, INJECT_STATES)


def unwrap(x: Any) -> Any:
  """The value of an nnx Variable (``flax.nnx.Optimizer`` state), else x."""
  # Only look for nnx if it has been imported: otherwise the state cannot
  # hold Variables.
  nnx = sys.modules.get("flax.nnx")
  if nnx is not None and isinstance(x, nnx.Variable):
    return x.get_value()
  return x


def _state_of(opt_state: Any) -> Any:
  """An ``nnx.Optimizer`` stands for its ``opt_state``."""
  nnx = sys.modules.get("flax.nnx")
  if nnx is not None and isinstance(opt_state, nnx.Optimizer):
    return opt_state.opt_state
  return opt_state


def find_hyperparams(opt_state: Any) -> dict[str, Any]:
  """Every ``InjectHyperparamsState`` in ``opt_state``, by tree path.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import optax_clr as clr
    >>> tx = optax.chain(optax.clip(1.0), clr.cyclic_adam(1e-3))
    >>> list(clr.find_hyperparams(tx.init({"w": jnp.ones(3)})))
    ['[1]']

  Args:
    opt_state: any optimizer state, or an ``nnx.Optimizer``.

  Returns:
    ``{path: state}``, e.g. ``{"[1]": InjectStatefulHyperparamsState(...)}``
    for ``optax.chain(optax.clip(1.0), inject_hyperparams(optax.adam)(...))``
    and ``{"": state}`` when the state itself is one.
  """
  flat, _ = jax.tree_util.tree_flatten_with_path(
      _state_of(opt_state), is_leaf=is_inject_state)
  return {jax.tree_util.keystr(path): x for path, x in flat
          if is_inject_state(x)}


def find_states(opt_state: Any, kind: type) -> list[Any]:
  """The states of type ``kind`` anywhere in ``opt_state`` (a chain,
  ``inject_hyperparams``, an ``nnx.Optimizer``), in tree order."""
  return [x for x in jax.tree.leaves(_state_of(opt_state),
                                     is_leaf=lambda x: isinstance(x, kind))
          if isinstance(x, kind)]


def schedule_count(opt_state: Any) -> Any | None:
  """The count of the first ScaleByScheduleState (optax.adamw(schedule))."""
  found = find_states(opt_state, optax.ScaleByScheduleState)
  return unwrap(found[0].count) if found else None


def plateau_scale(opt_state: Any) -> jax.Array | None:
  """The product of the LR scales of the ``reduce_on_plateau`` states in
  ``opt_state`` (float32; on a stack of states, per copy), or None when it
  holds none."""
  kind = getattr(getattr(optax, "contrib", None), "ReduceLROnPlateauState",
                 None)
  if kind is None:
    return None
  found = find_states(opt_state, kind)
  if not found:
    return None
  scale = jnp.float32(1.0)
  for x in found:
    scale = scale * jnp.asarray(unwrap(x.scale), jnp.float32)
  return scale


def applied(values: dict[str, Any], opt_state: Any) -> dict[str, Any]:
  """``values`` with the learning rate times any plateau scale."""
  scale = plateau_scale(opt_state)
  if scale is None or LEARNING_RATE not in values:
    return values
  lr = jnp.asarray(values[LEARNING_RATE])
  return {**values, LEARNING_RATE: (lr * scale).astype(lr.dtype)}


def _select(opt_state: Any, path: str | None) -> tuple[str, Any]:
  found = find_hyperparams(opt_state)
  if path is not None:
    if not isinstance(path, str):
      raise TypeError(f"path must be a str such as '[1]', got "
                      f"{_checks.describe(path)}")
    if path not in found:
      raise ValueError(
          f"path={path!r} holds no InjectHyperparamsState; the state has "
          f"them at {sorted(found) or 'no path'}")
    return path, found[path]
  if len(found) == 1:
    return next(iter(found.items()))
  if not found:
    count = schedule_count(opt_state)
    hint = (" It holds a ScaleByScheduleState (e.g. optax.adamw("
            "learning_rate=schedule)): the LR of the last update is "
            "schedule(count - 1); pass schedules={'learning_rate': schedule} "
            "to read it." if count is not None else "")
    raise ValueError(
        "opt_state contains no optax InjectHyperparamsState; build the "
        "optimizer with cyclic_optimizer/cyclic_sgd/... or "
        "optax.inject_hyperparams." + hint)
  raise ValueError(
      f"opt_state contains {len(found)} InjectHyperparamsStates, at paths "
      f"{sorted(found)}; pass path= to choose one")


def get_hyperparams(opt_state: Any, path: str | None = None, *,
                    schedules: Mapping[str, Callable[..., Any]] | None = None
                    ) -> dict[str, jax.Array]:
  """The injected hyperparameters held in an optimizer state.

  After ``k >= 1`` updates each scheduled value is ``schedule(k - 1)``: the
  value the last update used. Right after ``init`` it is ``schedule(0)``,
  the value the first update will use. Works under ``jit``; on a stack of
  states (``vmap``) each value has the stack's leading axis.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import optax_clr as clr
    >>> lr_schedule = clr.triangular_schedule(0.01, 0.1, step_size_up=10)
    >>> tx = optax.chain(optax.clip(1.0), clr.cyclic_sgd(lr_schedule, 0.9))
    >>> hp = clr.get_hyperparams(tx.init({"w": jnp.ones(3)}))
    >>> sorted((k, round(float(v), 4)) for k, v in hp.items())
    [('learning_rate', 0.01), ('momentum', 0.9)]

  Args:
    opt_state: an optimizer state (plain pytree or the ``opt_state`` of a
      ``flax.nnx.Optimizer``), or the ``nnx.Optimizer`` itself.
    path: which ``InjectHyperparamsState`` to read when there are several
      (see :func:`find_hyperparams`).
    schedules: for a state without injected hyperparameters (e.g.
      ``optax.adamw(learning_rate=schedule)``), ``{name: schedule}``: the
      values are computed as ``schedule(max(count - 1, 0))`` from the
      state's ``ScaleByScheduleState`` count.

  Returns:
    A new dict from hyperparameter name (e.g. ``"learning_rate"``,
    ``"momentum"``, ``"b1"``) to its current value. With an
    ``optax.contrib.reduce_on_plateau`` in the state, ``"learning_rate"``
    is the LR applied: the injected (or scheduled) value times the
    plateau's ``scale``.
  """
  if schedules is not None and not find_hyperparams(opt_state):
    count = schedule_count(opt_state)
    if count is None:
      raise ValueError(
          "schedules= needs a state with a ScaleByScheduleState count (e.g. "
          "optax.adamw(learning_rate=schedule)); this state has none")
    step = jnp.maximum(jnp.asarray(count) - 1, 0)
    return applied({name: jnp.asarray(_checks.check_callable(
        f"schedules[{name!r}]", fn)(step)) for name, fn in schedules.items()},
                    opt_state)
  _, state = _select(opt_state, path)
  return applied({name: unwrap(value)
                   for name, value in state.hyperparams.items()}, opt_state)


def get_step(opt_state: Any, path: str | None = None) -> jax.Array:
  """The number of updates applied so far (int32, saturating).

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_clr as clr
    >>> tx = clr.cyclic_sgd(clr.triangular_schedule(0.01, 0.1, 10))
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> for _ in range(3):
    ...   _, state = tx.update({"w": jnp.ones(3)}, state, params)
    >>> int(clr.get_step(state))
    3

  Args:
    opt_state: an optimizer state, or an ``nnx.Optimizer``.
    path: as in :func:`get_hyperparams`.

  Returns:
    The int32 update count ``k``; the next update uses ``schedule(k)``.
  """
  return unwrap(_select(opt_state, path)[1].count)


def check_hyperparam_value(name: str, value: Any,
                           label: str | None = None) -> None:
  """Range check of a concrete value for a well-known hyperparameter
  (``label`` names it in the error; default ``name``)."""
  label = label or name
  if not _checks.is_real_number(value) and _checks.is_concrete(value):
    raise TypeError(f"{label} must be a number, got "
                    f"{_checks.describe(value)}")
  if not _checks.is_concrete(value):
    _checks.check_real_dtype(label, value.dtype)
    return
  if jnp.ndim(value) == 0:
    _checks.check_number(label, value, **_RANGES.get(name, {}))
  else:
    arr = _checks.check_real_array(label, value)
    if arr.size:  # an interval holds every value iff it holds both extremes
      for x in (arr.min(), arr.max()):
        _checks.check_number(label, x, **_RANGES.get(name, {}))


def set_hyperparams(opt_state: Any, path: str | None = None,
                    **values: chex.Numeric) -> Any:
  """``opt_state`` with non-scheduled injected hyperparameters replaced.

  The compiled update reads these values from the state, so changing them
  does not recompile, and under ``jax.vmap`` each copy of the state may hold
  its own value (a learning-rate sweep). Each value is cast to the stored
  dtype. Concrete values are range-checked (``learning_rate > 0``,
  ``momentum``/``b1``/``b2`` in [0, 1), ``weight_decay``/``eps`` >= 0, all
  finite); traced ones get a dtype check. Scheduled hyperparameters are
  recomputed from their step counter on every update, so setting them would
  have no effect; that is an error.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_clr as clr
    >>> state = clr.cyclic_sgd(0.1, momentum=0.9).init({"w": jnp.ones(3)})
    >>> state = clr.set_hyperparams(state, learning_rate=0.3)
    >>> round(float(clr.get_hyperparams(state)["learning_rate"]), 4)
    0.3

  A plain state is not modified: a new one is returned. A
  ``flax.nnx.Optimizer`` (or its ``opt_state``) is NNX state: its Variables
  are updated in place, as NNX code expects, and the same object returned.

  Args:
    opt_state: an optimizer state, or an ``nnx.Optimizer``.
    path: which ``InjectHyperparamsState`` to change when there are several.
    **values: new values, e.g. ``learning_rate=0.1``; may be traced.

  Returns:
    The state with the new values.
  """
  where, state = _select(opt_state, path)
  scheduled = set(getattr(state, "hyperparams_states", {}))
  for name, value in values.items():
    if name not in state.hyperparams:
      raise ValueError(
          f"{name} is not an injected hyperparameter; the state holds "
          f"{sorted(state.hyperparams)}")
    if name in scheduled:
      raise ValueError(
          f"{name} follows a schedule, which overrides any value set in the "
          f"state; build the optimizer with a number for {name} to set it")
    check_hyperparam_value(name, value)
    stored = jnp.shape(unwrap(state.hyperparams[name]))
    try:
      fits = np.broadcast_shapes(jnp.shape(value), stored) == stored
    except ValueError:
      fits = False
    if not fits:
      raise ValueError(
          f"{name} must be a scalar{'' if not stored else f' or broadcast to {stored}'} "
          f"(the shape stored in the state), got shape {jnp.shape(value)}")

  def cast(old: Any, value: Any) -> jax.Array:
    old = jnp.asarray(unwrap(old))
    return jnp.broadcast_to(jnp.asarray(value, dtype=old.dtype), old.shape)

  nnx = sys.modules.get("flax.nnx")
  if nnx is not None and any(isinstance(state.hyperparams[n], nnx.Variable)
                             for n in values):
    for name, value in values.items():
      var = state.hyperparams[name]
      var.set_value(cast(var, value))
    return opt_state
  return replace_hyperparams(opt_state, where, values, cast)


def replace_hyperparams(opt_state: Any, path: str | None,
                        values: Mapping[str, Any],
                        cast: Callable[[Any, Any], Any]) -> Any:
  """Functional replacement in the inject state at ``path`` (every inject
  state holding the names when ``path`` is None)."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(
      opt_state, is_leaf=is_inject_state)
  out = []
  for key_path, x in flat:
    if is_inject_state(x) and (path is None or jax.tree_util.keystr(
        key_path) == path):
      hyper = dict(x.hyperparams)
      for name, value in values.items():
        if name in hyper:
          hyper[name] = cast(hyper[name], value)
      x = x._replace(hyperparams=hyper)
    out.append(x)
  return jax.tree_util.tree_unflatten(treedef, out)
