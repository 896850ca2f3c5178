"""Specification of optax_clr.training.

The CNN runs share one model structure, loss and optimizer object, so the
epoch is compiled once per loop mode for the whole module. Small linear models
cover the optimizer and model variants, where compiling is cheap.
"""

import json
import math

import chex
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from optax_clr import data as data_lib
from optax_clr import models
from optax_clr import train
from optax_clr.drivers import CHECKPOINT_NAME
from optax_clr.optimizers import cyclic_adam, cyclic_sgd
from optax_clr.results import TrainHistory
from optax_clr.schedules import cyclic_momentum_schedule, cyclic_schedule

BATCH = 32
STEPS = 8  # 256 training examples / 32
EPOCHS = 4
# Triangular CLR with a half cycle of one epoch, momentum cycled inversely.
LR = cyclic_schedule(0.05, 0.5, step_size_up=STEPS)
MOMENTUM = cyclic_momentum_schedule(0.85, 0.95, step_size_up=STEPS)
OPTIMIZER = cyclic_sgd(LR, MOMENTUM)  # One object: one compiled epoch.


def schedule_values(schedule, n):
  return np.asarray(schedule(jnp.arange(n, dtype=jnp.int32)), np.float64)


def params_of(model):
  return jax.tree.leaves(nnx.state(model, nnx.Param))


def assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def assert_histories_equal(a, b):
  for name in ("steps", "losses", "lrs", "momenta", "eval_steps"):
    np.testing.assert_array_equal(getattr(a, name), getattr(b, name), name)
  assert a.eval_metrics.keys() == b.eval_metrics.keys()
  for name in a.eval_metrics:
    np.testing.assert_array_equal(a.eval_metrics[name], b.eval_metrics[name])


@pytest.fixture(scope="module")
def digits():
  train_all, val_all = data_lib.load_digits().split(0.2, seed=0)
  small = lambda d, n: data_lib.Dataset(  # noqa: E731
      d.images[:n], d.labels[:n], d.num_classes, f"{d.name}[:{n}]")
  return small(train_all, BATCH * STEPS), small(val_all, 128)


def new_cnn():
  return models.CNN(num_classes=10, in_channels=1, width=4,
                    rngs=nnx.Rngs(params=0))


def run_cnn(digits, **kwargs):
  train_data, val_data = digits
  kwargs.setdefault("num_epochs", EPOCHS)
  return train(kwargs.pop("model", new_cnn()), models.cross_entropy_loss,
               train_data, optimizer=OPTIMIZER, batch_size=BATCH,
               val_data=val_data, **kwargs)


@pytest.fixture(scope="module")
def reference(digits):
  """An uninterrupted 4-epoch run: (initial model, trained model, history,
  progress calls)."""
  model = new_cnn()
  initial = jax.tree.map(np.asarray, params_of(model))
  calls = []
  trained, history = run_cnn(
      digits, model=model, progress=lambda *args: calls.append(args))
  return model, initial, trained, history, calls


# ----------------------------------------------------------------------------
# What a run records.


def test_history_records_every_step_and_every_epoch(reference):
  _, _, _, history, _ = reference
  n = EPOCHS * STEPS
  chex.assert_shape([history.steps, history.losses, history.lrs,
                     history.momenta], (n,))
  np.testing.assert_array_equal(history.steps, np.arange(n))
  # One evaluation per epoch, after 8, 16, 24 and 32 steps.
  np.testing.assert_array_equal(history.eval_steps, [8, 16, 24, 32])
  assert sorted(history.eval_metrics) == ["accuracy", "loss"]
  chex.assert_shape(list(history.eval_metrics.values()), (EPOCHS,))
  assert np.all(np.diff(history.wall_times) > 0)
  assert np.all(np.isfinite(history.losses))


