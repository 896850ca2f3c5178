"""What real training code may hand to the range tests and train: a loss
that takes rngs, any aux, the optimizer already built, typed keys anywhere,
models whose graphdefs differ, NNX modes, hyperparameters wherever they are.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P
from jax.sharding import reshard

import optax_clr as clr
from optax_clr.engine import _loss

from _toy import BATCH, MLP, batch_list, make_data, make_params, mlp_loss
from _toy import regression_loss

QUIET = dict(progress=False)


# --- per-step randomness ----------------------------------------------------


def noise_loss(params, batch, key):
  """The loss is a draw from the step's key (plus a differentiable zero)."""
  return jax.random.uniform(key) + 0.0 * regression_loss(params, batch)[0]


def test_a_loss_taking_a_key_gets_a_fresh_key_every_step():
  result = clr.range_test(make_params(), noise_loss, batch_list(6),
                          start_lr=1e-3, end_lr=0.01, num_steps=6,
                          diverge_threshold=None, seed=3, **QUIET)
  # The key of step t of copy 0 with seed 3 (see optax_clr.engine._loss).
  expected = [float(jax.random.uniform(_loss.step_key(3, 0, t)))
              for t in range(6)]
  np.testing.assert_allclose(result.losses, expected, rtol=1e-6)
  assert len(set(np.round(result.losses, 7))) == 6


def test_every_copy_of_a_sweep_gets_its_own_key():
  result = clr.parallel_range_test(make_params(), noise_loss, batch_list(3),
                                   lrs=[1e-3, 1e-2, 1e-1], num_steps=3,
                                   seed=1, diverge_threshold=None, **QUIET)
  for k in range(3):
    np.testing.assert_allclose(
        result.losses[k], [float(jax.random.uniform(_loss.step_key(1, k, t)))
                           for t in range(3)], rtol=1e-6)


class DropoutMLP(nnx.Module):
  """Dropout holding its own Rngs (``nnx.Dropout(rngs=...)``)."""

  def __init__(self, rngs, keep_rngs=True):
    self.l1 = nnx.Linear(5, 16, rngs=rngs)
    self.drop = nnx.Dropout(0.5, rngs=rngs if keep_rngs else None)
    self.l2 = nnx.Linear(16, 1, rngs=rngs)

  def __call__(self, x, rngs=None):
    return self.l2(self.drop(jax.nn.relu(self.l1(x)), rngs=rngs))[:, 0]


def dropout_loss(model, batch):
  x = jnp.concatenate([batch["x1"], batch["x2"]], -1)
  return jnp.mean((model(x) - batch["y"]) ** 2)


def flax_style_loss(model, batch, rngs):
  """Flax's MNIST idiom: ``loss_fn(model, batch, rngs) -> (loss, logits)``."""
  x = jnp.concatenate([batch["x1"], batch["x2"]], -1)
  pred = model(x, rngs=rngs)
  return jnp.mean((pred - batch["y"]) ** 2), pred


def test_module_held_rngs_advance_every_step_and_differ_between_copies():
  model = DropoutMLP(nnx.Rngs(0))
  # LR ~0: the weights stay put, so the losses differ only by the masks.
  sweep = clr.parallel_range_test(model, dropout_loss, batch_list(1) * 4,
                                  lrs=[1e-9, 2e-9], num_steps=4, **QUIET)
  assert len(np.unique(np.round(sweep.losses[0], 5))) == 4  # per step
  assert not np.allclose(sweep.losses[0], sweep.losses[1])  # per copy


