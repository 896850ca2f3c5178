"""Plots of range tests, sweeps, schedules and training runs.

Figures are built on :class:`matplotlib.figure.Figure` with the
object-oriented API, never through ``pyplot``: no GUI backend or global
figure state is involved, so the functions work headless and in threads.
matplotlib is imported inside the functions; jax only by
:func:`plot_schedules`. Every function returns the ``Figure``.

The arguments the functions share: ``ax``, the Axes to draw on (a new
Figure when None); ``path``, where to save the figure as PNG (atomically);
``suggestions``, True to mark ``result.suggest()``, a precomputed
suggestion set, or False for none; ``bounds``, ``(base_lr, max_lr)`` to
draw as "used" (e.g. those a run was trained with) instead of the
suggested ones; ``log_loss``, a log-scale loss axis (None: when the loss
spans more than a decade).

Plots explain themselves: every marker's legend label says what the value is
(``"minimum 0.22 -> minimum/10 = 0.022"``), markers that coincide share one
label instead of hiding each other, sweeps mark the best fixed LR, the stable
range and every unstable run by its status, every figure has a title, and
legends sit outside the axes. Artists carry a ``gid`` naming what they show
(``"raw_loss"``, ``"smoothed_loss"``, ``"accuracy"``,
``"suggestion:steepest"``, ``"bound:base_lr"``, ``"best_lr"``,
``"stable_range"``, ``"status:spiked"``, ...), so callers and tests can find
them.
"""

from optax_clr.plotting._results import plot_batch_sizes
from optax_clr.plotting._results import plot_grid
from optax_clr.plotting._results import plot_multi_seed
from optax_clr.plotting._results import plot_range_test
from optax_clr.plotting._results import plot_sweep
from optax_clr.plotting._results import plot_weight_decay
from optax_clr.plotting._training import evaluate_schedule
from optax_clr.plotting._training import history_arrays
from optax_clr.plotting._training import plot_schedules
from optax_clr.plotting._training import plot_training

__all__ = ["evaluate_schedule", "history_arrays", "plot_batch_sizes",
           "plot_grid", "plot_multi_seed", "plot_range_test",
           "plot_schedules", "plot_sweep", "plot_training",
           "plot_weight_decay"]
