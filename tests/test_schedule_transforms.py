"""The schedules under jax.jit, jax.vmap, jax.grad, lax.scan and optax."""

from __future__ import annotations

import _reference as ref
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_clr import schedules as mom  # momentum lives with the LR schedules
from optax_clr import schedules as sch

SCHEDULES = {
    "cyclic_exp_range": lambda: sch.cyclic_schedule(
        0.1, 1.0, 7, 5, mode="exp_range", gamma=0.97, waveform="cosine"),
    "cyclic_triangular2": lambda: sch.triangular2_schedule(0.1, 1.0, 4, 9),
    "cyclic_scale_fn": lambda: sch.cyclic_schedule(
        0.0, 1.0, 5, scale_fn=lambda x: 1.0 / jnp.sqrt(x),
        scale_mode="iterations"),
    "one_cycle": lambda: sch.one_cycle_schedule(1.0, 50, three_phase=True),
    "cyclic_momentum": lambda: mom.cyclic_momentum_schedule(
        0.8, 0.9, 3, 8, mode="triangular2"),
    "one_cycle_momentum": lambda: mom.one_cycle_momentum_schedule(
        50, anneal_strategy="linear"),
}
STEPS = np.arange(60)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_jit_matches_eager_with_traced_int32_steps(name):
  schedule = SCHEDULES[name]()
  values = jax.jit(schedule)(jnp.asarray(STEPS, jnp.int32))
  chex.assert_shape(values, STEPS.shape)
  chex.assert_type(values, jnp.float32)
  np.testing.assert_allclose(values, ref.evaluate(schedule, STEPS),
                             rtol=1e-6, atol=1e-7)