def test_flax_style_loss_with_rngs_and_logits_runs_everywhere():
  model = DropoutMLP(nnx.Rngs(0), keep_rngs=False)
  rt = clr.range_test(model, flax_style_loss, make_data(), batch_size=BATCH,
                      num_steps=8, start_lr=1e-3, end_lr=0.1,
                      val_data=make_data(seed=1), eval_every=4, **QUIET)
  assert rt.num_steps == 8 and set(rt.eval_metrics) == {"loss"}
  sweep = clr.parallel_range_test(model, flax_style_loss, make_data(),
                                  batch_size=BATCH, lrs=[1e-3, 1e-2],
                                  num_steps=4, **QUIET)
  assert np.isfinite(sweep.losses).all()
  _, history = clr.train(model, flax_style_loss, make_data(),
                         batch_size=BATCH, optimizer=optax.sgd(0.01),
                         num_epochs=1, val_data=make_data(seed=1),
                         warn=False, **QUIET)
  assert len(history) == 8


# --- any aux ------------------------------------------------------------------


def test_scalar_dict_entries_are_metrics_and_arrays_are_predictions():
  def loss_fn(params, batch):
    loss, aux = regression_loss(params, batch)
    return loss, {"mae": aux["mae"], "nested": {"a": 1.0},
                  "key": jax.random.key(0)}
  rt = clr.range_test(make_params(), loss_fn, batch_list(4), num_steps=4,
                      start_lr=1e-3, end_lr=0.01, val_data=make_data(seed=1),
                      eval_every=2, **QUIET)
  assert set(rt.eval_metrics) == {"loss", "mae"}
  logits = lambda p, b: (regression_loss(p, b)[0], b["y"] * 2.0)  # noqa: E731
  rt = clr.range_test(make_params(), logits, batch_list(4), num_steps=4,
                      start_lr=1e-3, end_lr=0.01, **QUIET)
  assert len(rt.losses) == 4


def test_an_aux_that_looks_like_state_is_refused_naming_with_state():
  # Linen's mutable batch statistics returned beside the loss: dropping them
  # would evaluate with the initial statistics, silently.
  def loss_fn(params, batch):
    loss, _ = regression_loss(params, batch)
    return loss, {"batch_stats": {"mean": batch["y"][:2]}}
  with pytest.raises(ValueError, match=r"\['batch_stats'\] at aux, which "
                     r"looks like model state.*with_state"):
    clr.range_test(make_params(), loss_fn, batch_list(4), num_steps=4,
                   **QUIET)


def test_a_metric_named_loss_never_replaces_the_training_loss():
  # lm1b's metrics hold a *summed* loss: it is kept as "aux_loss".
  def loss_fn(params, batch):
    loss, _ = regression_loss(params, batch)
    return loss, {"loss": loss * 1000.0}
  ref = clr.range_test(make_params(), regression_loss, batch_list(4),
                       num_steps=4, start_lr=1e-3, end_lr=0.01, **QUIET)
  got = clr.range_test(make_params(), loss_fn, batch_list(4), num_steps=4,
                       start_lr=1e-3, end_lr=0.01,
                       val_data=make_data(seed=1), eval_every=4, **QUIET)
  np.testing.assert_allclose(got.losses, ref.losses, rtol=1e-6)
  val_loss, aux_loss = got.eval_metrics["loss"], got.eval_metrics["aux_loss"]
  np.testing.assert_allclose(aux_loss, 1000.0 * val_loss, rtol=1e-5)


def test_loss_errors_describe_arrays_not_tracers():
  with pytest.raises(ValueError, match=r"an array of shape \(8,\) float32"):
    clr.range_test(make_params(), lambda p, b: (b["y"] * p["b"], {}),
                   batch_list(3), num_steps=3, **QUIET)


# --- the optimizer people already built ------------------------------------


