"""Specification of optax_clr.optimizers.

Convention under test (from optax.inject_hyperparams): update k (from 0) uses
schedule(k); after k >= 1 updates the state holds schedule(k - 1), the value
the last update used; right after init it holds schedule(0).
"""

import chex
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_clr import optimizers as opt_lib
from optax_clr.optimizers import (cyclic_adam, cyclic_adamw, cyclic_optimizer,
                                  cyclic_sgd, get_hyperparams, get_step,
                                  set_hyperparams)
from optax_clr.schedules import (cyclic_momentum_schedule,
                                one_cycle_momentum_schedule)
from optax_clr.schedules import cyclic_schedule, one_cycle_schedule


# Smith (2017) triangular policy, half cycle = 4 steps: 0.1 -> 0.5 -> 0.1,
# and the momentum cycled inversely: 0.95 at the LR minimum, 0.85 at its peak.
lr_schedule = cyclic_schedule(0.1, 0.5, step_size_up=4)
momentum_schedule = cyclic_momentum_schedule(0.85, 0.95, step_size_up=4)


def values(schedule, steps):
  """schedule(k) for each k in steps (evaluated on the array of steps)."""
  return np.asarray(schedule(jnp.asarray(list(steps), jnp.int32)), np.float32)


def run(opt, grads, params, *, return_state=False):
  """Applies opt.update to each grad in turn (params fixed), under jit.

  Returns the updates and, after each update, the state's hyperparameters
  and step count (and the final state if asked).
  """

  @jax.jit
  def go(grads):
    def body(state, g):
      updates, state = opt.update(g, state, params)
      return state, (updates, get_hyperparams(state), get_step(state))
    return jax.lax.scan(body, opt.init(params), grads)

  state, out = go(grads)
  return (*out, state) if return_state else out


# ----------------------------------------------------------------------------
# Which step's value is used and which one is stored.
# ----------------------------------------------------------------------------


def test_sgd_update_k_applies_schedule_k():
  # Plain SGD, grad = 1: the change at update k is exactly -schedule(k),
  # over two full cycles.
  n = 16
  updates, _, _ = run(cyclic_sgd(lr_schedule), jnp.ones((n, 1)), jnp.zeros(1))
  np.testing.assert_allclose(updates[:, 0], -values(lr_schedule, range(n)),
                             rtol=1e-6)
  np.testing.assert_allclose(
      updates[:9, 0], -np.array([.1, .2, .3, .4, .5, .4, .3, .2, .1]),
      rtol=1e-6)


def test_state_holds_value_of_last_update_and_init_holds_schedule_0():
  lr = optax.linear_schedule(0.01, 0.11, transition_steps=10)  # 0.01 * (k+1)
  opt = cyclic_sgd(lr)
  params = jnp.zeros(1)
  state = opt.init(params)
  assert get_hyperparams(state)["learning_rate"] == pytest.approx(0.01)
  assert get_step(state) == 0
  _, hp, count = run(opt, jnp.ones((5, 1)), params)
  # After k updates: count k, learning_rate = schedule(k - 1), not schedule(k).
  np.testing.assert_array_equal(count, [1, 2, 3, 4, 5])
  np.testing.assert_allclose(hp["learning_rate"],
                             [0.01, 0.02, 0.03, 0.04, 0.05], rtol=1e-6)


def test_next_update_uses_schedule_of_count():
  lr = optax.linear_schedule(0.01, 0.11, transition_steps=10)
  opt = cyclic_sgd(lr)
  params = jnp.zeros(1)
  state = opt.init(params)
  for _ in range(3):
    _, state = opt.update(jnp.ones(1), state, params)
  updates, _ = opt.update(jnp.ones(1), state, params)
  assert get_step(state) == 3
  assert get_hyperparams(state)["learning_rate"] == pytest.approx(0.03)
  assert updates[0] == pytest.approx(-0.04)  # schedule(3) = schedule(count)


# ----------------------------------------------------------------------------
# Momentum.
# ----------------------------------------------------------------------------


