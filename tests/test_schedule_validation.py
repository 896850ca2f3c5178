"""Invalid hyperparameters are rejected when the schedule is built.

Each error names the argument, the offending value and the allowed range or
choices; values that are JAX tracers skip the value checks.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import _reference
from optax_clr import schedules as mom  # momentum lives with the LR schedules
from optax_clr import schedules as sch

cyclic = sch.cyclic_schedule
one_cycle = sch.one_cycle_schedule
cyc_mom = mom.cyclic_momentum_schedule
one_mom = mom.one_cycle_momentum_schedule

CYC = dict(base_value=0.1, max_value=1.0, step_size_up=10)
ONE = dict(max_value=1.0, total_steps=100)

CASES = [
    # bounds
    (cyclic, dict(CYC, base_value=-0.1), ValueError,
     r"base_value must be in \[0, inf\), got -0.1"),
    (cyclic, dict(CYC, max_value=-1.0, base_value=0.0), ValueError,
     r"max_value must be in \[0, inf\), got -1.0"),
    (cyclic, dict(CYC, base_value=1.0, max_value=0.5), ValueError,
     r"base_value must be <= max_value, got base_value=1.0, max_value=0.5"),
    (cyclic, dict(CYC, base_value=math.nan), ValueError,
     r"base_value must be a finite number in \[0, inf\), got nan"),
    (cyclic, dict(CYC, max_value=math.inf), ValueError,
     r"max_value must be a finite number in \[0, inf\), got inf"),
    (cyclic, dict(CYC, max_value=jnp.float32(-2.0)), ValueError,
     r"max_value must be in \[0, inf\), got -2.0"),
    (cyclic, dict(CYC, base_value="0.1"), TypeError,
     r"base_value must be a number, got str"),
    (cyclic, dict(CYC, max_value=np.array([1.0, 2.0])), ValueError,
     r"max_value must be a scalar, got shape \(2,\)"),
    # step sizes
    (cyclic, dict(CYC, step_size_up=0), ValueError,
     r"step_size_up must be an integer >= 1, got 0"),
    (cyclic, dict(CYC, step_size_up=-5), ValueError,
     r"step_size_up must be an integer >= 1, got -5"),
    (cyclic, dict(CYC, step_size_up=2.5), TypeError,
     r"step_size_up must be an integer >= 1, got float 2.5"),
    (cyclic, dict(CYC, step_size_up=2000.0), TypeError,
     r"step_size_up must be an integer >= 1, got float 2000.0"),
    (cyclic, dict(CYC, step_size_up=True), TypeError,
     r"step_size_up must be an integer >= 1, got bool"),
    (cyclic, dict(CYC, step_size_down=0), ValueError,
     r"step_size_down must be an integer >= 1, got 0"),
    (cyclic, dict(CYC, step_size_down=1.5), TypeError,
     r"step_size_down must be an integer >= 1, got float 1.5"),
    (cyclic, dict(CYC, step_size_up=2**30, step_size_down=2**30), ValueError,
     r"step_size_up \+ step_size_down must be <= 2\*\*31 - 1.*"
     r"step_size_up=1073741824, step_size_down=1073741824"),
    # choices
    (cyclic, dict(CYC, mode="cosine"), ValueError,
     r"mode must be one of 'triangular', 'triangular2', 'exp_range'; "
     r"got 'cosine'"),
    (cyclic, dict(CYC, waveform="sine"), ValueError,
     r"waveform must be one of 'triangular', 'cosine', 'welch'; got 'sine'"),
    (cyclic, dict(CYC, scale_mode="epoch"), ValueError,
     r"scale_mode must be one of 'cycle', 'iterations'; got 'epoch'"),
    # gamma
    (cyclic, dict(CYC, mode="exp_range", gamma=0.0), ValueError,
     r"gamma must be in \(0, 1\], got 0.0"),
    (cyclic, dict(CYC, mode="exp_range", gamma=1.5), ValueError,
     r"gamma must be in \(0, 1\], got 1.5"),
    (cyclic, dict(CYC, mode="exp_range", gamma=-0.5), ValueError,
     r"gamma must be in \(0, 1\], got -0.5"),
    (cyclic, dict(CYC, mode="exp_range", gamma=math.nan), ValueError,
     r"gamma must be a finite number in \(0, 1\], got nan"),
    # scale_fn and decay_bounds
    (cyclic, dict(CYC, scale_fn=3), TypeError,
     r"scale_fn must be callable, got int 3"),
    (cyclic, dict(CYC, decay_bounds=True), ValueError,
     r"decay_bounds=True is only defined for mode='exp_range'.*"
     r"got mode='triangular'"),
    (cyclic, dict(CYC, mode="triangular2", decay_bounds=True), ValueError,
     r"decay_bounds=True .* got mode='triangular2'"),
    (cyclic, dict(CYC, mode="exp_range", decay_bounds=True,
                  scale_fn=lambda x: x), ValueError,
     r"decay_bounds=True .* without scale_fn.*scale_fn=set"),
    (cyclic, dict(CYC, decay_bounds="yes"), TypeError,
     r"decay_bounds must be a bool, got str 'yes'"),
    # the conveniences validate through cyclic_schedule
    (sch.triangular_schedule, dict(CYC, waveform="hann"), ValueError,
     r"waveform must be one of"),
    (sch.triangular2_schedule, dict(CYC, step_size_up=0), ValueError,
     r"step_size_up must be an integer >= 1, got 0"),
    (sch.exp_range_schedule, dict(CYC, gamma=2.0), ValueError,
     r"gamma must be in \(0, 1\], got 2.0"),
    # one cycle
    (one_cycle, dict(ONE, max_value=-1.0), ValueError,
     r"max_value must be in \[0, inf\), got -1.0"),
    (one_cycle, dict(ONE, max_value=math.nan), ValueError,
     r"max_value must be a finite number"),
    (one_cycle, dict(ONE, total_steps=1), ValueError,
     r"total_steps must be an integer >= 2, got 1"),
    (one_cycle, dict(ONE, total_steps=0), ValueError,
     r"total_steps must be an integer >= 2, got 0"),
    (one_cycle, dict(ONE, total_steps=100.0), TypeError,
     r"total_steps must be an integer >= 2, got float 100.0"),
    (one_cycle, dict(ONE, pct_start=0.0), ValueError,
     r"pct_start must be in \(0, 1\), got 0.0"),
    (one_cycle, dict(ONE, pct_start=1.0), ValueError,
     r"pct_start must be in \(0, 1\), got 1.0"),
    (one_cycle, dict(ONE, pct_start=1.2), ValueError,
     r"pct_start must be in \(0, 1\), got 1.2"),
    (one_cycle, dict(ONE, pct_start=math.nan), ValueError,
     r"pct_start must be a finite number in \(0, 1\), got nan"),
    (one_cycle, dict(ONE, anneal_strategy="cosine"), ValueError,
     r"anneal_strategy must be one of 'cos', 'linear'; got 'cosine'"),
    (one_cycle, dict(ONE, div_factor=0.0), ValueError,
     r"div_factor must be in \(0, inf\), got 0.0"),
    (one_cycle, dict(ONE, div_factor=-25.0), ValueError,
     r"div_factor must be in \(0, inf\), got -25.0"),
    (one_cycle, dict(ONE, final_div_factor=0.0), ValueError,
     r"final_div_factor must be in \(0, inf\), got 0.0"),
    (one_cycle, dict(ONE, final_div_factor=math.inf), ValueError,
     r"final_div_factor must be a finite number in \(0, inf\), got inf"),
    (one_cycle, dict(ONE, three_phase="no"), TypeError,
     r"three_phase must be a bool, got str 'no'"),
    # phase ends must increase strictly from step 0
    (one_cycle, dict(ONE, total_steps=3, pct_start=0.3), ValueError,
     r"pct_start \* total_steps must be > 1 .*got pct_start=0.3, "
     r"total_steps=3"),
    (one_cycle, dict(ONE, total_steps=10, pct_start=0.1), ValueError,
     r"pct_start \* total_steps must be > 1 .*warm-up would end at step 0.0"),
    (one_cycle, dict(ONE, pct_start=0.6, three_phase=True), ValueError,
     r"three_phase=True .* pct_start < \(total_steps \+ 1\) / "
     r"\(2 \* total_steps\) = 0.505; got pct_start=0.6, total_steps=100"),
    # momentum bounds
    (cyc_mom, dict(base_momentum=-0.1), ValueError,
     r"base_momentum must be in \[0, 1\), got -0.1"),
    (cyc_mom, dict(max_momentum=1.0), ValueError,
     r"max_momentum must be in \[0, 1\), got 1.0"),
    (cyc_mom, dict(max_momentum=1.1), ValueError,
     r"max_momentum must be in \[0, 1\), got 1.1"),
    (cyc_mom, dict(base_momentum=0.95, max_momentum=0.9), ValueError,
     r"base_momentum must be <= max_momentum, got base_momentum=0.95, "
     r"max_momentum=0.9"),
    (cyc_mom, dict(max_momentum=math.nan), ValueError,
     r"max_momentum must be a finite number in \[0, 1\), got nan"),
    (cyc_mom, dict(step_size_up=0), ValueError,
     r"step_size_up must be an integer >= 1, got 0"),
    (cyc_mom, dict(mode="exp"), ValueError, r"mode must be one of"),
    (cyc_mom, dict(gamma=0.0), ValueError, r"gamma must be in \(0, 1\]"),
    (cyc_mom, dict(scale_fn="x"), TypeError, r"scale_fn must be callable"),
    (cyc_mom, dict(scale_mode="x"), ValueError, r"scale_mode must be one of"),
    (cyc_mom, dict(waveform="x"), ValueError, r"waveform must be one of"),
    (one_mom, dict(total_steps=1), ValueError,
     r"total_steps must be an integer >= 2, got 1"),
    (one_mom, dict(total_steps=100, pct_start=1.0), ValueError,
     r"pct_start must be in \(0, 1\), got 1.0"),
    (one_mom, dict(total_steps=100, anneal_strategy="x"), ValueError,
     r"anneal_strategy must be one of 'cos', 'linear'"),
    (one_mom, dict(total_steps=100, base_momentum=0.96), ValueError,
     r"base_momentum must be <= max_momentum, got base_momentum=0.96, "
     r"max_momentum=0.95"),
    (one_mom, dict(total_steps=100, max_momentum=1.5), ValueError,
     r"max_momentum must be in \[0, 1\), got 1.5"),
    (one_mom, dict(total_steps=4, pct_start=0.2), ValueError,
     r"pct_start \* total_steps must be > 1"),
]


@pytest.mark.parametrize(
    "factory, kwargs, error, match", CASES,
    ids=[f"{c[0].__name__}-{min(set(c[1]) - set(CYC) - set(ONE), default='')}"
         f"-{i}" for i, c in enumerate(CASES)])
def test_invalid_hyperparameter_is_rejected_with_a_precise_message(
    factory, kwargs, error, match):
  with pytest.raises(error, match=match):
    factory(**kwargs)


@pytest.mark.parametrize("factory, kwargs", [
    (cyclic, dict(base_value=0.0, max_value=0.0, step_size_up=1)),
    (cyclic, dict(CYC, mode="exp_range", gamma=1.0)),
    (cyclic, dict(CYC, step_size_up=np.int64(3), step_size_down=jnp.int32(4))),
    (cyclic, dict(CYC, gamma=np.float32(0.5), mode="exp_range",
                  decay_bounds=True)),
    (one_cycle, dict(max_value=1.0, total_steps=2, pct_start=0.51)),
    (one_cycle, dict(max_value=1.0, total_steps=100, pct_start=0.5,
                     three_phase=True)),
    (cyc_mom, dict(base_momentum=0.0, max_momentum=0.999)),
    (one_mom, dict(total_steps=2, pct_start=0.99, base_momentum=0.9,
                   max_momentum=0.9)),
], ids=_reference.config_id)
def test_edge_values_inside_the_allowed_ranges_are_accepted(factory, kwargs):
  schedule = factory(**kwargs)
  assert np.isfinite(float(schedule(1)))


def test_traced_hyperparameters_skip_value_checks():
  # max < base is not detectable while tracing; building still works.
  values = jax.vmap(lambda m: cyclic(0.5, m, 10)(0))(jnp.array([0.1, 1.0]))
  np.testing.assert_allclose(values, [0.5, 0.5])
  gammas = jax.vmap(lambda g: cyclic(0.1, 1.0, 10, mode="exp_range",
                                     gamma=g)(5))(jnp.array([0.9, 1.0]))
  np.testing.assert_allclose(gammas, [0.1 + 0.9 * 0.5 * 0.9**5, 0.55],
                             rtol=1e-6)


def test_traced_step_sizes_must_still_be_integers():
  with pytest.raises(TypeError, match="step_size_up must be an integer, got "
                     "dtype float32"):
    jax.vmap(lambda s: cyclic(0.1, 1.0, s)(3))(jnp.array([2.0, 3.0]))
  with pytest.raises(TypeError, match="total_steps must be an integer"):
    jax.vmap(lambda n: one_cycle(1.0, n)(3))(jnp.array([20.0, 30.0]))


def test_boolean_steps_are_rejected():
  with pytest.raises(TypeError, match="step must be an integer"):
    cyclic(**CYC)(True)


@pytest.mark.parametrize("factory, kwargs, new, example", [
    (cyclic, dict(base_lr=1e-3, max_lr=0.1), "base_value",
     "cyclic_schedule(base_value=1e-3, max_value=0.1, step_size_up=2000)"),
    (one_cycle, dict(max_value=0.1, epochs=10), "total_steps",
     "one_cycle_schedule(max_value=0.1, total_steps=10000)"),
])
def test_pytorch_keyword_names_the_argument_and_a_valid_call(
    factory, kwargs, new, example):
  with pytest.raises(TypeError) as info:
    factory(**kwargs)
  message = str(info.value)
  assert f"use {new}=..." in message and message.endswith(example)
  # The example in the message is itself a valid call.
  assert callable(eval("sch." + example))  # pylint: disable=eval-used