def test_jit_with_traced_float_steps_rounds_them_down():
  schedule = SCHEDULES["cyclic_exp_range"]()
  values = jax.jit(schedule)(jnp.asarray(STEPS, jnp.float32) + 0.5)
  chex.assert_type(values, jnp.float32)
  np.testing.assert_allclose(values, ref.evaluate(schedule, STEPS),
                             rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_vmap_over_steps_matches_elementwise(name):
  schedule = SCHEDULES[name]()
  values = jax.jit(jax.vmap(schedule))(jnp.asarray(STEPS, jnp.int32))
  chex.assert_shape(values, STEPS.shape)
  chex.assert_type(values, jnp.float32)
  np.testing.assert_allclose(values, ref.evaluate(schedule, STEPS),
                             rtol=1e-6, atol=1e-7)


def test_construction_inside_jit_with_traced_hyperparameters():
  @jax.jit
  def lr(max_value, step):
    return sch.cyclic_schedule(0.1, max_value, 10)(step)

  value = lr(2.0, jnp.int32(7))
  chex.assert_type(value, jnp.float32)
  assert float(value) == pytest.approx(0.1 + 1.9 * 0.7, rel=1e-6)


def test_vmap_over_max_value():
  maxes = jnp.array([0.5, 1.0, 4.0])
  values = jax.jit(jax.vmap(
      lambda m: sch.cyclic_schedule(0.1, m, 10)(7)))(maxes)
  chex.assert_shape(values, (3,))
  chex.assert_type(values, jnp.float32)
  np.testing.assert_allclose(values, 0.1 + (np.asarray(maxes) - 0.1) * 0.7,
                             rtol=1e-6)


def test_vmap_over_bounds_and_steps_together():
  bases = jnp.array([0.0, 0.1])
  fn = jax.jit(jax.vmap(jax.vmap(
      lambda b, t: sch.triangular_schedule(b, 1.0, 4)(t), (None, 0)),
                (0, None)))
  values = fn(bases, jnp.arange(9))
  chex.assert_shape(values, (2, 9))
  for i, b in enumerate([0.0, 0.1]):
    np.testing.assert_allclose(
        values[i], ref.sequence(ref.cyclic_lr, range(9), b, 1.0, 4),
        rtol=1e-6, atol=1e-7)


def test_vmap_over_integer_step_sizes():
  ups = jnp.array([1, 7, 1999, 5], jnp.int32)
  downs = jnp.array([3, 7, 3001, 1], jnp.int32)
  steps = [0, 5, 2000, 1234567, 2**31 - 1]
  values = jax.jit(jax.vmap(lambda u, d: sch.cyclic_schedule(
      0.1, 1.0, u, d, mode="triangular2")(jnp.asarray(steps))))(ups, downs)
  chex.assert_shape(values, (4, len(steps)))
  chex.assert_type(values, jnp.float32)
  for i, (u, d) in enumerate(zip(ups.tolist(), downs.tolist())):
    expected = ref.sequence(ref.cyclic_lr, steps, 0.1, 1.0, u, d,
                            mode="triangular2")
    np.testing.assert_allclose(values[i], expected, rtol=0, atol=1e-6)
  # step_size_down=None follows a traced step_size_up.
  sym = jax.jit(jax.vmap(lambda u: sch.cyclic_schedule(0.0, 1.0, u)(3)))(
      jnp.array([3, 6]))
  np.testing.assert_allclose(sym, [1.0, 0.5], rtol=1e-6)


def test_vmap_over_gamma():
  gammas = jnp.array([0.9, 0.99, 1.0])
  values = jax.jit(jax.vmap(lambda g: sch.exp_range_schedule(
      0.1, 1.0, 10, gamma=g)(25)))(gammas)
  expected = [ref.cyclic_lr(25, 0.1, 1.0, 10, mode="exp_range", gamma=g)
              for g in np.asarray(gammas, np.float64)]
  np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_vmap_over_one_cycle_total_steps_and_pct_start():
  totals = jnp.array([100, 200, 97])
  pcts = jnp.array([0.3, 0.25, 0.4])
  steps = jnp.arange(0, 100, 7)
  values = jax.jit(jax.vmap(lambda n, p: sch.one_cycle_schedule(
      1.0, n, p, three_phase=False)(steps)))(totals, pcts)
  chex.assert_shape(values, (3, len(steps)))
  for i in range(3):
    # Phase ends come from float32 pct_start here, not float64.
    p32 = float(np.float32(pcts[i]))
    expected = ref.sequence(ref.one_cycle_lr, np.asarray(steps), 1.0,
                            int(totals[i]), p32)
    np.testing.assert_allclose(values[i], expected, rtol=1e-5, atol=1e-6)


def test_vmap_over_momentum_bounds():
  bases = jnp.array([0.8, 0.85])
  values = jax.jit(jax.vmap(lambda b: mom.one_cycle_momentum_schedule(
      100, base_momentum=b)(29)))(bases)
  np.testing.assert_allclose(values, [0.8, 0.85], rtol=1e-6)
  values = jax.jit(jax.vmap(
      lambda b: mom.cyclic_momentum_schedule(b, 0.9, 10)(5)))(bases)
  np.testing.assert_allclose(values, [0.85, 0.875], rtol=1e-6)


def test_grad_with_respect_to_the_bounds():
  # lr(7) = base + (max - base) * 0.7 for step_size_up=10.
  d_max = jax.jit(jax.grad(
      lambda m: sch.cyclic_schedule(0.1, m, 10)(7)))(1.0)
  d_base = jax.jit(jax.grad(
      lambda b: sch.cyclic_schedule(b, 1.0, 10)(7)))(0.1)
  assert float(d_max) == pytest.approx(0.7, rel=1e-6)
  assert float(d_base) == pytest.approx(0.3, rel=1e-6)
  # second cycle of triangular2: amplitude halved.
  d_max2 = jax.jit(jax.grad(
      lambda m: sch.triangular2_schedule(0.1, m, 10)(27)))(1.0)
  assert float(d_max2) == pytest.approx(0.7 * 0.5, rel=1e-6)


def test_grad_with_respect_to_gamma():
  t, g = 7, 0.9
  grad = jax.jit(jax.grad(
      lambda g: sch.exp_range_schedule(0.1, 1.0, 10, gamma=g)(t)))(g)
  # d/dg [0.1 + 0.9 * 0.7 * g**t] = 0.9 * 0.7 * t * g**(t - 1).
  assert float(grad) == pytest.approx(0.9 * 0.7 * t * g**(t - 1), rel=1e-5)


def test_grad_of_one_cycle_and_momentum():
  # Every one-cycle knot is proportional to max_value: d lr / d max = lr / max.
  schedule = lambda m: sch.one_cycle_schedule(m, 100)(50)
  assert float(jax.jit(jax.grad(schedule))(2.0)) == pytest.approx(
      float(schedule(1.0)), rel=1e-6)
  # m(t) = max - (max - base) * w: d m / d base = w = 0.5 at step 5 of 10.
  d_base = jax.jit(jax.grad(
      lambda b: mom.cyclic_momentum_schedule(b, 0.9, 10)(5)))(0.8)
  assert float(d_base) == pytest.approx(0.5, rel=1e-6)


def test_vmap_of_grad_over_max_values():
  grads = jax.jit(jax.vmap(jax.grad(
      lambda m: sch.cyclic_schedule(0.1, m, 10, waveform="welch")(5))))(
          jnp.array([1.0, 2.0]))
  np.testing.assert_allclose(grads, [0.75, 0.75], rtol=1e-6)


def test_inside_lax_scan():
  schedule = sch.cyclic_schedule(0.1, 1.0, 3, 2, mode="exp_range", gamma=0.9)

  def body(total, step):
    lr = schedule(step)
    return total + lr, lr

  total, lrs = jax.lax.scan(body, jnp.float32(0), jnp.arange(20))
  expected = ref.sequence(ref.cyclic_lr, range(20), 0.1, 1.0, 3, 2,
                          mode="exp_range", gamma=0.9)
  np.testing.assert_allclose(lrs, expected, rtol=1e-6)
  assert float(total) == pytest.approx(expected.sum(), rel=1e-6)


def test_with_optax_inject_hyperparams_update_k_uses_schedule_k():
  lr = sch.one_cycle_schedule(1.0, 10)
  m = mom.one_cycle_momentum_schedule(10)
  opt = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=m)
  params = jnp.zeros(3)
  state = opt.init(params)

  @jax.jit
  def step(state, _):
    _, state = opt.update(jnp.ones(3), state, params)
    return state, (state.hyperparams["learning_rate"],
                   state.hyperparams["momentum"])

  _, (lrs, moms) = jax.lax.scan(step, state, None, length=12)
  np.testing.assert_allclose(lrs, ref.evaluate(lr, range(12)), rtol=1e-6)
  np.testing.assert_allclose(moms, ref.evaluate(m, range(12)), rtol=1e-6)


def test_float64_under_x64_and_int64_steps_beyond_int32():
  with jax.enable_x64(True):
    schedule = jax.jit(sch.cyclic_schedule(0.1, 1.0, 10))
    value = schedule(3)
    chex.assert_type(value, jnp.float64)
    assert float(value) == pytest.approx(0.37, rel=1e-14)
    # int64 steps are exact far beyond 2**31: 20 * 2**36 + 3 ~ step 3.
    big = jnp.asarray(20 * 2**36 + 3, jnp.int64)
    assert float(schedule(big)) == float(value)
    # float32 bounds keep float32.
    f32 = jax.jit(sch.cyclic_schedule(jnp.float32(0.1), jnp.float32(1.0), 10))
    chex.assert_type(f32(3), jnp.float32)
