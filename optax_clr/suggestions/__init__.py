"""Learning-rate suggestions, pure NumPy on recorded curves: points on a
ramp (``steepest``, ``minimum``, ``valley``, ``accuracy_bounds``), the rule
book that reads its CLR bounds (``suggest``, ``clr_bounds``,
``suggest_ramp``), a run's status (``classify``), a sweep's answer
(``suggest_sweep``), the medians over seeds (``aggregate``) and Smith's
weight-decay choice (``disciplined``).
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
from optax_clr.suggestions._rules import MAX_DIVISOR
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
    "DEFAULT_WINDOW", "DIVERGE_THRESHOLD", "DisciplinedSuggestions",
    "MAX_DIVISOR", "MIN_POINTS", "RULES", "STATUSES", "SeedSuggestions",
    "Spread",
    "Suggestion", "Suggestions", "SweepSuggestions", "TOLERANCE",
    "accuracy_bounds", "aggregate", "classify", "clr_bounds", "disciplined",
    "minimum", "resolution", "rise_point", "signal_threshold", "steepest",
    "suggest", "suggest_ramp", "suggest_sweep", "summarize", "valley",
    "validate_curve", "windowed_mean",
]
