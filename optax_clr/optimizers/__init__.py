"""Optimizers whose learning rate and momentum follow schedules, and access
to the hyperparameters inside any optimizer state.

* :mod:`._inject`: ``cyclic_optimizer`` (any optax factory), ``cyclic_sgd``,
  ``cyclic_adam``, ``cyclic_adamw``, built on ``optax.inject_hyperparams``.
* :mod:`._factories`: ``sgd``, ``adam``, ``adamw`` factories that take
  every hyperparameter by keyword (momentum, weight decay), for range tests
  and sweeps that drive them.
* :mod:`._lookahead`: ``lookahead`` (``optax.lookahead`` over plain
  parameters, the slow weights in its state) and ``lookahead_slow``.
* :mod:`._hyperparams`: ``get_hyperparams``, ``get_step``,
  ``set_hyperparams``, ``find_hyperparams`` for plain optax states, chains
  with several injected states (by path) and ``flax.nnx.Optimizer`` state.
"""

from optax_clr.optimizers._factories import adam
from optax_clr.optimizers._factories import adamw
from optax_clr.optimizers._factories import sgd
from optax_clr.optimizers._hyperparams import check_hyperparam_value
from optax_clr.optimizers._hyperparams import find_hyperparams
from optax_clr.optimizers._hyperparams import get_hyperparams
from optax_clr.optimizers._hyperparams import get_step
from optax_clr.optimizers._hyperparams import set_hyperparams
from optax_clr.optimizers._inject import cyclic_adam
from optax_clr.optimizers._inject import cyclic_adamw
from optax_clr.optimizers._inject import cyclic_optimizer
from optax_clr.optimizers._inject import cyclic_sgd
from optax_clr.optimizers._inject import MOMENTUM_NAMES
from optax_clr.optimizers._lookahead import lookahead
from optax_clr.optimizers._lookahead import LookaheadAdapterState
from optax_clr.optimizers._lookahead import lookahead_slow

__all__ = ["LookaheadAdapterState", "MOMENTUM_NAMES", "adam", "adamw",
           "check_hyperparam_value", "cyclic_adam", "cyclic_adamw",
           "cyclic_optimizer", "cyclic_sgd", "find_hyperparams",
           "get_hyperparams", "get_step", "lookahead", "lookahead_slow",
           "set_hyperparams", "sgd"]
