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

"""Optax's reduce-on-plateau example (Linen MLP), range-tested as it is.

Upstream: github.com/google-deepmind/optax,
examples/contrib/reduce_on_plateau.ipynb ("Reduce on average training
loss") at commit 2edbcbe2390da13983b92cbef94ac0460ecde1c5. Verbatim: the
Linen ``MLP``, ``loss_accuracy(params, data) -> (loss, {"accuracy":
...})``, the initialisation, ``dataset_stats``, the optimizer
``optax.chain(optax.adam(LEARNING_RATE), contrib.reduce_on_plateau(...))``
and ``train_step``, which passes the loss to the chain
(``opt.update(grad, opt_state, params, value=value)``). Changed, and marked
CHANGED below: the data (the embedded 8x8 digits resized to Fashion-MNIST's
28x28, ``(image, label)`` batches of 16, instead of TFDS/grain), the MLP's
width (``MLP(hidden_sizes=(64, 64))``; upstream's default is 1000, 1000),
the plateau's accumulation and patience (4 and 1 step instead of 200 and 5,
so that the scale drops within a short run) and the training loop cell, a
function here that returns the per-step loss and LR scale.

Glue: one line, the range tests' factory of the same chain (``tx = lambda
lr: optax.chain(optax.adam(lr), contrib.reduce_on_plateau(...))``). The
library passes the loss to the chain as ``value=`` (it is an
``optax.GradientTransformationExtraArgs``), and ``train`` takes upstream's
``opt`` as it is: it logs the LR each step applied, Adam's LR times the
plateau's scale.

  python examples/real_code/optax_reduce_on_plateau.py   # -> runs/examples/real_code/optax_reduce_on_plateau/
"""

from typing import Sequence
from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import optax
import optax.tree
from optax import contrib

import optax_clr as clr

# --- upstream, verbatim (examples/contrib/reduce_on_plateau.ipynb) ----------

# @markdown Number of samples in each batch:
BATCH_SIZE = 16  # CHANGED: 128

IMG_SIZE = (28, 28, 1)  # CHANGED: train_source.dataset_info.features["image"].shape
NUM_CLASSES = 10  # CHANGED: train_source.dataset_info.features["label"].num_classes


class MLP(nn.Module):
  """A simple multilayer perceptron model for image classification."""
  hidden_sizes: Sequence[int] = (1000, 1000)

  @nn.compact
  def __call__(self, x):
    # Flattens images in the batch.
    x = x.reshape((x.shape[0], -1))
    x = nn.Dense(features=self.hidden_sizes[0])(x)
    x = nn.relu(x)
    x = nn.Dense(features=self.hidden_sizes[1])(x)
    x = nn.relu(x)
    x = nn.Dense(features=NUM_CLASSES)(x)
    return x


net = MLP(hidden_sizes=(64, 64))  # CHANGED: MLP()

@jax.jit
def loss_accuracy(params, data):
  """Computes loss and accuracy over a mini-batch.

  Args:
    params: parameters of the model.
    data: tuple of (inputs, labels).

  Returns:
    loss: float
  """
  inputs, labels = data
  logits = net.apply({"params": params}, inputs)
  loss = optax.softmax_cross_entropy_with_integer_labels(
      logits=logits, labels=labels
  ).mean()
  accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
  return loss, {"accuracy": accuracy}


rng = jax.random.PRNGKey(0)
fake_data = jnp.ones((1,) + IMG_SIZE, dtype=jnp.float32)
init_params = net.init({"params": rng}, fake_data)["params"]


def dataset_stats(params, data_loader):
  """Computes loss and accuracy over the dataset `data_loader`."""
  all_accuracy = []
  all_loss = []
  for batch in data_loader:
    batch_loss, batch_aux = loss_accuracy(params, batch)
    all_loss.append(batch_loss)
    all_accuracy.append(batch_aux["accuracy"])
  return {"loss": np.mean(all_loss), "accuracy": np.mean(all_accuracy)}


# @markdown Total number of epochs to train for:
N_EPOCHS = 1  # CHANGED: 50
# @markdown The base learning rate for the optimizer:
LEARNING_RATE = 0.01  # @param{type:"number"}

# @markdown Number of epochs with no improvement after which learning rate will be reduced:
PATIENCE = 1  # CHANGED: 5
# @markdown Number of epochs to wait before resuming normal operation after the learning rate reduction:
COOLDOWN = 0  # @param{type:"integer"}
# @markdown Factor by which to reduce the learning rate:
FACTOR = 0.5  # @param{type:"number"}
# @markdown Relative tolerance for measuring the new optimum:
RTOL = 1e-4  # @param{type:"number"}
# @markdown Number of iterations to accumulate an average value:
ACCUMULATION_SIZE = 4  # CHANGED: 200

