"""The classic LR range test: ramp, smoothing, stop rules, data handling,
validation, and argument checks.

A tiny regression model (a params pytree, a dict batch with two inputs) keeps
compilation short; every numeric check is against an independent NumPy /
plain-Python reference.
"""

import _toy
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from optax_clr import range_test
from optax_clr.drivers import ramp_lrs
from optax_clr.engine import _loop

from _toy import BATCH, MLP, N, batch_list, make_data, make_params, mlp_loss
from _toy import regression_loss as loss_fn


def reference_losses(lrs, batches, momentum=0.9):
  """Plain Python SGD with momentum, step t at ``lrs[t]``."""
  return _toy.sgd_momentum_run(lrs.__getitem__, batches,
                               momentum=momentum)[0]


def sampled_batches(data, num, batch_size, seed):
  """The documented sampling: per-epoch permutation rng((seed, epoch))."""
  per_epoch = N // batch_size
  out = []
  for i in range(num):
    epoch, pos = divmod(i, per_epoch)
    order = np.random.default_rng((seed, epoch)).permutation(N)
    idx = order[pos * batch_size:(pos + 1) * batch_size]
    out.append(jax.tree.map(lambda x: x[idx], data))
  return out


@pytest.mark.parametrize("ramp", ["exp", "linear"])
def test_lrs_follow_the_ramp_and_reach_end_lr_exactly(ramp):
  result = range_test(make_params(), loss_fn, make_data(), batch_size=BATCH,
                      start_lr=1e-4, end_lr=0.1, num_steps=12, ramp=ramp,
                      diverge_threshold=None, steps_per_chunk=5)
  expected = ramp_lrs(1e-4, 0.1, 12, ramp)
  np.testing.assert_allclose(result.lrs, expected, rtol=2e-6)
  assert result.lrs[0] == np.float32(1e-4)
  assert result.lrs[-1] == np.float32(0.1)
  assert result.stop_reason == "completed"
  assert result.num_steps == 12


def test_losses_match_a_plain_sgd_loop_on_the_same_batches():
  data = make_data()
  # 11 steps in chunks of 4: the last chunk is padded (3 valid + 1 pad) and
  # the run crosses an epoch boundary (8 batches per epoch).
  result = range_test(make_params(), loss_fn, data, batch_size=BATCH,
                      start_lr=1e-3, end_lr=0.05, num_steps=11, seed=3,
                      diverge_threshold=None, steps_per_chunk=4)
  expected = reference_losses(ramp_lrs(1e-3, 0.05, 11),
                              sampled_batches(data, 11, BATCH, seed=3))
  np.testing.assert_allclose(result.losses, expected, rtol=1e-5)


def test_smoothed_loss_is_bias_corrected_ema():
  result = range_test(make_params(), loss_fn, make_data(), batch_size=BATCH,
                      start_lr=1e-3, end_lr=0.05, num_steps=10,
                      smoothing=0.3, diverge_threshold=None)
  beta, avg, expected = 0.7, 0.0, []
  for i, loss in enumerate(result.losses):
    avg = beta * avg + (1 - beta) * loss
    expected.append(avg / (1 - beta ** (i + 1)))
  np.testing.assert_allclose(result.smoothed_losses, expected, rtol=1e-5)
  # Bias correction: the first smoothed value is the first loss itself.
  assert result.smoothed_losses[0] == pytest.approx(result.losses[0], 1e-6)


def test_smoothing_one_means_no_smoothing():
  result = range_test(make_params(), loss_fn, make_data(), batch_size=BATCH,
                      start_lr=1e-3, end_lr=0.05, num_steps=6, smoothing=1.0,
                      diverge_threshold=None)
  np.testing.assert_allclose(result.smoothed_losses, result.losses, rtol=1e-6)


