"""optax-clr: cyclical learning rates and compiled LR range tests for JAX.

Schedules are pure functions of the step count (``optax.Schedule``); the
optimizer helpers cycle LR and momentum through ``optax.inject_hyperparams``;
the range tests, the sweep and training run on one compiled engine, the
sweep as K vmapped model copies sharded over every device.

The public API is flat (``optax_clr.range_test``, ``optax_clr.cyclic_sgd``,
...); the subpackages hold the implementation, one idea per module. Names
are imported on first use (PEP 562), so ``import optax_clr`` -- and the
CLI's ``--help`` -- loads neither jax nor the library until it is needed.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it.
_WHERE = {
    "enable_compilation_cache": "optax_clr._cache",
    "Dataset": "optax_clr.data",
    "load_cifar10": "optax_clr.data",
    "load_dataset": "optax_clr.data",
    "load_digits": "optax_clr.data",
    "load_mnist": "optax_clr.data",
    "load_npz": "optax_clr.data",
    "Options": "optax_clr._options",
    "batch_size_sweep": "optax_clr.drivers",
    "Candidate": "optax_clr.results",
    "find_bounds": "optax_clr.drivers",
    "fit": "optax_clr.drivers",
    "FitResult": "optax_clr.results",
    "multi_seed_range_test": "optax_clr.drivers",
    "parallel_range_test": "optax_clr.drivers",
    "sweep": "optax_clr.drivers",
    "range_test": "optax_clr.drivers",
    "train": "optax_clr.drivers",
    "weight_decay_range_test": "optax_clr.drivers",
    "with_state": "optax_clr.engine._model",
    "CNN": "optax_clr.models",
    "cross_entropy_loss": "optax_clr.models",
    "Im2ColConv": "optax_clr.models",
    "make_model": "optax_clr.models",
    "ResNet": "optax_clr.models",
    "cyclic_adam": "optax_clr.optimizers",
    "cyclic_adamw": "optax_clr.optimizers",
    "cyclic_optimizer": "optax_clr.optimizers",
    "cyclic_sgd": "optax_clr.optimizers",
    "find_hyperparams": "optax_clr.optimizers",
    "get_hyperparams": "optax_clr.optimizers",
    "get_step": "optax_clr.optimizers",
    "lookahead": "optax_clr.optimizers",
    "lookahead_slow": "optax_clr.optimizers",
    "set_hyperparams": "optax_clr.optimizers",
    "BatchSizeSweepResult": "optax_clr.results",
    "bounds_of": "optax_clr.results",
    "GridSweepResult": "optax_clr.results",
    "load_results": "optax_clr.results",
    "MultiSeedRangeTestResult": "optax_clr.results",
    "ParallelSweepResult": "optax_clr.results",
    "RangeTestResult": "optax_clr.results",
    "RunSummary": "optax_clr.results",
    "TrainHistory": "optax_clr.results",
    "WeightDecayRangeTestResult": "optax_clr.results",
    "cyclic_momentum_schedule": "optax_clr.schedules",
    "cyclic_schedule": "optax_clr.schedules",
    "exp_range_schedule": "optax_clr.schedules",
    "one_cycle_momentum_schedule": "optax_clr.schedules",
    "one_cycle_schedule": "optax_clr.schedules",
    "policy_schedules": "optax_clr.schedules",
    "triangular2_schedule": "optax_clr.schedules",
    "triangular_schedule": "optax_clr.schedules",
    "SeedSuggestions": "optax_clr.suggestions",
    "Suggestion": "optax_clr.suggestions",
    "Suggestions": "optax_clr.suggestions",
    "suggest": "optax_clr.suggestions",
    "SweepSuggestions": "optax_clr.suggestions",
}

__version__ = "0.2.0"

__all__ = sorted(_WHERE)  # the public API is exactly the lazy names


def __getattr__(name: str) -> Any:
  if name not in _WHERE:
    raise AttributeError(f"module 'optax_clr' has no attribute {name!r}")
  value = getattr(importlib.import_module(_WHERE[name]), name)
  globals()[name] = value  # later lookups skip this function
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_WHERE))