def test_logged_lr_and_momentum_are_the_schedules_at_each_step(reference):
  _, _, _, history, _ = reference
  n = EPOCHS * STEPS
  np.testing.assert_allclose(history.lrs, schedule_values(LR, n), rtol=1e-6)
  np.testing.assert_allclose(history.momenta, schedule_values(MOMENTUM, n),
                             rtol=1e-6)
  # Two full triangular cycles: 0.05 at steps 0, 16; 0.5 at steps 8, 24;
  # the momentum mirrors it (0.95 at the LR minimum, 0.85 at its peak).
  np.testing.assert_allclose(history.lrs[[0, 8, 16, 24]],
                             [0.05, 0.5, 0.05, 0.5], rtol=1e-6)
  np.testing.assert_allclose(history.momenta[[0, 8, 16, 24]],
                             [0.95, 0.85, 0.95, 0.85], rtol=1e-6)


def test_progress_called_once_per_epoch_with_metrics(reference):
  _, _, _, history, calls = reference
  assert [c[:2] for c in calls] == [(e, EPOCHS) for e in range(1, 5)]
  for epoch, (_, _, metrics) in enumerate(calls):
    assert sorted(metrics) == ["lr", "train_loss", "val_accuracy", "val_loss"]
    rows = slice(epoch * STEPS, (epoch + 1) * STEPS)
    assert metrics["train_loss"] == pytest.approx(history.losses[rows].mean())
    assert metrics["lr"] == history.lrs[rows][-1]
    assert metrics["val_loss"] == history.eval_metrics["loss"][epoch]


def test_users_model_is_not_modified(reference):
  model, initial, trained, _, _ = reference
  assert_trees_equal(params_of(model), initial)
  assert not all(np.array_equal(a, b)
                 for a, b in zip(params_of(trained), initial))


def test_config_is_recorded(reference, digits):
  _, _, _, history, _ = reference
  config = history.config
  assert config["batch_size"] == BATCH and config["num_epochs"] == EPOCHS
  assert config["seed"] == 0 and config["steps_per_epoch"] == STEPS
  assert config["model"] == "CNN"
  json.dumps(config, allow_nan=False)


# ----------------------------------------------------------------------------
# Determinism.


def test_same_seed_gives_bit_identical_history_and_params(reference, digits):
  _, _, trained, history, _ = reference
  trained_again, history_again = run_cnn(digits)
  assert_histories_equal(history_again, history)
  assert_trees_equal(params_of(trained_again), params_of(trained))


def test_another_seed_changes_the_data_order_not_the_schedule(reference,
                                                              digits):
  _, _, _, history, _ = reference
  _, other = run_cnn(digits, seed=1, num_epochs=1)
  np.testing.assert_array_equal(other.lrs, history.lrs[:STEPS])
  assert not np.array_equal(other.losses, history.losses[:STEPS])


def test_scan_and_step_loops_agree(reference, digits):
  _, _, trained, history, _ = reference
  scanned, scan_history = run_cnn(digits, num_epochs=2, execution="scan")
  np.testing.assert_array_equal(scan_history.lrs, history.lrs[:2 * STEPS])
  np.testing.assert_allclose(scan_history.losses, history.losses[:2 * STEPS],
                             rtol=1e-5)
  stepped, _ = run_cnn(digits, num_epochs=2, execution="steps")
  for a, b in zip(params_of(scanned), params_of(stepped)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------
# Checkpoints.


def read_checkpoint(directory):
  path = directory / CHECKPOINT_NAME
  return flax.serialization.msgpack_restore(path.read_bytes())


def test_resumed_run_reproduces_the_uninterrupted_run(reference, digits,
                                                      tmp_path):
  _, _, trained, history, _ = reference
  _, first_half = run_cnn(digits, num_epochs=2, checkpoint_dir=tmp_path)
  assert read_checkpoint(tmp_path)["epochs_done"] == 2
  # Only the checkpoint is left: the temporary file was renamed over it.
  assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]

  calls = []
  resumed, full = run_cnn(digits, num_epochs=4, checkpoint_dir=tmp_path,
                          progress=lambda *args: calls.append(args[:2]))
  assert calls == [(3, 4), (4, 4)]  # Epochs 1-2 came from the checkpoint.
  assert_histories_equal(full, history)
  assert_trees_equal(params_of(resumed), params_of(trained))
  np.testing.assert_array_equal(full.wall_times[:2], first_half.wall_times)
  assert full.config["num_epochs"] == 4
  assert read_checkpoint(tmp_path)["epochs_done"] == 4


