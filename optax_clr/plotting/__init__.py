"""Plots of range tests, sweeps, schedules and training runs.

Figures are built on :class:`matplotlib.figure.Figure` with the
object-oriented API, never through ``pyplot``: no GUI backend or global
figure state is involved, so the functions work headless and in threads.
matplotlib is imported inside the functions; jax only by
:func:`plot_schedules`. Every function returns the ``Figure`` (and saves it
to ``path`` as PNG when given).

Plots explain themselves: every marker's legend label says what the value is
(``"minimum 0.22 -> minimum/10 = 0.022"``), markers that coincide share one
label instead of hiding each other, sweeps mark the best fixed LR, the stable
range and every unstable run by its status, the bounds a run actually used
can be drawn (``bounds=``), every figure has a title, the loss axis is
logarithmic when the loss spans more than a decade (``log_loss=``), and
legends sit outside the axes.

Artists carry a ``gid`` naming what they show (``"raw_loss"``,
``"smoothed_loss"``, ``"accuracy"``, ``"suggestion:steepest"``,
``"bound:base_lr"``, ``"best_lr"``, ``"stable_range"``, ``"status:spiked"``,
...), so callers and tests can find them.
"""

from optax_clr.plotting._range_tests import plot_multi_seed
from optax_clr.plotting._range_tests import plot_range_test
from optax_clr.plotting._range_tests import plot_weight_decay
from optax_clr.plotting._sweeps import plot_batch_sizes
from optax_clr.plotting._sweeps import plot_grid
from optax_clr.plotting._sweeps import plot_sweep
from optax_clr.plotting._training import evaluate_schedule
from optax_clr.plotting._training import history_arrays
from optax_clr.plotting._training import plot_schedules
from optax_clr.plotting._training import plot_training

__all__ = ["evaluate_schedule", "history_arrays", "plot_batch_sizes",
           "plot_grid",
           "plot_multi_seed", "plot_range_test", "plot_schedules",
           "plot_sweep", "plot_training", "plot_weight_decay"]