def test_stops_when_smoothed_loss_exceeds_threshold_times_best():
  result = range_test(make_params(), loss_fn, make_data(), batch_size=BATCH,
                      start_lr=1e-3, end_lr=100.0, num_steps=60,
                      steps_per_chunk=7)
  assert result.stop_reason == "diverged"
  s = result.smoothed_losses
  best = np.minimum.accumulate(s)
  over = np.flatnonzero(s > 4.0 * best)
  # The first step over the threshold is the last one recorded.
  assert over.tolist() == [len(s) - 1]
  assert 1 < len(s) < 60
  assert np.all(np.isfinite(result.losses))


def test_divergence_check_can_be_disabled():
  kw = dict(batch_size=BATCH, start_lr=1e-3, end_lr=3.0, num_steps=20)
  stopped = range_test(make_params(), loss_fn, make_data(), **kw)
  result = range_test(make_params(), loss_fn, make_data(),
                      diverge_threshold=None, **kw)
  assert stopped.stop_reason == "diverged" and stopped.num_steps < 20
  assert result.stop_reason == "completed"
  assert result.num_steps == 20
  # The smoothed loss ends far above 4x its best: only the check stopped it.
  assert result.smoothed_losses[-1] > 100 * result.smoothed_losses.min()
  np.testing.assert_array_equal(result.losses[:stopped.num_steps],
                                stopped.losses)


def nan_after(step):
  """A loss that turns NaN once the batch's step counter reaches ``step``."""
  def fn(params, batch):
    loss, aux = loss_fn(params, batch)
    return jnp.where(batch["step"] >= step, jnp.nan, loss), aux
  return fn


def counted_batches(count):
  return [{**b, "step": np.int32(i)} for i, b in enumerate(batch_list(count))]


def test_nonfinite_loss_stops_cleanly_and_is_the_last_step():
  result = range_test(make_params(), nan_after(5), counted_batches(20),
                      start_lr=1e-3, end_lr=0.01, num_steps=20,
                      steps_per_chunk=4)
  assert result.stop_reason == "nonfinite"
  assert result.num_steps == 6
  assert np.all(np.isfinite(result.losses[:5]))
  assert np.isnan(result.losses[5])
  # Everything before the NaN equals a run that never saw it.
  clean = reference_losses(ramp_lrs(1e-3, 0.01, 20)[:5], batch_list(5))
  np.testing.assert_allclose(result.losses[:5], clean, rtol=1e-5)


@pytest.mark.parametrize("available", [7, 8])  # mid-chunk, chunk boundary
def test_short_iterator_ends_with_data_exhausted(available):
  result = range_test(make_params(), loss_fn, iter(batch_list(available)),
                      start_lr=1e-3, end_lr=0.01, num_steps=20,
                      steps_per_chunk=4)
  assert result.stop_reason == "data_exhausted"
  assert result.num_steps == available
  np.testing.assert_allclose(
      result.lrs, ramp_lrs(1e-3, 0.01, 20)[:available], rtol=2e-6)


def test_iterator_is_read_only_as_far_as_needed():
  pulled = []

  def gen():
    for i, b in enumerate(batch_list(40)):
      pulled.append(i)
      yield b

  result = range_test(make_params(), loss_fn, gen(), start_lr=1e-3,
                      end_lr=0.01, num_steps=10, steps_per_chunk=4)
  assert result.stop_reason == "completed"
  assert len(pulled) == 10


def test_accumulation_consumes_micro_batches_per_step():
  # 8 micro-batches, 2 per step: 4 steps, each on the mean gradient.
  result = range_test(make_params(), loss_fn, batch_list(8), start_lr=1e-3,
                      end_lr=0.01, num_steps=10, accumulation_steps=2)
  assert result.stop_reason == "data_exhausted"
  assert result.num_steps == 4
  big = [jax.tree.map(lambda a, b: np.concatenate([a, b]), *pair)
         for pair in zip(batch_list(8)[::2], batch_list(8)[1::2])]
  np.testing.assert_allclose(
      result.losses, reference_losses(ramp_lrs(1e-3, 0.01, 10)[:4], big),
      rtol=1e-5)