def test_momentum_in_state_follows_momentum_schedule_inverse_to_lr():
  n = 16
  opt = cyclic_sgd(lr_schedule, momentum=momentum_schedule)
  _, hp, _ = run(opt, jnp.ones((n, 1)), jnp.zeros(1))
  lr, mom = np.asarray(hp["learning_rate"]), np.asarray(hp["momentum"])
  np.testing.assert_allclose(lr, values(lr_schedule, range(n)), rtol=1e-6)
  np.testing.assert_allclose(mom, values(momentum_schedule, range(n)),
                             rtol=1e-6)
  # Inverse: momentum is lowest exactly when the LR peaks, and the two
  # normalised positions in the cycle are equal at every step.
  assert mom[4] == pytest.approx(0.85) and lr[4] == pytest.approx(0.5)
  assert mom[0] == pytest.approx(0.95) and lr[0] == pytest.approx(0.1)
  np.testing.assert_allclose((0.95 - mom) / 0.1, (lr - 0.1) / 0.4, atol=1e-5)


def test_one_cycle_lr_and_momentum_follow_pytorch_step_numbering():
  # PyTorch OneCycleLR(max_lr=1, total_steps=100) stepped once per batch:
  # batch 0 -> 0.04, 29 -> 1.0 (momentum 0.85), 30 -> 0.99950,
  # 50 -> 0.79389, 99 -> 4e-6. Update k here uses the same values.
  opt = cyclic_optimizer(optax.sgd, learning_rate=one_cycle_schedule(1.0, 100),
                         momentum=one_cycle_momentum_schedule(100))
  _, hp, _ = run(opt, jnp.ones((100, 1)), jnp.zeros(1))
  lr, mom = hp["learning_rate"], hp["momentum"]  # row k: value of update k
  np.testing.assert_allclose(lr[np.array([0, 29, 30, 50, 99])],
                             [0.04, 1.0, 0.99950, 0.79389, 4e-6], rtol=1e-4)
  np.testing.assert_allclose(mom[np.array([0, 29, 99])], [0.95, 0.85, 0.95],
                             rtol=1e-6)


def test_sgd_uses_injected_momentum_at_every_update():
  # optax.sgd builds its trace only when momentum is not None at construction;
  # injected as an array it is, and update k uses momentum(k):
  # trace_k = 1 + momentum(k) * trace_{k-1},  update_k = -lr(k) * trace_k.
  n = 10
  opt = cyclic_sgd(lr_schedule, momentum=momentum_schedule)
  updates, _, _ = run(opt, jnp.ones((n, 1)), jnp.zeros(1))
  trace, expected = 0.0, []
  for k in range(n):
    trace = 1.0 + float(momentum_schedule(k)) * trace
    expected.append(-float(lr_schedule(k)) * trace)
  np.testing.assert_allclose(updates[:, 0], expected, rtol=1e-5)


def test_sgd_without_momentum_has_no_momentum_buffer():
  state = cyclic_sgd(0.1).init(jnp.zeros(3))
  assert "momentum" not in get_hyperparams(state)
  assert not any(isinstance(s, optax.TraceState)
                 for s in jax.tree.leaves(
                     state, is_leaf=lambda s: isinstance(s, optax.TraceState)))


def test_zero_momentum_keeps_a_buffer_that_can_be_raised_later():
  opt = cyclic_sgd(0.1, momentum=0.0)
  state = set_hyperparams(opt.init(jnp.zeros(1)), momentum=0.5)
  _, state = opt.update(jnp.ones(1), state)
  updates, _ = opt.update(jnp.ones(1), state)
  assert updates[0] == pytest.approx(-0.1 * (1 + 0.5 * 1))


def test_adam_b1_follows_schedule_and_drives_first_moment():
  n = 6
  b1 = optax.linear_schedule(0.9, 0.4, transition_steps=5)  # 0.9, 0.8, ...
  grads = jnp.arange(1.0, n + 1.0)[:, None]  # g_k = k + 1
  _, hp, _, state = run(cyclic_adam(1e-3, b1=b1), grads, jnp.zeros(1),
                        return_state=True)
  np.testing.assert_allclose(hp["b1"], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
                             rtol=1e-6)
  assert get_hyperparams(state)["b1"] == pytest.approx(0.4)  # b1(n - 1)
  # First moment after n updates: mu_k = b1(k) mu_{k-1} + (1 - b1(k)) g_k.
  mu = 0.0
  for k in range(n):
    mu = (0.9 - 0.1 * k) * mu + (1 - (0.9 - 0.1 * k)) * (k + 1)
  adam_state = state.inner_state[0]
  np.testing.assert_allclose(adam_state.mu, [mu], rtol=1e-6)


