"""Learning-rate and momentum schedules, and policies built from them.

Every constructor returns an ``optax.Schedule``: a pure function of the step
count that ``jax.jit``, ``jax.vmap`` and ``jax.grad`` can trace, printed as the
call that made it. Conventions shared by all of them:

* steps are reduced to a cycle index and a position within the cycle with
  integer arithmetic (:mod:`._profile`), so float32 values stay exact for
  every step an int32 counter holds;
* a step may be a Python or NumPy integer, a (traced) integer array or a
  float (rounded down; whole numbers are exact, float32 holds every integer
  only up to ``2**24``); arrays are evaluated elementwise; negative steps
  count as step 0;
* values are float32, promoted with the bounds' dtypes (under
  ``jax_enable_x64``, Python or float64 bounds give float64);
* hyperparameters are checked when the schedule is built, outside ``jit``:
  an invalid one raises ValueError or TypeError naming the argument, its
  value and the allowed range; one that is a JAX tracer (e.g. under
  ``jax.vmap`` over ``max_value``) can only have its dtype checked.

:mod:`._cyclic` holds the cyclic LR (triangular, triangular2, exp_range,
``scale_fn``, waveforms) and momentum, :mod:`._one_cycle` the one-cycle pair,
:mod:`._policy` a policy name and bounds -> the (LR, momentum) pair.
"""

from optax_clr.schedules._cyclic import cyclic_momentum_schedule
from optax_clr.schedules._cyclic import cyclic_schedule
from optax_clr.schedules._cyclic import exp_range_schedule
from optax_clr.schedules._cyclic import triangular2_schedule
from optax_clr.schedules._cyclic import triangular_schedule
from optax_clr.schedules._one_cycle import one_cycle_momentum_schedule
from optax_clr.schedules._one_cycle import one_cycle_schedule
from optax_clr.schedules._policy import auto_gamma
from optax_clr.schedules._policy import CYCLIC_POLICIES
from optax_clr.schedules._policy import policy_schedules
from optax_clr.schedules._policy import PolicySchedules
from optax_clr.schedules._policy import POLICIES
from optax_clr.schedules._profile import ANNEAL_STRATEGIES
from optax_clr.schedules._profile import MODES
from optax_clr.schedules._profile import SCALE_MODES
from optax_clr.schedules._profile import WAVEFORMS

__all__ = [
    "ANNEAL_STRATEGIES", "CYCLIC_POLICIES", "MODES", "POLICIES",
    "PolicySchedules", "SCALE_MODES", "WAVEFORMS", "auto_gamma",
    "cyclic_momentum_schedule", "cyclic_schedule", "exp_range_schedule",
    "one_cycle_momentum_schedule", "one_cycle_schedule", "policy_schedules",
    "triangular2_schedule", "triangular_schedule",
]
