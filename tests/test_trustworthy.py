"""Suggestions you can trust: exact statistics after a spike, dead runs
excluded, no answer read off noise, rules native to each test, spread over
seeds, confirmed bounds, and training that reports a failure."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_clr as clr
from optax_clr import suggestions as sg

from _toy import BATCH, batch_list, make_data, make_params
from _toy import regression_loss

QUIET = dict(progress=False)


# --- sweep statistics ---------------------------------------------------------


def test_windowed_mean_is_exact_after_a_huge_spike():
  losses = np.array([[3.0, 1e17, 4.0, 5.0, 3.0, 4.0]])
  # A cumulative-sum window would lose every digit after 1e17 (and report
  # 0); each window is summed on its own.
  got = sg.windowed_mean(losses, 3)
  np.testing.assert_allclose(got[0, 3], (1e17 + 9.0) / 3, rtol=1e-15)
  np.testing.assert_array_equal(got[0, 4:], [4.0, 4.0])


def spike_loss(params, batch):
  """A loss that spikes by value only, at step 3, for the largest LR copy
  (its w1 moves the most); training itself is untouched."""
  import jax
  loss, aux = regression_loss(params, batch)
  moved = jnp.abs(params["w1"][0] - 0.1) > 0.5
  spike = (batch["step"] == 3) & moved
  # The value jumps to 1e17 x the loss; the gradient stays the loss's.
  jump = jax.lax.stop_gradient(jnp.where(spike, loss * 1e17 - loss, 0.0))
  return loss + jump, aux


def test_a_run_that_spiked_is_unstable_and_never_the_best():
  batches = [{**b, "step": np.int32(i)} for i, b in enumerate(
      batch_list(12))]
  lrs = np.array([1e-3, 3e-3, 1e-2, 3e-2, 0.1])
  sweep = clr.parallel_range_test(make_params(), spike_loss, batches,
                                  lrs=lrs, num_steps=12, window=4, **QUIET)
  assert sweep.status[-1] == "spiked" and not sweep.diverged[-1]
  # Its windowed mean is that of its last 4 steps, exactly.
  np.testing.assert_allclose(sweep.mean_loss[-1],
                             sweep.losses[-1, -4:].mean(), rtol=1e-12)
  s = sweep.suggest()
  assert s.best.index < 4 and s.max_lr < lrs[-1]


def test_dead_runs_at_chance_accuracy_are_not_stable():
  lrs = np.array([0.01, 0.1, 1.0])
  k = lrs.size
  losses = np.tile(np.linspace(2.4, 2.3, 6), (k, 1))
  losses[1] = np.linspace(2.4, 0.5, 6)
  sweep = clr.ParallelSweepResult(
      lrs=lrs, losses=losses, final_loss=losses[:, -1],
      mean_loss=losses[:, -1], diverged=[False] * k, diverged_at=[-1] * k,
      eval_metrics={"accuracy": [0.11, 0.85, 0.10],
                    "loss": [2.30, 0.6, 2.30]},
      initial_metrics={"accuracy": [0.1] * k, "loss": [2.4] * k})
  # The LR-1.0 run's loss fell from 2.4 to the chance level 2.30, but its
  # accuracy stayed at chance: stalled, like the LR-0.01 run.
  assert list(sweep.status) == ["stalled", "trained", "stalled"]
  assert sweep.best_lr == 0.1


# --- rules native to each test ----------------------------------------------


def test_sweep_bounds_never_put_max_below_the_best_lr():
  lrs = np.geomspace(1e-3, 1.0, 10)
  final = np.array([2.0, 1.6, 1.2, 0.8, 0.5, 0.42, 0.40, 0.41, 0.9, 5.0])
  losses = np.tile(np.linspace(2.2, 1.0, 8), (10, 1))
  losses[:, -1] = final
  sweep = clr.ParallelSweepResult(
      lrs=lrs, losses=losses, final_loss=final, mean_loss=final,
      diverged=[False] * 9 + [True], diverged_at=[-1] * 9 + [7])
  s = sweep.suggest()
  assert s.best.index == 6
  # q = (2.2 - loss) / (2.2 - 0.40): index 7 (0.41) keeps 99 %: max there.
  assert s.max_lr == lrs[7] >= s.best.lr
  assert s.max_lr / 10 <= s.base_lr <= s.max_lr / 3
  assert (s.stable_low, s.stable_high) == (lrs[0], lrs[8])


def ramp_curve(n=200, noise=0.02, seed=0):
  """Flat at 2.3 for the first 40 % of a ramp, then a descent to 0.5, then
  a blow-up; noise on every step."""
  lrs = np.geomspace(1e-6, 10.0, n)
  x = np.linspace(0, 1, n)
  clean = 2.3 - 1.8 / (1 + np.exp(-(x - 0.6) * 30)) + 30 * np.maximum(
      x - 0.85, 0) ** 2 * 40
  raw = clean + np.random.default_rng(seed).normal(0, noise, n)
  return lrs, raw


def ema(raw, a=0.05):
  avg, out = 0.0, []
  for i, v in enumerate(raw):
    avg = (1 - a) * avg + a * v
    out.append(avg / (1 - (1 - a) ** (i + 1)))
  return np.array(out)


# Two measured 12-LR sweeps of the digits CNN (SGD, 528 steps) whose final
# accuracies differ only by float rounding: the argmax moved 0.043 <-> 0.081.
_FLAT_TOP = {
    "a": ([0.8969, 0.9164, 0.9387, 0.9638, 0.9777, 0.9805, 0.9889, 0.9805,
           0.9694, 0.078, 0.0919, 0.0919], 9),
    "b": ([0.8997, 0.9164, 0.9387, 0.9638, 0.9777, 0.9805, 0.9833, 0.9889,
           0.9861, 0.2228, 0.0919, 0.0919], 10),
}


@pytest.mark.parametrize("run", sorted(_FLAT_TOP))
def test_a_flat_optimum_gives_its_middle_lr_whatever_the_rounding(run):
  acc, trained = _FLAT_TOP[run]
  lrs = np.geomspace(1e-3, 1.0, 12)
  status = ["trained"] * trained + ["stalled"] * (12 - trained)
  s = sg.suggest_sweep(lrs, status, np.ones(12), np.full(12, 2.3),
                       final_metrics={"accuracy": acc},
                       initial_metrics={"accuracy": np.full(12, 0.1)})
  assert s.best.index == 6  # lr 0.0433 in both runs
  assert s.best.lr == pytest.approx(0.04329, rel=1e-3)


def test_noise_on_the_flat_start_of_a_ramp_is_never_the_steepest_point():
  lrs, raw = ramp_curve()
  raw[25:28] -= 0.3   # a dip in the noise before anything is learned
  result = clr.RangeTestResult(lrs, raw, ema(raw), "completed",
                               config={"smoothing": 0.05})
  s = result.suggest()
  # The descent is around x = 0.6 (index ~120); the dip at 25 is ignored.
  assert 90 <= s.steepest.index <= 140
  assert s.base_lr >= lrs[90]


def test_a_ramp_without_signal_says_how_many_more_steps_to_run():
  lrs = np.geomspace(1e-6, 1e-3, 100)
  raw = 2.3 + np.random.default_rng(0).normal(0, 0.05, 100)
  raw[-20:] -= 0.01  # a fall well inside the noise
  result = clr.RangeTestResult(lrs, raw, ema(raw), "completed",
                               config={"smoothing": 0.05})
  s = result.suggest()
  assert s.base_lr is None and s.max_lr is None
  assert s.minimum.lr is None
  assert "run 100 more steps" in s.minimum.reason
  assert "raise end_lr" in s.rule


def test_the_default_ramp_has_forty_steps_per_decade():
  result = clr.range_test(make_params(), regression_loss, make_data(),
                          batch_size=BATCH, diverge_threshold=None, **QUIET)
  assert result.config["num_steps"] == 280  # 1e-6 -> 10: 7 decades


# --- uncertainty from seeds ---------------------------------------------------


def test_multi_seed_test_equals_separate_ramps_and_reports_the_spread():
  # 80 steps over 3.5 decades: enough resolution for bounds (23 per decade).
  kw = dict(batch_size=BATCH, num_steps=80, start_lr=1e-3, end_lr=3.0,
            **QUIET)
  seeds = clr.multi_seed_range_test(make_params(), regression_loss,
                                    make_data(), seeds=[0, 1, 2], **kw)
  for i in range(3):
    single = clr.range_test(make_params(), regression_loss, make_data(),
                            seed=i, **kw)
    run = seeds.run(i)
    assert run.stop_reason == single.stop_reason
    np.testing.assert_allclose(run.losses, single.losses, rtol=1e-5)
  s = seeds.suggest()
  values = [r.suggest().max_lr for r in seeds.runs]
  assert s.spreads["max_lr"].median == pytest.approx(np.median(values))
  assert s.spreads["max_lr"].ratio == pytest.approx(max(values) /
                                                    min(values))
  assert s.max_lr == s.spreads["max_lr"].median
  assert "median" in str(s)
  back = clr.MultiSeedRangeTestResult.from_json(seeds.to_json())
  assert back == seeds


def test_independent_inits_per_seed():
  import jax
  kw = dict(batch_size=BATCH, num_steps=5, start_lr=1e-3, end_lr=0.1,
            **QUIET)
  init = lambda key: jax.tree.map(  # noqa: E731
      lambda x: x + jax.random.normal(key, x.shape), make_params())
  seeds = clr.multi_seed_range_test(make_params(), regression_loss,
                                    make_data(), num_seeds=3,
                                    init="independent", model_init=init, **kw)
  assert len(np.unique(seeds.losses[:, 0])) == 3


# --- confirmation ---------------------------------------------------------


def test_find_bounds_tests_candidates_and_picks_a_stable_one():
  choice = clr.find_bounds(make_params(), regression_loss, make_data(),
                           val_data=make_data(seed=1), batch_size=BATCH,
                           num_steps=24, **QUIET)
  assert choice.policy in ("triangular", "one-cycle", "fixed")
  assert 0 < choice.base_lr <= choice.max_lr
  rows = choice.table
  assert len(rows) == 12 and choice.metric == "val_loss"
  chosen = [r for r in rows if r["survivor"]]
  assert len(chosen) == 1 and chosen[0]["status"] == "trained"
  stable = [r for r in rows if r["status"] == "trained"]
  best = min(r["metrics"][-1] for r in stable)  # validation loss: lower wins
  assert chosen[0]["metrics"][-1] <= best * 1.002 + 1e-12
  assert all(r["stopped_at"] is None for r in rows)  # one cycle: no halving
  assert "survivor" in str(choice)


# --- training tells the truth --------------------------------------------------


def test_training_that_turns_nan_stops_warns_and_keeps_the_steps():
  with pytest.warns(RuntimeWarning, match="diverged"):
    _, history = clr.train(make_params(), regression_loss, make_data(),
                           optimizer=optax.sgd(50.0), batch_size=BATCH,
                           num_epochs=5, **QUIET)
  assert history.stop_reason == "nonfinite"
  assert history.status == "nonfinite"
  assert not np.isfinite(history.losses[-1])
  assert np.isfinite(history.losses[:-1]).all() and len(history) < 40


def test_training_that_never_leaves_its_initial_loss_is_stalled():
  with pytest.warns(RuntimeWarning, match="stalled"):
    _, history = clr.train(make_params(), regression_loss, make_data(),
                           optimizer=optax.sgd(1e-9), batch_size=BATCH,
                           num_epochs=2, **QUIET)
  assert history.stop_reason == "completed"
  assert history.status == "stalled"
  d = history.to_dict()
  assert d["status"] == "stalled" and "train_loss" in d["final_metrics"]
