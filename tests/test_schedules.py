"""Specification of the cyclical and one-cycle learning-rate schedules.

Values are compared with the independent float64 reference in
``_reference.py`` (PyTorch's formulas) to float32 precision: errors at most
``1e-6 * max_value``.
"""

from __future__ import annotations

import math

import _reference as ref
import chex
import jax.numpy as jnp
import numpy as np
import pytest

from optax_clr import schedules as sch

TOL = 1e-6  # relative to max_value
INT32_MAX = 2**31 - 1

CYCLIC_CONFIGS = {
    "triangular": dict(step_size_up=10),
    "triangular_asym": dict(step_size_up=7, step_size_down=13),
    "triangular_down_1": dict(step_size_up=5, step_size_down=1),
    "triangular_up_1": dict(step_size_up=1, step_size_down=4),
    "triangular2": dict(step_size_up=6, step_size_down=9, mode="triangular2"),
    "exp_range": dict(step_size_up=8, mode="exp_range", gamma=0.99),
    "exp_range_decay_bounds": dict(step_size_up=8, step_size_down=5,
                                   mode="exp_range", gamma=0.98,
                                   decay_bounds=True),
    "cosine": dict(step_size_up=11, step_size_down=4, waveform="cosine"),
    "welch": dict(step_size_up=4, step_size_down=11, waveform="welch"),
    "triangular2_cosine": dict(step_size_up=9, mode="triangular2",
                               waveform="cosine"),
    "exp_range_welch": dict(step_size_up=9, step_size_down=3,
                            mode="exp_range", gamma=0.995, waveform="welch"),
    "scale_fn_cycle": dict(step_size_up=5,
                           scale_fn=lambda c: 1.0 / c, scale_mode="cycle"),
    "scale_fn_iterations": dict(step_size_up=5, step_size_down=3,
                                scale_fn=lambda t: 1.0 / (1.0 + t / 20.0),
                                scale_mode="iterations"),
}
BASE, TOP = 0.1, 1.3


def _cyclic(config, base=BASE, top=TOP):
  return sch.cyclic_schedule(base, top, **config)


def _ref_cyclic(steps, config, base=BASE, top=TOP):
  return ref.sequence(ref.cyclic_lr, steps, base, top, **config)


def _cycle_length(config):
  up = config["step_size_up"]
  return up + (config.get("step_size_down") or up)


# --- values ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CYCLIC_CONFIGS))
def test_cyclic_matches_float64_reference(name):
  config = CYCLIC_CONFIGS[name]
  steps = np.arange(5 * _cycle_length(config) + 3)
  ours = ref.evaluate(_cyclic(config), steps)
  np.testing.assert_allclose(ours, _ref_cyclic(steps, config), rtol=0,
                             atol=TOL * TOP)


def test_triangular_matches_smith_paper_formula():
  # Smith (2017): cycle = floor(1 + t / 2s), x = |t/s - 2 cycle + 1|,
  # lr = base + (max - base) * max(0, 1 - x).
  s, base, top = 7, 0.001, 0.006
  t = np.arange(100, dtype=np.float64)
  cycle = np.floor(1 + t / (2 * s))
  x = np.abs(t / s - 2 * cycle + 1)
  paper = base + (top - base) * np.maximum(0, 1 - x)
  ours = ref.evaluate(sch.triangular_schedule(base, top, s), t)
  np.testing.assert_allclose(ours, paper, rtol=0, atol=TOL * top)


def test_cycle_landmarks_are_exact():
  schedule = sch.cyclic_schedule(0.25, 2.0, step_size_up=3, step_size_down=5)
  # base at cycle starts, max at the peak, exactly (no rounding drift).
  assert [float(schedule(t)) for t in (0, 3, 8, 11, 16, 8 * 1000 + 3)] == [
      0.25, 2.0, 0.25, 2.0, 0.25, 2.0]
  # linear in between: one third of the way up, one fifth of the way down.
  assert float(schedule(1)) == pytest.approx(0.25 + 1.75 / 3, rel=1e-7)
  assert float(schedule(4)) == pytest.approx(2.0 - 1.75 / 5, rel=1e-7)


@pytest.mark.parametrize("waveform, mid_height", [
    ("triangular", 0.5), ("cosine", 0.5), ("welch", 0.75)])
