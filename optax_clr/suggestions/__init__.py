"""Learning-rate suggestions: rules for a ramp, for a sweep, over seeds.

* :mod:`._points` -- points on a classic range test's curve: ``steepest``,
  ``minimum``, ``valley`` (fastai), Smith's ``accuracy_bounds``.
* :mod:`._rules` -- the rule book: the CLR pair of a ramp by the loss or
  the accuracy rule (``suggest``, ``clr_bounds``, ``rise_point``), the
  resolution check and ``suggest_ramp``, the noise-aware default.
* :mod:`._status` -- the one rule for a run's status (``classify``).
* :mod:`._sweep` -- finished runs at fixed LRs: best LR, stable range and
  CLR bounds (``suggest_sweep``).
* :mod:`._seeds` -- the same over S seeds: medians and spreads
  (``aggregate``).
* :mod:`._disciplined` -- Smith's 2018 choice of a weight decay (and
  momentum) from ramps at several of them (``disciplined``).
"""

from optax_clr.suggestions._disciplined import disciplined
from optax_clr.suggestions._points import accuracy_bounds
from optax_clr.suggestions._points import MIN_POINTS
from optax_clr.suggestions._points import minimum
from optax_clr.suggestions._points import steepest
from optax_clr.suggestions._points import validate_curve
from optax_clr.suggestions._points import valley
from optax_clr.suggestions._rules import clr_bounds
from optax_clr.suggestions._rules import resolution
from optax_clr.suggestions._rules import RULES
from optax_clr.suggestions._rules import rise_point
from optax_clr.suggestions._rules import signal_threshold
from optax_clr.suggestions._rules import suggest
from optax_clr.suggestions._rules import suggest_ramp
from optax_clr.suggestions._seeds import aggregate
from optax_clr.suggestions._status import classify
from optax_clr.suggestions._status import DEFAULT_WINDOW
from optax_clr.suggestions._status import DIVERGE_THRESHOLD
from optax_clr.suggestions._status import STATUSES
from optax_clr.suggestions._status import summarize
from optax_clr.suggestions._status import windowed_mean
from optax_clr.suggestions._sweep import suggest_sweep
from optax_clr.suggestions._sweep import TOLERANCE
from optax_clr.suggestions._types import DisciplinedSuggestions
from optax_clr.suggestions._types import SeedSuggestions
from optax_clr.suggestions._types import Spread
from optax_clr.suggestions._types import Suggestion
from optax_clr.suggestions._types import Suggestions
from optax_clr.suggestions._types import SweepSuggestions

__all__ = [
    "DEFAULT_WINDOW", "DIVERGE_THRESHOLD", "RULES", "DisciplinedSuggestions", "MIN_POINTS", "STATUSES",
    "TOLERANCE", "SeedSuggestions", "Spread", "Suggestion", "Suggestions",
    "SweepSuggestions", "accuracy_bounds", "aggregate", "classify",
    "clr_bounds", "disciplined", "resolution", "minimum", "rise_point", "signal_threshold",
    "steepest", "suggest", "suggest_ramp", "suggest_sweep", "summarize",
    "valley",
    "validate_curve", "windowed_mean",
]
