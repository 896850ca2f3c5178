"""Specification of the momentum schedules (inverse to the learning rate)."""

from __future__ import annotations

import _reference as ref
import chex
import jax.numpy as jnp
import numpy as np
import pytest

from optax_clr import schedules as mom  # momentum lives with the LR schedules
from optax_clr import schedules as sch

CYCLE_CONFIGS = [
    dict(step_size_up=10),
    dict(step_size_up=7, step_size_down=13, mode="triangular2"),
    dict(step_size_up=8, mode="exp_range", gamma=0.99),
    dict(step_size_up=5, step_size_down=3, waveform="cosine"),
    dict(step_size_up=3, step_size_down=5, mode="exp_range", gamma=0.97,
         waveform="welch"),
    dict(step_size_up=4, scale_fn=lambda c: 1.0 / c, scale_mode="cycle"),
    dict(step_size_up=4, step_size_down=6,
         scale_fn=lambda t: 1.0 / (1.0 + t / 10.0), scale_mode="iterations"),
]


@pytest.mark.parametrize("config", CYCLE_CONFIGS, ids=ref.config_id)
def test_cyclic_momentum_matches_float64_reference(config):
  steps = np.arange(100)
  ours = ref.evaluate(mom.cyclic_momentum_schedule(0.7, 0.95, **config),
                      steps)
  expected = ref.sequence(ref.cyclic_momentum, steps, 0.7, 0.95, **config)
  np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6 * 0.95)


@pytest.mark.parametrize("config", CYCLE_CONFIGS, ids=ref.config_id)
def test_cyclic_momentum_is_the_reflection_of_the_learning_rate(config):
  # (max_m - m(t)) / (max_m - base_m) == (lr(t) - base) / (max - base).
  steps = np.arange(100)
  lr = ref.evaluate(sch.cyclic_schedule(0.0, 1.0, **config), steps)
  m = ref.evaluate(mom.cyclic_momentum_schedule(0.75, 0.95, **config), steps)
  np.testing.assert_allclose((0.95 - m) / 0.2, lr, atol=2e-6)


def test_cyclic_momentum_starts_at_max_and_is_lowest_at_the_lr_peak():
  schedule = mom.cyclic_momentum_schedule(0.8, 0.9, step_size_up=4,
                                          step_size_down=6)
  values = ref.evaluate(schedule, np.arange(30))
  assert values[0] == pytest.approx(0.9, rel=1e-7)
  assert int(np.argmin(values[:10])) == 4
  assert values[4] == pytest.approx(0.8, rel=1e-7)
  assert values[10] == pytest.approx(0.9, rel=1e-7)
  assert values.min() >= np.float32(0.8) and values.max() <= np.float32(0.9)


def test_cyclic_momentum_defaults_are_pytorchs():
  schedule = mom.cyclic_momentum_schedule()
  # base 0.8, max 0.9, step_size_up 2000.
  assert float(schedule(0)) == pytest.approx(0.9, rel=1e-7)
  assert float(schedule(2000)) == pytest.approx(0.8, rel=1e-7)
  assert float(schedule(1000)) == pytest.approx(0.85, rel=1e-7)


ONE_CYCLE_CONFIGS = [
    dict(total_steps=100),
    dict(total_steps=1000, pct_start=0.25, anneal_strategy="linear",
         base_momentum=0.8, max_momentum=0.9),
    dict(total_steps=97, three_phase=True),
    dict(total_steps=333, pct_start=0.4, anneal_strategy="linear",
         three_phase=True),
]


@pytest.mark.parametrize("config", ONE_CYCLE_CONFIGS, ids=ref.config_id)
def test_one_cycle_momentum_matches_float64_reference(config):
  k = dict(config)
  n = k.pop("total_steps")
  steps = np.arange(n + 3)
  ours = ref.evaluate(mom.one_cycle_momentum_schedule(**config), steps)
  expected = ref.sequence(ref.one_cycle_momentum, steps, n, **k)
  np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)


def test_one_cycle_momentum_goes_max_base_max():
  schedule = mom.one_cycle_momentum_schedule(100)
  values = ref.evaluate(schedule, [0, 29, 99, 150])
  np.testing.assert_allclose(values, [0.95, 0.85, 0.95, 0.95], rtol=1e-7)


def test_three_phase_momentum_holds_max_in_the_last_phase():
  schedule = mom.one_cycle_momentum_schedule(100, three_phase=True)
  values = ref.evaluate(schedule, np.arange(100))
  # phases end at 29 and 58: 0.95 -> 0.85 -> 0.95, then constant.
  assert values[29] == pytest.approx(0.85, rel=1e-7)
  assert values[58] == pytest.approx(0.95, rel=1e-7)
  np.testing.assert_array_equal(values[58:], np.float32(0.95))


def test_one_cycle_momentum_mirrors_the_learning_rate():
  # Same phases: momentum is lowest exactly where the learning rate peaks.
  lr = ref.evaluate(sch.one_cycle_schedule(1.0, 250, pct_start=0.2), range(250))
  m = ref.evaluate(mom.one_cycle_momentum_schedule(250, pct_start=0.2),
                   range(250))
  assert int(np.argmax(lr)) == int(np.argmin(m)) == 49


def test_momentum_values_are_float32_scalars():
  for schedule in (mom.cyclic_momentum_schedule(),
                   mom.one_cycle_momentum_schedule(10)):
    value = schedule(jnp.int32(3))
    chex.assert_shape(value, ())
    chex.assert_type(value, jnp.float32)