def test_waveform_heights(waveform, mid_height):
  schedule = sch.cyclic_schedule(0.0, 1.0, step_size_up=4, step_size_down=8,
                                 waveform=waveform)
  # start, halfway up, peak, halfway down, end.
  values = ref.evaluate(schedule, [0, 2, 4, 8, 12])
  np.testing.assert_allclose(values, [0, mid_height, 1, mid_height, 0],
                             atol=1e-7)


def test_cosine_and_welch_formulas_at_a_quarter():
  cosine = sch.cyclic_schedule(0.0, 1.0, 4, waveform="cosine")
  welch = sch.cyclic_schedule(0.0, 1.0, 4, waveform="welch")
  np.testing.assert_allclose(float(cosine(1)), (1 - math.cos(math.pi / 4)) / 2,
                             rtol=1e-6)
  np.testing.assert_allclose(float(welch(1)), 1 - 0.75**2, rtol=1e-6)
  # mirrored: a quarter of the way down the same height as a quarter up.
  assert float(cosine(7)) == pytest.approx(float(cosine(1)), rel=1e-6)
  assert float(welch(7)) == pytest.approx(float(welch(1)), rel=1e-6)


def test_triangular2_halves_the_amplitude_each_cycle():
  schedule = sch.triangular2_schedule(0.1, 0.9, step_size_up=4)
  peaks = [float(schedule(4 + 8 * k)) - 0.1 for k in range(5)]
  np.testing.assert_allclose(peaks, [0.8 / 2**k for k in range(5)], rtol=1e-6)


def test_exp_range_amplitude_only_keeps_base():
  gamma = 0.97
  schedule = sch.exp_range_schedule(0.2, 1.0, step_size_up=5, gamma=gamma)
  # cycle boundaries stay at base; the peak at t=15 is base + 0.8 gamma**15.
  base = float(np.float32(0.2))
  assert [float(schedule(t)) for t in (0, 10, 20)] == [base, base, base]
  assert float(schedule(15)) == pytest.approx(0.2 + 0.8 * gamma**15,
                                              rel=1e-6)


def test_exp_range_decay_bounds_decays_both_bounds():
  gamma = 0.97
  schedule = sch.exp_range_schedule(0.2, 1.0, step_size_up=5, gamma=gamma,
                                    decay_bounds=True)
  for t in (0, 10, 20):
    assert float(schedule(t)) == pytest.approx(0.2 * gamma**t, rel=1e-6)
  assert float(schedule(15)) == pytest.approx(gamma**15, rel=1e-6)


def test_conveniences_equal_the_general_function():
  steps = np.arange(60)
  pairs = [
      (sch.triangular_schedule(0.1, 1.0, 7, 5, waveform="welch"),
       sch.cyclic_schedule(0.1, 1.0, 7, 5, waveform="welch")),
      (sch.triangular2_schedule(0.1, 1.0, 7, 5),
       sch.cyclic_schedule(0.1, 1.0, 7, 5, mode="triangular2")),
      (sch.exp_range_schedule(0.1, 1.0, 7, 5, gamma=0.9, decay_bounds=True),
       sch.cyclic_schedule(0.1, 1.0, 7, 5, mode="exp_range", gamma=0.9,
                           decay_bounds=True)),
  ]
  for convenience, general in pairs:
    np.testing.assert_array_equal(ref.evaluate(convenience, steps),
                                  ref.evaluate(general, steps))


def test_scale_fn_overrides_mode_and_receives_float_cycle_numbers():
  seen = []

  def scale_fn(x):
    seen.append(x.dtype)
    return 2.0 ** -x  # Python-number semantics: 2 ** -3 = 0.125, not 0

  schedule = sch.cyclic_schedule(0.0, 1.0, 2, mode="triangular2",
                                 scale_fn=scale_fn)
  # peaks of cycles 1, 2, 3 at steps 2, 6, 10: 2**-1, 2**-2, 2**-3.
  np.testing.assert_allclose(ref.evaluate(schedule, [2, 6, 10]),
                             [0.5, 0.25, 0.125], rtol=1e-7)
  assert seen and all(d == jnp.float32 for d in seen)