@pytest.mark.parametrize("make", [
    lambda: optax.inject_hyperparams(optax.adam)(learning_rate=1e-3),
    lambda: optax.chain(optax.clip(1e6),
                        optax.inject_hyperparams(optax.adam)(
                            learning_rate=1e-3)),
    lambda: nnx.Optimizer(MLP(nnx.Rngs(0)), optax.inject_hyperparams(
        optax.adam)(learning_rate=1e-3), wrt=nnx.Param),
], ids=["injected", "chain", "nnx.Optimizer"])
def test_built_optimizers_with_an_injected_lr_are_driven(make):
  ref = clr.range_test(MLP(nnx.Rngs(0)), mlp_loss, batch_list(6),
                       num_steps=6, start_lr=1e-3, end_lr=0.1,
                       optimizer=optax.adam, **QUIET)
  got = clr.range_test(MLP(nnx.Rngs(0)), mlp_loss, batch_list(6),
                       num_steps=6, start_lr=1e-3, end_lr=0.1,
                       optimizer=make(), **QUIET)
  np.testing.assert_allclose(got.losses, ref.losses, rtol=1e-5)


@pytest.mark.parametrize("optimizer, fix", [
    (optax.adamw(1e-3), r"lambda lr: optax.adamw\(lr\)"),
    (optax.chain(optax.clip(1.0), optax.adamw(1e-3)), "factory"),
    (nnx.Optimizer(MLP(nnx.Rngs(0)), optax.sgd(0.1), wrt=nnx.Param),
     "inject_hyperparams"),
    (clr.cyclic_sgd(clr.triangular_schedule(0.01, 0.1, 10)),
     "is a schedule"),
], ids=["adamw", "chain", "nnx.Optimizer", "scheduled"])
def test_an_lr_that_cannot_be_driven_is_refused_with_the_fix(optimizer, fix):
  with pytest.raises((TypeError, ValueError), match=fix) as info:
    clr.range_test(MLP(nnx.Rngs(0)), mlp_loss, batch_list(3), num_steps=3,
                   optimizer=optimizer, **QUIET)
  message = str(info.value)
  assert "\n" not in message and "OptVariable" not in message
  assert len(message) < 400


def test_train_takes_an_nnx_optimizer():
  model = MLP(nnx.Rngs(0))
  opt = nnx.Optimizer(model, optax.sgd(0.01), wrt=nnx.Param)
  trained, history = clr.train(model, mlp_loss, make_data(), optimizer=opt,
                               batch_size=BATCH, num_epochs=2, **QUIET)
  assert history.config["optimizer"] == "nnx.Optimizer"
  assert history.losses[-1] < history.losses[0]


def test_train_takes_a_params_pytree_and_returns_one():
  params, history = clr.train(make_params(), regression_loss, make_data(),
                              optimizer=optax.sgd(0.05), batch_size=BATCH,
                              num_epochs=2, **QUIET)
  assert set(params) == {"w1", "w2", "b"}
  assert history.losses[-8:].mean() < history.losses[:8].mean()


# --- typed keys anywhere ---------------------------------------------------


def keyed(n=64):
  data = make_data(n)
  data["key"] = jax.random.split(jax.random.key(0), n)
  return data


def key_batch_loss(params, batch):
  noise = jax.vmap(lambda k: jax.random.normal(k))(batch["key"])
  loss, aux = regression_loss(params, batch)
  return loss + 0.0 * noise.mean(), aux


def test_typed_keys_in_batches_work_with_default_settings():
  rt = clr.range_test(make_params(), key_batch_loss, keyed(),
                      batch_size=BATCH, num_steps=5, **QUIET)
  assert np.isfinite(rt.losses).all()
  # Eight copies: enough for the automatic group size to be measured.
  sweep = clr.parallel_range_test(make_params(), key_batch_loss, keyed(),
                                  batch_size=BATCH, num_steps=3,
                                  lrs=np.geomspace(1e-3, 0.1, 8), **QUIET)
  assert np.isfinite(sweep.losses).all()
  seeds = clr.multi_seed_range_test(make_params(), key_batch_loss, keyed(),
                                    batch_size=BATCH, num_steps=5,
                                    num_seeds=2, **QUIET)
  assert seeds.num_seeds == 2


# --- structure checks by path, shape and dtype -------------------------------