@pytest.mark.parametrize("factory, name", [
    (optax.sgd, "momentum"),
    (optax.rmsprop, "momentum"),
    (optax.adam, "b1"),
    (optax.adamw, "b1"),
    (optax.lion, "b1"),
])
def test_generic_form_detects_momentum_parameter(factory, name):
  # The schedules' values at step 0 (0.95, 0.1) land in the detected slot,
  # and both have a step counter. (Updates with each factory are checked
  # against plain optax below.)
  state = cyclic_optimizer(factory, learning_rate=lr_schedule,
                           momentum=momentum_schedule).init(jnp.zeros(2))
  hp = get_hyperparams(state)
  assert hp[name] == pytest.approx(0.95)
  assert hp["learning_rate"] == pytest.approx(0.1)
  assert set(state.hyperparams_states) == {"learning_rate", name}


@pytest.mark.parametrize("factory, extra", [
    (optax.sgd, {}),
    (optax.rmsprop, {"centered": True}),
    (optax.adam, {"b2": 0.99}),
    (optax.adamw, {"weight_decay": 0.1}),
    (optax.lion, {}),
])
def test_generic_form_with_constants_equals_plain_optax(factory, extra):
  grads = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
  params = jnp.array([0.5, -1.0, 2.0])
  name = "momentum" if factory in (optax.sgd, optax.rmsprop) else "b1"
  ours = cyclic_optimizer(factory, learning_rate=0.05, momentum=0.7, **extra)
  ref = factory(learning_rate=0.05, **{name: 0.7}, **extra)
  got, _, _ = run(ours, grads, params)
  ref_state = ref.init(params)
  for k in range(4):
    want, ref_state = ref.update(grads[k], ref_state, params)
    # Injected hyperparameters are float32 arrays where plain optax keeps
    # Python floats (e.g. 1 - b2 in float64), hence rtol 1e-5, not bitwise.
    np.testing.assert_allclose(got[k], want, rtol=1e-5, atol=1e-7)


def test_explicit_momentum_name():
  # rmsprop's decay is not a momentum, but any parameter may be named.
  opt = cyclic_optimizer(optax.rmsprop, learning_rate=0.1,
                         momentum=momentum_schedule, momentum_name="decay")
  _, hp, _ = run(opt, jnp.ones((2, 1)), jnp.zeros(1))
  np.testing.assert_allclose(hp["decay"], values(momentum_schedule, range(2)),
                             rtol=1e-6)


# ----------------------------------------------------------------------------
# Other hyperparameters: numeric ones injected, the rest static.
# ----------------------------------------------------------------------------


def test_numeric_hyperparams_are_injected_and_visible():
  state = cyclic_adamw(0.1, b2=0.99, eps=1e-6, weight_decay=0.01).init(
      jnp.zeros(2))
  hp = get_hyperparams(state)
  assert set(hp) >= {"learning_rate", "b1", "b2", "eps", "weight_decay"}
  assert hp["b2"] == pytest.approx(0.99)
  assert hp["weight_decay"] == pytest.approx(0.01)


def test_cyclic_adamw_with_constants_equals_optax_adamw():
  grads = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
  params = jnp.array([1.0, -2.0, 3.0])
  got, _, _ = run(cyclic_adamw(0.01, 0.8, 0.99, 1e-6, 0.1), grads, params)
  ref = optax.adamw(0.01, 0.8, 0.99, 1e-6, weight_decay=0.1)
  state = ref.init(params)
  for k in range(5):
    want, state = ref.update(grads[k], state, params)
    np.testing.assert_allclose(got[k], want, rtol=1e-5)  # float32 b1, b2


def test_nesterov_is_static_and_matches_optax():
  grads = jnp.ones((4, 1))
  got, _, _ = run(cyclic_sgd(0.1, 0.9, nesterov=True), grads, jnp.zeros(1))
  plain, _, _ = run(cyclic_sgd(0.1, 0.9), grads, jnp.zeros(1))
  ref = optax.sgd(0.1, 0.9, nesterov=True)
  state = ref.init(jnp.zeros(1))
  for k in range(4):
    want, state = ref.update(grads[k], state)
    np.testing.assert_allclose(got[k], want, rtol=1e-6)
  # Nesterov's first step is -0.1 * (1 + 0.9 * 1); heavy ball's is -0.1.
  assert got[0, 0] == pytest.approx(-0.19) and plain[0, 0] == pytest.approx(-0.1)
  assert "nesterov" not in get_hyperparams(
      cyclic_sgd(0.1, 0.9, nesterov=True).init(jnp.zeros(1)))