def test_interrupted_run_resumes_from_last_checkpoint(reference, digits,
                                                      tmp_path):
  _, _, trained, history, _ = reference

  def crash_in_epoch_3(epoch, *_):
    if epoch == 3:
      raise KeyboardInterrupt

  # checkpoint_every=2: checkpoints after epochs 2 and 4 only, so the crash
  # after epoch 3 loses that epoch.
  with pytest.raises(KeyboardInterrupt):
    run_cnn(digits, checkpoint_dir=tmp_path, checkpoint_every=2,
            progress=crash_in_epoch_3)
  assert read_checkpoint(tmp_path)["epochs_done"] == 2
  calls = []
  resumed, full = run_cnn(digits, checkpoint_dir=tmp_path,
                          checkpoint_every=2,
                          progress=lambda *args: calls.append(args[0]))
  assert calls == [3, 4]
  assert_histories_equal(full, history)
  assert_trees_equal(params_of(resumed), params_of(trained))


def test_finished_checkpoint_returns_its_result_without_training(
    reference, digits, tmp_path):
  _, _, trained, history, _ = reference
  run_cnn(digits, checkpoint_dir=tmp_path)
  calls = []
  again, again_history = run_cnn(digits, checkpoint_dir=tmp_path,
                                 progress=lambda *a: calls.append(a))
  assert calls == []
  assert_histories_equal(again_history, history)
  assert_trees_equal(params_of(again), params_of(trained))


def test_checkpoint_of_another_config_is_refused(digits, tmp_path):
  run_cnn(digits, num_epochs=1, checkpoint_dir=tmp_path)
  with pytest.raises(ValueError, match=r"seed: checkpoint 0, now 1"):
    run_cnn(digits, num_epochs=2, seed=1, checkpoint_dir=tmp_path)
  with pytest.raises(ValueError, match=r"batch_size: checkpoint 32, now 16"):
    train(new_cnn(), models.cross_entropy_loss, digits[0],
          optimizer=OPTIMIZER, batch_size=16, num_epochs=2,
          val_data=digits[1], checkpoint_dir=tmp_path)
  # A differently initialised model is a different run too.
  other = models.CNN(width=4, rngs=nnx.Rngs(params=1))
  with pytest.raises(ValueError, match=r"params_digest"):
    run_cnn(digits, model=other, num_epochs=2, checkpoint_dir=tmp_path)
  with pytest.raises(ValueError, match=r"run_config"):
    run_cnn(digits, num_epochs=2, checkpoint_dir=tmp_path,
            run_config={"max_lr": 0.5})
  assert read_checkpoint(tmp_path)["epochs_done"] == 1  # Left untouched.


def test_resume_false_starts_over_and_overwrites(reference, digits,
                                                 tmp_path):
  _, _, _, history, _ = reference
  run_cnn(digits, num_epochs=1, seed=1, checkpoint_dir=tmp_path)
  _, fresh = run_cnn(digits, num_epochs=1, checkpoint_dir=tmp_path,
                     resume=False)
  np.testing.assert_array_equal(fresh.losses, history.losses[:STEPS])
  assert json.loads(read_checkpoint(tmp_path)["config"])["seed"] == 0


def test_checkpoint_with_more_epochs_than_asked_is_refused(digits, tmp_path):
  run_cnn(digits, num_epochs=2, checkpoint_dir=tmp_path)
  with pytest.raises(ValueError, match=r"2 completed epochs, more than "
                     r"num_epochs=1"):
    run_cnn(digits, num_epochs=1, checkpoint_dir=tmp_path)