def test_independent_init_accepts_models_whose_graphdefs_differ():
  # The bundled CNN keeps a functools.partial attribute: two CNNs' graphdefs
  # compare unequal, their state is the same.
  model = clr.CNN(num_classes=10, in_channels=1, width=2, rngs=nnx.Rngs(0))
  data = clr.load_digits().as_batch()
  sweep = clr.parallel_range_test(
      model, clr.cross_entropy_loss, data, batch_size=16, num_steps=2,
      lrs=[0.01, 0.1], init="independent",
      model_init=lambda k: clr.CNN(num_classes=10, in_channels=1, width=2,
                                   rngs=nnx.Rngs(k)), **QUIET)
  assert len(np.unique(sweep.losses[:, 0])) == 2


def test_a_different_model_init_names_the_first_different_leaf():
  with pytest.raises(ValueError, match=r"\['w1'\] is float32\[4\], expected "
                     r"float32\[3\]"):
    clr.parallel_range_test(
        make_params(), regression_loss, batch_list(2), lrs=[0.1],
        num_steps=2, init="independent",
        model_init=lambda k: {**make_params(), "w1": jnp.zeros(4)}, **QUIET)


# --- NNX modes ---------------------------------------------------------------


class NormMLP(nnx.Module):

  def __init__(self, rngs):
    self.norm = nnx.BatchNorm(5, rngs=rngs)
    self.l1 = nnx.Linear(5, 1, rngs=rngs)

  def __call__(self, x):
    return self.l1(self.norm(x))[:, 0]


def norm_loss(model, batch):
  x = jnp.concatenate([batch["x1"], batch["x2"]], -1)
  return jnp.mean((model(x) - batch["y"]) ** 2)


def norm_mean_after(step_mode):
  trained, _ = clr.train(NormMLP(nnx.Rngs(0)), norm_loss, make_data(),
                         optimizer=optax.sgd(0.01), batch_size=BATCH,
                         num_epochs=1, step_mode=step_mode, warn=False,
                         **QUIET)
  return np.asarray(trained.norm.mean[...])


def test_step_mode_can_freeze_batch_norm_for_fine_tuning():
  assert np.abs(norm_mean_after("train")).max() > 1e-3  # statistics move
  np.testing.assert_array_equal(norm_mean_after("eval"), 0.0)  # frozen
  frozen = lambda m: m.set_attributes(use_running_average=True)  # noqa: E731
  np.testing.assert_array_equal(norm_mean_after(frozen), 0.0)


def test_unknown_mode_is_refused():
  with pytest.raises(ValueError, match="step_mode must be one of 'train', "
                     "'eval', 'as_is'"):
    clr.range_test(make_params(), regression_loss, batch_list(2),
                   num_steps=2, step_mode="inference", **QUIET)


# --- hyperparameters wherever they are kept ----------------------------------


def test_get_hyperparams_of_adamw_with_a_schedule_needs_the_schedule():
  schedule = optax.linear_schedule(0.1, 0.0, 10)
  tx = optax.adamw(schedule)
  params = make_params()
  state = tx.init(params)
  with pytest.raises(ValueError, match=r"ScaleByScheduleState.*schedules="):
    clr.get_hyperparams(state)
  for _ in range(3):
    _, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
  got = clr.get_hyperparams(state, schedules={"learning_rate": schedule})
  assert float(got["learning_rate"]) == pytest.approx(float(schedule(2)))