def test_callable_non_schedule_arguments_stay_static():
  # jnp.bfloat16 and a mask function are callables; inject_hyperparams alone
  # would call them as schedules.
  params = {"w": jnp.ones(2), "b": jnp.ones(2)}
  opt = cyclic_optimizer(
      optax.adamw, learning_rate=lr_schedule, momentum=momentum_schedule,
      mu_dtype=jnp.bfloat16, weight_decay=0.5,
      mask=lambda p: {"w": True, "b": False})
  state = opt.init(params)
  chex.assert_type(state.inner_state[0].mu["w"], jnp.bfloat16)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = opt.update(zeros, state, params)
  # Zero gradient: only the (masked) weight decay moves w; b does not move.
  np.testing.assert_allclose(updates["w"], -0.1 * 0.5 * np.ones(2), rtol=1e-6)
  np.testing.assert_array_equal(updates["b"], np.zeros(2))


def test_update_without_params():
  opt = cyclic_sgd(lr_schedule, momentum_schedule)
  state = opt.init(jnp.zeros(2))
  updates, state = opt.update(jnp.ones(2), state)
  np.testing.assert_allclose(updates, [-0.1, -0.1], rtol=1e-6)


# ----------------------------------------------------------------------------
# Composition, jit, restarts.
# ----------------------------------------------------------------------------


def test_chain_with_clipping_and_hyperparams_found_inside_chain():
  n = 6
  opt = optax.chain(optax.clip_by_global_norm(1.0),
                    cyclic_sgd(lr_schedule, momentum=0.0))
  grads = jnp.tile(jnp.array([3.0, 4.0]), (n, 1))  # norm 5 -> clipped to 1
  updates, hp, count = run(opt, grads, jnp.zeros(2))
  lr = values(lr_schedule, range(n))
  np.testing.assert_allclose(updates, -lr[:, None] * np.array([0.6, 0.8]),
                             rtol=1e-6)
  np.testing.assert_allclose(hp["learning_rate"], lr, rtol=1e-6)
  np.testing.assert_array_equal(count, np.arange(1, n + 1))


def _tiny_problem():
  x = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
  y = x @ np.array([1.0, -2.0, 0.5], np.float32) + np.float32(0.3)
  params = {"w": jnp.zeros(3), "b": jnp.zeros(())}

  def loss_fn(params):
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)

  return params, loss_fn


def _make_train_step(opt, loss_fn):

  @jax.jit
  def train_step(params, state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, state = opt.update(grads, state, params)
    hp = get_hyperparams(state)
    return (optax.apply_updates(params, updates), state, loss,
            hp["learning_rate"], hp["momentum"])

  return train_step


def test_jitted_train_step_on_tiny_model_compiles_once_and_logs_schedule():
  params, loss_fn = _tiny_problem()
  opt = optax.chain(optax.clip_by_global_norm(10.0),
                    cyclic_sgd(lr_schedule, momentum_schedule))
  train_step = _make_train_step(opt, loss_fn)
  state = opt.init(params)
  losses, lrs, moms = [], [], []
  for _ in range(40):
    params, state, loss, lr, mom = train_step(params, state)
    losses.append(loss)
    lrs.append(lr)
    moms.append(mom)
  assert train_step._cache_size() == 1  # the schedule did not retrace it
  np.testing.assert_allclose(lrs, values(lr_schedule, range(40)), rtol=1e-6)
  np.testing.assert_allclose(moms, values(momentum_schedule, range(40)),
                             rtol=1e-6)
  assert float(losses[-1]) < 0.02 * float(losses[0])  # it trains: 4.18 -> 0.027


def test_restart_from_saved_state_continues_schedule_bit_identically():
  params0, loss_fn = _tiny_problem()
  opt = cyclic_sgd(lr_schedule, momentum_schedule)
  train_step = _make_train_step(opt, loss_fn)

  def steps(params, state, n):
    log = []
    for _ in range(n):
      params, state, _, lr, mom = train_step(params, state)
      log.append((float(lr), float(mom)))
    return params, state, log

  straight, _, log10 = steps(params0, opt.init(params0), 10)

  params, state, log6 = steps(params0, opt.init(params0), 6)
  blob = flax.serialization.to_bytes((params, state))
  # A fresh process would rebuild the optimizer and a template state.
  template = (params0, cyclic_sgd(lr_schedule, momentum_schedule).init(params0))
  params, state = flax.serialization.from_bytes(template, blob)
  assert get_step(state) == 6
  resumed, _, log4 = steps(params, state, 4)

  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  assert log6 + log4 == log10
  # A restart from init would replay schedule(0..3) instead.
  assert log4[0][0] == pytest.approx(float(lr_schedule(6)))


def test_restart_from_copied_state_pytree():
  params0, loss_fn = _tiny_problem()
  opt = cyclic_sgd(lr_schedule, momentum_schedule)
  train_step = _make_train_step(opt, loss_fn)
  params, state = params0, opt.init(params0)
  for _ in range(6):
    params, state, *_ = train_step(params, state)
  saved = jax.tree.map(np.array, (params, state))  # host copy
  runs = []
  for _ in range(2):
    p, s = jax.tree.map(jnp.asarray, saved)
    for _ in range(4):
      p, s, *_ = train_step(p, s)
    runs.append(p)
  for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1])):
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------
# Sweeps: one learning rate per copy of the state.
# ----------------------------------------------------------------------------