def test_scale_fn_iterations_mode_receives_the_step():
  schedule = sch.cyclic_schedule(0.0, 1.0, 10, scale_fn=lambda t: t,
                                 scale_mode="iterations")
  # shape(3) = 0.3, scale = t = 3.
  assert float(schedule(3)) == pytest.approx(0.9, rel=1e-6)


# --- step inputs ---------------------------------------------------------------


@pytest.mark.parametrize("step", [
    13, np.int32(13), np.int64(13), jnp.int32(13), 13.0, np.float32(13.0),
    jnp.float32(13.0), 13.7, jnp.float32(13.99)],
                         ids=lambda s: f"{type(s).__name__}({s})")
def test_step_types_give_the_value_of_the_integer_step(step):
  schedule = sch.cyclic_schedule(0.1, 1.0, 7, 5, mode="exp_range", gamma=0.9)
  expected = ref.cyclic_lr(13, 0.1, 1.0, 7, 5, mode="exp_range", gamma=0.9)
  value = schedule(step)
  chex.assert_shape(value, ())
  chex.assert_type(value, jnp.float32)
  assert float(value) == pytest.approx(expected, rel=1e-6)


def test_negative_steps_count_as_step_zero():
  for schedule in (sch.cyclic_schedule(0.1, 1.0, 7, mode="exp_range",
                                       gamma=0.9),
                   sch.one_cycle_schedule(1.0, 100)):
    assert float(schedule(-5)) == float(schedule(0))


def test_step_arrays_are_evaluated_elementwise():
  schedule = sch.cyclic_schedule(0.1, 1.0, 3, 2, mode="triangular2")
  steps = jnp.arange(12).reshape(3, 4)
  values = schedule(steps)
  chex.assert_shape(values, (3, 4))
  chex.assert_type(values, jnp.float32)
  np.testing.assert_array_equal(
      np.asarray(values).ravel(),
      [float(schedule(int(t))) for t in range(12)])


# --- properties ----------------------------------------------------------------

SLOPE = {"triangular": 1.0, "cosine": math.pi / 2, "welch": 2.0}


@pytest.mark.parametrize("name", sorted(CYCLIC_CONFIGS))
def test_values_stay_within_bounds(name):
  config = CYCLIC_CONFIGS[name]
  steps = np.arange(6 * _cycle_length(config))
  values = ref.evaluate(_cyclic(config), steps)
  low = 0.0 if config.get("decay_bounds") else BASE
  assert values.min() >= low and values.max() <= TOP
  assert values[0] == pytest.approx(BASE, rel=1e-7)