def test_validation_iterator_is_read_once_and_reused():
  pulled = []

  def val_gen():
    for i, b in enumerate(batch_list(10, make_data(seed=1))):
      pulled.append(i)
      yield b

  result = range_test(make_params(), loss_fn, make_data(), batch_size=BATCH,
                      start_lr=1e-3, end_lr=0.05, num_steps=12,
                      diverge_threshold=None, val_data=val_gen(),
                      val_batches=3, eval_every=3, steps_per_chunk=5)
  assert len(pulled) == 3
  np.testing.assert_array_equal(result.eval_steps, [2, 5, 8, 11])
  np.testing.assert_array_equal(result.eval_lrs, result.lrs[[2, 5, 8, 11]])
  assert set(result.eval_metrics) == {"loss", "mae"}
  val_loss = result.eval_metrics["loss"]
  assert np.all(np.isfinite(val_loss))
  # Training moves the validation loss: not a flat curve.
  assert len(np.unique(val_loss)) == 4


def test_validation_metrics_match_the_model_at_that_step():
  val = make_data(seed=1)
  result = range_test(make_params(), loss_fn, batch_list(4), start_lr=1e-3,
                      end_lr=0.01, num_steps=4, val_data=val, eval_every=4,
                      diverge_threshold=None)
  # Re-train with the plain loop and evaluate after the 4th step.
  params = jax.tree.map(np.asarray, make_params())
  trace = jax.tree.map(np.zeros_like, params)
  for lr, b in zip(ramp_lrs(1e-3, 0.01, 4), batch_list(4)):
    grads = jax.grad(lambda p: loss_fn(p, b)[0])(params)
    trace = jax.tree.map(lambda t, g: g + 0.9 * t, trace, grads)
    params = jax.tree.map(lambda p, t: p - np.float32(lr) * t, params, trace)
  loss, aux = loss_fn(params, val)
  np.testing.assert_array_equal(result.eval_steps, [3])
  np.testing.assert_allclose(result.eval_metrics["loss"], [loss], rtol=1e-5)
  np.testing.assert_allclose(result.eval_metrics["mae"], [aux["mae"]],
                             rtol=1e-5)


def test_custom_eval_fn():
  result = range_test(
      make_params(), loss_fn, batch_list(6), start_lr=1e-3, end_lr=0.01,
      num_steps=6, val_data=make_data(seed=1), eval_every=2,
      eval_fn=lambda p, b: {"bias": p["b"] * 1.0})
  assert set(result.eval_metrics) == {"bias"}
  assert result.eval_metrics["bias"].shape == (3,)


def test_tuple_batches_and_any_pytree():
  data = make_data()
  arrays = ((data["x1"], data["x2"]), data["y"])

  def tuple_loss(params, batch):
    (x1, x2), y = batch
    return loss_fn(params, {"x1": x1, "x2": x2, "y": y})

  got = range_test(make_params(), tuple_loss, arrays, batch_size=BATCH,
                   start_lr=1e-3, end_lr=0.05, num_steps=6)
  ref = range_test(make_params(), loss_fn, data, batch_size=BATCH,
                   start_lr=1e-3, end_lr=0.05, num_steps=6)
  np.testing.assert_array_equal(got.losses, ref.losses)


@pytest.mark.slow  # ~4 s alone, ~17 s on a loaded 2-core machine (compile)
def test_bundled_cnn_on_digits_dataset_with_accuracy():
  from optax_clr.data import load_digits
  from optax_clr.models import CNN, cross_entropy_loss
  train, val = load_digits().split()
  result = range_test(CNN(width=4, rngs=nnx.Rngs(0)), cross_entropy_loss,
                      train, batch_size=32, start_lr=1e-4, end_lr=1.0,
                      num_steps=30, val_data=val, eval_every=10)
  assert result.stop_reason in ("completed", "diverged")
  assert set(result.eval_metrics) == {"accuracy", "loss"}
  acc = result.eval_metrics["accuracy"]
  assert np.all((acc >= 0) & (acc <= 1))
  assert result.losses[0] == pytest.approx(np.log(10), rel=0.1)