def test_chains_with_several_injected_states_are_addressed_by_path():
  tx = optax.chain(optax.inject_hyperparams(optax.add_decayed_weights)(
      weight_decay=1e-4), optax.inject_hyperparams(optax.sgd)(
          learning_rate=0.1))
  state = tx.init(make_params())
  assert sorted(clr.find_hyperparams(state)) == ["[0]", "[1]"]
  with pytest.raises(ValueError, match=r"at paths \['\[0\]', '\[1\]'\]"):
    clr.get_hyperparams(state)
  assert float(clr.get_hyperparams(state, "[1]")["learning_rate"]) == (
      pytest.approx(0.1))
  state = clr.set_hyperparams(state, "[1]", learning_rate=0.5)
  assert float(clr.get_hyperparams(state, "[1]")["learning_rate"]) == 0.5
  assert float(clr.get_hyperparams(state, "[0]")["weight_decay"]) == (
      pytest.approx(1e-4))


@pytest.mark.parametrize("values, match", [
    (dict(learning_rate=float("nan")), "learning_rate must be a finite"),
    (dict(learning_rate=-0.1), "learning_rate must be in"),
    (dict(momentum=1.5), r"momentum must be in \[0, 1\)"),
    (dict(learning_rate=1e39), "overflows float32"),
    (dict(learning_rate=True), "must be a number"),
    (dict(learning_rate=1 + 2j), "must be a number"),
])
def test_set_hyperparams_checks_ranges(values, match):
  state = clr.cyclic_sgd(0.1, 0.9).init(make_params())
  with pytest.raises((TypeError, ValueError), match=match):
    clr.set_hyperparams(state, **values)


def test_factories_built_with_partial_are_named_in_results():
  rt = clr.range_test(make_params(), regression_loss, batch_list(3),
                      num_steps=3, optimizer=functools.partial(
                          optax.adamw, weight_decay=1e-4), **QUIET)
  assert rt.config["optimizer"] == "optax.adamw(weight_decay=0.0001)"
  lam = clr.range_test(make_params(), regression_loss, batch_list(3),
                       num_steps=3,
                       optimizer=lambda lr: optax.adamw(lr, b1=0.8), **QUIET)
  assert lam.config["optimizer"] == "lambda lr: optax.adamw(lr, b1=0.8)"


def test_train_takes_an_nnx_optimizer_wrapping_multisteps():
  # optax.MultiSteps is no GradientTransformation subclass; nnx.Optimizer
  # keeps it as its tx (optax's gradient-accumulation example).
  opt = nnx.Optimizer(MLP(nnx.Rngs(0)), optax.MultiSteps(
      optax.sgd(0.1), every_k_schedule=2), wrt=nnx.Param)
  twice, history = clr.train(MLP(nnx.Rngs(0)), mlp_loss, batch_list(1) * 2,
                             optimizer=opt, num_epochs=1, warn=False,
                             **QUIET)
  once, _ = clr.train(MLP(nnx.Rngs(0)), mlp_loss, batch_list(1),
                      optimizer=optax.sgd(0.1), num_epochs=1, **QUIET)
  # The same batch twice: no update after the first, then its mean gradient.
  assert history.losses[0] == history.losses[1]
  for a, b in zip(jax.tree.leaves(nnx.state(twice, nnx.Param)),
                  jax.tree.leaves(nnx.state(once, nnx.Param))):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# --- models written for explicit sharding, on their mesh ---------------------


class ShardedLM(nnx.Module):
  """The explicit-sharding idioms of Flax's MiniGPT tutorial: a kernel laid
  out over "model", the embedding and the logits resharded like the batch
  (they fail outside a mesh, and inside shard_map)."""

  def __init__(self, rngs):
    self.emb = nnx.Embed(16, 8, rngs=rngs)
    self.out = nnx.Linear(
        8, 16, kernel_metadata={"out_sharding": P(None, "model")},
        bias_metadata={"out_sharding": P("model")}, rngs=rngs)

  def __call__(self, x):
    h = self.emb(x, out_sharding=jax.typeof(x).sharding)
    return reshard(self.out(h), jax.typeof(x).sharding)


def sharded_lm_loss(model, batch):
  return optax.softmax_cross_entropy_with_integer_labels(
      model(batch["x"]), batch["y"]).mean()


