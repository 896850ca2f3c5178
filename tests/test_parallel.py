"""The parallel (vmapped, sharded) LR sweep: equality with K separate runs,
divergence handling, grouping, initialisation, devices, argument checks."""

import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh

from optax_clr import parallel_range_test
from optax_clr import Options
from optax_clr.engine import _layout
from optax_clr.engine import _loop
from optax_clr.schedules import cyclic_schedule

from _devices import forced_devices
from _toy import BATCH, MLP, N, batch_list, make_data, make_params, mlp_loss
from _toy import regression_loss as loss_fn
from _toy import sgd_momentum_run as single_run


LRS = np.array([1e-3, 3e-3, 1e-2, 3e-2, 0.1])


def test_sweep_equals_k_separate_runs():
  batches = batch_list(10)
  result = parallel_range_test(make_params(), loss_fn, batches, lrs=LRS,
                               num_steps=10, steps_per_chunk=4)
  chex.assert_shape(result.losses, (5, 10))
  for k, lr in enumerate(LRS):
    expected, _ = single_run(lambda t: lr, batches)
    np.testing.assert_allclose(result.losses[k], expected, rtol=1e-5)
  assert not result.diverged.any()
  np.testing.assert_array_equal(result.diverged_at, -1)
  np.testing.assert_allclose(result.final_loss, result.losses[:, -1])
  np.testing.assert_allclose(result.mean_loss, result.losses.mean(1),
                             rtol=1e-6)  # window 10 = all 10 steps


def test_array_data_are_sampled_like_the_classic_test():
  data = make_data()
  result = parallel_range_test(make_params(), loss_fn, data, lrs=LRS[:2],
                               num_steps=10, batch_size=BATCH, seed=5)
  order0 = np.random.default_rng((5, 0)).permutation(N)
  order1 = np.random.default_rng((5, 1)).permutation(N)
  idx = np.concatenate([order0, order1]).reshape(-1, BATCH)[:10]
  batches = [jax.tree.map(lambda x: x[i], data) for i in idx]
  expected, _ = single_run(lambda t: LRS[1], batches)
  np.testing.assert_allclose(result.losses[1], expected, rtol=1e-5)


def test_accumulation_and_mixed_precision():
  batches = batch_list(8)
  acc = parallel_range_test(make_params(), loss_fn, batches, lrs=LRS[:2],
                            num_steps=4, accumulation_steps=2)
  big = [jax.tree.map(lambda a, b: np.concatenate([a, b]), *pair)
         for pair in zip(batches[::2], batches[1::2])]
  for k in range(2):
    expected, _ = single_run(lambda t: LRS[k], big)
    np.testing.assert_allclose(acc.losses[k], expected, rtol=1e-5)
  f32 = parallel_range_test(make_params(), loss_fn, batches, lrs=LRS[:2],
                            num_steps=8)
  bf16 = parallel_range_test(make_params(), loss_fn, batches, lrs=LRS[:2],
                             num_steps=8, compute_dtype=jnp.bfloat16)
  np.testing.assert_allclose(bf16.losses, f32.losses, rtol=5e-2)


def test_lrs_are_sorted_and_default_grid_is_log_spaced():
  result = parallel_range_test(make_params(), loss_fn, batch_list(3),
                               lrs=[0.1, 1e-3, 0.01], num_steps=3)
  np.testing.assert_array_equal(result.lrs, [1e-3, 0.01, 0.1])
  grid = parallel_range_test(make_params(), loss_fn, batch_list(3),
                             num_lrs=4, min_lr=1e-4, max_lr=0.1,
                             num_steps=3)
  np.testing.assert_allclose(grid.lrs, [1e-4, 1e-3, 1e-2, 1e-1], rtol=1e-12)