def test_nnx_model_is_not_modified():
  model = MLP(nnx.Rngs(0))
  before = jax.tree.map(np.array, nnx.state(model))
  # A loss_fn that returns the loss alone (no aux) is accepted too.
  result = range_test(model, lambda m, b: mlp_loss(m, b)[0], make_data(),
                      batch_size=BATCH, start_lr=1e-3, end_lr=1.0,
                      num_steps=10)
  assert result.num_steps >= 2
  after = jax.tree.map(np.array, nnx.state(model))
  chex.assert_trees_all_equal(after, before)


def test_params_pytree_is_not_modified():
  params = make_params()
  before = jax.tree.map(np.array, params)
  range_test(params, loss_fn, make_data(), batch_size=BATCH, start_lr=1e-3,
             end_lr=1.0, num_steps=5)
  chex.assert_trees_all_equal(jax.tree.map(np.array, params), before)


def test_custom_optimizer_factory():
  result = range_test(make_params(), loss_fn, batch_list(5), start_lr=1e-3,
                      end_lr=0.01, num_steps=5, optimizer=optax.sgd)
  expected = reference_losses(ramp_lrs(1e-3, 0.01, 5), batch_list(5),
                              momentum=0.0)
  np.testing.assert_allclose(result.losses, expected, rtol=1e-5)
  assert result.config["optimizer"] == "optax.sgd"


def test_one_compiled_program_serves_different_ramps():
  sizes = []
  for start, end in ((1e-3, 0.01), (1e-2, 0.5), (1e-4, 1.0)):
    range_test(make_params(), loss_fn, batch_list(5), start_lr=start,
               end_lr=end, num_steps=5, steps_per_chunk=5,
               optimizer=optax.adam)
    sizes.append(_loop.chunk_program._cache_size())
  assert sizes[1] == sizes[0] and sizes[2] == sizes[0]


def test_progress_is_called_once_per_chunk():
  calls = []
  range_test(make_params(), loss_fn, make_data(), batch_size=BATCH,
             start_lr=1e-3, end_lr=0.01, num_steps=10, steps_per_chunk=4,
             progress=lambda step, total, m: calls.append((step, total, m)))
  assert [(s, t) for s, t, _ in calls] == [(4, 10), (8, 10), (10, 10)]
  assert calls[-1][2]["lr"] == pytest.approx(0.01, rel=1e-6)


def test_mixed_precision_range_test_is_close_to_float32():
  kw = dict(batch_size=BATCH, start_lr=1e-3, end_lr=0.05, num_steps=8,
            diverge_threshold=None)
  f32 = range_test(make_params(), loss_fn, make_data(), **kw)
  bf16 = range_test(make_params(), loss_fn, make_data(),
                    compute_dtype=jnp.bfloat16, **kw)
  np.testing.assert_allclose(bf16.losses, f32.losses, rtol=5e-2)
  assert bf16.config["compute_dtype"] == "bfloat16"


def test_config_is_json_able():
  import json
  result = range_test(make_params(), loss_fn, batch_list(3), start_lr=1e-3,
                      end_lr=0.01, num_steps=3)
  json.dumps(result.config)
  assert result.config["num_steps"] == 3
  assert result.config["optimizer"] == "optax.sgd(momentum=0.9)"


# ----------------------------------------------------------------------------
# Argument checks: raised up front, naming the argument and the value.

