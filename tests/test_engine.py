"""The shared train step: LR as data, accumulation, mixed precision, loss
contract, NNX state handling."""

import functools

import _toy
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from optax_clr import _options
from optax_clr.engine import _loss
from optax_clr.engine import _model
from optax_clr.engine import _optimizer
from optax_clr.engine import _step


regression_loss = _toy.regression_loss
make_params = _toy.make_params
KEY = jax.random.key(0)


def make_batch(n, seed=0):
  return _toy.make_data(n, seed)


class Engine:
  """The step of one model / loss / optimizer (the engine's pure functions
  bound to a Spec)."""

  def __init__(self, spec):
    self.spec = spec
    self.step = functools.partial(_step.step, spec)

  def init(self, params, rest, state=None):
    return _step.init(self.spec, _model.Parts(params, rest, state))

  def check_loss(self, parts, batch):
    return _step.check_loss(self.spec, parts, batch)[0]


def engine(loss_fn=regression_loss, optimizer=_optimizer.DEFAULT_FACTORY,
           compute_dtype=None, model=None):
  defn, parts = _model.split_model(make_params() if model is None else model)
  opt = _optimizer.for_range_test(optimizer, parts.params)
  loss = _loss.resolve(loss_fn, "loss_fn", False, make_batch(8))
  return Engine(_step.Spec(defn, loss, None, opt, compute_dtype))


def lr(value):
  return {"learning_rate": jnp.float32(value)}


def micro(batch, k):
  """[k*b, ...] -> [k, b, ...] micro-batches."""
  return jax.tree.map(lambda x: x.reshape((k, -1) + x.shape[1:]), batch)


def test_lr_is_data_one_compilation_serves_every_lr():
  eng = engine(optimizer=optax.sgd)
  params = make_params()
  batch = micro(make_batch(8), 1)
  state = eng.init(params, None)
  step = jax.jit(eng.step)
  grads = jax.grad(lambda p: regression_loss(p, make_batch(8))[0])(params)
  for value in (0.1, 0.01, 3.0):
    new, _ = step(state, batch, KEY, lr(value))
    for k in params:  # plain SGD: p - lr * g
      np.testing.assert_allclose(new.params[k], params[k] - value * grads[k],
                                 rtol=1e-5, atol=1e-6)
  assert step._cache_size() == 1


def test_step_writes_lr_into_injected_hyperparams():
  eng = engine()
  state = eng.init(make_params(), None)
  new, _ = eng.step(state, micro(make_batch(8), 1), KEY, lr(0.25))
  assert float(new.opt_state.hyperparams["learning_rate"]) == 0.25