def test_vmap_over_states_with_different_lrs_equals_separate_runs():
  params0, loss_fn = _tiny_problem()
  lrs = jnp.array([0.01, 0.03, 0.1, 0.2])
  opt = cyclic_sgd(0.01, momentum=momentum_schedule)  # LR set per copy below
  train_step = _make_train_step(opt, loss_fn)

  states = jax.jit(jax.vmap(
      lambda lr: set_hyperparams(opt.init(params0), learning_rate=lr)))(lrs)
  params = jax.tree.map(lambda x: jnp.stack([x] * len(lrs)), params0)
  sweep_step = jax.jit(jax.vmap(train_step))
  for _ in range(8):
    params, states, _, used_lr, _ = sweep_step(params, states)
  np.testing.assert_allclose(used_lr, lrs)

  def separate_run(lr):  # its own optimizer, with a constant LR
    single = cyclic_sgd(lr, momentum=momentum_schedule)
    step = _make_train_step(single, loss_fn)

    def body(carry, _):
      params, state, *_ = step(*carry)
      return (params, state), None

    return jax.lax.scan(body, (params0, single.init(params0)), length=8)[0][0]

  @jax.jit  # one compilation for all the separate runs
  def separate_runs():
    finals = [separate_run(lr) for lr in lrs.tolist()]
    return jax.tree.map(lambda *x: jnp.stack(x), *finals)

  chex.assert_trees_all_close(params, separate_runs(), rtol=1e-5, atol=1e-7)
  # The LRs really differ in effect: the final weights are all distinct.
  assert len(np.unique(np.asarray(params["b"]))) == len(lrs)


def test_set_hyperparams_equals_tree_set_and_does_not_recompile():
  params0, loss_fn = _tiny_problem()
  opt = cyclic_sgd(0.01, momentum=0.9)
  state = opt.init(params0)
  ours = set_hyperparams(state, learning_rate=0.2)
  theirs = optax.tree_utils.tree_set(state, learning_rate=jnp.float32(0.2))
  chex.assert_trees_all_equal(ours, theirs)
  chex.assert_trees_all_equal_dtypes(ours, state)
  assert get_hyperparams(state)["learning_rate"] == pytest.approx(0.01)  # kept

  train_step = _make_train_step(opt, loss_fn)
  train_step(params0, state)
  _, _, _, lr, _ = train_step(params0, ours)
  assert lr == pytest.approx(0.2)
  assert train_step._cache_size() == 1


def test_scheduled_hyperparam_cannot_be_set_in_state():
  # optax recomputes a scheduled value from its counter on every update, so
  # a value written into the state is silently ignored ...
  opt = cyclic_sgd(lr_schedule)
  state = opt.init(jnp.zeros(1))
  state.hyperparams["learning_rate"] = jnp.float32(99.0)
  updates, _ = opt.update(jnp.ones(1), state)
  assert updates[0] == pytest.approx(-0.1)
  # ... which set_hyperparams refuses to do.
  with pytest.raises(ValueError, match="learning_rate follows a schedule"):
    set_hyperparams(opt.init(jnp.zeros(1)), learning_rate=0.5)


