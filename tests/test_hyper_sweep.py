"""Sweeps over any hyperparameter, grids of them, weight-decay ramps
(Smith's disciplined approach) and batch sizes: each equal to separate
runs, NaN isolated per configuration."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_clr as clr
from optax_clr import suggestions as sg

from _toy import BATCH, batch_list, make_data, make_params
from _toy import regression_loss

QUIET = dict(progress=False)


def optax_run(tx, batches, params=None):
  """The plain optax loop a user would write: losses of every step."""
  params = make_params() if params is None else params
  state = tx.init(params)
  grad = jax.jit(jax.value_and_grad(lambda p, b: regression_loss(p, b)[0]))
  losses = []
  for b in batches:
    loss, g = grad(params, b)
    losses.append(float(loss))
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
  return np.array(losses)


def test_a_grid_of_lr_and_weight_decay_equals_separate_runs():
  batches = batch_list(6)
  result = clr.sweep(make_params(), regression_loss, batches,
                     optimizer=optax.adamw, num_steps=6,
                     hyperparams={"learning_rate": [1e-3, 1e-2],
                                  "weight_decay": [0.0, 0.1, 1.0]}, **QUIET)
  assert result.num_configs == 6
  for k in range(6):
    lr = result.configs["learning_rate"][k]
    wd = result.configs["weight_decay"][k]
    expected = optax_run(optax.adamw(lr, weight_decay=wd), batches)
    np.testing.assert_allclose(result.losses[k], expected, rtol=1e-5)
  axes, values = result.grid("learning_rate", "weight_decay",
                             metric="mean_loss")
  np.testing.assert_array_equal(axes[0], [1e-3, 1e-2])
  np.testing.assert_allclose(axes[1], [0.0, 0.1, 1.0])
  assert values.shape == (2, 3)


def test_a_list_of_configurations_is_run_as_given():
  configs = [{"learning_rate": 0.01, "momentum": 0.5},
             {"learning_rate": 0.02, "momentum": 0.9}]
  result = clr.sweep(make_params(), regression_loss, batch_list(4),
                     optimizer=optax.sgd, hyperparams=configs, num_steps=4,
                     **QUIET)
  for k, c in enumerate(configs):
    expected = optax_run(optax.sgd(c["learning_rate"], c["momentum"]),
                         batch_list(4))
    np.testing.assert_allclose(result.losses[k], expected, rtol=1e-5)
  with pytest.raises(ValueError, match="not the full grid"):
    result.grid("learning_rate", "momentum")


def test_per_configuration_schedules():
  up = 3

  def schedule_fn(config, t):
    return {"learning_rate": clr.cyclic_schedule(
        config["base"], config["top"], up)(t)}
  result = clr.sweep(make_params(), regression_loss, batch_list(8),
                     optimizer=optax.sgd, schedule_fn=schedule_fn,
                     hyperparams={"base": [0.001, 0.01], "top": [0.05, 0.1]},
                     grid=False, num_steps=8, **QUIET)
  for k, (b, t) in enumerate([(0.001, 0.05), (0.01, 0.1)]):
    expected = optax_run(optax.sgd(clr.cyclic_schedule(b, t, up)),
                         batch_list(8))
    np.testing.assert_allclose(result.losses[k], expected, rtol=1e-5)


def test_a_diverging_configuration_leaves_the_others_untouched():
  batches = batch_list(8)
  result = clr.sweep(make_params(), regression_loss, batches,
                     optimizer=optax.sgd, num_steps=8,
                     hyperparams={"learning_rate": [0.01, 1e4]}, **QUIET)
  assert list(result.status) == ["trained", "nonfinite"]
  np.testing.assert_allclose(result.losses[0],
                             optax_run(optax.sgd(0.01), batches), rtol=1e-5)
  assert result.best() == {"learning_rate": pytest.approx(0.01)}


def test_sweep_results_round_trip_and_write_one_row_per_configuration():
  result = clr.sweep(make_params(), regression_loss, batch_list(3),
                     optimizer=optax.adamw, num_steps=3,
                     hyperparams={"learning_rate": [1e-3, 1e-2],
                                  "weight_decay": [0.0, 1e-2]}, **QUIET)
  assert clr.GridSweepResult.from_json(result.to_json()) == result
  rows = result.to_csv().splitlines()
  assert rows[0].startswith("learning_rate,weight_decay,status")
  assert len(rows) == 1 + 4


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(hyperparams=[]), TypeError, "hyperparams must be a dict"),
    (dict(hyperparams={}), ValueError, "at least one"),
    (dict(hyperparams={"weight_decay": [0.1]}), ValueError,
     "must set learning_rate"),
    (dict(hyperparams={"learning_rate": [0.1, np.nan]}), ValueError,
     "must be finite"),
    (dict(hyperparams={"learning_rate": [-0.1]}), ValueError,
     r"learning_rate'\] must be in"),
    (dict(hyperparams={"learning_rate": [0.1], "momentum": [1.5]}),
     ValueError, r"momentum'\] must be in \[0, 1\)"),
    (dict(hyperparams={"learning_rate": [0.1, 0.2], "momentum": [0.5]},
          grid=False), ValueError, "one value per configuration"),
    (dict(hyperparams={"learning_rate": ["fast"]}), ValueError,
     "must hold numbers"),
    (dict(hyperparams={"learning_rate": [0.1]},
          schedule_fn=lambda c, t: 0.1), TypeError, "must return a non-empty"),
])
def test_invalid_sweeps_are_refused_by_name(kwargs, error, match):
  kwargs.setdefault("optimizer", optax.sgd)
  with pytest.raises(error, match=match):
    clr.sweep(make_params(), regression_loss, batch_list(2), num_steps=2,
              **kwargs, **QUIET)


# --- the disciplined approach: LR ramps over weight decay ---------------------


def test_weight_decay_ramps_equal_separate_range_tests():
  # 90 steps over 3.5 decades: resolved for the rule book (26 per decade).
  kw = dict(batch_size=BATCH, num_steps=90, start_lr=1e-3, end_lr=3.0,
            **QUIET)
  result = clr.weight_decay_range_test(make_params(), regression_loss,
                                       make_data(), weight_decays=[0.0, 0.1],
                                       **kw)
  for i, wd in enumerate((0.0, 0.1)):
    single = clr.range_test(make_params(), regression_loss, make_data(),
                            optimizer=functools.partial(
                                clr.optimizers.sgd, weight_decay=wd), **kw)
    np.testing.assert_allclose(result.run(i).losses, single.losses,
                               rtol=1e-5)
  s = result.suggest()
  assert s.weight_decay in (0.0, 0.1)
  assert (s.base_momentum, s.max_momentum) == (0.85, 0.95)
  assert clr.WeightDecayRangeTestResult.from_json(result.to_json()) == result


def test_smiths_rule_picks_the_largest_stable_lr_then_the_larger_decay():
  def sugg(top):
    point = sg.Suggestion("minimum", top, 0, "none")
    return sg.Suggestions(point, point, point, None, None, top / 4, top,
                          f"max {top}")
  curves = [np.linspace(2.0, 0.50, 50), np.linspace(2.0, 0.52, 50),
            np.linspace(2.0, 0.51, 50), np.linspace(2.0, 1.5, 50)]
  s = sg.disciplined([0.0, 1e-4, 1e-3, 1e-2], [0.9] * 4,
                     [sugg(0.10), sugg(0.30), sugg(0.28), sugg(1.0)], curves)
  # wd 1e-2 reaches only 1.5 (not within 0.1 of the 1.5 fall); of the rest,
  # 1e-4 allows the largest LR and 1e-3 is within 10 % of it: the larger
  # weight decay wins the tie.
  eligible = [r["eligible"] for r in s.table]
  assert eligible == [True, True, True, False]
  assert s.weight_decay == 1e-3 and s.max_lr == 0.28
  assert "chosen" in str(s)


# --- batch sizes ----------------------------------------------------------


def test_batch_size_sweep_runs_one_lr_sweep_per_size_for_the_same_examples():
  result = clr.batch_size_sweep(
      make_params(), regression_loss, make_data(), batch_sizes=[16, 4, 8],
      num_examples=128, lrs=[1e-3, 1e-2], **QUIET)
  assert result.batch_sizes == (4, 8, 16)
  assert [s.num_steps for s in result.sweeps] == [32, 16, 8]
  np.testing.assert_array_equal(result.examples_seen(2), np.arange(1, 9) * 16)
  single = clr.parallel_range_test(make_params(), regression_loss,
                                   make_data(), lrs=[1e-3, 1e-2],
                                   batch_size=8, num_steps=16, **QUIET)
  np.testing.assert_allclose(result.sweeps[1].losses, single.losses,
                             rtol=1e-6)
  assert result.best()["batch_size"] in (4, 8, 16)
  back = clr.BatchSizeSweepResult.from_json(result.to_json())
  assert back.batch_sizes == result.batch_sizes
  with pytest.raises(ValueError, match="gives batch size 256 no step"):
    clr.batch_size_sweep(make_params(), regression_loss, make_data(),
                         batch_sizes=[256], num_examples=100, **QUIET)
