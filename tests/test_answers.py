"""Every answer becomes an optimizer in one call: a ramp's suggestions, a
sweep's, the medians over seeds -> schedules for a budget and a ready optax
transformation; schedules print as what they are."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import _toy
import optax_clr as clr
from optax_clr import suggestions as sg

LRS = np.geomspace(1e-4, 10, 201)
# Falls around LR 1e-2, blows up near 1: loss rule bounds 0.0332-0.133.
LOSS = 2.3 - 2 * LRS / (LRS + 0.01) + (LRS / 0.5) ** 2


def ramp_answer():
  return sg.suggest(LRS, LOSS)


def test_a_ramps_answer_gives_cycles_that_end_with_the_budget():
  s = ramp_answer()
  sched = s.schedules(num_epochs=10, steps_per_epoch=23, cycles=4)
  # 230 steps: 4 cycles of 2 * 28 = 56 steps, steps 224..229 held at base.
  assert sched.resolved["step_size_up"] == 28
  assert sched.resolved["held_from_step"] == 224
  lr = sched.learning_rate
  np.testing.assert_allclose([lr(0), lr(28), lr(56), lr(224), lr(229)],
                             [s.base_lr, s.max_lr, s.base_lr, s.base_lr,
                              s.base_lr], rtol=1e-6)
  mom = sched.momentum  # inverse to the LR: max at the ends, min at peaks
  np.testing.assert_allclose([mom(0), mom(28), mom(229)], [0.9, 0.8, 0.9],
                             rtol=1e-6)


def test_the_optimizer_cycles_sgds_momentum_and_adams_b1():
  s = ramp_answer()
  params = {"w": jnp.zeros(3)}
  for factory, name in ((optax.sgd, "momentum"), (optax.adamw, "b1")):
    tx = s.optimizer(factory, num_steps=100, cycles=2)
    hp = clr.get_hyperparams(tx.init(params))
    assert hp["learning_rate"] == pytest.approx(s.base_lr, rel=1e-6)
    assert hp[name] == pytest.approx(0.9, rel=1e-6)


def test_training_with_the_answer_equals_the_schedule_written_by_hand():
  s = ramp_answer()
  by_hand = clr.cyclic_optimizer(
      optax.sgd, learning_rate=clr.cyclic_schedule(s.base_lr, s.max_lr, 5),
      momentum=clr.cyclic_momentum_schedule(0.8, 0.9, 5))
  runs = [clr.train(_toy.make_params(), _toy.regression_loss,
                    _toy.batch_list(20), optimizer=tx, num_epochs=1,
                    progress=False, warn=False)[1]
          for tx in (s.optimizer(num_steps=20, cycles=2), by_hand)]
  np.testing.assert_allclose(runs[0].losses, runs[1].losses, rtol=1e-6)
  np.testing.assert_allclose(runs[0].lrs, runs[1].lrs, rtol=1e-6)


def test_one_cycle_peaks_at_max_lr_and_ends_annealed():
  s = ramp_answer()
  lr = s.schedules(num_steps=100, policy="one-cycle").learning_rate
  assert float(lr(29)) == pytest.approx(s.max_lr, rel=1e-5)
  assert float(lr(99)) < s.base_lr / 1000


def test_a_sweeps_answer_gives_its_best_fixed_lr():
  sweep = clr.parallel_range_test(_toy.make_params(), _toy.regression_loss,
                                  _toy.batch_list(10), lrs=[1e-3, 1e-2, 0.05],
                                  num_steps=10, progress=False)
  answer = sweep.suggest()
  sched = answer.schedules(num_steps=50, policy="fixed")
  assert sched.learning_rate == answer.best_lr == sweep.best_lr
  assert sched.momentum == 0.9


def test_a_ramp_has_no_fixed_lr_and_says_where_one_comes_from():
  with pytest.raises(ValueError, match="a sweep gives"):
    ramp_answer().schedules(num_steps=50, policy="fixed")


def test_the_medians_over_seeds_give_schedules_too():
  per_seed = [sg.suggest(LRS, LOSS * f) for f in (1.0, 1.01, 0.99)]
  medians = sg.aggregate(per_seed)
  sched = medians.schedules(num_steps=40, cycles=2)
  assert float(sched.learning_rate(10)) == pytest.approx(medians.max_lr,
                                                         rel=1e-6)


def test_no_bounds_no_schedule_and_the_rule_says_why():
  flat = sg.suggest(LRS, np.ones_like(LRS))
  with pytest.raises(ValueError, match="no bounds to build a schedule from"):
    flat.schedules(num_steps=50)


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "the budget is needed"),
    (dict(num_steps=10, num_epochs=2, steps_per_epoch=5), "not both"),
    (dict(num_steps=10, cycles=6), "holds at most 5 cycles"),
    (dict(num_steps=10, policy="cosine"), "policy must be one of"),
])
def test_bad_budgets_are_refused_by_name(kwargs, match):
  with pytest.raises(ValueError, match=match):
    ramp_answer().schedules(**kwargs)


def test_schedules_print_as_the_call_that_made_them():
  assert repr(clr.cyclic_schedule(1e-3, 0.1, 500, mode="triangular2")) == (
      "cyclic_schedule(base_value=0.001, max_value=0.1, step_size_up=500, "
      "mode='triangular2')")
  assert str(clr.one_cycle_schedule(0.5, 3000, three_phase=True)) == (
      "one_cycle_schedule(max_value=0.5, total_steps=3000, three_phase=True)")
  assert repr(clr.cyclic_momentum_schedule(0.85, 0.95, 10)) == (
      "cyclic_momentum_schedule(base_momentum=0.85, max_momentum=0.95, "
      "step_size_up=10)")
