# Copyright 2024 The Flax Authors.
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

"""Flax's MNIST example, range-tested as it is.

Upstream: github.com/google/flax, examples/mnist/train.py at commit
18f8f311c275d57f46d95e41b15aa97b454754c0. ``CNN``, ``loss_fn``,
``train_step`` and ``eval_step`` are copied verbatim (an NNX CNN with batch
norm and dropout; ``loss_fn(model, batch, rngs) -> (loss, logits)``).
Changed, and marked CHANGED below: the configuration (a dataclass instead of
``ml_collections``, batch size 16) and the data (the embedded 8x8 digits
resized to MNIST's 28x28, as lists of dict batches like
``train_ds.as_numpy_iterator()`` yields, instead of TFDS MNIST).

Glue: one line, the LR factory the range tests drive
(``tx = lambda lr: optax.sgd(lr, momentum)``; upstream's
``optax.sgd(learning_rate, momentum)`` fixes the LR). ``train`` takes
upstream's ``nnx.Optimizer`` as it is.

  python examples/real_code/flax_mnist.py   # -> runs/examples/real_code/flax_mnist/
"""

# See issue #620.
# pytype: disable=wrong-keyword-args
from functools import partial
import dataclasses

from flax import nnx
import jax
import numpy as np
import optax

import optax_clr as clr

# --- upstream, verbatim (examples/mnist/train.py) ---------------------------


class CNN(nnx.Module):
  """A simple CNN model."""

  def __init__(self, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
    self.batch_norm1 = nnx.BatchNorm(32, rngs=rngs)
    self.dropout1 = nnx.Dropout(rate=0.025)
    self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
    self.batch_norm2 = nnx.BatchNorm(64, rngs=rngs)
    self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
    self.linear1 = nnx.Linear(3136, 256, rngs=rngs)
    self.dropout2 = nnx.Dropout(rate=0.025)
    self.linear2 = nnx.Linear(256, 10, rngs=rngs)

  def __call__(self, x, rngs: nnx.Rngs):
    x = self.avg_pool(nnx.relu(self.batch_norm1(self.dropout1(self.conv1(x), rngs=rngs))))
    x = self.avg_pool(nnx.relu(self.batch_norm2(self.conv2(x))))
    x = x.reshape(x.shape[0], -1)  # flatten
    x = nnx.relu(self.dropout2(self.linear1(x), rngs=rngs))
    x = self.linear2(x)
    return x



def loss_fn(model: CNN, batch, rngs):
  logits = model(batch['image'], rngs)
  loss = optax.softmax_cross_entropy_with_integer_labels(
    logits=logits, labels=batch['label']
  ).mean()
  return loss, logits


@nnx.jit
def train_step(model: CNN, optimizer: nnx.Optimizer, metrics: nnx.MultiMetric, batch, rngs):
  """Train for a single step."""
  grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
  (loss, logits), grads = grad_fn(model, batch, rngs)
  metrics.update(loss=loss, logits=logits, labels=batch['label'])  # In-place updates.
  optimizer.update(model, grads)  # In-place updates.




@nnx.jit
def eval_step(model: CNN, metrics: nnx.MultiMetric, batch):
  loss, logits = loss_fn(model, batch, None)
  metrics.update(loss=loss, logits=logits, labels=batch['label'])  # In-place updates.


# --- CHANGED: configuration and local data ----------------------------------


@dataclasses.dataclass
class Config:
  """examples/mnist/configs/default.py; batch size 128 -> 16."""
  learning_rate: float = 0.1
  momentum: float = 0.9
  batch_size: int = 16
  num_epochs: int = 1


def get_datasets(config: Config, num_batches: int
                 ) -> tuple[list[dict], list[dict]]:
  """Digits resized to 28x28x1 in [0, 1]: lists of ``num_batches`` (train)
  and 16 (test: the last 256 digits) ``{'image', 'label'}`` batches of
  ``config.batch_size``."""
  digits = clr.load_digits()
  images = np.asarray(jax.image.resize(
      digits.images, (len(digits.images), 28, 28, 1), 'bilinear'))
  labels = digits.labels
  b = config.batch_size

  def batches(lo, hi):
    return [{'image': images[i:i + b], 'label': labels[i:i + b]}
            for i in range(lo, hi - b + 1, b)]
  train_ds = batches(0, num_batches * b)
  test_ds = batches(len(images) - 256, len(images))
  return train_ds, test_ds


# --- the range tests and training on the program as it is -------------------

CALLS = ("range_test", "parallel_range_test", "train")
NAME = "flax_mnist"


def run(config: Config | None = None, *, calls=CALLS, num_steps: int = 40,
        num_lrs: int = 8, sweep_steps: int = 10, train_batches: int = 8,
        group_size: int | str = "auto", progress: bool = False) -> dict:
  """The ``calls`` (``range_test``, ``parallel_range_test``, ``train``) on
  upstream's model, loss and optimizer. Returns the results by call name
  (and ``"trained"``, the model ``train`` returns)."""
  config = config or Config()
  train_ds, test_ds = get_datasets(config, num_steps)
  # Upstream's train_and_evaluate: the model and its optimizer.
  model = CNN(rngs=nnx.Rngs(0))
  learning_rate = config.learning_rate
  momentum = config.momentum
  optimizer = nnx.Optimizer(
      model, optax.sgd(learning_rate, momentum), wrt=nnx.Param
  )

  tx = lambda lr: optax.sgd(lr, momentum)  # GLUE (1 line)  # noqa: E731

  out = {}
  if "range_test" in calls:
    out["range_test"] = clr.range_test(
        model, loss_fn, train_ds, optimizer=tx, start_lr=1e-3, end_lr=10.0,
        num_steps=num_steps, val_data=test_ds[:1],
        eval_every=num_steps // 2, progress=progress)
  if "parallel_range_test" in calls:
    out["parallel_range_test"] = clr.parallel_range_test(
        model, loss_fn, train_ds, optimizer=tx, num_lrs=num_lrs,
        min_lr=1e-3, max_lr=1.0, num_steps=sweep_steps,
        group_size=group_size, progress=progress)
  if "train" in calls:
    out["trained"], out["train"] = clr.train(
        model, loss_fn, train_ds[:train_batches],
        optimizer=optimizer, num_epochs=config.num_epochs,
        val_data=test_ds[:1], warn=False, progress=progress)
  return out


def main(argv=None):
  import _common  # pylint: disable=import-outside-toplevel
  args = _common.parse_args(NAME, __doc__, argv)
  results = run(progress=True)
  _common.report(args.out, results)
  return results


if __name__ == "__main__":
  main()