@pytest.mark.parametrize("k", [2, 4])
def test_accumulation_equals_one_k_times_larger_batch(k):
  eng = engine()
  state = eng.init(make_params(), None)
  big = make_batch(8 * k)
  acc_state, acc_metrics = jax.jit(eng.step)(state, micro(big, k), KEY, lr(0.05))
  one_state, one_metrics = jax.jit(eng.step)(state, micro(big, 1), KEY, lr(0.05))
  chex.assert_trees_all_close(acc_state.params, one_state.params, rtol=1e-5,
                              atol=1e-6)
  chex.assert_trees_all_close(acc_state.opt_state, one_state.opt_state,
                              rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(acc_metrics["loss"], one_metrics["loss"],
                             rtol=1e-5)
  # The aux metric is the mean over the micro-batches.
  per_micro = [regression_loss(make_params(), jax.tree.map(
      lambda x: x[i], micro(big, k)))[1]["mae"] for i in range(k)]
  np.testing.assert_allclose(acc_metrics["mae"], np.mean(per_micro),
                             rtol=1e-5)


def test_mixed_precision_keeps_float32_master_state():
  f32 = engine()
  bf16 = engine(compute_dtype=jnp.bfloat16)
  state = f32.init(make_params(), None)
  batch = micro(make_batch(32), 1)
  new16, m16 = jax.jit(bf16.step)(state, batch, KEY, lr(0.05))
  new32, m32 = jax.jit(f32.step)(state, batch, KEY, lr(0.05))
  chex.assert_trees_all_equal_dtypes(new16.params, state.params)
  chex.assert_trees_all_equal_dtypes(new16.opt_state, state.opt_state)
  for leaf in jax.tree.leaves(new16.params):
    assert leaf.dtype == jnp.float32
  assert m16["loss"].dtype == jnp.float32
  np.testing.assert_allclose(m16["loss"], m32["loss"], rtol=2e-2)
  chex.assert_trees_all_close(new16.params, new32.params, rtol=2e-2,
                              atol=2e-3)


def test_mixed_precision_runs_the_loss_in_compute_dtype():
  seen = []

  def loss_fn(params, batch):
    seen.append((params["w1"].dtype, batch["x1"].dtype, batch["i"].dtype))
    return regression_loss(params, batch)[0]

  eng = engine(loss_fn=loss_fn, compute_dtype=jnp.bfloat16)
  batch = {**make_batch(4), "i": np.arange(4, dtype=np.int32)}
  jax.eval_shape(eng.step, eng.init(make_params(), None), micro(batch, 1),
                 KEY, lr(0.1))
  assert seen == [(jnp.bfloat16, jnp.bfloat16, jnp.int32)]


def test_bare_loss_and_loss_aux_pair_are_both_accepted():
  bare = engine(loss_fn=lambda p, b: regression_loss(p, b)[0])
  state = bare.init(make_params(), None)
  _, metrics = bare.step(state, micro(make_batch(8), 1), KEY, lr(0.1))
  assert set(metrics) == {"loss"}
  _, metrics = engine().step(state, micro(make_batch(8), 1), KEY, lr(0.1))
  assert set(metrics) == {"loss", "mae"}


def test_non_scalar_loss_is_rejected_before_compiling():
  eng = engine(loss_fn=lambda p, b: (p["w1"] * b["x1"]).sum(-1))
  _, parts = _model.split_model(make_params())
  with pytest.raises(ValueError, match=r"scalar loss .*an array of shape "
                     r"\(8,\) float32"):
    eng.check_loss(parts, make_batch(8))


def test_loss_returning_three_values_is_rejected():
  eng = engine(loss_fn=lambda p, b: (1.0 * p["b"], {}, 3))
  _, parts = _model.split_model(make_params())
  with pytest.raises(ValueError, match="tuple of length 3"):
    eng.check_loss(parts, make_batch(8))


class Counter(nnx.Variable):
  pass


class CountingModel(nnx.Module):
  """A Linear layer plus non-Param state updated by every forward pass."""

  def __init__(self, rngs):
    self.linear = nnx.Linear(3, 1, rngs=rngs)
    self.calls = Counter(jnp.zeros((), jnp.int32))

  def __call__(self, x):
    self.calls[...] = self.calls[...] + 1
    return self.linear(x)[:, 0]


def counting_loss(model, batch):
  return jnp.mean((model(batch["x1"]) - batch["y"]) ** 2)


def test_nnx_module_trains_params_and_carries_other_state():
  model = CountingModel(nnx.Rngs(0))
  before = jax.tree.map(np.array, nnx.state(model))
  _, parts = _model.split_model(model)
  eng = engine(loss_fn=counting_loss, model=model)
  state = eng.init(parts.params, parts.rest)
  # The optimizer state covers the Params only.
  chex.assert_trees_all_equal_structs(
      state.opt_state.inner_state[0].trace, parts.params)
  step = jax.jit(eng.step)
  for _ in range(3):
    state, _ = step(state, micro(make_batch(8), 2), KEY, lr(0.1))
  assert int(state.rest["calls"][...]) == 6  # 3 steps x 2 micro-batches
  assert not np.allclose(state.params["linear"]["kernel"][...],
                         before["linear"]["kernel"][...])
  # The user's module is untouched.
  chex.assert_trees_all_equal(jax.tree.map(np.array, nnx.state(model)),
                              before)


def test_optimizer_that_fixes_its_lr_is_refused_with_the_fix():
  with pytest.raises(TypeError, match=r"fixes it inside.*lambda lr: "
                     r"optax.adamw\(lr\)"):
    _optimizer.for_range_test(optax.sgd(0.1), make_params())
  with pytest.raises(TypeError, match="optimizer must be a factory"):
    _optimizer.for_range_test(lambda lr: 3, make_params())
  default = _optimizer.for_range_test(None, make_params())
  assert default.description == "optax.sgd(momentum=0.9)"
  factory = functools.partial(optax.adam, b1=0.8)
  # The same factory is the same optimizer (and finds its compiled programs
  # again: the optimizer is part of their static key).
  assert (_optimizer.for_range_test(factory, make_params())
          == _optimizer.for_range_test(factory, make_params()))
  assert hash(_optimizer.for_range_test(factory, make_params())) == hash(
      _optimizer.for_range_test(factory, make_params()))


def test_check_compute_dtype():
  assert _options.check_compute_dtype(None) is None
  assert _options.check_compute_dtype(jnp.bfloat16) == jnp.bfloat16
  with pytest.raises(ValueError, match="compute_dtype must be a floating"):
    _options.check_compute_dtype(jnp.int32)