def test_optimizer_built_under_vmap_from_traced_lrs():
  lrs = jnp.array([0.1, 0.2, 0.3])

  def final_update(lr):
    opt = cyclic_sgd(lr, momentum=0.5)  # lr is a tracer: no value checks
    state = opt.init(jnp.zeros(1))
    for _ in range(2):
      updates, state = opt.update(jnp.ones(1), state)
    return updates[0]

  # trace after 2 updates: 1 + 0.5 * 1 = 1.5.
  np.testing.assert_allclose(jax.vmap(final_update)(lrs), -1.5 * lrs,
                             rtol=1e-6)


# ----------------------------------------------------------------------------
# Accessors.
# ----------------------------------------------------------------------------


def test_accessors_work_on_flax_nnx_optimizer_state():
  from flax import nnx  # pylint: disable=g-import-not-at-top

  class Tiny(nnx.Module):

    def __init__(self):
      self.w = nnx.Param(jnp.zeros(2))

    def __call__(self, x):
      return x @ self.w

  model = Tiny()
  optimizer = nnx.Optimizer(
      model, cyclic_sgd(lr_schedule, momentum_schedule), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, x):
    grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
    optimizer.update(model, grads)

  for _ in range(3):
    step(model, optimizer, jnp.ones((4, 2)))
  hp = get_hyperparams(optimizer.opt_state)
  assert isinstance(hp["learning_rate"], jax.Array)
  assert hp["learning_rate"] == pytest.approx(float(lr_schedule(2)))
  assert hp["momentum"] == pytest.approx(float(momentum_schedule(2)))
  assert get_step(optimizer.opt_state) == 3
  # NNX state is updated in place (the NNX idiom), through the optimizer or
  # its opt_state; the next update uses the new value.
  constant = nnx.Optimizer(model, cyclic_sgd(0.1), wrt=nnx.Param)
  assert set_hyperparams(constant, learning_rate=0.2) is constant
  assert get_hyperparams(constant)["learning_rate"] == pytest.approx(0.2)
  set_hyperparams(constant.opt_state, learning_rate=0.5)
  before = np.asarray(model.w[...]).copy()
  grads = nnx.grad(lambda m: jnp.mean(m(jnp.ones((4, 2))) ** 2))(model)
  constant.update(model, grads)
  np.testing.assert_allclose(model.w[...], before - 0.5 * np.asarray(
      grads.w[...]), rtol=1e-6)
  with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got "
                     r"1.5"):
    set_hyperparams(nnx.Optimizer(model, cyclic_sgd(0.1, 0.9),
                                  wrt=nnx.Param), momentum=1.5)


def test_accessors_reject_states_without_a_unique_injected_state():
  with pytest.raises(ValueError, match="no optax InjectHyperparamsState"):
    get_hyperparams(optax.sgd(0.1).init(jnp.zeros(1)))
  two = optax.chain(cyclic_sgd(0.1), cyclic_sgd(0.2)).init(jnp.zeros(1))
  with pytest.raises(ValueError, match="2 InjectHyperparamsStates"):
    get_step(two)
  with pytest.raises(ValueError, match="nope"):
    set_hyperparams(cyclic_sgd(0.1).init(jnp.zeros(1)), nope=1.0)
  with pytest.raises(TypeError, match="learning_rate"):
    set_hyperparams(cyclic_sgd(0.1).init(jnp.zeros(1)), learning_rate="big")


# ----------------------------------------------------------------------------
# Invalid arguments: checked at construction, naming the argument.
# ----------------------------------------------------------------------------


