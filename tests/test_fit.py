"""fit: candidate schedules side by side for the budget, successive halving at
cycle ends, the survivor's trained model as the result; find_bounds is fit
with one cycle; every entry point reads bounds by the same rule book."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import _toy
import optax_clr as clr
from optax_clr.drivers import _fit

QUIET = dict(progress=False)
# A regression with a held-out validation set (never trained on).
TRAIN, VAL = _toy.make_data(seed=0), _toy.make_data(seed=1)


def candidates():
  return _fit.candidates_around(0.05)


def run_fit(**kw):
  kw = {"num_steps": 48, "cycles": 6, "batch_size": _toy.BATCH,
        "candidates": candidates(), **QUIET, **kw}
  return clr.fit(_toy.make_params(), _toy.regression_loss, TRAIN,
                 val_data=VAL, **kw)


def test_the_worse_candidates_stop_at_cycle_ends_and_never_resume():
  result = run_fit()
  stopped = [r["stopped_at"] for r in result.table]
  # 12 candidates, 6 cycles of 8 steps, the best quarter kept, at least two:
  # 12 -> 3 -> 2 -> 2 -> 2 -> 2.
  assert sorted(s for s in stopped if s is not None) == [8] * 9 + [16]
  assert stopped.count(None) == 2
  for row in result.table:
    ran = [m is not None for m in row["metrics"]]
    assert ran == sorted(ran, reverse=True)  # no metric after a stop
    assert sum(ran) == (6 if row["stopped_at"] is None
                        else row["stopped_at"] // 8)
  # Cost: 8 steps x (12 + 3 + 2 + 2 + 2 + 2) copy-steps, no range test.
  assert result.cost["candidate_steps"] == 8 * 23
  assert result.cost["run_equivalents"] == pytest.approx(8 * 23 / 48)


def test_a_stopped_candidate_trained_exactly_as_alone_until_its_stop():
  result = run_fit()
  row = next(r for r in result.table if r["stopped_at"] == 16)
  cand = candidates()[result.table.index(row)]
  alone = run_fit(candidates=[cand])
  ours = result.table[result.table.index(row)]["metrics"][:2]
  np.testing.assert_allclose(ours, alone.table[0]["metrics"][:2], rtol=1e-6)


def test_the_survivor_equals_a_plain_training_run_with_its_schedule():
  result = run_fit()
  model, history = clr.train(
      _toy.make_params(), _toy.regression_loss, TRAIN,
      optimizer=result.optimizer, num_epochs=48 // (TRAIN["y"].shape[0]
                                                    // _toy.BATCH),
      batch_size=_toy.BATCH, val_data=VAL, warn=False, **QUIET)
  assert len(history) == 48
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                        atol=1e-7),
               result.model, model)
  np.testing.assert_allclose(result.history.losses, history.losses,
                             rtol=1e-5)
  np.testing.assert_allclose(result.history.lrs, history.lrs, rtol=1e-6)


def test_the_survivors_schedule_ends_at_a_cycle_end():
  result = run_fit()
  lr = result.learning_rate
  if result.policy == "triangular":
    assert float(lr(47)) == pytest.approx(result.base_lr, rel=1e-5)
  elif result.policy == "one-cycle":
    assert float(lr(47)) < result.max_lr / 1000  # annealed
  assert "fit_schedule" in repr(lr) or result.policy == "fixed"


def test_the_range_test_locates_the_scale_by_the_rule_book():
  result = clr.fit(_toy.make_params(), _toy.regression_loss, TRAIN,
                   val_data=VAL, num_steps=48, batch_size=_toy.BATCH,
                   **QUIET)
  # The scale: the blow-up LR / 16 = the rule book's max_lr (the blow-up
  # / 4 for SGD) / 4; candidates from scale / 8 to 4 scale.
  scale = result.range_test.suggest().max_lr * 4 / 16
  maxes = sorted({c["max_lr"] for c in result.table})
  assert scale / 8 == pytest.approx(maxes[0]) and 4 * scale == pytest.approx(
      maxes[-1])
  assert f"scale {scale:.3g} = the rule book's max_lr x 4 / 16" in result.rule
  assert result.cost["range_test_steps"] == len(result.range_test.lrs)


def test_a_tiny_budget_keeps_cycles_of_at_least_four_steps():
  result = run_fit(num_steps=12, candidates=[clr.Candidate(
      "one-cycle", 0.004, 0.1)])
  assert (result.config["cycles"], result.config["cycle_steps"]) == (3, 4)


def test_find_bounds_is_one_cycle_without_halving():
  choice = clr.find_bounds(_toy.make_params(), _toy.regression_loss, TRAIN,
                           val_data=VAL, num_steps=16, batch_size=_toy.BATCH,
                           candidates=candidates(), **QUIET)
  assert choice.config["cycles"] == 1
  assert all(r["stopped_at"] is None for r in choice.table)
  assert choice.cost["candidate_steps"] == 12 * 16


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(num_steps=None), ValueError, "num_epochs or num_steps"),
    (dict(num_epochs=2), ValueError, "num_epochs or num_steps"),
    (dict(num_steps=3), ValueError, "num_steps must be an integer >= 4"),
    (dict(eta=1), ValueError, "eta must be an integer >= 2"),
    (dict(optimizer=optax.sgd(0.1)), TypeError, "must be a factory"),
    (dict(candidates=[]), TypeError, "non-empty list of optax_clr.Candidate"),
    (dict(val_data=None), ValueError, "needs val_data"),
])
def test_bad_arguments_are_refused_by_name(kwargs, error, match):
  kw = {"val_data": VAL, **kwargs}
  with pytest.raises(error, match=match):
    clr.fit(_toy.make_params(), _toy.regression_loss, TRAIN,
            **{"num_steps": 48, "batch_size": _toy.BATCH, **QUIET,
               **{k: v for k, v in kw.items()}})


# --- one rule book, every entry point -----------------------------------------


def test_every_entry_point_reads_the_same_bounds_from_the_same_curve():
  kw = dict(batch_size=_toy.BATCH, num_steps=120, start_lr=1e-4,
            end_lr=10.0, **QUIET)
  rt = clr.range_test(_toy.make_params(), _toy.regression_loss, TRAIN, **kw)
  ms = clr.multi_seed_range_test(_toy.make_params(), _toy.regression_loss,
                                 TRAIN, seeds=[0, 3], **kw)
  mine = rt.suggest()
  again = clr.suggest(rt.lrs, rt.smoothed_losses, smoothing=0.05)
  assert again.max_lr is not None
  assert ms.run(0).suggest().max_lr == mine.max_lr
  assert _fit._scale(rt)[0] == mine.max_lr * 4 / 16  # SGD: the blow-up / 16
  with_val = clr.range_test(_toy.make_params(), _toy.regression_loss, TRAIN,
                            val_data=VAL, **kw)
  # Validation data never change the answer by themselves.
  assert with_val.suggest().max_lr == mine.max_lr


def test_a_ramp_too_short_for_its_range_is_answered_with_the_steps_to_run():
  rt = clr.range_test(_toy.make_params(), _toy.regression_loss, TRAIN,
                      batch_size=_toy.BATCH, num_steps=80, start_lr=1e-6,
                      end_lr=10.0, **QUIET)
  s = rt.suggest()
  assert s.max_lr is None
  assert s.rule.startswith("not enough resolution")
  assert "run at least" in s.rule


def test_a_survivor_that_did_not_train_comes_with_a_warning():
  with pytest.warns(RuntimeWarning, match=r"fit: the survivor fixed .* did "
                    r"not train \(status 'nonfinite'"):
    result = run_fit(candidates=[clr.Candidate("fixed", 1e3, 1e3),
                                 clr.Candidate("fixed", 3e3, 3e3)])
  assert all(r["status"] == "nonfinite" for r in result.table)


def test_an_adaptive_optimizers_blow_up_is_divided_by_16():
  kw = dict(batch_size=_toy.BATCH, num_steps=160, start_lr=1e-5,
            end_lr=10.0, **QUIET)
  adam = clr.range_test(_toy.make_params(), _toy.regression_loss, TRAIN,
                        optimizer=optax.adam, **kw)
  sgd = clr.range_test(_toy.make_params(), _toy.regression_loss, TRAIN, **kw)
  assert adam.config["adaptive"] and not sgd.config["adaptive"]
  s = adam.suggest()
  assert "/ 16 = " in s.rule and "an adaptive optimizer" in s.rule
  # The same blow-up, a divisor 4 times larger.
  assert s.max_lr == pytest.approx(adam.suggest(adaptive=False).max_lr / 4)
  assert "/ 4 = " in sgd.suggest().rule
