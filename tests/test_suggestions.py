"""Specification of the LR suggestions (optax_clr.suggestions)."""

import json

import numpy as np
import pytest

from optax_clr import suggestions as sg

# A range-test-like curve on a grid of 0.1 decades: lrs[i] = 10**(-6 + i/10).
# loss(x) = -tanh(2 (x + 3)) + 0.5 * max(0, x + 1)**2 with x = log10(lr)
# falls fastest at x = -3 (index 30, lr 1e-3) and is lowest at x = -1
# (index 50, lr 0.1): the tanh is flat to 1e-3 there and the parabola starts.
LRS = np.logspace(-6, 0, 61)
X = np.log10(LRS)
LOSS = -np.tanh(2 * (X + 3)) + 0.5 * np.maximum(0, X + 1) ** 2


def _fastai_style_valley_index(losses):
  """Independent reference: textbook O(n^2) LDS, then fastai's index rule."""
  n = len(losses)
  lds = [1] * n
  for i in range(n):
    for j in range(i):
      if losses[j] > losses[i]:
        lds[i] = max(lds[i], lds[j] + 1)
  longest = max(lds)
  end = lds.index(longest)
  start = end - longest
  sections = (end - start) / 3
  return start + int(sections) + int(sections / 2), longest


# --- steepest -----------------------------------------------------------------


def test_steepest_finds_the_known_steepest_point_on_log_lr():
  s = sg.steepest(LRS, LOSS)
  assert s.index == 30
  assert s.lr == pytest.approx(1e-3)
  assert s.derivative == "log_lr"
  assert s.method == "steepest"


def test_steepest_uses_log_lr_not_raw_lr():
  # On a geometric grid the raw-LR derivative is the log-LR one divided by
  # lr * ln(10): it is largest in magnitude at the smallest LRs, so a raw-LR
  # rule would pick a different point. The log-LR rule still finds x = -3.
  raw = np.gradient(LOSS[6:56], LRS[6:56])
  assert 6 + int(np.argmin(raw)) != 30
  assert sg.steepest(LRS, LOSS).index == 30


def test_steepest_default_skips_a_tenth_at_start_and_five_at_end():
  # A spurious cliff in the first 6 points (61 // 10) and in the last 5 is
  # ignored by default, and found when nothing is skipped.
  loss = LOSS.copy()
  loss[2] = loss[1] - 50.0
  s = sg.steepest(LRS, loss)
  assert s.index == 30
  # Central differences: slope -250 per decade at 1, ~0 at 2.
  assert sg.steepest(LRS, loss, skip_start=0, skip_end=0).index == 1


def test_steepest_stops_at_the_first_nonfinite_value():
  # Everything from the first NaN on is dropped, even a finite value after it.
  loss = LOSS.copy()
  loss[25] = np.nan
  loss[27] = -100.0
  s = sg.steepest(LRS, loss, skip_start=0, skip_end=0)
  assert s.lr is not None and s.index < 25


def test_steepest_index_points_into_the_original_arrays():
  s = sg.steepest(LRS, LOSS, skip_start=20, skip_end=0)
  assert s.index == 30
  assert s.lr == LRS[s.index]


def test_steepest_is_none_for_a_flat_curve():
  s = sg.steepest(LRS, np.ones(61))
  assert s.lr is None and s.index is None
  assert "no decrease" in s.reason


def test_steepest_is_none_for_a_rising_curve():
  s = sg.steepest(LRS, X ** 3 + 300)
  assert s.lr is None
  assert "no decrease" in s.reason


@pytest.mark.parametrize("n", [0, 1, 2])
def test_steepest_is_none_with_fewer_than_three_points(n):
  s = sg.steepest(LRS[:n], LOSS[:n], skip_start=0, skip_end=0)
  assert s.lr is None
  assert "too short" in s.reason


def test_three_points_are_enough():
  s = sg.steepest([1e-3, 1e-2, 1e-1], [3.0, 1.0, 0.9], skip_start=0,
                  skip_end=0)
  # np.gradient: [-2, -1.05, -0.1] per decade.
  assert s.index == 0
  assert sg.MIN_POINTS == 3


def test_a_nan_tail_that_leaves_too_few_points_gives_a_reason():
  loss = LOSS.copy()
  loss[8:] = np.nan
  s = sg.steepest(LRS, loss)  # skips 6 at the start; 2 points are left
  assert s.lr is None
  assert "too short" in s.reason and "non-finite value at index 8" in s.reason


def test_inf_counts_as_nonfinite():
  loss = LOSS.copy()
  loss[20] = np.inf
  s = sg.minimum(LRS, loss, skip_start=0, skip_end=0)
  assert s.index == 19  # the loss still falls up to the inf


# --- minimum --------------------------------------------------------------------