def test_unreadable_checkpoint_is_reported(digits, tmp_path):
  (tmp_path / CHECKPOINT_NAME).write_bytes(b"not msgpack at all")
  with pytest.raises(ValueError, match=CHECKPOINT_NAME):
    run_cnn(digits, num_epochs=1, checkpoint_dir=tmp_path)


# ----------------------------------------------------------------------------
# Other optimizers, losses and models (a linear classifier compiles fast).


class Linear(nnx.Module):

  def __init__(self, *, rngs, batch_norm=False):
    self.dense = nnx.Linear(64, 10, rngs=rngs)
    self.norm = nnx.BatchNorm(64, rngs=rngs) if batch_norm else None

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    if self.norm is not None:
      x = self.norm(x)
    return self.dense(x)


def linear_loss(model, batch):
  logits = model(batch["image"])
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["label"]).mean()


def ce_metrics(model, batch):
  """An eval_fn: the cross-entropy loss and accuracy as a dict."""
  loss, aux = models.cross_entropy_loss(model, batch)
  return {"loss": loss, **aux}


def run_linear(digits, optimizer, **kwargs):
  model = kwargs.pop("model", None) or Linear(rngs=nnx.Rngs(0))
  return train(model, kwargs.pop("loss_fn", linear_loss), digits[0],
               optimizer=optimizer, batch_size=BATCH,
               num_epochs=kwargs.pop("num_epochs", 1), **kwargs)


def test_training_lowers_the_validation_loss(digits):
  # A linear classifier learns the digits within two cycles of CLR (four
  # epochs; every driver now draws epoch e in the order epoch_order(seed, e)).
  _, history = run_linear(digits, cyclic_sgd(LR, MOMENTUM), num_epochs=4,
                          val_data=digits[1],
                          eval_fn=ce_metrics)
  val_loss = history.eval_metrics["loss"]
  # Untrained, 10 classes: about ln(10) = 2.30.
  assert val_loss[-1] < 0.5 * math.log(10), val_loss
  assert history.eval_metrics["accuracy"][-1] > 0.8, history.eval_metrics
  assert history.losses[-STEPS:].mean() < 0.5 * history.losses[:STEPS].mean()


def test_adam_logs_b1_as_momentum(digits):
  b1 = cyclic_momentum_schedule(0.85, 0.95, step_size_up=4)
  _, history = run_linear(digits, cyclic_adam(LR, b1=b1))
  np.testing.assert_allclose(history.momenta, schedule_values(b1, STEPS),
                             rtol=1e-6)


def test_the_lr_applied_is_logged_without_injected_hyperparams(digits):
  _, no_momentum = run_linear(digits, cyclic_sgd(LR))
  np.testing.assert_allclose(no_momentum.lrs, schedule_values(LR, STEPS),
                             rtol=1e-6)
  assert np.all(np.isnan(no_momentum.momenta))
  _, plain = run_linear(digits, optax.adam(1e-2))
  np.testing.assert_allclose(plain.lrs, 1e-2, rtol=1e-6)
  assert np.all(np.isnan(plain.momenta))
  _, scheduled = run_linear(digits, optax.adamw(LR))
  np.testing.assert_allclose(scheduled.lrs, schedule_values(LR, STEPS),
                             rtol=1e-6)
  assert np.all(np.isfinite(plain.losses))