def test_the_sweep_and_train_run_explicit_sharding_on_the_users_mesh():
  tokens = np.random.default_rng(0).integers(0, 16, (64, 6)).astype(np.int32)
  data = {"x": tokens, "y": np.roll(tokens, -1, 1)}
  with jax.set_mesh(jax.make_mesh((1, 1), ("batch", "model"))):
    model = ShardedLM(nnx.Rngs(0))
    sweep = clr.parallel_range_test(
        model, sharded_lm_loss, data, batch_size=8, lrs=[0.1, 1.0],
        optimizer=optax.sgd, num_steps=4, val_data=data, **QUIET)
    trained, history = clr.train(model, sharded_lm_loss, data,
                                 optimizer=optax.sgd(0.1), batch_size=8,
                                 num_epochs=1, val_data=data, warn=False,
                                 **QUIET)
  assert sweep.config["mesh"] == {"batch": 1, "model": 1}  # no copy axis
  # The same batches and SGD at 0.1: the sweep's copy is train()'s run.
  np.testing.assert_allclose(sweep.losses[0], history.losses[:4], rtol=1e-5)
  assert sweep.losses[1, -1] < sweep.losses[0, -1]
  assert jax.typeof(trained.out.kernel[...]).sharding.spec == P(None, "model")


# --- declared state: what a loss may return, and what errors say -------------


def counting_loss(params, state, batch):
  """A regression loss whose state counts its calls and keeps a running
  mean of the targets (both evolve every step)."""
  loss, _ = regression_loss(params, batch)
  new = {"count": state["count"] + 1,
         "mean": 0.9 * state["mean"] + 0.1 * batch["y"].mean()}
  return loss, new


def test_state_holding_python_numbers_is_carried_as_arrays():
  model = clr.with_state(make_params(), {"count": 0, "mean": jnp.zeros(())})
  assert model.state["count"].dtype == jnp.int32
  trained, history = clr.train(model, counting_loss, batch_list(3),
                               optimizer=optax.sgd(0.01), num_epochs=1,
                               warn=False, **QUIET)
  assert int(trained.state["count"]) == 3 and len(history) == 3


def test_a_loss_may_return_a_dict_replacing_some_entries_of_the_state():
  """Linen's apply(..., mutable=["batch_stats"]) returns only the mutated
  collections; the other entries (and a TrainState's other fields) stay."""
  import flax.struct  # pylint: disable=import-outside-toplevel

  def partial_loss(params, state, batch):
    loss, new = counting_loss(params, {"count": state["count"],
                                       "mean": state["mean"]}, batch)
    return loss, ({"mean": new["mean"]}, {"seen": new["count"]})

  start = {"count": jnp.int32(5), "mean": jnp.zeros(())}
  trained, _ = clr.train(clr.with_state(make_params(), start), partial_loss,
                         batch_list(2), optimizer=optax.sgd(0.01),
                         num_epochs=1, warn=False, **QUIET)
  assert int(trained.state["count"]) == 5  # kept
  assert float(trained.state["mean"]) != 0.0  # replaced, step after step

  @flax.struct.dataclass
  class Holder:
    apply_fn: object = flax.struct.field(pytree_node=False)
    step: jax.Array
    mean: jax.Array

  def holder_loss(params, state, batch):
    assert state.apply_fn is len  # static fields stay static
    loss, _ = regression_loss(params, batch)
    return loss, {"mean": 0.9 * state.mean + 0.1 * batch["y"].mean()}

  trained, _ = clr.train(
      clr.with_state(make_params(), Holder(len, 0, jnp.zeros(()))),
      holder_loss, batch_list(2), optimizer=optax.sgd(0.01), num_epochs=1,
      warn=False, **QUIET)
  assert isinstance(trained.state, Holder) and int(trained.state.step) == 0
  assert float(trained.state.mean) != 0.0


