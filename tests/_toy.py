"""Tiny models and data shared by the engine, range-test and sweep tests.

A dict batch with two inputs and a regression target (no ``(inputs, labels)``
and no classification head), as a plain params pytree and as an NNX module;
and a linear 3-class classifier on 4 features (the bad-input, hostile and
fault tests).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

N = 64     # examples in the default toy dataset
BATCH = 8  # default batch size: 8 batches per epoch


def regression_loss(params, batch):
  """Mean squared error of a linear model on two inputs, with the MAE."""
  pred = batch["x1"] @ params["w1"] + batch["x2"] @ params["w2"] + params["b"]
  err = pred - batch["y"]
  return jnp.mean(err ** 2), {"mae": jnp.mean(jnp.abs(err))}


def make_params(scale=1.0):
  return {"w1": scale * jnp.array([0.1, -0.2, 0.3]),
          "w2": scale * jnp.array([0.5, 0.0]), "b": scale * jnp.array(0.1)}


def make_data(n=N, seed=0):
  """``n`` examples of y = x1 . [1, 2, -1] + x2 . [0.5, -0.5] + 0.3."""
  rng = np.random.default_rng(seed)
  x1 = rng.normal(size=(n, 3)).astype(np.float32)
  x2 = rng.normal(size=(n, 2)).astype(np.float32)
  y = (x1 @ [1.0, 2.0, -1.0] + x2 @ [0.5, -0.5] + 0.3).astype(np.float32)
  return {"x1": x1, "x2": x2, "y": y}


def batch_list(count, data=None, start=0):
  """Batches ``start .. start + count - 1`` of ``BATCH`` examples, in order,
  cycling through ``data`` (default ``make_data()``) epoch after epoch."""
  data = make_data() if data is None else data
  per_epoch = N // BATCH
  return [jax.tree.map(lambda x: x[(i % per_epoch) * BATCH:
                                   (i % per_epoch + 1) * BATCH], data)
          for i in range(start, start + count)]


def sgd_momentum_run(lr_at, batches, params=None, momentum=0.9):
  """The plain-Python reference the compiled range tests must equal.

  SGD with heavy-ball momentum as optax applies it: ``trace = g + m trace``,
  ``p -= lr_at(t) trace`` at step t; stops after the first non-finite loss.

  Returns:
    ``(losses, params)``: the loss of every step run, and the final params.
  """
  params = jax.tree.map(np.asarray, make_params() if params is None
                        else params)
  trace = jax.tree.map(np.zeros_like, params)
  grad_fn = jax.jit(jax.value_and_grad(lambda p, b: regression_loss(p, b)[0]))
  losses = []
  for t, batch in enumerate(batches):
    loss, grads = grad_fn(params, batch)
    losses.append(float(loss))
    if not np.isfinite(loss):
      break
    trace = jax.tree.map(lambda m, g: g + momentum * m, trace, grads)
    params = jax.tree.map(lambda p, m: p - np.float32(lr_at(t)) * m, params,
                          trace)
  return np.array(losses), params


class MLP(nnx.Module):
  """The same regression as an NNX module on the concatenated inputs."""

  def __init__(self, rngs):
    self.l1 = nnx.Linear(5, 8, rngs=rngs)
    self.l2 = nnx.Linear(8, 1, rngs=rngs)

  def __call__(self, x):
    return self.l2(jax.nn.relu(self.l1(x)))[:, 0]


def mlp_loss(model, batch):
  x = jnp.concatenate([batch["x1"], batch["x2"]], -1)
  err = model(x) - batch["y"]
  return jnp.mean(err ** 2), {"mae": jnp.mean(jnp.abs(err))}


def classifier_params():
  """A linear classifier's params: 4 features -> 3 classes, all zeros."""
  return {"w": jnp.zeros((4, 3)), "b": jnp.zeros((3,))}


def classifier_loss(p, batch):
  logits = batch["x"] @ p["w"] + p["b"]
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["y"]).mean()


def classifier_data(n=32):
  """``n`` examples: normal features ``x`` [n, 4], labels ``y`` in 0..2."""
  rng = np.random.default_rng(0)
  return {"x": rng.normal(size=(n, 4)).astype(np.float32),
          "y": rng.integers(0, 3, size=(n,)).astype(np.int32)}
