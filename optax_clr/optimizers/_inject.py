"""Optimizers whose learning rate and momentum follow schedules.

Cyclical learning rates (Smith, 2017) work best when the momentum is cycled
inversely to the learning rate (Smith & Topin, 2017, "Super-Convergence"). A
plain ``optax.sgd(learning_rate=schedule)`` can schedule the learning rate but
not the momentum, and it hides the current value inside a closure. These
helpers build the optimizer through :func:`optax.inject_hyperparams`, so that

* ``learning_rate`` and the momentum-like hyperparameter (``momentum`` for SGD
  and RMSProp, ``b1`` for Adam, AdamW, Lion, ...) may each be a schedule (a
  function of the step count) or a number;
* every numeric hyperparameter lives in the optimizer state, where it can be
  logged (:func:`get_hyperparams`) or, for the non-scheduled ones, changed
  without recompiling (:func:`set_hyperparams`, e.g. one learning rate per
  copy of the state in a ``jax.vmap`` sweep);
* the schedule position is part of the state (one int32 step counter per
  schedule), so a run restarted from a saved state continues the schedule
  exactly.

Which step's values the state holds (from ``optax.inject_hyperparams``)
-----------------------------------------------------------------------
Updates are numbered from 0. Update ``k`` (the ``k+1``-th call to ``update``)
uses ``schedule(k)`` for every scheduled hyperparameter, the same convention as
a PyTorch scheduler stepped once per batch. ``update`` stores the values it has
just used in the returned state, so:

* after ``init``: ``count == 0`` and ``hyperparams[name] == schedule(0)``, the
  value the first update will use;
* after ``k >= 1`` updates: ``count == k`` and
  ``hyperparams[name] == schedule(k - 1)``, the value the last update used (the
  one to log next to that step's loss). The next update will use
  ``schedule(k)``.

The counters saturate at the int32 maximum instead of wrapping around.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_clr import _checks

__all__ = ["cyclic_optimizer", "cyclic_sgd", "cyclic_adam", "cyclic_adamw"]

ScalarOrSchedule = chex.Numeric | optax.Schedule

# Tried in this order when ``momentum_name`` is not given.
MOMENTUM_NAMES = ("momentum", "b1")

_NAMED_KINDS = (
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.KEYWORD_ONLY,
)


# ----------------------------------------------------------------------------
# Argument checks.
# ----------------------------------------------------------------------------


def _factory_name(factory: Callable[..., Any]) -> str:
  return getattr(factory, "__name__", type(factory).__name__)


def factory_parameters(
    factory: Callable[..., Any]) -> dict[str, inspect.Parameter]:
  """The parameters of ``factory`` that can be passed by keyword."""
  try:
    signature = inspect.signature(factory)
  except (TypeError, ValueError) as e:
    raise TypeError(
        f"factory must be an optimizer factory with an inspectable signature "
        f"(e.g. optax.sgd), got {factory!r}") from e
  return {name: p for name, p in signature.parameters.items()
          if p.kind in _NAMED_KINDS}


def _as_injectable(value: Any) -> Any:
  # inject_hyperparams only injects int, float and arrays; a NumPy scalar such
  # as np.float32(0.9) would otherwise be passed as a hidden static constant.
  if isinstance(value, np.generic):
    return value.item()
  return value


def _check_schedule(name: str, schedule: Callable[..., Any]) -> None:
  """Checks that a schedule traces at an int32 step to a real scalar.

  The schedule runs inside ``jit`` (and ``inject_hyperparams`` calls it with an
  int32 array), so a Python ``if`` on the step fails there; tracing it once
  here names the argument instead of failing deep inside the first update.
  """
  if isinstance(schedule, optax.schedules.StatefulSchedule):
    return  # Its call signature takes a state; optax checks it on init.
  try:
    out = jax.eval_shape(schedule, jax.ShapeDtypeStruct((), jnp.int32))
  except Exception as e:  # pylint: disable=broad-except
    raise TypeError(
        f"{name} must be a number or a schedule (a traceable function of the "
        f"int32 step count); calling {name} on a traced step failed with "
        f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}") from e
  leaves = jax.tree.leaves(out)
  if (len(leaves) != 1 or getattr(leaves[0], "shape", None) != ()
      or not jnp.issubdtype(leaves[0].dtype, jnp.number)
      or jnp.issubdtype(leaves[0].dtype, jnp.complexfloating)):
    raise TypeError(
        f"{name} schedule must return a real scalar for a scalar step, got "
        f"{out}")


def _check_hyperparam(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> Any:
  """Checks a number-or-schedule hyperparameter; returns it ready to inject.

  Numbers are checked against the interval (unless traced); schedules must be
  callables that trace to a real scalar.
  """
  if callable(value):
    _check_schedule(name, value)
    return value
  if not _checks.is_real_number(value) and _checks.is_concrete(value):
    raise TypeError(
        f"{name} must be a number or a schedule (a callable of the step "
        f"count), got {type(value).__name__} {value!r}")
  _checks.check_number(name, value, low=low, high=high,
                       low_inclusive=low_inclusive,
                       high_inclusive=high_inclusive)
  return _as_injectable(value)


def _check_learning_rate(name: str, value: Any) -> Any:
  return _check_hyperparam(name, value, low=0.0, low_inclusive=False)


def _check_decay(name: str, value: Any) -> Any:
  """Momentum-like decay rates (momentum, b1, b2) must lie in [0, 1)."""
  return _check_hyperparam(name, value, low=0.0, high=1.0,
                           high_inclusive=False)


def momentum_parameter(parameters: Mapping[str, inspect.Parameter]
                       ) -> str | None:
  """The first of :data:`MOMENTUM_NAMES` among a factory's ``parameters``
  (:func:`factory_parameters`), or None."""
  return next((n for n in MOMENTUM_NAMES if n in parameters), None)


def _resolve_momentum_name(
    factory: Callable[..., Any],
    parameters: Mapping[str, inspect.Parameter],
    momentum: Any,
    momentum_name: str | None,
) -> str | None:
  """The factory parameter that receives ``momentum`` (None: not passed)."""
  factory_name = _factory_name(factory)
  if momentum_name is not None:
    if not isinstance(momentum_name, str):
      raise TypeError(
          f"momentum_name must be a str, got {type(momentum_name).__name__} "
          f"{momentum_name!r}")
    if momentum_name not in parameters or momentum_name == "learning_rate":
      raise ValueError(
          f"momentum_name={momentum_name!r} is not a momentum parameter of "
          f"{factory_name}; its parameters are {sorted(parameters)}")
    return momentum_name
  if momentum is None:
    return None
  name = momentum_parameter(parameters)
  if name is not None:
    return name
  raise ValueError(
      f"momentum_name: {factory_name} has no parameter named "
      f"{' or '.join(repr(n) for n in MOMENTUM_NAMES)}; pass "
      f"momentum_name= to say which of {sorted(parameters)} the momentum is")


# ----------------------------------------------------------------------------
# Construction.
# ----------------------------------------------------------------------------


def _inject(
    factory: Callable[..., optax.GradientTransformation],
    parameters: Mapping[str, inspect.Parameter],
    scheduled: Iterable[str],
    hyperparams: Mapping[str, Any],
) -> optax.GradientTransformationExtraArgs:
  """Builds ``inject_hyperparams(factory)(**hyperparams)``.

  Names in ``scheduled`` are numbers or schedules and are injected. Every
  other parameter (passed or default) is injected when numeric and static
  otherwise: ``inject_hyperparams`` would take any callable for a schedule,
  but a callable ``mask`` or a dtype such as ``jnp.bfloat16`` is not one.
  """
  scheduled = frozenset(scheduled)
  missing = [name for name, p in parameters.items()
             if p.default is inspect.Parameter.empty and name not in hyperparams]
  if missing:
    raise TypeError(
        f"{_factory_name(factory)} requires {missing}; pass them as keyword "
        f"arguments")
  static = []
  for name, p in parameters.items():
    if name in scheduled:
      continue
    value = hyperparams.get(name, p.default)
    if not _checks.is_real_number(value) and _checks.is_concrete(value):
      static.append(name)
  injected = optax.inject_hyperparams(factory, static_args=static)
  return injected(**{k: _as_injectable(v) for k, v in hyperparams.items()})


def cyclic_optimizer(
    factory: Callable[..., optax.GradientTransformation],
    *,
    learning_rate: ScalarOrSchedule,
    momentum: ScalarOrSchedule | None = None,
    momentum_name: str | None = None,
    **hyperparams: Any,
) -> optax.GradientTransformationExtraArgs:
  """Any optax optimizer with a scheduled learning rate and momentum.

  Wraps ``optax.inject_hyperparams(factory)``: update ``k`` (from 0) uses
  ``learning_rate(k)`` and ``momentum(k)`` when they are schedules, and the
  values used by the last update are in the state (see
  :func:`get_hyperparams`). Cycling the momentum inversely to the learning
  rate follows Smith & Topin (2017), "Super-Convergence".

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import optax_clr as clr
    >>> lr_fn = clr.cyclic_schedule(1e-3, 1e-2, step_size_up=100)
    >>> mom_fn = clr.cyclic_momentum_schedule(0.85, 0.95, step_size_up=100)
    >>> params = {"w": jnp.ones(3)}
    >>> sgd = clr.cyclic_optimizer(optax.sgd, learning_rate=lr_fn,
    ...                            momentum=mom_fn)
    >>> adam = clr.cyclic_optimizer(optax.adam, learning_rate=lr_fn,
    ...                             momentum=mom_fn)  # cycles b1
    >>> sorted(clr.get_hyperparams(adam.init(params)))
    ['b1', 'b2', 'eps', 'eps_root', 'learning_rate']
    >>> rms = clr.cyclic_optimizer(optax.rmsprop, learning_rate=lr_fn,
    ...                            momentum=0.9)
    >>> round(float(clr.get_hyperparams(rms.init(params))["momentum"]), 4)
    0.9

  Args:
    factory: an optax optimizer factory with a ``learning_rate`` parameter,
      e.g. ``optax.sgd``, ``optax.adam``, ``optax.adamw``, ``optax.lion``,
      ``optax.rmsprop``.
    learning_rate: a number > 0 or a schedule (a traceable function of the
      int32 step count, e.g. ``optax_clr.cyclic_schedule(...)``).
    momentum: the momentum-like decay rate, a number in [0, 1) or a schedule;
      None leaves the factory's default (``optax.sgd`` and ``optax.rmsprop``
      then use no momentum at all).
    momentum_name: the factory parameter that receives ``momentum``. Default:
      ``"momentum"`` if the factory has that parameter, else ``"b1"``.
    **hyperparams: other arguments of ``factory``. Numeric ones are injected
      (visible and settable in the state); all others (``nesterov``, ``mask``,
      ``mu_dtype``, ...) are passed unchanged at construction. A callable here
      is passed to the factory as is, not treated as a schedule.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` whose state is an
    ``optax.InjectStatefulHyperparamsState``.

  Raises:
    TypeError: ``factory`` is not an optimizer factory, or a hyperparameter
      is neither a number nor a traceable scalar schedule.
    ValueError: ``learning_rate <= 0``, a constant ``momentum`` outside
      [0, 1), ``momentum_name`` is not a parameter of ``factory``, or an
      argument is unknown or given twice.
  """
  _checks.check_callable("factory", factory)
  parameters = factory_parameters(factory)
  factory_name = _factory_name(factory)
  if "learning_rate" not in parameters:
    raise ValueError(
        f"factory {factory_name} has no learning_rate parameter; its "
        f"parameters are {sorted(parameters)}")
  learning_rate = _check_learning_rate("learning_rate", learning_rate)
  name = _resolve_momentum_name(factory, parameters, momentum, momentum_name)
  unknown = sorted(set(hyperparams) - set(parameters))
  if unknown:
    raise ValueError(
        f"{', '.join(unknown)}: not parameters of {factory_name}; its "
        f"parameters are {sorted(parameters)}")
  if name is not None and momentum is not None and name in hyperparams:
    raise ValueError(
        f"{name} given twice: as momentum (momentum_name={name!r}) and as a "
        f"keyword argument")
  scheduled = ["learning_rate"]
  if name is not None and momentum is not None:
    label = "momentum" if name == "momentum" else f"momentum ({name})"
    hyperparams[name] = _check_decay(label, momentum)
    scheduled.append(name)
  hyperparams["learning_rate"] = learning_rate
  return _inject(factory, parameters, scheduled, hyperparams)


def cyclic_sgd(
    learning_rate: ScalarOrSchedule,
    momentum: ScalarOrSchedule | None = None,
    *,
    nesterov: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """SGD with a scheduled learning rate and (optionally) momentum.

  ``trace_k = g_k + momentum(k) * trace_{k-1}`` and
  ``update_k = -learning_rate(k) * trace_k`` (``optax.sgd``; Nesterov uses
  ``g_k + momentum(k) * trace_k`` instead of ``trace_k``). For cyclical
  training, Smith & Topin (2017) cycle the momentum between 0.95 and 0.85,
  high when the learning rate is low.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_clr as clr
    >>> tx = clr.cyclic_sgd(clr.cyclic_schedule(0.01, 0.1, step_size_up=2),
    ...                     momentum=clr.cyclic_momentum_schedule(
    ...                         0.8, 0.9, step_size_up=2))
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> for _ in range(2):
    ...   updates, state = tx.update({"w": jnp.ones(3)}, state, params)
    >>> hp = clr.get_hyperparams(state)  # what the last update (k = 1) used
    >>> round(float(hp["learning_rate"]), 4), round(float(hp["momentum"]), 4)
    (0.055, 0.85)

  Args:
    learning_rate: a number > 0 or a schedule of the step count.
    momentum: a number in [0, 1), a schedule, or None for plain SGD (no
      momentum buffer). Pass 0.0 rather than None to keep a buffer whose
      momentum a schedule or :func:`set_hyperparams` can raise later.
    nesterov: use Nesterov momentum (requires ``momentum``).

  Returns:
    An ``optax.GradientTransformationExtraArgs``.
  """
  if not isinstance(nesterov, (bool, np.bool_)):
    raise TypeError(
        f"nesterov must be a bool, got {type(nesterov).__name__} {nesterov!r}")
  if nesterov and momentum is None:
    raise ValueError("nesterov=True requires a momentum, got momentum=None")
  learning_rate = _check_learning_rate("learning_rate", learning_rate)
  if momentum is not None:
    momentum = _check_decay("momentum", momentum)
  return cyclic_optimizer(
      optax.sgd, learning_rate=learning_rate, momentum=momentum,
      momentum_name="momentum", nesterov=bool(nesterov))


def _adam_args(
    learning_rate: Any, b1: Any, b2: Any, eps: Any) -> dict[str, Any]:
  return dict(
      learning_rate=_check_learning_rate("learning_rate", learning_rate),
      b1=_check_decay("b1", b1),
      b2=_check_decay("b2", b2),
      eps=_check_hyperparam("eps", eps, low=0.0),
  )


def cyclic_adam(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
) -> optax.GradientTransformationExtraArgs:
  """Adam (``optax.adam``) with a scheduled learning rate and ``b1``.

  ``b1`` plays the role of the momentum: cycle it inversely to the learning
  rate (e.g. 0.95 -> 0.85 -> 0.95), as fastai's one-cycle policy does. Smith
  (2017) reports that the benefit of cyclical learning rates is sometimes
  smaller with Adam than with SGD.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_clr as clr
    >>> b1 = clr.cyclic_momentum_schedule(0.85, 0.95, step_size_up=100)
    >>> tx = clr.cyclic_adam(clr.triangular_schedule(1e-4, 1e-3, 100), b1=b1)
    >>> sorted(clr.get_hyperparams(tx.init({"w": jnp.ones(3)})))
    ['b1', 'b2', 'eps', 'eps_root', 'learning_rate']

  Args:
    learning_rate: a number > 0 or a schedule of the step count.
    b1: decay of the first moment, in [0, 1), or a schedule.
    b2: decay of the second moment, in [0, 1), or a schedule.
    eps: term added to the denominator, >= 0, or a schedule.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.
  """
  args = _adam_args(learning_rate, b1, b2, eps)
  return _inject(optax.adam, factory_parameters(optax.adam), args, args)


def cyclic_adamw(
    learning_rate: ScalarOrSchedule,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
) -> optax.GradientTransformationExtraArgs:
  """AdamW (``optax.adamw``) with a scheduled learning rate and ``b1``.

  The decoupled weight decay is multiplied by the (scheduled) learning rate,
  as in ``optax.adamw``: ``update = -lr(k) * (adam_k + weight_decay * w)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_clr as clr
    >>> tx = clr.cyclic_adamw(clr.one_cycle_schedule(1e-3, 1000),
    ...                       weight_decay=1e-2)
    >>> state = tx.init({"w": jnp.ones(3)})
    >>> round(float(clr.get_hyperparams(state)["weight_decay"]), 4)
    0.01

  Args:
    learning_rate: a number > 0 or a schedule of the step count.
    b1: decay of the first moment, in [0, 1), or a schedule.
    b2: decay of the second moment, in [0, 1), or a schedule.
    eps: term added to the denominator, >= 0, or a schedule.
    weight_decay: decoupled weight decay, >= 0, or a schedule.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.
  """
  args = _adam_args(learning_rate, b1, b2, eps)
  args["weight_decay"] = _check_hyperparam("weight_decay", weight_decay,
                                           low=0.0)
  return _inject(optax.adamw, factory_parameters(optax.adamw), args, args)
