"""optax-clr: cyclical learning rates and compiled LR range tests for JAX.

Schedules are pure functions of the step count (``optax.Schedule``); the
optimizer helpers cycle LR and momentum through ``optax.inject_hyperparams``;
the range tests, the sweep and training run on one compiled engine, the
sweep as K vmapped model copies sharded over every device.

The public API is flat (``optax_clr.range_test``, ``optax_clr.cyclic_sgd``,
...); the subpackages hold the implementation, one idea per module.
"""

from optax_clr._cache import enable_compilation_cache
from optax_clr.data import Dataset
from optax_clr.data import load_cifar10
from optax_clr.data import load_dataset
from optax_clr.data import load_digits
from optax_clr.data import load_mnist
from optax_clr.data import load_npz
from optax_clr._options import Options
from optax_clr.drivers import batch_size_sweep
from optax_clr.drivers import Candidate
from optax_clr.drivers import find_bounds
from optax_clr.drivers import fit
from optax_clr.drivers import FitResult
from optax_clr.drivers import multi_seed_range_test
from optax_clr.drivers import parallel_range_test
from optax_clr.drivers import sweep
from optax_clr.drivers import range_test
from optax_clr.drivers import train
from optax_clr.drivers import weight_decay_range_test
from optax_clr.engine._model import with_state
from optax_clr.models import CNN
from optax_clr.models import cross_entropy_loss
from optax_clr.models import Im2ColConv
from optax_clr.models import make_model
from optax_clr.models import ResNet
from optax_clr.optimizers import cyclic_adam
from optax_clr.optimizers import cyclic_adamw
from optax_clr.optimizers import cyclic_optimizer
from optax_clr.optimizers import cyclic_sgd
from optax_clr.optimizers import find_hyperparams
from optax_clr.optimizers import get_hyperparams
from optax_clr.optimizers import get_step
from optax_clr.optimizers import lookahead
from optax_clr.optimizers import lookahead_slow
from optax_clr.optimizers import set_hyperparams
from optax_clr.results import BatchSizeSweepResult
from optax_clr.results import bounds_of
from optax_clr.results import GridSweepResult
from optax_clr.results import load_results
from optax_clr.results import MultiSeedRangeTestResult
from optax_clr.results import ParallelSweepResult
from optax_clr.results import RangeTestResult
from optax_clr.results import RunSummary
from optax_clr.results import TrainHistory
from optax_clr.results import WeightDecayRangeTestResult
from optax_clr.schedules import cyclic_momentum_schedule
from optax_clr.schedules import cyclic_schedule
from optax_clr.schedules import exp_range_schedule
from optax_clr.schedules import one_cycle_momentum_schedule
from optax_clr.schedules import one_cycle_schedule
from optax_clr.schedules import policy_schedules
from optax_clr.schedules import triangular2_schedule
from optax_clr.schedules import triangular_schedule
from optax_clr.suggestions import SeedSuggestions
from optax_clr.suggestions import Suggestion
from optax_clr.suggestions import Suggestions
from optax_clr.suggestions import suggest
from optax_clr.suggestions import SweepSuggestions

__version__ = "0.2.0"

__all__ = [
    "BatchSizeSweepResult", "CNN", "Candidate", "FitResult", "Dataset", "GridSweepResult", "Im2ColConv", "MultiSeedRangeTestResult",
    "ParallelSweepResult", "RangeTestResult", "ResNet", "RunSummary",
    "SeedSuggestions", "Suggestion", "Suggestions", "SweepSuggestions",
    "TrainHistory", "batch_size_sweep", "bounds_of", "cross_entropy_loss", "cyclic_adam", "cyclic_adamw",
    "cyclic_momentum_schedule", "cyclic_optimizer", "cyclic_schedule",
    "cyclic_sgd", "enable_compilation_cache", "exp_range_schedule", "find_bounds", "find_hyperparams", "fit",
    "get_hyperparams", "get_step", "load_cifar10", "load_dataset",
    "load_digits", "load_mnist", "load_npz", "load_results", "lookahead",
    "lookahead_slow", "make_model", "Options",
    "multi_seed_range_test", "one_cycle_momentum_schedule",
    "one_cycle_schedule", "parallel_range_test", "policy_schedules",
    "range_test", "set_hyperparams", "suggest", "sweep", "train",
    "triangular2_schedule", "triangular_schedule",
    "WeightDecayRangeTestResult", "weight_decay_range_test", "with_state",
]