def _python_if_schedule(step):
  return 0.1 if step < 10 else 0.01


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(factory=3), TypeError, "factory"),
    (dict(factory=optax.scale_by_adam), ValueError, "learning_rate"),
    (dict(momentum=0.9, momentum_name="speed"), ValueError, "momentum_name"),
    (dict(momentum=0.9, momentum_name=1), TypeError, "momentum_name"),
    (dict(momentum=0.9, momentum_name="learning_rate"), ValueError,
     "momentum_name"),
    (dict(factory=optax.adagrad, momentum=0.9), ValueError, "momentum_name"),
    (dict(learning_rate=-0.1), ValueError, "learning_rate"),
    (dict(learning_rate=0.0), ValueError, "learning_rate"),
    (dict(learning_rate=float("nan")), ValueError, "learning_rate"),
    (dict(learning_rate=float("inf")), ValueError, "learning_rate"),
    (dict(learning_rate="0.1"), TypeError, "learning_rate"),
    (dict(learning_rate=None), TypeError, "learning_rate"),
    (dict(learning_rate=True), TypeError, "learning_rate"),
    (dict(learning_rate=jnp.array([0.1, 0.2])), ValueError, "learning_rate"),
    (dict(learning_rate=lambda step: jnp.ones(2)), TypeError, "learning_rate"),
    (dict(learning_rate=lambda step: "fast"), TypeError, "learning_rate"),
    (dict(learning_rate=_python_if_schedule), TypeError, "learning_rate"),
    (dict(momentum=1.0), ValueError, "momentum"),
    (dict(momentum=-0.1), ValueError, "momentum"),
    (dict(momentum="high"), TypeError, "momentum"),
    (dict(momentum=lambda step: jnp.zeros(3)), TypeError, "momentum"),
    (dict(factory=optax.adam, momentum=1.5), ValueError, r"momentum \(b1\)"),
    (dict(factory=optax.adam, momentum=0.9, b1=0.8), ValueError, "b1"),
    (dict(foo=3.0), ValueError, "foo"),
])
def test_cyclic_optimizer_rejects(kwargs, error, match):
  kwargs = {"factory": optax.sgd, "learning_rate": 0.1, **kwargs}
  factory = kwargs.pop("factory")
  with pytest.raises(error, match=match):
    cyclic_optimizer(factory, **kwargs)


@pytest.mark.parametrize("build, error, match", [
    (lambda: cyclic_sgd(-1.0), ValueError, "learning_rate"),
    (lambda: cyclic_sgd(0.1, 1.0), ValueError, "momentum"),
    (lambda: cyclic_sgd(0.1, nesterov=True), ValueError, "nesterov"),
    (lambda: cyclic_sgd(0.1, 0.9, nesterov="yes"), TypeError, "nesterov"),
    (lambda: cyclic_adam(0.1, b1=1.0), ValueError, "b1"),
    (lambda: cyclic_adam(0.1, b2=1.5), ValueError, "b2"),
    (lambda: cyclic_adam(0.1, eps=-1e-8), ValueError, "eps"),
    (lambda: cyclic_adam("x"), TypeError, "learning_rate"),
    (lambda: cyclic_adamw(0.1, weight_decay=-0.1), ValueError, "weight_decay"),
    (lambda: cyclic_adamw(0.1, b1=lambda s: "x"), TypeError, "b1"),
])
def test_conveniences_reject(build, error, match):
  with pytest.raises(error, match=match):
    build()


def test_module_exports():
  assert set(opt_lib.__all__) == {
      "cyclic_optimizer", "cyclic_sgd", "cyclic_adam", "cyclic_adamw",
      "get_hyperparams", "get_step", "set_hyperparams", "find_hyperparams",
      "MOMENTUM_NAMES", "check_hyperparam_value", "sgd", "adam", "adamw",
      "lookahead", "lookahead_slow", "LookaheadAdapterState"}


def test_set_hyperparams_refuses_a_value_of_the_wrong_shape_by_name():
  state = cyclic_sgd(0.1, momentum=0.9).init({"w": jnp.ones(3)})
  with pytest.raises(ValueError, match=r"learning_rate must be a scalar "
                     r"\(the shape stored in the state\), got shape \(3,\)"):
    opt_lib.set_hyperparams(state, learning_rate=jnp.ones(3))


# --- lookahead over plain parameters -----------------------------------------