GOOD = dict(batch_size=BATCH, start_lr=1e-3, end_lr=0.1, num_steps=5)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(start_lr=0.0), ValueError, r"start_lr must be in \(0, inf\), got 0"),
    (dict(start_lr=-1.0), ValueError, "start_lr"),
    (dict(end_lr=float("nan")), ValueError, "end_lr must be a finite"),
    (dict(end_lr=float("inf")), ValueError, "end_lr must be a finite"),
    (dict(start_lr=0.1, end_lr=0.1), ValueError,
     "start_lr must be < end_lr, got start_lr=0.1, end_lr=0.1"),
    (dict(start_lr=1.0, end_lr=0.1), ValueError, "start_lr must be < end_lr"),
    (dict(num_steps=1), ValueError, "num_steps must be an integer >= 2, got 1"),
    (dict(num_steps=2.5), TypeError, "num_steps"),
    (dict(ramp="cosine"), ValueError, "ramp must be one of 'exp', 'linear'"),
    (dict(smoothing=0.0), ValueError, r"smoothing must be in \(0, 1\]"),
    (dict(smoothing=1.5), ValueError, r"smoothing must be in \(0, 1\]"),
    (dict(diverge_threshold=1.0), ValueError, "diverge_threshold"),
    (dict(accumulation_steps=0), ValueError,
     "accumulation_steps must be an integer >= 1, got 0"),
    (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1"),
    (dict(batch_size=65), ValueError,
     r"batch_size must be in \[1, 64\] .*got 65"),
    (dict(batch_size=None), ValueError, "batch_size is required"),
    (dict(optimizer=optax.sgd(0.1)), TypeError,
     r"optimizer: .* fixes it inside.*factory"),
    (dict(eval_every=2), ValueError, "eval_every needs val_data"),
    (dict(eval_fn=lambda p, b: {}), ValueError, "eval_fn needs val_data"),
    (dict(eval_every=0, val_data=make_data()), ValueError, "eval_every"),
    (dict(steps_per_chunk=0), ValueError, "steps_per_chunk"),
    (dict(compute_dtype=jnp.int8), ValueError, "compute_dtype"),
    (dict(progress=3), TypeError, "progress must be callable"),
])
def test_invalid_arguments(kwargs, error, match):
  with pytest.raises(error, match=match):
    range_test(make_params(), loss_fn, make_data(), **{**GOOD, **kwargs})


def test_mismatched_leading_dims_are_rejected():
  data = make_data()
  data["y"] = data["y"][:63]
  with pytest.raises(ValueError, match=r"leading example axis.*\['y'\]: 63"):
    range_test(make_params(), loss_fn, data, **GOOD)


def test_empty_data_is_rejected():
  with pytest.raises(ValueError, match="train_data is empty"):
    range_test(make_params(), loss_fn, iter([]), **GOOD)
  with pytest.raises(ValueError, match=r"train_data is empty \(0 examples\)"):
    range_test(make_params(), loss_fn, make_data(0), **GOOD)


def test_inconsistent_batches_are_rejected():
  batches = batch_list(3)
  batches[2] = jax.tree.map(lambda x: x[:4], batches[2])
  with pytest.raises(ValueError, match="train_data batch 2"):
    range_test(make_params(), loss_fn, batches, **GOOD)


def test_non_callable_loss_is_rejected():
  with pytest.raises(TypeError, match="loss_fn must be callable"):
    range_test(make_params(), "mse", make_data(), **GOOD)


def test_non_scalar_loss_is_rejected_before_running():
  calls = []

  def bad(params, batch):
    calls.append(1)
    return (batch["x1"] @ params["w1"]) ** 2

  with pytest.raises(ValueError, match=r"scalar loss .*an array of shape "
                     r"\(8,\) float32"):
    range_test(make_params(), bad, make_data(), **GOOD)
  assert len(calls) == 1  # one abstract evaluation, nothing compiled


def test_empty_validation_iterator_is_rejected():
  with pytest.raises(ValueError, match="val_data is empty"):
    range_test(make_params(), loss_fn, make_data(), val_data=iter([]),
               **GOOD)


def test_start_and_end_lr_equal_in_float32_are_refused_before_any_step():
  calls = []
  with pytest.raises(ValueError, match=r"start_lr=0.001 and end_lr=0.001"
                     r"000000001 are equal in float32"):
    range_test(make_params(), loss_fn, batch_list(5), start_lr=1e-3,
               end_lr=1e-3 + 1e-12, num_steps=5,
               progress=lambda *a: calls.append(a))
  assert calls == []