opt = optax.chain(
    optax.adam(LEARNING_RATE),
    contrib.reduce_on_plateau(
        patience=PATIENCE,
        cooldown=COOLDOWN,
        factor=FACTOR,
        rtol=RTOL,
        accumulation_size=ACCUMULATION_SIZE,
    ),
)
opt_state = opt.init(init_params)


@jax.jit
def train_step(params, opt_state, batch):
  """Performs a one step update."""
  (value, aux), grad = jax.value_and_grad(loss_accuracy, has_aux=True)(
      params, batch
  )
  updates, opt_state = opt.update(grad, opt_state, params, value=value)
  params = optax.apply_updates(params, updates)
  return params, opt_state, value, aux


def fit(train_loader_batched, test_loader_batched):  # CHANGED: the training cell, as a function
  opt_state = opt.init(init_params)  # CHANGED: the module's opt_state, fresh
  step_losses, step_scales = [], []  # CHANGED: per-step loss and scale, returned
  params = init_params

  # Computes metrics at initialization.
  train_stats = dataset_stats(params, test_loader_batched)
  train_accuracy = [train_stats["accuracy"]]
  train_losses = [train_stats['loss']]

  test_stats = dataset_stats(params, test_loader_batched)
  test_accuracy = [test_stats["accuracy"]]
  test_losses = [test_stats["loss"]]

  lr_scale_history = []
  for epoch in range(N_EPOCHS):
    train_accuracy_epoch = []
    train_losses_epoch = []

    for _, train_batch in enumerate(train_loader_batched):
      params, opt_state, train_loss, train_aux = train_step(
          params, opt_state, train_batch
      )
      train_accuracy_epoch.append(train_aux["accuracy"])
      train_losses_epoch.append(train_loss)
      step_losses.append(train_loss)  # CHANGED
      step_scales.append(optax.tree.get(opt_state, "scale"))  # CHANGED

    mean_train_accuracy = np.mean(train_accuracy_epoch)
    mean_train_loss = np.mean(train_losses_epoch)

    # fetch the scaling factor from the reduce_on_plateau transform
    lr_scale = optax.tree.get(opt_state, "scale")
    lr_scale_history.append(lr_scale)

    train_accuracy.append(mean_train_accuracy)
    train_losses.append(mean_train_loss)

    test_stats = dataset_stats(params, test_loader_batched)
    test_accuracy.append(test_stats["accuracy"])
    test_losses.append(test_stats["loss"])
    print(
        f"Epoch {epoch + 1}/{N_EPOCHS}, mean train accuracy:"
        f" {mean_train_accuracy}, lr scale: {optax.tree.get(opt_state, 'scale')}"
    )
  return params, step_losses, step_scales, test_stats  # CHANGED


# --- CHANGED: local data instead of TFDS/grain Fashion-MNIST ----------------


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
NAME = "optax_reduce_on_plateau"

tx = lambda lr: optax.chain(optax.adam(lr), contrib.reduce_on_plateau(patience=PATIENCE, cooldown=COOLDOWN, factor=FACTOR, rtol=RTOL, accumulation_size=ACCUMULATION_SIZE))  # GLUE 1/1  # noqa: E731,E501


def run(*, calls=CALLS, num_steps: int = 40, num_lrs: int = 8,
        sweep_steps: int = 10, train_batches: int = 40,
        group_size: int | str = "auto", progress: bool = False) -> dict:
  """The ``calls`` (``range_test``, ``parallel_range_test``, ``train``) on
  upstream's params, loss and optimizer. Returns the results by call name
  (and ``"trained"``, the params ``train`` returns)."""
  train_loader_batched, test_loader_batched = loaders(
      max(num_steps, train_batches))
  out = {}
  if "range_test" in calls:
    out["range_test"] = clr.range_test(
        init_params, loss_accuracy, train_loader_batched[:num_steps],
        optimizer=tx, start_lr=1e-4, end_lr=10.0, num_steps=num_steps,
        val_data=test_loader_batched, eval_every=num_steps // 2,
        progress=progress)
  if "parallel_range_test" in calls:
    out["parallel_range_test"] = clr.parallel_range_test(
        init_params, loss_accuracy, train_loader_batched[:num_steps],
        optimizer=tx, num_lrs=num_lrs, min_lr=1e-4, max_lr=1.0,
        num_steps=sweep_steps, group_size=group_size, progress=progress)
  if "train" in calls:
    out["trained"], out["train"] = clr.train(
        init_params, loss_accuracy, train_loader_batched[:train_batches],
        optimizer=opt, num_epochs=N_EPOCHS, val_data=test_loader_batched,
        warn=False, progress=progress)
  return out


def main(argv=None):
  import _common  # pylint: disable=import-outside-toplevel
  args = _common.parse_args(NAME, __doc__, argv)
  results = run(progress=True)
  _common.report(args.out, results)
  return results


if __name__ == "__main__":
  main()
