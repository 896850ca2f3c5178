"""Upstream's own loops on the eleven programs' new six (Equinox's MNIST and
stateful examples, Flax's ImageNet and VAE, optax's reduce-on-plateau and
lookahead examples): the references of tests/test_real_code.py.

They run in the one-device subprocess, after the programs and in the same
process (tests/_real_code_programs.py writes ``OUT/upstream.pkl``): with
the same XLA flags, upstream's loops and the library's compiled steps
round alike -- which matters for Adam, whose first steps move a weight
whose gradient is near 0 (|g| ~ eps) by up to the LR, depending on the
gradient's rounding (compiled with other flags, Equinox's stateful example
differs by 9e-5 after 5 steps; in one process, not at all).
"""

import sys
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from optax_clr.engine import _loss

import _real_code_programs
from _real_code_programs import SETTINGS
from _real_code_programs import STATE_STEPS

sys.path.insert(0, str(_real_code_programs.REAL_CODE))
import equinox_mnist  # noqa: E402
import equinox_stateful  # noqa: E402
import imagenet  # noqa: E402
import optax_lookahead  # noqa: E402
import optax_reduce_on_plateau  # noqa: E402
import vae  # noqa: E402

arrays = _real_code_programs.arrays
REFERENCES = {}


def reference(name):
  """Registers the function that computes ``name``'s reference numbers
  with upstream's own code."""
  def register(fn):
    REFERENCES[name] = fn
    return fn
  return register


def step_key(copy, step, seed=0):
  return _loss.step_key(seed, copy, step)


def compute() -> dict:
  """Every program's reference numbers."""
  return {name: fn() for name, fn in REFERENCES.items()}


@reference("equinox_mnist")
def equinox_mnist_reference():
  m = equinox_mnist
  settings = SETTINGS["equinox_mnist"]
  trainloader, testloader = m.loaders(settings["num_steps"])
  n = settings["train_batches"]
  trained = m.train(m.model, trainloader[:n], testloader, m.optim, n,
                    m.PRINT_EVERY)  # upstream's loop
  test_loss, test_accuracy = m.evaluate(trained, testloader)
  return {"first": float(m.loss(m.model, *trainloader[0])),
          "trained": arrays(trained),
          "eval": {"loss": float(test_loss),
                   "accuracy": float(test_accuracy)}}


def stateful_val_loss(model, state):
  """Upstream's inference cell (inference mode, the state fixed with
  eqx.Partial, vmapped) on the module's test points -- the cell draws
  them again, with whatever PRNG implementation is set when it runs -- and
  the mean squared error the library's evaluation reports."""
  m = equinox_stateful
  inference_model = eqx.nn.inference_mode(model)
  inference_model = eqx.Partial(inference_model, state=state)
  pred = _evaluate(inference_model, m.test_xs)
  return float(jnp.mean((pred - m.test_ys) ** 2))


@eqx.filter_jit
def _evaluate(model, xs):
  # discard state
  out, _ = jax.vmap(model)(xs)
  return out


@reference("equinox_stateful")
def equinox_stateful_reference():
  m = equinox_stateful
  first = eqx.filter_jit(m.compute_loss)(m.model, m.state, m.xs, m.ys)[0]
  model, state, _ = m.fit(m.model, m.state, m.opt_state)  # upstream's loop
  return {"first": float(first), "trained": arrays(model),
          "state": arrays(state), "val": stateful_val_loss(model, state),
          "initial_state": arrays(m.state)}


def imagenet_upstream_loop(steps_per_epoch: int) -> dict:
  """Upstream's ``jax.pmap`` loop over this process's devices: the trained
  params and batch statistics, and ``p_eval_step`` after each epoch."""
  m = imagenet
  settings = SETTINGS["imagenet"]
  _, state, learning_rate_fn = m.init(steps_per_epoch)
  initial = state
  p_train_step, p_eval_step = m.pmapped(learning_rate_fn)
  train_ds, eval_ds = m.datasets(max(settings["num_steps"], steps_per_epoch))
  first = jax.pmap(lambda b: m.loss_fn(initial.params, initial, b)[0],
                   axis_name="batch")(m.prepare(train_ds[0]))
  evals, lrs = [], []
  for _ in range(int(m.config.num_epochs)):
    for batch in train_ds[:steps_per_epoch]:
      state, metrics = p_train_step(state, m.prepare(batch))
      lrs.append(float(metrics["learning_rate"][0]))
    metrics = p_eval_step(state, m.prepare(eval_ds[0]))
    evals.append([float(metrics["loss"][0]), float(metrics["accuracy"][0])])
  return {"params": arrays(state.params), "stats": arrays(state.batch_stats),
          "initial_stats": arrays(initial.batch_stats), "evals": evals,
          "lrs": lrs, "first": float(first[0])}