def test_minimum_is_the_lr_at_the_minimum_loss_over_factor():
  s = sg.minimum(LRS, LOSS)
  assert s.index == 50
  assert s.lr == pytest.approx(0.1 / 10)
  assert s.derivative == "none"
  assert sg.minimum(LRS, LOSS, factor=3.0).lr == pytest.approx(0.1 / 3)


def test_minimum_is_none_when_the_loss_never_falls():
  assert sg.minimum(LRS, np.full(61, 2.0)).lr is None
  assert sg.minimum(LRS, X + 10).lr is None


def test_minimum_rejects_a_factor_below_one():
  with pytest.raises(ValueError, match="factor"):
    sg.minimum(LRS, LOSS, factor=0.5)


# --- valley ---------------------------------------------------------------------


def test_valley_on_the_known_curve():
  # Without skipping, the loss falls strictly over points 0..50: the longest
  # decreasing run has 51 points, max_start = 50 - 51 = -1, sections = 17,
  # index = -1 + 17 + 8 = 24.
  s = sg.valley(LRS, LOSS, skip_start=0, skip_end=0)
  assert s.index == 24
  assert s.lr == pytest.approx(10 ** -3.6)
  assert s.derivative == "index"
  # Default skipping keeps points 6..55: descent of 45 points ending at 50
  # (local 44), max_start = -1, sections = 15, local index 21 -> 27.
  assert sg.valley(LRS, LOSS).index == 27


def test_valley_matches_fastais_rule_on_random_curves():
  rng = np.random.default_rng(0)
  for _ in range(50):
    n = int(rng.integers(6, 40))
    losses = np.cumsum(rng.normal(size=n))
    expected, longest = _fastai_style_valley_index(list(losses))
    assert longest >= 2  # a random walk of >= 6 steps falls somewhere
    # fastai wraps a negative index around to the last point; we clamp to 0.
    s = sg.valley(np.arange(1.0, n + 1), losses, skip_start=0, skip_end=0)
    assert s.index == max(0, expected)


def test_valley_longest_decreasing_subsequence_is_not_contiguous():
  # 5 > 4 > 3 > 2 with bumps in between: LDS length 4 ending at index 6.
  lds = sg._points._longest_decreasing(np.array([5.0, 9.0, 4.0, 8.0, 3.0, 7.0, 2.0]))
  np.testing.assert_array_equal(lds, [1, 1, 2, 2, 3, 3, 4])


def test_valley_clamps_fastais_negative_index_to_zero():
  # Descent of two points from the start: fastai computes index -1.
  s = sg.valley([1.0, 2.0, 3.0], [1.0, 0.0, 5.0], skip_start=0, skip_end=0)
  assert s.index == 0


def test_valley_is_none_for_a_flat_curve():
  s = sg.valley(LRS, np.zeros(61))
  assert s.lr is None
  assert "no decrease" in s.reason


# --- accuracy bounds ----------------------------------------------------------


ACC_LRS = np.arange(1.0, 13.0)


def test_accuracy_bounds_thresholds_without_smoothing():
  acc = [0.1, 0.1, 0.1, 0.2, 0.4, 0.6, 0.8, 0.85, 0.9, 0.9, 0.5, 0.1]
  # rise = 0.9 - 0.1 = 0.8; base: first >= 0.18 (index 3, 0.2);
  # max: first >= 0.82 (index 7, 0.85).
  base, top = sg.accuracy_bounds(ACC_LRS, acc, window=1)
  assert (base.index, top.index) == (3, 7)
  assert (base.lr, top.lr) == (4.0, 8.0)
  assert base.method == "accuracy_base" and top.method == "accuracy_max"
  assert base.derivative == top.derivative == "none"


def test_accuracy_max_stops_where_the_curve_turns_ragged():
  acc = [0.1, 0.1, 0.3, 0.5, 0.35, 0.6, 0.9, 0.9]
  # After base (index 2) the accuracy drops 0.15 > 0.1 * 0.8 below its
  # running max at index 4, so max is the high point before it (index 3),
  # earlier than the plateau (index 6).
  base, top = sg.accuracy_bounds(ACC_LRS[:8], acc, window=1)
  assert (base.index, top.index) == (2, 3)
  assert "falling" in top.reason


def test_accuracy_bounds_default_smoothing_is_a_centred_mean_of_three():
  acc = np.array([0.1, 0.1, 0.1, 0.2, 0.4, 0.6, 0.8, 0.85, 0.9, 0.9, 0.5,
                  0.1])
  smooth = np.convolve(acc, np.ones(3), "same") / np.convolve(
      np.ones(12), np.ones(3), "same")
  # smooth = [.1, .1, .133, .233, .4, .6, .75, .85, .883, .767, .5, .3]:
  # rise = .783; base: first >= .178 (index 3); max: first >= .805 (index 7).
  np.testing.assert_allclose(smooth[[3, 7, 8]], [0.7 / 3, 0.85, 2.65 / 3])
  base, top = sg.accuracy_bounds(ACC_LRS, acc)
  assert (base.index, top.index) == (3, 7)


