"""The entry points: each a test (a solver) over the one engine.

* :func:`range_test`, :func:`multi_seed_range_test`,
  :func:`weight_decay_range_test` (:mod:`._ramp`): the LR ramped over the
  steps of one copy, or of S copies side by side.
* :func:`parallel_range_test`, :func:`sweep`, :func:`batch_size_sweep`
  (:mod:`._sweep`): K copies at fixed hyperparameters.
* :func:`train` (:mod:`._train`, checkpoints in :mod:`._checkpoint`): one
  copy following the optimizer's schedules, evaluated every epoch.
* :func:`fit`, :func:`find_bounds` (:mod:`._fit`): candidate schedules
  trained side by side, the worse stopped at cycle ends.
"""

from optax_clr.drivers._checkpoint import CHECKPOINT_NAME
from optax_clr.drivers._checkpoint import epochs_done
from optax_clr.drivers._fit import find_bounds
from optax_clr.drivers._fit import fit
from optax_clr.drivers._fit import NoBoundsError
from optax_clr.drivers._ramp import multi_seed_range_test
from optax_clr.drivers._ramp import ramp_lrs
from optax_clr.drivers._ramp import range_test
from optax_clr.drivers._ramp import weight_decay_range_test
from optax_clr.drivers._sweep import batch_size_sweep
from optax_clr.drivers._sweep import parallel_range_test
from optax_clr.drivers._sweep import sweep
from optax_clr.drivers._train import train

__all__ = ["CHECKPOINT_NAME", "NoBoundsError",
           "batch_size_sweep", "epochs_done", "find_bounds", "fit",
           "multi_seed_range_test", "parallel_range_test", "ramp_lrs",
           "range_test", "sweep", "train", "weight_decay_range_test"]