@pytest.mark.parametrize("waveform", sch.WAVEFORMS)
@pytest.mark.parametrize("up, down", [(10, None), (3, 17), (17, 3), (1, 1)])
def test_triangular_policy_is_periodic_bit_for_bit(waveform, up, down):
  schedule = sch.cyclic_schedule(0.1, 1.0, up, down, waveform=waveform)
  total = up + (down or up)
  steps = np.arange(total)
  first = ref.evaluate(schedule, steps)
  for shift in (total, 7 * total, (INT32_MAX // total - 1) * total):
    np.testing.assert_array_equal(ref.evaluate(schedule, steps + shift), first)


@pytest.mark.parametrize("waveform", sch.WAVEFORMS)
@pytest.mark.parametrize("up, down", [(10, None), (3, 17), (17, 3), (1, 4)])
def test_adjacent_steps_differ_by_at_most_the_steepest_slope(waveform, up,
                                                             down):
  # Continuity: no jump larger than amplitude / min(step size) times the
  # waveform's largest slope (1, pi/2, 2), also across cycle boundaries.
  schedule = sch.cyclic_schedule(0.1, 1.0, up, down, waveform=waveform)
  total = up + (down or up)
  values = ref.evaluate(schedule, np.arange(4 * total + 1))
  bound = SLOPE[waveform] * 0.9 / min(up, down or up)
  assert np.max(np.abs(np.diff(values))) <= bound * (1 + 1e-6)


@pytest.mark.parametrize("config", [
    dict(mode="triangular2"), dict(mode="exp_range", gamma=0.995),
    dict(mode="exp_range", gamma=0.995, decay_bounds=True),
    dict(mode="triangular2", waveform="cosine")], ids=ref.config_id)
def test_amplitude_per_cycle_is_non_increasing(config):
  up, down = 6, 10
  schedule = sch.cyclic_schedule(0.1, 1.0, up, down, **config)
  values = ref.evaluate(schedule, np.arange(12 * (up + down)))
  per_cycle = values.reshape(12, up + down)
  amplitude = per_cycle.max(axis=1) - per_cycle.min(axis=1)
  assert np.all(np.diff(amplitude) <= 0)
  assert amplitude[-1] < 0.5 * amplitude[0]


# --- exactness at huge step counts -------------------------------------------

HUGE_CONFIGS = [
    dict(step_size_up=1999, step_size_down=3001),
    dict(step_size_up=3001),
    dict(step_size_up=1999, step_size_down=3001, waveform="cosine"),
    dict(step_size_up=3001, step_size_down=7, waveform="welch"),
    dict(step_size_up=1999, mode="triangular2"),
    # gamma**t is still ~0.12 at t = 2**31 - 1 for gamma = 1 - 1e-9, which
    # float32 cannot even represent (it rounds to 1.0).
    dict(step_size_up=1999, step_size_down=3001, mode="exp_range",
         gamma=1 - 1e-9),
    dict(step_size_up=3001, mode="exp_range", gamma=1 - 1e-9,
         decay_bounds=True),
    dict(step_size_up=1999, mode="exp_range", gamma=1 - 3e-10,
         waveform="cosine"),
]


def _huge_steps(total: int, up: int) -> np.ndarray:
  """Steps near 2**31 - 1 and near cycle starts and peaks close to it."""
  last = INT32_MAX // total
  steps = {INT32_MAX - i for i in range(64)}
  for k in (last - 2, last - 1, last):
    for anchor in (k * total, k * total + up):
      steps |= {anchor + d for d in range(-3, 4)}
  steps |= {(last - 1) * total + d for d in range(0, total, 97)}
  return np.array(sorted(s for s in steps if 0 <= s <= INT32_MAX))


def _max_huge_error(schedule_values, config, steps, top):
  expected = _ref_cyclic(steps, config, BASE, top)
  return float(np.max(np.abs(schedule_values - expected)) / top)


@pytest.mark.parametrize("config", HUGE_CONFIGS, ids=ref.config_id)
def test_float32_is_exact_up_to_int32_max(config):
  total = _cycle_length(config)
  steps = _huge_steps(total, config["step_size_up"])
  ours = ref.evaluate(_cyclic(config), steps)
  assert _max_huge_error(ours, config, steps, TOP) <= TOL


def _naive_float32(steps, base, top, up, down):
  """PyTorch's formula evaluated in float32, as a float-step port would."""
  f32 = np.float32
  t = np.asarray(steps).astype(f32)
  total = f32(up + down)
  cycle = np.floor(f32(1) + t / total)
  x = f32(1) + t / total - cycle
  ratio = f32(up) / total
  sf = np.where(x <= ratio, x / ratio, (x - f32(1)) / (ratio - f32(1)))
  assert sf.dtype == np.float32
  return (f32(base) + (f32(top) - f32(base)) * sf).astype(np.float64)


def test_naive_float32_step_division_fails_the_same_bound():
  # Proves the precision test can fail: near 2**31 float32 steps are 128
  # apart, so t / total in float32 puts the schedule far off.
  config = HUGE_CONFIGS[0]
  steps = _huge_steps(_cycle_length(config), config["step_size_up"])
  naive = _naive_float32(steps, BASE, TOP, 1999, 3001)
  assert _max_huge_error(naive, config, steps, TOP) > 1000 * TOL
  # ... while at small steps it is as good as ours.
  small = np.arange(10_000)
  assert _max_huge_error(_naive_float32(small, BASE, TOP, 1999, 3001), config,
                         small, TOP) <= TOL


def test_exp_range_with_float32_gamma_would_fail():
  # gamma = 1 - 1e-9 rounds to 1.0 in float32: computing gamma**t from a
  # float32 gamma gives 1 where the truth is exp(-2.147) = 0.117.
  gamma = 1 - 1e-9
  assert float(jnp.float32(gamma)) == 1.0
  schedule = sch.exp_range_schedule(0.0, 1.0, 3001, gamma=gamma,
                                    decay_bounds=True)
  t = INT32_MAX
  assert float(schedule(t)) == pytest.approx(gamma**t * ref.cyclic_shape_scale(
      t, 3001)[0], abs=TOL)


# --- one cycle -----------------------------------------------------------------


def test_one_cycle_known_pytorch_values():
  # PyTorch OneCycleLR, T=100, max_lr=1, defaults (clr-facts.md).
  schedule = sch.one_cycle_schedule(1.0, 100)
  known = {0: 0.04, 29: 1.0, 30: 0.99950, 50: 0.79389, 99: 4e-6}
  for t, v in known.items():
    assert float(schedule(t)) == pytest.approx(v, abs=5e-6)
  three = sch.one_cycle_schedule(1.0, 100, three_phase=True)
  assert float(three(50)) == pytest.approx(0.20925, abs=5e-6)


ONE_CYCLE_CONFIGS = [
    dict(max_value=1.0, total_steps=100),
    dict(max_value=0.1, total_steps=1000, pct_start=0.25,
         anneal_strategy="linear"),
    dict(max_value=0.5, total_steps=97, three_phase=True),
    dict(max_value=2.0, total_steps=333, pct_start=0.4,
         anneal_strategy="linear", three_phase=True, div_factor=3.0,
         final_div_factor=10.0),
    dict(max_value=0.01, total_steps=7, pct_start=0.5),
    dict(max_value=1.0, total_steps=2, pct_start=0.75),
]


def _ref_one_cycle_kwargs(config):
  k = dict(config)
  return k.pop("max_value"), k.pop("total_steps"), k


@pytest.mark.parametrize("config", ONE_CYCLE_CONFIGS, ids=ref.config_id)
def test_one_cycle_matches_float64_reference(config):
  top, n, rest = _ref_one_cycle_kwargs(config)
  steps = np.arange(n + 5)  # includes steps past the end
  expected = ref.sequence(ref.one_cycle_lr, steps, top, n, **rest)
  ours = ref.evaluate(sch.one_cycle_schedule(**config), steps)
  np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7 * top)


@pytest.mark.parametrize("n, pct", [(100, 0.3), (50, 0.25), (97, 0.3),
                                    (1000, 0.45), (10, 0.5)])
@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_peaks_at_pct_start_times_total_minus_one(n, pct,
                                                            three_phase):
  schedule = sch.one_cycle_schedule(1.0, n, pct, three_phase=three_phase)
  values = ref.evaluate(schedule, np.arange(n))
  peak = pct * n - 1
  assert int(np.argmax(values)) in (math.floor(peak), math.ceil(peak))
  if peak == int(peak):
    assert values[int(peak)] == 1.0


def test_one_cycle_holds_the_final_value_past_the_end():
  schedule = sch.one_cycle_schedule(1.0, 100)
  final = float(schedule(99))
  assert final == pytest.approx(1.0 / 25 / 1e4, rel=1e-6)
  for t in (100, 101, 10**6, INT32_MAX):
    assert float(schedule(t)) == final


def test_one_cycle_phase_values():
  schedule = sch.one_cycle_schedule(2.0, 201, pct_start=0.5, div_factor=4.0,
                                    final_div_factor=10.0, three_phase=True)
  # phase ends 99.5, 199, 200: initial 0.5 -> 2 -> 0.5 -> 0.05.
  assert float(schedule(0)) == 0.5
  assert float(schedule(199)) == pytest.approx(0.5, rel=1e-6)
  assert float(schedule(200)) == pytest.approx(0.05, rel=1e-6)
  assert float(schedule(99)) == pytest.approx(
      ref.one_cycle_lr(99, 2.0, 201, 0.5, "cos", 4.0, 10.0, True), rel=1e-6)


def test_one_cycle_is_exact_at_huge_total_steps():
  n, pct = INT32_MAX, 0.3
  schedule = sch.one_cycle_schedule(1.0, n, pct)
  peak = pct * n - 1
  steps = np.array(sorted(
      {math.floor(peak) + d for d in range(-3, 4)}
      | {n - 1 - d for d in range(8)} | {0, 1, 2, 1000, n // 2, n // 2 + 1}))
  expected = ref.sequence(ref.one_cycle_lr, steps, 1.0, n, pct)
  np.testing.assert_allclose(ref.evaluate(schedule, steps), expected,
                             rtol=0, atol=TOL)