def test_accuracy_bounds_a_jump_in_one_step_moves_base_back():
  base, top = sg.accuracy_bounds([1.0, 2.0, 3.0, 4.0], [0.1, 0.1, 0.9, 0.9],
                                 window=1)
  assert (base.index, top.index) == (1, 2)
  assert base.lr < top.lr


def test_accuracy_bounds_are_none_when_accuracy_never_rises():
  base, top = sg.accuracy_bounds(ACC_LRS, np.linspace(0.9, 0.1, 12))
  assert base.lr is None and top.lr is None
  assert "flat" in base.reason


def test_accuracy_bounds_drop_a_nan_tail():
  acc = [0.1, 0.1, 0.5, 0.9, 0.9, np.nan, 1.0]
  base, top = sg.accuracy_bounds(ACC_LRS[:7], acc, window=1)
  assert (base.index, top.index) == (2, 3)


def test_accuracy_bounds_validate_margin_and_window():
  with pytest.raises(ValueError, match="margin"):
    sg.accuracy_bounds(ACC_LRS, ACC_LRS, margin=0.5)
  with pytest.raises(ValueError, match="window"):
    sg.accuracy_bounds(ACC_LRS, ACC_LRS, window=2)


# --- CLR bounds and suggest -------------------------------------------------------


def test_clr_bounds_without_a_rise_are_a_factor_below_the_minimum():
  # LOSS never climbs back within the grid (its parabola reaches half the
  # fall only at lr 10**0.41): max_lr = LR at the minimum (0.1) / 4.
  base, top, rule = sg.clr_bounds(LRS, LOSS)
  assert top == pytest.approx(0.1 / 4)
  assert base == pytest.approx(top / 4)
  assert "never climbs back" in rule and "raise end_lr" in rule


def test_clr_bounds_loss_rule_is_the_rise_point_over_four():
  # Falls from 1.0 to 0.2 (minimum at lr 5), climbs back above 1.0 - 0.4 =
  # 0.6 at lr 8: max_lr = 8 / 4, base_lr = max_lr / 4.
  lrs = np.arange(1.0, 9.0)
  loss = [1.0, 0.99, 0.98, 0.5, 0.2, 0.3, 0.6, 0.9]
  base, top, rule = sg.clr_bounds(lrs, loss, skip_start=0, skip_end=0)
  assert top == pytest.approx(2.0) and base == pytest.approx(0.5)
  assert "climbs back to half its fall (0.6) at LR 8" in rule


def test_the_rise_point_ignores_skip_end_and_a_noisy_first_point():
  lrs = np.arange(1.0, 13.0)
  # A noisy first point (3.0) does not set the starting level (the median
  # of the first quarter before the minimum, 1.0, does).
  loss = [3.0, 1.0, 1.0, 1.0, 1.0, 0.9, 0.6, 0.2, 0.3, 0.5, 0.7, 0.9]
  i, note = sg.rise_point(lrs, loss, 7, start=1)
  assert i == 10 and "at LR 11" in note


def test_the_loss_rule_answers_and_the_accuracy_rule_is_shown_beside_it():
  acc = [0.1, 0.1, 0.1, 0.2, 0.4, 0.6, 0.8, 0.85, 0.9, 0.9, 0.5, 0.1]
  acc_lrs = np.logspace(-5, -0.5, 12)
  s = sg.suggest(LRS, LOSS, acc, accuracy_lrs=acc_lrs)
  assert s.chosen == "loss" and s.max_lr == pytest.approx(0.1 / 4)
  assert s.readings["accuracy"]["base_lr"] == acc_lrs[3]
  assert s.readings["accuracy"]["max_lr"] == acc_lrs[7]
  assert "Answered by the loss rule" in s.rule
  assert "accuracy rule reads 0.000169 to 0.00731" in s.rule
  assert "accuracy rule: base_lr=1.688e-04" in str(s)


def test_rule_accuracy_selects_smiths_accuracy_bounds():
  acc = [0.1, 0.1, 0.1, 0.2, 0.4, 0.6, 0.8, 0.85, 0.9, 0.9, 0.5, 0.1]
  acc_lrs = np.logspace(-5, -0.5, 12)
  base, top, rule = sg.clr_bounds(LRS, LOSS, acc, accuracy_lrs=acc_lrs,
                                  rule="accuracy")
  assert (base, top) == (acc_lrs[3], acc_lrs[7])
  assert rule.startswith("accuracy rule")


