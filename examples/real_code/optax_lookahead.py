# Copyright DeepMind Technologies Limited (the Optax authors).
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Optax's lookahead example (NNX CNN on MNIST), range-tested as it is.

Upstream: github.com/google-deepmind/optax, examples/lookahead_mnist.ipynb
at commit 2edbcbe2390da13983b92cbef94ac0460ecde1c5. Verbatim: the
hyperparameters, the NNX ``CNN``, ``predict(params, model, inputs)``
(``nnx.update`` of the module inside ``jax.jit``), ``loss_accuracy(params,
model, data) -> (loss, {"accuracy": ...})``, the optimizer
``optax.lookahead(optax.adam(FAST_LEARNING_RATE), SYNC_PERIOD,
SLOW_LEARNING_RATE)`` on ``optax.LookaheadParams``, ``dataset_stats`` and
``train_step``. Changed, and marked CHANGED below: the data (the embedded
8x8 digits resized to MNIST's 28x28, ``(image, label)`` batches of 16,
instead of TFDS/grain MNIST) and the training cell, a function here
(``train_step`` defined before it) that returns what the test compares.

Glue: two lines. The model is the params (``nnx.state(net, nnx.Param)``,
upstream's ``params.fast``) and the loss takes the module as its second
argument (``loss_fn = lambda params, data: loss_accuracy(params, net,
data)``); and the range tests' factory of the same lookahead
(``tx = lambda lr: clr.lookahead(optax.lookahead(optax.adam(lr),
SYNC_PERIOD, SLOW_LEARNING_RATE))``). ``clr.lookahead`` runs optax's
lookahead on plain parameters, its slow weights kept in the optimizer
state; ``train`` takes upstream's ``solver`` through it
(``clr.lookahead(solver)``) and ends where upstream's ``train_step`` loop
ends (the model's weights are the fast ones, equal to the slow ones after
every ``SYNC_PERIOD``-th step, where upstream evaluates).

  python examples/real_code/optax_lookahead.py   # -> runs/examples/real_code/optax_lookahead/
"""

from functools import partial
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_clr as clr

# --- upstream, verbatim (examples/lookahead_mnist.ipynb) --------------------

# @markdown The learning rate for the fast optimizer:
FAST_LEARNING_RATE = 0.002 # @param{type:"number"}
# @markdown The learning rate for the slow optimizer:
SLOW_LEARNING_RATE = 0.1 # @param{type:"number"}
# @markdown Number of fast optimizer steps to take before synchronizing parameters:
SYNC_PERIOD = 5 # @param{type:"integer"}
# @markdown Number of samples in each batch:
BATCH_SIZE = 16  # CHANGED: 256
# @markdown Total number of epochs to train for:
N_EPOCHS = 1 # @param{type:"integer"}

IMG_SIZE = (28, 28, 1)  # CHANGED: train_source.dataset_info.features["image"].shape
NUM_CLASSES = 10  # CHANGED: train_source.dataset_info.features["label"].num_classes


class CNN(nnx.Module):
  """A simple CNN model."""

  def __init__(self, in_features, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(in_features=in_features,
                          out_features=32,
                          kernel_size=(3, 3),
                          rngs=rngs)
    self.pool1 = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
    self.conv2 = nnx.Conv(in_features=32,
                          out_features=64,
                          kernel_size=(3, 3),
                          rngs=rngs)
    self.pool2 = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
    self.dense1 = nnx.Linear(in_features=7*7*64, out_features=256, rngs=rngs)
    self.dense2 = nnx.Linear(in_features=256, out_features=10, rngs=rngs)

  def __call__(self, x):
    x = self.conv1(x)
    x = nnx.relu(x)
    x = self.pool1(x)
    x = self.conv2(x)
    x = nnx.relu(x)
    x = self.pool2(x)
    x = x.reshape((x.shape[0], -1))  # flatten
    x = self.dense1(x)
    x = nnx.relu(x)
    x = self.dense2(x)
    return x


net = CNN(IMG_SIZE[-1], nnx.Rngs(0))

@jax.jit
def predict(params, model, inputs):
  nnx.update(model, params)
  return model(inputs)


@jax.jit
def loss_accuracy(params, model, data):
  """Computes loss and accuracy over a mini-batch.

  Args:
    params: parameters of the model.
    model: Instance of the nnx.Module.
    data: tuple of (inputs, labels).

  Returns:
    loss: float
    accuracy: float
  """
  inputs, labels = data
  logits = predict(params, model, inputs)
  loss = optax.softmax_cross_entropy_with_integer_labels(
      logits=logits, labels=labels
  ).mean()
  accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
  return loss, {"accuracy": accuracy}


fast_solver = optax.adam(FAST_LEARNING_RATE)
solver = optax.lookahead(fast_solver, SYNC_PERIOD, SLOW_LEARNING_RATE)
rng = jax.random.PRNGKey(0)
dummy_data = jnp.ones((1,) + IMG_SIZE, dtype=jnp.float32)

_ = net(dummy_data)
params = nnx.state(net, nnx.Param)

# Initializes the lookahead optimizer with the initial model parameters.
params = optax.LookaheadParams.init_synced(params)
solver_state = solver.init(params)

def dataset_stats(params, model, data_loader):
  """Computes loss and accuracy over the dataset `data_loader`."""
  all_accuracy = []
  all_loss = []
  for batch in data_loader:
    batch_loss, batch_aux = loss_accuracy(params, model, batch)
    all_loss.append(batch_loss)
    all_accuracy.append(batch_aux["accuracy"])
  return {"loss": jnp.mean(jnp.array(all_loss)),
          "accuracy": jnp.mean(jnp.array(all_accuracy))}


@jax.jit
def train_step(params, model, solver_state, batch):
  # Performs a one step update.
  (loss, aux), grad = jax.value_and_grad(loss_accuracy, has_aux=True)(
      params.fast, model, batch
  )
  updates, solver_state = solver.update(grad, solver_state, params)
  params = optax.apply_updates(params, updates)
  return params, solver_state, loss, aux


def fit(params, solver_state, train_loader_batched, test_loader_batched):  # CHANGED: the training cell, as a function
  train_accuracy = []
  train_losses = []

  # Computes test set accuracy at initialization.
  test_stats = dataset_stats(params.slow, net, test_loader_batched)
  test_accuracy = [test_stats["accuracy"]]
  test_losses = [test_stats["loss"]]

  for epoch in range(N_EPOCHS):
    train_accuracy_epoch = []
    train_losses_epoch = []

    for step, train_batch in enumerate(train_loader_batched):
      params, solver_state, train_loss, train_aux = train_step(
          params, net, solver_state, train_batch
      )
      train_accuracy_epoch.append(train_aux["accuracy"])
      train_losses_epoch.append(train_loss)
      if step % 20 == 0:
        print(
            f"step {step}, train loss: {train_loss:.2e}, train accuracy:"
            f" {train_aux['accuracy']:.2f}"
        )

    # Validation is done on the slow lookahead parameters.
    test_stats = dataset_stats(params.slow, net, test_loader_batched)
    test_accuracy.append(test_stats["accuracy"])
    test_losses.append(test_stats["loss"])
    train_accuracy.append(jnp.mean(jnp.array(train_accuracy_epoch)))
    train_losses.append(jnp.mean(jnp.array(train_losses_epoch)))
  return params, train_losses_epoch, test_stats  # CHANGED


# --- CHANGED: local data instead of TFDS/grain MNIST ------------------------


def loaders(num_train: int, num_test: int = 2
            ) -> tuple[list[tuple[np.ndarray, np.ndarray]],
                       list[tuple[np.ndarray, np.ndarray]]]:
  """``(train_loader_batched, test_loader_batched)``: lists of ``(image /
  255., label)`` batches of ``BATCH_SIZE`` as upstream's grain loaders
  yield them (the digits resized to 28x28x1 in [0, 1]): ``num_train``
  training batches from the first digits, ``num_test`` from the last."""
  digits = clr.load_digits()
  images = np.asarray(jax.image.resize(
      digits.images, (len(digits.images),) + IMG_SIZE, "bilinear"))
  labels = digits.labels.astype(np.int32)
  b = BATCH_SIZE
  train = [(images[i:i + b], labels[i:i + b])
           for i in range(0, num_train * b, b)]
  test = [(images[-(k + 1) * b:len(images) - k * b],
           labels[-(k + 1) * b:len(images) - k * b]) for k in range(num_test)]
  return train, test


# --- the range tests and training on the program as it is -------------------

CALLS = ("range_test", "parallel_range_test", "train")
NAME = "optax_lookahead"

loss_fn = lambda params, data: loss_accuracy(params, net, data)  # GLUE 1/2  # noqa: E731
tx = lambda lr: clr.lookahead(optax.lookahead(optax.adam(lr), SYNC_PERIOD, SLOW_LEARNING_RATE))  # GLUE 2/2  # noqa: E731,E501


def run(*, calls=CALLS, num_steps: int = 40, num_lrs: int = 8,
        sweep_steps: int = 10, train_batches: int = 10,
        group_size: int | str = "auto", progress: bool = False) -> dict:
  """The ``calls`` (``range_test``, ``parallel_range_test``, ``train``) on
  upstream's params, loss and lookahead optimizer. Returns the results by
  call name (and ``"trained"``, the fast params ``train`` returns)."""
  train_loader_batched, test_loader_batched = loaders(num_steps)
  out = {}
  if "range_test" in calls:
    out["range_test"] = clr.range_test(
        params.fast, loss_fn, train_loader_batched, optimizer=tx,
        start_lr=1e-5, end_lr=1.0, num_steps=num_steps,
        val_data=test_loader_batched, eval_every=num_steps // 2,
        progress=progress)
  if "parallel_range_test" in calls:
    out["parallel_range_test"] = clr.parallel_range_test(
        params.fast, loss_fn, train_loader_batched, optimizer=tx,
        num_lrs=num_lrs, min_lr=1e-5, max_lr=1e-1, num_steps=sweep_steps,
        group_size=group_size, progress=progress)
  if "train" in calls:
    out["trained"], out["train"] = clr.train(
        params.fast, loss_fn, train_loader_batched[:train_batches],
        optimizer=clr.lookahead(solver), num_epochs=N_EPOCHS,
        val_data=test_loader_batched, warn=False, progress=progress)
  return out


def main(argv=None):
  import _common  # pylint: disable=import-outside-toplevel
  args = _common.parse_args(NAME, __doc__, argv)
  results = run(progress=True)
  _common.report(args.out, results)
  return results


if __name__ == "__main__":
  main()
