"""The drivers: three entry points over the one engine.

* :func:`range_test` (:mod:`._range_test`): the LR ramped over the steps of
  one copy.
* :func:`multi_seed_range_test`, :func:`weight_decay_range_test`
  (:mod:`._multi_ramp`): S such ramps side by side, one per seed or per
  weight decay (Smith's disciplined approach).
* :func:`parallel_range_test` (:mod:`._sweep`): K copies at fixed LRs.
* :func:`sweep` (:mod:`._hyper_sweep`): K copies at any hyperparameters
  (a list of configurations or a full grid).
* :func:`train` (:mod:`._training`): one copy following the optimizer's
  schedules, with evaluation and checkpoints.
* :func:`find_bounds` (:mod:`._confirm`): a range test, then a confirmation
  sweep of candidate schedules around its suggestion.

:mod:`._setup` holds what every driver does first; :mod:`._population` the
layout and running of K copies over a mesh.
"""

from optax_clr.drivers._checkpoint import CHECKPOINT_NAME
from optax_clr.drivers._checkpoint import epochs_done
from optax_clr.drivers._confirm import BoundsChoice
from optax_clr.drivers._confirm import find_bounds
from optax_clr.drivers._hyper_sweep import batch_size_sweep
from optax_clr.drivers._hyper_sweep import sweep
from optax_clr.drivers._multi_ramp import multi_seed_range_test
from optax_clr.drivers._multi_ramp import weight_decay_range_test
from optax_clr.drivers._range_test import ramp_lrs
from optax_clr.drivers._range_test import range_test
from optax_clr.drivers._sweep import parallel_range_test
from optax_clr.drivers._training import train

__all__ = ["BoundsChoice", "batch_size_sweep", "CHECKPOINT_NAME", "epochs_done", "find_bounds", "multi_seed_range_test", "parallel_range_test", "ramp_lrs",
           "range_test", "sweep", "train", "weight_decay_range_test"]