def test_multisteps_and_reduce_on_plateau_log_the_lr_applied(digits):
  # MultiSteps: the inner optimizer's LR, which its accumulated updates
  # apply (its schedule advancing once per accumulated update).
  _, accumulated = run_linear(digits, optax.MultiSteps(
      optax.sgd(LR), every_k_schedule=2))
  np.testing.assert_allclose(accumulated.lrs,
                             schedule_values(LR, STEPS)[np.arange(STEPS) // 2],
                             rtol=1e-6)
  # reduce_on_plateau: Adam's LR times the scale after each update (the
  # plateau replayed on the losses the steps passed it).
  plateau = optax.contrib.reduce_on_plateau(factor=0.5, patience=0,
                                            accumulation_size=1)
  _, reduced = run_linear(digits, optax.chain(optax.adam(0.5), plateau),
                          warn=False)
  state, scales = plateau.init({}), []
  for loss in reduced.losses:
    _, state = plateau.update({}, state, value=jnp.float32(loss))
    scales.append(float(state.scale))
  assert min(scales) < 1.0
  np.testing.assert_allclose(reduced.lrs, 0.5 * np.asarray(scales),
                             rtol=1e-6)


def test_scalar_loss_and_no_validation(digits):
  _, history = run_linear(digits, optax.sgd(0.1), num_epochs=2)
  assert history.eval_metrics == {}
  np.testing.assert_array_equal(history.eval_steps, [8, 16])
  chex.assert_shape(history.wall_times, (2,))


def test_validation_batch_dict_and_eval_fn(digits):
  val = digits[1].as_batch()
  _, history = run_linear(digits, optax.sgd(0.1), val_data=val,
                          eval_fn=ce_metrics)
  assert sorted(history.eval_metrics) == ["accuracy", "loss"]
  model = Linear(rngs=nnx.Rngs(0))
  before, _ = models.cross_entropy_loss(model, val)
  assert history.eval_metrics["loss"][0] < float(before)


def test_batch_norm_statistics_are_carried_and_returned(digits):
  model = Linear(rngs=nnx.Rngs(0), batch_norm=True)
  trained, history = run_linear(digits, optax.sgd(0.1), model=model,
                                val_data=digits[1])
  np.testing.assert_array_equal(model.norm.mean[...], np.zeros(64))
  # The running mean moved towards the pixel means (digits are in [0, 1]).
  assert float(jnp.abs(trained.norm.mean[...]).max()) > 0.01
  assert np.all(np.isfinite(history.eval_metrics["loss"]))


def test_bfloat16_compute_keeps_float32_params(digits):
  trained, history = run_linear(digits, cyclic_sgd(LR, MOMENTUM),
                                compute_dtype=jnp.bfloat16)
  chex.assert_type(params_of(trained), jnp.float32)
  assert np.all(np.isfinite(history.losses))
  assert history.config["compute_dtype"] == "bfloat16"


# ----------------------------------------------------------------------------
# Argument checks.


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(num_epochs=0), ValueError, r"num_epochs must be an integer >= 1, "
     r"got 0"),
    (dict(batch_size=0), ValueError, r"batch_size must be an integer >= 1, "
     r"got 0"),
    (dict(batch_size=257), ValueError, r"batch_size must be in \[1, 256\] "
     r"\(the size of train_data\), got 257"),
    (dict(optimizer=optax.sgd), TypeError, r"optimizer must be an "
     r"optax.GradientTransformation"),
    (dict(loss_fn=None), TypeError, r"loss_fn must be callable"),
    (dict(model="cnn"), TypeError, r"model must be an nnx.Module, an Equinox "
     r"module or a pytree of arrays, got str 'cnn'"),
    (dict(train_data="digits"), TypeError,
     r"train_data must be a pytree of arrays or an iterable of batches, got "
     r"str"),
    (dict(seed=-1), ValueError, r"seed must be an integer >= 0, got -1"),
    (dict(checkpoint_every=0), ValueError, r"checkpoint_every must be an "
     r"integer >= 1, got 0"),
    (dict(compute_dtype=jnp.int32), ValueError, r"compute_dtype must be a "
     r"floating dtype"),
    (dict(execution="fast"), ValueError, r"execution must be one of 'auto'"
     r", 'scan', 'steps'; got 'fast'"),
    (dict(progress=1), TypeError, r"progress must be callable"),
    (dict(val_data=[1, 2]), ValueError, r"val_data batch 0 must be a pytree "
     r"of arrays with a batch axis"),
    (dict(run_config={"f": print}), TypeError, r"run_config must be "
     r"JSON-able"),
])
def test_invalid_arguments_are_named(digits, kwargs, error, message):
  args = dict(model=Linear(rngs=nnx.Rngs(0)), loss_fn=linear_loss,
              train_data=digits[0], optimizer=optax.sgd(0.1), num_epochs=1,
              batch_size=BATCH)
  args.update(kwargs)
  with pytest.raises(error, match=message):
    train(args.pop("model"), args.pop("loss_fn"), args.pop("train_data"),
          **args)


