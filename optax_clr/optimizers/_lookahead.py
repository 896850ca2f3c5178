"""``optax.lookahead`` over plain parameters.

``optax.lookahead`` updates a pair of parameters, ``optax.LookaheadParams
(fast, slow)``: the gradient is taken at ``fast``, and every
``sync_period`` steps ``slow`` moves towards ``fast`` and ``fast`` is reset
to it. Every training loop that takes a model -- the range tests, the
sweeps and ``train`` here, ``nnx.Optimizer``, Equinox's ``apply_updates``
loops -- holds one set of parameters, so :func:`lookahead` keeps the slow
weights in the optimizer state instead: the model's parameters are the fast
ones, and the updates are exactly optax's (the same ``update`` on the same
``LookaheadParams``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import optax

from optax_clr.optimizers import _hyperparams

__all__ = ["LookaheadAdapterState", "lookahead", "lookahead_slow"]


class LookaheadAdapterState(NamedTuple):
  """The state of :func:`lookahead`.

  Attributes:
    inner: the ``optax.lookahead`` state (the fast optimizer's state and
      the steps since the last synchronisation).
    slow: the slow parameters (what optax keeps in ``LookaheadParams.slow``).
  """
  inner: Any
  slow: Any


def lookahead(optimizer: optax.GradientTransformation,
              sync_period: int | None = None,
              slow_step_size: float | None = None,
              reset_state: bool = False) -> optax.GradientTransformation:
  """``optax.lookahead`` on plain parameters, its slow weights in the state.

  Either wraps an ``optax.lookahead(...)`` transformation as it is, or
  builds one from optax's arguments::

    clr.lookahead(optax.lookahead(optax.adam(2e-3), 5, 0.1))   # upstream's
    clr.lookahead(optax.adam(lr), 5, 0.1)                      # a factory's

  The model's parameters are lookahead's fast parameters (the gradient is
  taken at them, as optax requires); after every ``sync_period``-th update
  they equal the slow ones, which :func:`lookahead_slow` reads from the
  state at any step.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import optax_clr as clr
    >>> tx = clr.lookahead(optax.sgd(0.1), sync_period=2, slow_step_size=0.5)
    >>> params = {"w": jnp.ones(2)}
    >>> state = tx.init(params)
    >>> for _ in range(2):
    ...   updates, state = tx.update({"w": jnp.ones(2)}, state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> params["w"].tolist(), clr.lookahead_slow(state)["w"].tolist()
    ([0.8999999761581421, 0.8999999761581421], [0.8999999761581421, 0.8999999761581421])

  Args:
    optimizer: an ``optax.lookahead`` transformation (``sync_period`` and
      ``slow_step_size`` None), or the fast optimizer to build one from.
    sync_period: fast steps between synchronisations (>= 1), to build one.
    slow_step_size: the slow parameters' step size, to build one.
    reset_state: reset the fast optimizer's state after a synchronisation
      (optax's argument), to build one.

  Returns:
    A ``GradientTransformation`` over the plain parameters; its state is a
    :class:`LookaheadAdapterState`.
  """
  if (sync_period is None) != (slow_step_size is None):
    raise TypeError(
        "lookahead: pass both sync_period and slow_step_size (to build "
        "optax.lookahead(optimizer, sync_period, slow_step_size)), or neither "
        "(optimizer is an optax.lookahead transformation)")
  if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
    raise TypeError(f"lookahead: optimizer must be an optax "
                    f"GradientTransformation, got {type(optimizer).__name__}")
  if sync_period is not None:
    optimizer = optax.lookahead(optimizer, sync_period, slow_step_size,
                                reset_state)

  def init(params):
    pair = optax.LookaheadParams.init_synced(params)
    return LookaheadAdapterState(optimizer.init(pair), params)

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("lookahead: update needs the (fast) params")
    pair = optax.LookaheadParams(fast=params, slow=state.slow)
    pair_updates, inner = optimizer.update(updates, state.inner, pair)
    if not isinstance(pair_updates, optax.LookaheadParams):
      raise TypeError(
          "lookahead: optimizer is not an optax.lookahead transformation (its "
          "update returned no LookaheadParams); pass sync_period and "
          "slow_step_size to build one around it")
    slow = optax.apply_updates(state.slow, pair_updates.slow)
    return pair_updates.fast, LookaheadAdapterState(inner, slow)

  return optax.GradientTransformation(init, update)


def lookahead_slow(opt_state: Any) -> Any:
  """The slow parameters held in a :func:`lookahead` state (found anywhere
  in ``opt_state``: inside ``inject_hyperparams``, a chain, an
  ``nnx.Optimizer``)."""
  found = _hyperparams.find_states(opt_state, LookaheadAdapterState)
  if not found:
    raise ValueError("opt_state holds no optax_clr.lookahead state")
  return found[0].slow
