"""Results of the range tests, the sweeps and training, and their files.

Every result shares one base (:class:`Result`): typed read-only arrays,
strict JSON with ``type`` and ``format_version``, CSV, ``plot()`` returning
a matplotlib Figure. :func:`load_results` reads any of them (or a run
directory's ``results.json``).
"""

from optax_clr.results._base import as_array
from optax_clr.results._base import FORMAT_VERSION
from optax_clr.results._base import Result
from optax_clr.results._fit import Candidate
from optax_clr.results._fit import FitResult
from optax_clr.results._sweep import BatchSizeSweepResult
from optax_clr.results._sweep import GridSweepResult
from optax_clr.results._load import Bounds
from optax_clr.results._load import bounds_of
from optax_clr.results._load import load_results
from optax_clr.results._load import RESULT_TYPES
from optax_clr.results._load import RunSummary
from optax_clr.results._range_test import MultiSeedRangeTestResult
from optax_clr.results._range_test import RangeTestResult
from optax_clr.results._range_test import STOP_REASONS
from optax_clr.results._range_test import WeightDecayRangeTestResult
from optax_clr.results._sweep import ParallelSweepResult
from optax_clr.results._sweep import Statuses
from optax_clr.results._training import TrainHistory

__all__ = ["BatchSizeSweepResult", "Bounds", "Candidate", "FORMAT_VERSION",
           "FitResult",
           "GridSweepResult", "MultiSeedRangeTestResult",
           "ParallelSweepResult", "RESULT_TYPES", "RangeTestResult", "Result",
           "RunSummary", "STOP_REASONS", "Statuses", "TrainHistory",
           "WeightDecayRangeTestResult", "as_array", "bounds_of",
           "load_results"]