@pytest.mark.parametrize("kwargs", [
    dict(max_parallel=2),             # 3 groups of 2 (last one padded)
    dict(group_size=1),               # lax.map one copy at a time
    dict(group_size=2),               # lax.map in vmapped pairs (5 = 2+2+1)
    dict(max_parallel=3, group_size=2),
])
def test_grouping_does_not_change_results(kwargs):
  batches = batch_list(6)
  ref = parallel_range_test(make_params(), loss_fn, batches, lrs=LRS,
                            num_steps=6, group_size=5)
  got = parallel_range_test(make_params(), loss_fn, batches, lrs=LRS,
                            num_steps=6, **kwargs)
  np.testing.assert_allclose(got.losses, ref.losses, rtol=1e-6)
  if "max_parallel" in kwargs:
    assert got.config["rounds"] == -(-5 // kwargs["max_parallel"])


def test_iterable_is_read_once_and_replayed_for_every_group():
  pulled = []

  def gen():
    for i, b in enumerate(batch_list(50)):
      pulled.append(i)
      yield b

  got = parallel_range_test(make_params(), loss_fn, gen(), lrs=LRS,
                            num_steps=6, max_parallel=2, steps_per_chunk=4)
  assert len(pulled) == 6
  ref = parallel_range_test(make_params(), loss_fn, batch_list(6), lrs=LRS,
                            num_steps=6)
  np.testing.assert_allclose(got.losses, ref.losses, rtol=1e-6)


def nan_after(step):
  def fn(params, batch):
    loss, aux = loss_fn(params, batch)
    barely_moved = jnp.abs(params["w1"][0] - 0.1) < 1e-3
    bad = (batch["step"] >= step) & barely_moved
    return jnp.where(bad, jnp.nan, loss), aux
  return fn


def test_nan_marks_only_that_lr_diverged_and_freezes_its_copy():
  # From step 3 on, the loss is NaN for copies whose w1[0] has barely moved
  # from its initial 0.1: only the LR-1e-6 copy (it moves by ~2e-5; the
  # others by > 0.5). The other copies must be untouched.
  batches = [{**b, "step": np.int32(i)} for i, b in enumerate(batch_list(8))]
  lrs = np.array([1e-6, 0.05, 0.1])
  result = parallel_range_test(make_params(), nan_after(3), batches, lrs=lrs,
                               num_steps=8, steps_per_chunk=3,
                               val_data={**make_data(seed=1),
                                         "step": np.int32(0)})
  np.testing.assert_array_equal(result.diverged, [True, False, False])
  np.testing.assert_array_equal(result.diverged_at, [3, -1, -1])
  assert np.isnan(result.losses[0, 3:]).all()
  assert np.isfinite(result.losses[0, :3]).all()
  assert np.isnan(result.eval_metrics["loss"][0])
  plain = [{k: v for k, v in b.items() if k != "step"} for b in batches]
  for k in (1, 2):
    expected, _ = single_run(lambda t: lrs[k], plain)
    np.testing.assert_allclose(result.losses[k], expected, rtol=1e-5)
    assert np.isfinite(result.eval_metrics["loss"][k])


def test_exploding_lr_diverges_without_crashing():
  lrs = np.array([1e-3, 0.05, 50.0])
  result = parallel_range_test(make_params(), loss_fn, batch_list(30),
                               lrs=lrs, num_steps=30)
  assert result.diverged.tolist() == [False, False, True]
  at = result.diverged_at[2]
  assert at > 0
  # Threshold or NaN/inf, the step is where the criterion first holds.
  losses = result.losses[2]
  if np.isfinite(losses).all():
    window = np.array([losses[max(0, t - 9):t + 1].mean()
                       for t in range(30)])
    assert at == np.flatnonzero(window > 4 * losses[0])[0]
  else:
    assert at == np.flatnonzero(~np.isfinite(losses))[0]


def test_threshold_divergence_and_diverged_at():
  # Large but finite LRs on a quadratic: loss grows without overflowing.
  lrs = np.array([1e-3, 0.3, 0.6])
  result = parallel_range_test(make_params(), loss_fn, batch_list(12),
                               lrs=lrs, num_steps=12, window=3)
  losses = result.losses
  assert np.isfinite(losses).all()
  trailing = np.array([[losses[k, max(0, t - 2):t + 1].mean()
                        for t in range(12)] for k in range(3)])
  np.testing.assert_allclose(result.mean_loss, trailing[:, -1], rtol=1e-6)
  expect = trailing[:, -1] > 4 * losses[:, 0]
  np.testing.assert_array_equal(result.diverged, expect)
  assert expect.any() and not expect.all()
  for k in np.flatnonzero(expect):
    assert result.diverged_at[k] == np.flatnonzero(
        trailing[k] > 4 * losses[k, 0])[0]
  none = parallel_range_test(make_params(), loss_fn, batch_list(12),
                             lrs=lrs, num_steps=12, window=3,
                             diverge_threshold=None)
  assert not none.diverged.any()


def test_per_candidate_schedule():
  batches = batch_list(8)

  def schedule_fn(lr):
    return cyclic_schedule(lr / 4, lr, 3)

  result = parallel_range_test(make_params(), loss_fn, batches, lrs=LRS[2:],
                               num_steps=8, schedule_fn=schedule_fn)
  for k, lr in enumerate(LRS[2:]):
    sched = cyclic_schedule(lr / 4, lr, 3)
    expected, _ = single_run(lambda t: float(sched(t)), batches)
    np.testing.assert_allclose(result.losses[k], expected, rtol=1e-5)


def test_independent_init_uses_model_init_per_copy():
  batches = batch_list(4)

  def model_init(key):
    return jax.tree.map(
        lambda x: x + jax.random.normal(key, x.shape), make_params())

  result = parallel_range_test(make_params(), loss_fn, batches, lrs=LRS[:3],
                               num_steps=4, init="independent",
                               model_init=model_init, seed=7)
  keys = jax.random.split(jax.random.key(7), 3)
  for k in range(3):
    expected, _ = single_run(lambda t: LRS[k], batches,
                             params=model_init(keys[k]))
    np.testing.assert_allclose(result.losses[k], expected, rtol=1e-5)
  assert len(np.unique(result.losses[:, 0])) == 3
  shared = parallel_range_test(make_params(), loss_fn, batches, lrs=LRS[:3],
                               num_steps=4)
  assert len(np.unique(shared.losses[:, 0])) == 1


def test_nnx_model_sweep_with_validation_leaves_the_model_unchanged():
  model = MLP(nnx.Rngs(0))
  before = jax.tree.map(np.array, nnx.state(model))
  result = parallel_range_test(
      model, mlp_loss, make_data(), batch_size=BATCH, lrs=LRS, num_steps=5,
      val_data=make_data(seed=1), init="independent",
      model_init=lambda key: MLP(nnx.Rngs(key)))
  chex.assert_trees_all_equal(jax.tree.map(np.array, nnx.state(model)),
                              before)
  assert set(result.eval_metrics) == {"loss", "mae"}
  chex.assert_shape(result.eval_metrics["loss"], (5,))
  assert np.isfinite(result.eval_metrics["loss"]).all()


def test_model_init_must_match_the_model():
  with pytest.raises(ValueError, match="same structure"):
    parallel_range_test(
        make_params(), loss_fn, batch_list(3), lrs=LRS, num_steps=3,
        init="independent",
        model_init=lambda key: {"w1": jnp.zeros(4), "w2": jnp.zeros(2),
                                "b": jnp.zeros(())})


def test_every_local_copy_is_one_vmapped_group_on_accelerators(monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert _layout.default_group(12, Options()) == 12
  assert _layout.default_group(12, Options(group_size=5)) == 5


def test_cpu_runs_copies_one_after_another_by_default():
  result = parallel_range_test(make_params(), loss_fn, batch_list(3),
                               lrs=LRS, num_steps=3)
  assert result.config["group_size"] == 1


def test_a_group_is_tried_only_when_its_cost_fits_a_tenth_of_the_run():
  m = _layout.Measure()
  # Floor: a chunk of one copy takes 1 s, compiling it took 2 s. Trying a
  # group of 8 costs its compilation (~4 s) and, at worst, a chunk of 8
  # copies twice as slow (8 s more): it needs a run of 120 chunks (12 s).
  assert _layout.try_group(m, 8, 1.0, 2.0, 1, 120) == 8
  assert _layout.try_group(m, 8, 1.0, 2.0, 1, 119) is None
  assert _layout.try_group(m, 3, 1.0, 2.0, 1, 70) == 3      # 4 + 3 <= 7
  assert _layout.try_group(m, 1, 1.0, 2.0, 1, 120) is None  # nothing to group
  m.per_copy_step[8] = 0.5                                   # measured: done
  assert _layout.try_group(m, 8, 1.0, 2.0, 1, 120) is None


def test_a_group_is_kept_only_when_measured_five_percent_faster():
  m = _layout.Measure(per_copy_step={1: 1.0, 8: 0.96})
  assert m.best() == 1
  m.per_copy_step[8] = 0.9
  assert m.best() == 8
  assert _layout.Measure(per_copy_step={1: 1.0}).best() is None


def test_a_measured_group_is_used_and_remembered(monkeypatch):
  monkeypatch.setattr(_layout, "MEASURED", type(_layout.MEASURED)())
  # Timings as if the vmapped group ran each copy four times faster.
  monkeypatch.setattr(_loop, "compile_seconds", lambda *a: 0.0)
  real_timed = _loop._timed
  timed = []

  def fake_timed(fn):
    out, _ = real_timed(fn)
    group = len(timed) and 8
    timed.append(group)
    return out, (0.25 if group else 1.0) * (8 if group else 1)
  monkeypatch.setattr(_loop, "_timed", fake_timed)
  # 16 copies x 6 chunks: a tenth of the run (9.6 floor chunks) pays for
  # one chunk of a group of 8 at worst twice as slow (8 floor chunks).
  lrs = np.geomspace(1e-3, 0.1, 16)
  ref = parallel_range_test(make_params(), loss_fn, batch_list(12), lrs=lrs,
                            num_steps=12, steps_per_chunk=2, group_size=1)
  got = parallel_range_test(make_params(), loss_fn, batch_list(12), lrs=lrs,
                            num_steps=12, steps_per_chunk=2)
  assert got.config["group_size"] == 8 and timed == [0, 8]
  np.testing.assert_allclose(got.losses, ref.losses, rtol=1e-6)
  timed.clear()
  again = parallel_range_test(make_params(), loss_fn, batch_list(12),
                              lrs=lrs, num_steps=12, steps_per_chunk=2)
  assert again.config["group_size"] == 8 and timed == []


@pytest.mark.parametrize("group", [1, 2, 3, 7])
def test_groups_do_not_change_the_numbers(group):
  lrs = np.geomspace(1e-3, 0.3, 7)
  ref = parallel_range_test(make_params(), loss_fn, batch_list(4), lrs=lrs,
                            num_steps=4, group_size=7)
  got = parallel_range_test(make_params(), loss_fn, batch_list(4), lrs=lrs,
                            num_steps=4, group_size=group)
  assert got.config["group_size"] == group
  np.testing.assert_allclose(got.losses, ref.losses, rtol=1e-6)


@pytest.mark.parametrize("execution", ["scan", "steps"])
def test_executions_give_the_same_numbers(execution):
  ref = parallel_range_test(make_params(), loss_fn, batch_list(5), lrs=LRS,
                            num_steps=5, steps_per_chunk=2)
  got = parallel_range_test(make_params(), loss_fn, batch_list(5), lrs=LRS,
                            num_steps=5, steps_per_chunk=2,
                            execution=execution)
  assert got.config["execution"] == execution
  np.testing.assert_allclose(got.losses, ref.losses, rtol=1e-6)


class ConvNet(nnx.Module):
  def __init__(self, rngs):
    self.conv = nnx.Conv(1, 2, (3, 3), rngs=rngs)

  def __call__(self, x):
    return self.conv(x).mean((1, 2, 3))


def test_a_convolution_runs_step_by_step_on_cpu_and_a_matmul_scanned():
  x = np.random.default_rng(0).normal(size=(32, 6, 6, 1)).astype(np.float32)
  data = {"x": x, "y": x.mean((1, 2, 3))}
  conv = parallel_range_test(
      ConvNet(nnx.Rngs(0)), lambda m, b: jnp.mean((m(b["x"]) - b["y"]) ** 2),
      data, batch_size=8, lrs=LRS[:2], num_steps=2)
  assert conv.config["execution"] == "steps"
  dense = parallel_range_test(make_params(), loss_fn, batch_list(2),
                              lrs=LRS[:2], num_steps=2)
  assert dense.config["execution"] == "scan"


def test_few_copies_are_not_measured(monkeypatch):
  monkeypatch.setattr(_loop, "_timed", lambda fn: 1 / 0)
  result = parallel_range_test(make_params(), loss_fn, batch_list(3),
                               lrs=LRS[:1], num_steps=3)
  assert result.config["group_size"] == 1


def test_one_device_mesh_and_config():
  mesh = Mesh(np.array(jax.devices()[:1]), ("copies",))
  result = parallel_range_test(make_params(), loss_fn, batch_list(3),
                               lrs=LRS, num_steps=3, mesh=mesh)
  json.dumps(result.config)
  assert result.config["devices"] == 1
  assert result.config["rounds"] == 1


def test_short_iterator_gives_the_steps_it_had():
  result = parallel_range_test(make_params(), loss_fn, iter(batch_list(4)),
                               lrs=LRS, num_steps=10, steps_per_chunk=3)
  chex.assert_shape(result.losses, (5, 4))
  assert result.config["steps_run"] == 4


def test_progress_is_called_per_chunk():
  calls = []
  parallel_range_test(make_params(), loss_fn, batch_list(5), lrs=LRS,
                      num_steps=5, steps_per_chunk=2, max_parallel=3,
                      progress=lambda s, t, m: calls.append((s, t)))
  assert calls == [(2, 10), (4, 10), (5, 10), (7, 10), (9, 10), (10, 10)]


@pytest.mark.skipif(sys.platform == "win32", reason="subprocess env")
def test_eight_devices_equal_one_device():
  script = os.path.join(os.path.dirname(__file__), "_multidevice_sweep.py")
  env = {**os.environ,
         "XLA_FLAGS": forced_devices(8),
         "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, script], env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report["devices"] == [8, 8, 1]
  assert report["losses_rel_err_8_vs_1"] < 1e-5


# ----------------------------------------------------------------------------
# Argument checks.

GOOD = dict(lrs=LRS, num_steps=3)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(lrs=[0.1, 0.0]), ValueError, r"lrs must be finite and > 0.*0\.0"),
    (dict(lrs=[0.1, -1.0]), ValueError, "lrs must be finite and > 0"),
    (dict(lrs=[0.1, np.nan]), ValueError, "lrs must be finite"),
    (dict(lrs=[]), ValueError, r"at least one LR \(K >= 1\)"),
    (dict(lrs=[[0.1]]), ValueError, "1-D"),
    (dict(lrs=[0.1, 0.1]), ValueError, "lrs must be distinct"),
    (dict(lrs=None, num_lrs=0), ValueError, "num_lrs must be an integer >= 1"),
    (dict(lrs=None, min_lr=0.0), ValueError, "min_lr"),
    (dict(lrs=None, min_lr=1.0, max_lr=0.1), ValueError,
     "min_lr must be < max_lr"),
    (dict(num_steps=0), ValueError, "num_steps must be an integer >= 1"),
    (dict(window=0), ValueError, "window"),
    (dict(init="random"), ValueError,
     "init must be one of 'shared', 'independent'"),
    (dict(init="independent"), ValueError, "needs model_init"),
    (dict(model_init=lambda k: make_params()), ValueError,
     "only used with init='independent'"),
    (dict(max_parallel=0), ValueError, "max_parallel must be an integer >= 1"),
    (dict(group_size=0), ValueError, "group_size must be an integer >= 1"),
    (dict(accumulation_steps=0), ValueError, "accumulation_steps"),
    (dict(schedule_fn=3), TypeError, "schedule_fn must be callable"),
    (dict(schedule_fn=lambda lr: (lambda t: jnp.ones(2) * lr)), ValueError,
     "schedule_fn"),
    (dict(mesh="lr"), TypeError, "mesh must be a jax.sharding.Mesh"),
    (dict(mesh=Mesh(np.array(jax.devices()[:1]), ("lr",))), ValueError,
     "axis named 'copies'"),
    (dict(execution="fast"), ValueError, "execution must be one of"),
    (dict(batch_sise=3), TypeError, "unexpected keyword argument 'batch_sise'"),
    (dict(eval_fn=lambda m, b: {}), ValueError, "eval_fn needs val_data"),
    (dict(optimizer=3), TypeError, "optimizer must be a factory"),
])
def test_invalid_arguments(kwargs, error, match):
  with pytest.raises(error, match=match):
    parallel_range_test(make_params(), loss_fn, batch_list(3),
                        **{**GOOD, **kwargs})


def test_invalid_data_and_loss():
  with pytest.raises(ValueError, match="batch_size is required"):
    parallel_range_test(make_params(), loss_fn, make_data(), **GOOD)
  bad = make_data()
  bad["x2"] = bad["x2"][:10]
  with pytest.raises(ValueError, match="leading example axis"):
    parallel_range_test(make_params(), loss_fn, bad, batch_size=8, **GOOD)
  with pytest.raises(ValueError, match="train_data is empty"):
    parallel_range_test(make_params(), loss_fn, [], **GOOD)
  with pytest.raises(ValueError, match="scalar loss"):
    parallel_range_test(make_params(), lambda p, b: b["y"] * p["b"],
                        batch_list(3), **GOOD)
  with pytest.raises(TypeError, match="loss_fn must be callable"):
    parallel_range_test(make_params(), None, batch_list(3), **GOOD)