# ----------------------------------------------------------------------------
# TrainHistory on its own.


def small_history():
  return TrainHistory(
      steps=np.arange(6), losses=[2.0, 1.5, 1.2, 1.0, np.nan, 0.8],
      lrs=[0.1, 0.2, 0.3, 0.2, 0.1, 0.2], momenta=[np.nan] * 6,
      eval_steps=[3, 6], eval_metrics={"accuracy": [0.4, 0.7],
                                       "loss": [1.1, 0.9]},
      wall_times=[1.5, 2.5], config={"seed": 0})


def test_steps_to_reach_gives_the_first_evaluation_at_target():
  history = small_history()
  assert history.steps_to_reach("accuracy", 0.4) == 3
  assert history.steps_to_reach("accuracy", 0.5) == 6
  assert history.steps_to_reach("accuracy", 0.8) is None
  assert history.steps_to_reach("loss", 1.0, mode="min") == 6
  with pytest.raises(ValueError, match=r"metric must be one of \['accuracy',"
                     r" 'loss'\], got 'top5'"):
    history.steps_to_reach("top5", 0.5)


def test_json_round_trip_is_strict_and_exact(tmp_path):
  history = small_history()
  text = history.to_json(tmp_path / "h.json")
  assert "NaN" not in text and json.loads(text)["momenta"] == [None] * 6
  assert json.loads(text)["format_version"] == 2
  for again in (TrainHistory.from_json(text),
                TrainHistory.from_json(tmp_path / "h.json"),
                TrainHistory.from_dict(history.to_dict())):
    assert_histories_equal(again, history)
    np.testing.assert_array_equal(again.wall_times, history.wall_times)
    assert again.config == {"seed": 0}


def test_csv_has_a_row_per_step_and_eval_columns_at_epoch_ends(tmp_path):
  text = small_history().to_csv(tmp_path / "h.csv")
  rows = [line.split(",") for line in text.splitlines()]
  assert rows[0] == ["step", "loss", "lr", "momentum", "wall_time",
                     "eval_accuracy", "eval_loss"]
  assert len(rows) == 7
  # Evaluation after 3 steps sits on step 2's row, after 6 on step 5's.
  assert rows[3][:1] + rows[3][4:] == ["2", "1.5", "0.4", "1.1"]
  assert rows[6][4:] == ["2.5", "0.7", "0.9"]
  assert rows[1][4:] == ["", "", ""]
  assert rows[5][1] == "nan"
  assert (tmp_path / "h.csv").read_text() == text


def test_history_rejects_mismatched_lengths():
  with pytest.raises(ValueError, match=r"losses must have one entry per step "
                     r"\(2, as steps\), got shape \(3,\)"):
    TrainHistory(steps=[0, 1], losses=[1, 2, 3], lrs=[1, 1], momenta=[1, 1],
                 eval_steps=[], eval_metrics={}, wall_times=[])
  with pytest.raises(ValueError, match=r"eval_metrics\['accuracy'\] must "
                     r"have one entry per evaluation \(1, as eval_steps\)"):
    TrainHistory(steps=[0], losses=[1], lrs=[1], momenta=[1], eval_steps=[1],
                 eval_metrics={"accuracy": [0.1, 0.2]}, wall_times=[1.0])


def test_first_release_histories_are_read():
  old = {"type": "TrainHistory", "version": 1, "steps": [0, 1],
         "loss": [2.0, 1.0], "lr": [0.1, 0.1], "momentum": [0.9, 0.9],
         "eval_steps": [2], "eval_metrics": {"loss": [1.5]},
         "wall_time": [0.5], "config": {}}
  history = TrainHistory.from_dict(old)
  np.testing.assert_array_equal(history.losses, [2.0, 1.0])
  np.testing.assert_array_equal(history.wall_times, [0.5])
