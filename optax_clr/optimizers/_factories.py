"""Optimizer factories whose every hyperparameter can be driven.

A range test or a sweep sets hyperparameters in the optimizer state before
every update; it needs a factory that takes them by keyword. These three
cover what the CLI and the disciplined recipe (LR x weight decay x
momentum) need; any optax factory works the same way.

* :func:`sgd`: ``optax.sgd`` (heavy-ball momentum; 0 means none) with L2
  weight decay added to the gradient (``optax.add_decayed_weights``), as
  PyTorch's ``SGD(weight_decay=...)``.
* :func:`adam`: ``optax.adam`` with L2 weight decay added to the gradient.
* :func:`adamw`: ``optax.adamw`` (decoupled weight decay).
"""

from __future__ import annotations

from typing import Any

import optax


def _no_momentum(momentum: Any) -> bool:
  # A traced momentum (driven by a sweep) is always a real buffer.
  return isinstance(momentum, (int, float)) and momentum == 0


def sgd(learning_rate: Any, momentum: Any = 0.9, weight_decay: Any = 0.0,
        nesterov: bool = False) -> optax.GradientTransformation:
  """SGD with momentum and L2 weight decay.

  ``g <- g + weight_decay * w``, ``trace <- g + momentum * trace``,
  ``w <- w - learning_rate * trace``.
  """
  tx = optax.sgd(learning_rate, None if _no_momentum(momentum) else momentum,
                 nesterov=nesterov)
  if isinstance(weight_decay, (int, float)) and weight_decay == 0:
    return tx
  return optax.chain(optax.add_decayed_weights(weight_decay), tx)


def adam(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999,
         weight_decay: Any = 0.0) -> optax.GradientTransformation:
  """Adam with L2 weight decay added to the gradient."""
  tx = optax.adam(learning_rate, b1=b1, b2=b2)
  if isinstance(weight_decay, (int, float)) and weight_decay == 0:
    return tx
  return optax.chain(optax.add_decayed_weights(weight_decay), tx)


def adamw(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999,
          weight_decay: Any = 1e-4) -> optax.GradientTransformation:
  """AdamW: ``optax.adamw`` with decoupled weight decay."""
  return optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)