def test_lookahead_updates_exactly_as_optax_on_lookahead_params():
  fast = optax.adam(0.1)
  la = optax.lookahead(fast, sync_period=3, slow_step_size=0.5)
  adapter = opt_lib.lookahead(la)
  built = opt_lib.lookahead(fast, 3, 0.5)
  grads = [{"w": jnp.array([0.3, -1.0]) * (k + 1)} for k in range(7)]
  pair = optax.LookaheadParams.init_synced({"w": jnp.ones(2)})
  state = la.init(pair)
  params, s1, s2 = {"w": jnp.ones(2)}, adapter.init({"w": jnp.ones(2)}), (
      built.init({"w": jnp.ones(2)}))
  params2 = params
  for g in grads:
    updates, state = la.update(g, state, pair)
    pair = optax.apply_updates(pair, updates)
    u1, s1 = adapter.update(g, s1, params)
    params = optax.apply_updates(params, u1)
    u2, s2 = built.update(g, s2, params2)
    params2 = optax.apply_updates(params2, u2)
    np.testing.assert_array_equal(params["w"], pair.fast["w"])
    np.testing.assert_array_equal(params2["w"], pair.fast["w"])
    np.testing.assert_array_equal(opt_lib.lookahead_slow(s1)["w"],
                                  pair.slow["w"])
  # After a synchronising update (the 6th) the fast weights are the slow.
  assert not np.array_equal(pair.slow["w"], jnp.ones(2))


def test_lookahead_inside_inject_hyperparams_is_driven_and_slow_is_found():
  tx = optax.inject_hyperparams(
      lambda learning_rate: opt_lib.lookahead(optax.sgd(learning_rate), 2,
                                              0.5))(learning_rate=0.1)
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  state = set_hyperparams(state, learning_rate=0.2)
  for _ in range(2):
    updates, state = tx.update({"w": jnp.ones(2)}, state, params)
    params = optax.apply_updates(params, updates)
  # Two SGD steps of 0.2 (to 0.6), then halfway back: 0.8.
  np.testing.assert_allclose(params["w"], 0.8, rtol=1e-6)
  np.testing.assert_allclose(opt_lib.lookahead_slow(state)["w"], 0.8,
                             rtol=1e-6)


@pytest.mark.parametrize("build, error, match", [
    (lambda: opt_lib.lookahead(optax.sgd(0.1), 5), TypeError,
     "both sync_period and slow_step_size"),
    (lambda: opt_lib.lookahead("adam"), TypeError,
     "GradientTransformation, got str"),
])
def test_lookahead_refuses_half_its_arguments(build, error, match):
  with pytest.raises(error, match=match):
    build()


def test_lookahead_of_a_plain_optimizer_says_to_build_one():
  tx = opt_lib.lookahead(optax.sgd(0.1))
  params = {"w": jnp.ones(2)}
  with pytest.raises(TypeError, match="not an optax.lookahead "
                     "transformation.*pass sync_period and slow_step_size"):
    tx.update({"w": jnp.ones(2)}, tx.init(params), params)
  with pytest.raises(ValueError, match="holds no optax_clr.lookahead"):
    opt_lib.lookahead_slow(optax.sgd(0.1).init(params))


# --- the LR applied: a reduce_on_plateau's scale included --------------------


def test_get_hyperparams_reports_the_lr_times_the_plateaus_scale():
  plateau = optax.contrib.reduce_on_plateau(factor=0.5, patience=0,
                                            accumulation_size=1)
  tx = optax.chain(cyclic_sgd(lr_schedule, momentum_schedule), plateau)
  params = {"w": jnp.ones(2)}
  state = tx.init(params)
  values_seen = []
  for value in (1.0, 2.0, 3.0):  # no improvement after the first
    _, state = tx.update({"w": jnp.ones(2)}, state, params,
                         value=jnp.float32(value))
    values_seen.append(float(get_hyperparams(state)["learning_rate"]))
  scale = float(state[1].scale)
  assert scale == 0.5  # cut once
  lr = float(get_hyperparams(state[:1])["learning_rate"])  # no plateau
  assert lr == pytest.approx(float(lr_schedule(2)))
  assert values_seen[-1] == pytest.approx(lr * scale)
  assert get_hyperparams(state)["momentum"] == pytest.approx(
      float(momentum_schedule(2)))  # only the LR is scaled
  # A built optimizer, read through its schedule: the same rule.
  built = optax.chain(optax.sgd(optax.constant_schedule(0.1)), plateau)
  state = built.init(params)
  for value in (1.0, 2.0):
    _, state = built.update({"w": jnp.ones(2)}, state, params,
                            value=jnp.float32(value))
  hp = get_hyperparams(state, schedules={"learning_rate": lambda c: 0.1})
  assert float(hp["learning_rate"]) == pytest.approx(0.05)