@pytest.mark.parametrize("new_state, match", [
    (lambda s: {**s, "mean": jnp.zeros(3)},
     r"\['mean'\] is float32\[3\], expected float32\[\] \(its shape "
     r"differs\)"),
    (lambda s: {**s, "mean": jnp.zeros((), jnp.int32)},
     r"\['mean'\] is int32\[\], expected float32\[\] \(its dtype differs\)"),
    (lambda s: {**s, "extra": jnp.zeros(())},
     r"unexpected \[\"\['extra'\]\"\]"),
    (lambda s: [s["count"], s["mean"]],
     r"must return \(loss, new_state\).*missing \[\"\['count'\]\", "
     r"\"\['mean'\]\"\], unexpected \['\[0\]', '\[1\]'\]"),
])
def test_a_new_state_unlike_the_declared_one_names_the_leaf_and_the_change(
    new_state, match):
  def loss(params, state, batch):
    return regression_loss(params, batch)[0], new_state(state)
  model = clr.with_state(make_params(), {"count": jnp.int32(0),
                                         "mean": jnp.zeros(())})
  with pytest.raises(ValueError, match=match):
    clr.range_test(model, loss, batch_list(4), num_steps=3, **QUIET)


def test_a_new_state_in_other_containers_says_the_containers_differ():
  def loss(params, state, batch):
    return regression_loss(params, batch)[0], list(state)
  model = clr.with_state(make_params(), (jnp.int32(0), jnp.zeros(())))
  with pytest.raises(ValueError, match=r"containers differ \(same leaves\): "
                     r"got PyTreeDef\(\[\*, \*\]\), expected "
                     r"PyTreeDef\(\(\*, \*\)\)"):
    clr.range_test(model, loss, batch_list(4), num_steps=3, **QUIET)


def test_a_new_state_sharded_unlike_the_declared_one_names_the_sharding():
  from optax_clr.engine import _model  # pylint: disable=import-outside-toplevel
  mesh = jax.make_mesh((1,), ("model",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  with jax.set_mesh(mesh):
    laid_out = jax.device_put(jnp.zeros((4,)), P("model"))
    plain = jax.device_put(jnp.zeros((4,)), P())
    detail = _model.difference({"w": plain}, {"w": laid_out})
  assert re.fullmatch(r"\['w'\] is sharded as P(artitionSpec)?\(None,?\), "
                      r"expected P(artitionSpec)?\('model',?\) \(its "
                      r"sharding differs\)", detail), detail
  assert _model.difference({"w": jnp.zeros(4)}, {"w": jnp.zeros(4)}) is None


def test_a_parameter_named_like_linens_rngs_gets_a_key():
  """Linen code names a key by its use (dropout_rng, the VAE's z_rng)."""
  def loss(params, batch, z_rng):
    return regression_loss(params, batch)[0] + 0.0 * jax.random.uniform(
        z_rng)
  fn = _loss.resolve(loss, "loss_fn", False, batch_list(1)[0])
  assert (fn.random, fn.random_name) == ("key", "z_rng")
  assert _loss.is_key_name("noise_rng") and not _loss.is_key_name("_rng")
  assert not _loss.is_key_name("rngs_total")


def test_a_plateau_that_rescales_a_range_tests_lrs_is_said():
  # reduce_on_plateau in the chain scales the LR the ramp sets: the curve is
  # then reported against LRs that were not the ones applied.
  tx = lambda lr: optax.chain(  # noqa: E731
      optax.sgd(lr), optax.contrib.reduce_on_plateau(
          patience=1, cooldown=0, factor=0.5, accumulation_size=1))
  with pytest.warns(RuntimeWarning, match=r"range test: the optimizer's "
                    r"reduce_on_plateau scaled the learning rate"):
    clr.range_test(make_params(), regression_loss, batch_list(40),
                   optimizer=tx, start_lr=1e-3, end_lr=1.0, num_steps=40,
                   **QUIET)
