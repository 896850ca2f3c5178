"""optax-clr: cyclical learning rates and compiled LR range tests for JAX.

Schedules are pure functions of the step count (``optax.Schedule``); the
optimizer helpers cycle LR and momentum through ``optax.inject_hyperparams``;
the range tests run as compiled JAX, the parallel one as K vmapped model copies
sharded over every device.
"""

from optax_clr.data import Dataset
from optax_clr.data import load_cifar10
from optax_clr.data import load_dataset
from optax_clr.data import load_digits
from optax_clr.data import load_mnist
from optax_clr.data import load_npz
from optax_clr.models import CNN
from optax_clr.models import cross_entropy_loss
from optax_clr.models import Im2ColConv
from optax_clr.models import make_model
from optax_clr.models import ResNet
from optax_clr.momentum import cyclic_momentum_schedule
from optax_clr.momentum import one_cycle_momentum_schedule
from optax_clr.optimizers import cyclic_adam
from optax_clr.optimizers import cyclic_adamw
from optax_clr.optimizers import cyclic_optimizer
from optax_clr.optimizers import cyclic_sgd
from optax_clr.optimizers import get_hyperparams
from optax_clr.optimizers import get_step
from optax_clr.optimizers import set_hyperparams
from optax_clr.parallel import parallel_range_test
from optax_clr.range_test import range_test
from optax_clr.results import ParallelSweepResult
from optax_clr.results import RangeTestResult
from optax_clr.schedules import cyclic_schedule
from optax_clr.schedules import exp_range_schedule
from optax_clr.schedules import one_cycle_schedule
from optax_clr.schedules import triangular2_schedule
from optax_clr.schedules import triangular_schedule
from optax_clr.suggestions import Suggestion
from optax_clr.suggestions import Suggestions
from optax_clr.suggestions import suggest
from optax_clr.training import train
from optax_clr.training import TrainHistory

__version__ = "0.1.0"

__all__ = [
    "CNN", "Dataset", "Im2ColConv", "ParallelSweepResult", "RangeTestResult",
    "ResNet", "Suggestion", "Suggestions", "TrainHistory",
    "cross_entropy_loss", "cyclic_adam", "cyclic_adamw",
    "cyclic_momentum_schedule", "cyclic_optimizer", "cyclic_schedule",
    "cyclic_sgd", "exp_range_schedule", "get_hyperparams", "get_step",
    "load_cifar10", "load_dataset", "load_digits", "load_mnist", "load_npz",
    "make_model", "one_cycle_momentum_schedule", "one_cycle_schedule",
    "parallel_range_test", "range_test", "set_hyperparams", "suggest",
    "train", "triangular2_schedule", "triangular_schedule",
]