@reference("imagenet")
def imagenet_reference():
  return imagenet_upstream_loop(SETTINGS["imagenet"]["steps_per_epoch"])


@reference("optax_reduce_on_plateau")
def reduce_on_plateau_reference():
  m = optax_reduce_on_plateau
  settings = SETTINGS["optax_reduce_on_plateau"]
  train_loader, test_loader = m.loaders(max(settings["num_steps"],
                                            settings["train_batches"]))
  params, losses, scales, test_stats = m.fit(
      train_loader[:settings["train_batches"]], test_loader)
  return {"first": float(m.loss_accuracy(m.init_params, train_loader[0])[0]),
          "trained": arrays(params), "losses": np.asarray(losses),
          "scales": np.asarray(scales),
          "eval": {k: float(v) for k, v in test_stats.items()}}


@reference("optax_lookahead")
def lookahead_reference():
  m = optax_lookahead
  settings = SETTINGS["optax_lookahead"]
  train_loader, test_loader = m.loaders(settings["num_steps"])
  params, losses, test_stats = m.fit(
      m.params, m.solver_state, train_loader[:settings["train_batches"]],
      test_loader)
  first = m.loss_accuracy(m.params.fast, m.net, train_loader[0])[0]
  return {"first": float(first), "slow": arrays(params.slow),
          "fast": arrays(params.fast), "losses": np.asarray(losses),
          "eval": {k: float(v) for k, v in test_stats.items()}}


@reference("vae")
def vae_reference():
  m = vae
  settings = SETTINGS["vae"]
  train_ds, test_ds = m.datasets(settings["num_steps"])
  n = settings["train_batches"]
  keys = [step_key(0, t) for t in range(n)]
  eval_rng = jax.random.fold_in(_loss.eval_key(0, 0), 0)
  state, metrics = m.fit(m.state, m.rng, train_ds[:n], test_ds, m.z,
                         eval_rng, keys)  # upstream's loop, the library's keys
  loss = jax.jit(lambda key: m.loss_fn(m.state.params, train_ds[0], key))
  return {"trained": arrays(state.params),
          "eval": {k: float(v) for k, v in metrics.items()},
          "first": [float(loss(step_key(k, 0))) for k in range(4)]}


def imagenet_forward_passes(n: int) -> tuple[Any, Any, dict, dict]:
  """Upstream's ResNet after ``n`` training-mode forward passes on the
  state checks' batches with its params kept (what a step at LR 1e-8
  does to the batch statistics): the TrainState, the initial one, and
  ``p_eval_step`` on each."""
  m = imagenet
  _, state, _ = m.init(SETTINGS["imagenet"]["steps_per_epoch"])
  initial = state
  train_ds, eval_ds = m.datasets(n)
  forward = jax.pmap(lambda s, b: m.loss_fn(s.params, s, b)[1][0],
                     in_axes=(None, 0), axis_name="batch")
  p_eval_step = jax.pmap(m.eval_step, in_axes=(None, 0), axis_name="batch")
  for batch in train_ds[:n]:
    new_model_state = forward(state, m.prepare(batch))
    state = state.replace(batch_stats=jax.tree.map(
        lambda x: x[0], new_model_state["batch_stats"]))
  evaluate = lambda s: {k: float(v[0]) for k, v in p_eval_step(  # noqa: E731
      s, m.prepare(eval_ds[0])).items()}
  return state, initial, evaluate(state), evaluate(initial)


@reference("state")
def state_reference():
  """Each program's declared state after STATE_STEPS forward passes with
  the parameters kept, and upstream's evaluation with it and with the
  initial state."""
  m = equinox_stateful
  forward = eqx.filter_jit(m.compute_loss)
  state = m.state
  for _ in range(STATE_STEPS):
    _, state = forward(m.model, state, m.xs, m.ys)
  ts, initial, val, val0 = imagenet_forward_passes(STATE_STEPS)
  return {
      "equinox_stateful": {
          "state": arrays(state),
          "val": {"loss": stateful_val_loss(m.model, state)},
          "val0": {"loss": stateful_val_loss(m.model, m.state)}},
      "imagenet": {"state": arrays(ts.batch_stats), "val": val,
                   "val0": val0}}