def test_the_accuracy_rule_without_a_rise_gives_no_bounds_and_says_why():
  base, top, rule = sg.clr_bounds(LRS, LOSS, np.zeros(61), rule="accuracy")
  assert base is None and top is None
  assert rule.startswith("accuracy rule: no bounds")
  base, top, rule = sg.clr_bounds(LRS, LOSS, np.zeros(61))
  assert top == pytest.approx(0.1 / 4) and rule.startswith("loss rule")


def test_a_ramp_too_coarse_for_its_smoothing_gives_no_bounds():
  # 80 steps over seven decades at smoothing 0.05: the EMA lags 20 steps,
  # 1.77 decades of LR; the blow-up would be read far too late.
  lrs = np.geomspace(1e-6, 10.0, 80)
  loss = 2.3 - 2 * lrs / (lrs + 0.01) + (lrs / 0.5) ** 2
  s = sg.suggest(lrs, loss, smoothing=0.05)
  assert s.base_lr is None and s.max_lr is None
  assert s.rule.startswith("not enough resolution: 11 steps per decade")
  assert "lags 1.77 decades" in s.rule
  assert "run at least 141 steps over these 7.0 decades" in s.rule
  fine = sg.suggest(np.geomspace(1e-6, 10.0, 280), 2.3 - 2 * np.geomspace(
      1e-6, 10.0, 280) / (np.geomspace(1e-6, 10.0, 280) + 0.01),
                    smoothing=0.05)
  assert sg.resolution(np.geomspace(1e-6, 10.0, 280), 0.05) is None
  assert fine.minimum.lr is not None


def test_clr_bounds_are_none_without_a_minimum():
  base, top, rule = sg.clr_bounds(LRS, np.ones(61))
  assert base is None and top is None
  assert "no CLR bounds" in rule


def test_suggest_collects_everything_and_is_json_able():
  acc = np.linspace(0.1, 0.9, 61)
  s = sg.suggest(LRS, LOSS, acc)
  assert s.steepest.index == 30 and s.minimum.index == 50
  assert s.valley.index == 27
  assert s.accuracy_base is not None and s.accuracy_max is not None
  d = json.loads(json.dumps(s.to_dict(), allow_nan=False))
  assert d["steepest"]["derivative"] == "log_lr"
  assert d["base_lr"] == s.base_lr and d["rule"] == s.rule


def test_suggest_without_accuracies_has_no_accuracy_bounds():
  s = sg.suggest(LRS, LOSS)
  assert s.accuracy_base is None and s.accuracy_max is None


def test_suggestion_fields_are_plain_python_scalars():
  s = sg.steepest(np.float32(LRS), np.float32(LOSS))
  assert type(s.lr) is float and type(s.index) is int
  assert s == sg.Suggestion(**s.to_dict())


# --- input validation -------------------------------------------------------------


def test_rejects_arrays_of_different_length():
  with pytest.raises(ValueError, match="same length"):
    sg.steepest(LRS, LOSS[:-1])


def test_rejects_non_1d_input():
  with pytest.raises(ValueError, match="1-D"):
    sg.minimum(LRS.reshape(1, -1), LOSS.reshape(1, -1))


@pytest.mark.parametrize("bad", [0.0, -1e-3, np.nan, np.inf])
def test_rejects_non_positive_or_non_finite_lrs(bad):
  lrs = LRS.copy()
  lrs[3] = bad
  with pytest.raises(ValueError, match=r"lrs must be finite and > 0.*lrs\[3\]"):
    sg.valley(lrs, LOSS)


def test_rejects_unsorted_lrs():
  lrs = LRS.copy()
  lrs[[10, 11]] = lrs[[11, 10]]
  with pytest.raises(ValueError, match="strictly increasing"):
    sg.steepest(lrs, LOSS)
  with pytest.raises(ValueError, match="strictly increasing"):
    sg.steepest([1e-3, 1e-3, 1e-2], [1.0, 0.5, 0.2])


def test_rejects_negative_skips():
  with pytest.raises(ValueError, match="skip_end"):
    sg.steepest(LRS, LOSS, skip_end=-1)
  with pytest.raises(ValueError, match="skip_start"):
    sg.steepest(LRS, LOSS, skip_start=-1)


def test_rejects_non_numeric_input():
  with pytest.raises(TypeError, match="losses"):
    sg.steepest([1.0, 2.0], ["a", "b"])


def test_summarize_a_sweep_stopped_before_its_first_step():
  # Ctrl-C before the first chunk: no loss, no divergence, nothing invented.
  final, mean, diverged, at = sg.summarize(np.zeros((3, 0)))
  assert np.isnan(final).all() and np.isnan(mean).all()
  np.testing.assert_array_equal(diverged, [False] * 3)
  np.testing.assert_array_equal(at, [-1] * 3)
  assert at.dtype == np.int64
