# Copyright the Equinox authors (github.com/patrick-kidger/equinox).
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

"""Equinox's MNIST CNN, range-tested as it is.

Upstream: github.com/patrick-kidger/equinox, docs/examples/mnist.ipynb at
commit 9336d820b2ef66b360fc6cb3611b3da5cefbb14d. Verbatim: the
hyperparameters, ``CNN`` (an ``eqx.Module`` holding a list of layers and
plain functions: ``jax.nn.relu``, ``jnp.ravel``, ``jax.nn.log_softmax``),
``loss(model, x, y)`` and ``cross_entropy``, ``loss = eqx.filter_jit(loss)``,
``compute_accuracy``, ``evaluate``, the optimizer ``optax.adamw(
LEARNING_RATE)`` and ``train`` (``eqx.filter_value_and_grad``,
``eqx.apply_updates``). Changed, and marked CHANGED below: the data (the
embedded 8x8 digits resized to 28x28, normalised as upstream's transform
does, in ``(x, y)`` batches of 16 like the torch ``DataLoader`` yields,
instead of torchvision's MNIST download; torch is not imported, so its
annotations are left unevaluated with ``from __future__ import
annotations``).

Glue: one line, the evaluation (``eval_fn``: upstream's ``loss`` and
``compute_accuracy`` on a batch, as its ``evaluate`` computes them). The
model is the Equinox module itself (its floating arrays trained, its
functions static); the loss takes ``(model, x, y)`` and gets the tuple
batches spread; ``optimizer=optax.adamw`` names upstream's optimizer for
the range tests, and ``train`` takes upstream's ``optim`` as it is.

  python examples/real_code/equinox_mnist.py   # -> runs/examples/real_code/equinox_mnist/
"""

from __future__ import annotations  # CHANGED: torch is not imported; its annotations stay text

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax  # https://github.com/deepmind/optax
from jaxtyping import Array, Float, Int, PyTree  # https://github.com/google/jaxtyping

import optax_clr as clr

# --- upstream, verbatim (docs/examples/mnist.ipynb) -------------------------

# Hyperparameters

BATCH_SIZE = 16  # CHANGED: 64
LEARNING_RATE = 3e-4
STEPS = 300
PRINT_EVERY = 30
SEED = 5678

key = jax.random.PRNGKey(SEED)


class CNN(eqx.Module):
    layers: list

    def __init__(self, key):
        key1, key2, key3, key4 = jax.random.split(key, 4)
        # Standard CNN setup: convolutional layer, followed by flattening,
        # with a small MLP on top.
        self.layers = [
            eqx.nn.Conv2d(1, 3, kernel_size=4, key=key1),
            eqx.nn.MaxPool2d(kernel_size=2),
            jax.nn.relu,
            jnp.ravel,
            eqx.nn.Linear(1728, 512, key=key2),
            jax.nn.sigmoid,
            eqx.nn.Linear(512, 64, key=key3),
            jax.nn.relu,
            eqx.nn.Linear(64, 10, key=key4),
            jax.nn.log_softmax,
        ]

    def __call__(self, x: Float[Array, "1 28 28"]) -> Float[Array, "10"]:
        for layer in self.layers:
            x = layer(x)
        return x


key, subkey = jax.random.split(key, 2)
model = CNN(subkey)


def loss(
    model: CNN, x: Float[Array, "batch 1 28 28"], y: Int[Array, " batch"]
) -> Float[Array, ""]:
    # Our input has the shape (BATCH_SIZE, 1, 28, 28), but our model operations on
    # a single input input image of shape (1, 28, 28).
    #
    # Therefore, we have to use jax.vmap, which in this case maps our model over the
    # leading (batch) axis.
    pred_y = jax.vmap(model)(x)
    return cross_entropy(y, pred_y)


def cross_entropy(
    y: Int[Array, " batch"], pred_y: Float[Array, "batch 10"]
) -> Float[Array, ""]:
    # y are the true targets, and should be integers 0-9.
    # pred_y are the log-softmax'd predictions.
    pred_y = jnp.take_along_axis(pred_y, jnp.expand_dims(y, 1), axis=1)
    return -jnp.mean(pred_y)


loss = eqx.filter_jit(loss)  # JIT our loss function from earlier!


@eqx.filter_jit
def compute_accuracy(
    model: CNN, x: Float[Array, "batch 1 28 28"], y: Int[Array, " batch"]
) -> Float[Array, ""]:
    """This function takes as input the current model
    and computes the average accuracy on a batch.
    """
    pred_y = jax.vmap(model)(x)
    pred_y = jnp.argmax(pred_y, axis=1)
    return jnp.mean(y == pred_y)


def evaluate(model: CNN, testloader: torch.utils.data.DataLoader):
    """This function evaluates the model on the test dataset,
    computing both the average loss and the average accuracy.
    """
    avg_loss = 0
    avg_acc = 0
    for x, y in testloader:
        x = x.numpy()
        y = y.numpy()
        # Note that all the JAX operations happen inside `loss` and `compute_accuracy`,
        # and both have JIT wrappers, so this is fast.
        avg_loss += loss(model, x, y)
        avg_acc += compute_accuracy(model, x, y)
    return avg_loss / len(testloader), avg_acc / len(testloader)


optim = optax.adamw(LEARNING_RATE)


def train(
    model: CNN,
    trainloader: torch.utils.data.DataLoader,
    testloader: torch.utils.data.DataLoader,
    optim: optax.GradientTransformation,
    steps: int,
    print_every: int,
) -> CNN:
    # Just like earlier: It only makes sense to train the arrays in our model,
    # so filter out everything else.
    opt_state = optim.init(eqx.filter(model, eqx.is_array))

    # Always wrap everything -- computing gradients, running the optimiser, updating
    # the model -- into a single JIT region. This ensures things run as fast as
    # possible.
    @eqx.filter_jit
    def make_step(
        model: CNN,
        opt_state: PyTree,
        x: Float[Array, "batch 1 28 28"],
        y: Int[Array, " batch"],
    ):
        loss_value, grads = eqx.filter_value_and_grad(loss)(model, x, y)
        updates, opt_state = optim.update(
            grads, opt_state, eqx.filter(model, eqx.is_array)
        )
        model = eqx.apply_updates(model, updates)
        return model, opt_state, loss_value

    # Loop over our training dataset as many times as we need.
    def infinite_trainloader():
        while True:
            yield from trainloader

    for step, (x, y) in zip(range(steps), infinite_trainloader()):
        # PyTorch dataloaders give PyTorch tensors by default,
        # so convert them to NumPy arrays.
        x = x.numpy()
        y = y.numpy()
        model, opt_state, train_loss = make_step(model, opt_state, x, y)
        if (step % print_every) == 0 or (step == steps - 1):
            test_loss, test_accuracy = evaluate(model, testloader)
            print(
                f"{step=}, train_loss={train_loss.item()}, "
                f"test_loss={test_loss.item()}, test_accuracy={test_accuracy.item()}"
            )
    return model


# --- CHANGED: local data instead of torchvision's MNIST ---------------------


class Tensor(np.ndarray):
  """A NumPy array with torch's ``.numpy()``, for upstream's loops."""

  def numpy(self) -> np.ndarray:
    return np.asarray(self)


def loaders(num_train: int, num_test: int = 2
            ) -> tuple[list[tuple[Tensor, Tensor]], list[tuple[Tensor, Tensor]]]:
  """``(trainloader, testloader)``: lists of ``(x, y)`` batches of
  ``BATCH_SIZE`` as upstream's torch ``DataLoader``s yield them (x
  ``[B, 1, 28, 28]`` normalised to [-1, 1] like ``Normalize((0.5,),
  (0.5,))``; y int labels): ``num_train`` training batches from the first
  digits, ``num_test`` from the last."""
  digits = clr.load_digits()
  images = np.asarray(jax.image.resize(
      digits.images[..., 0], (len(digits.images), 28, 28), "bilinear"))
  images = ((images - 0.5) / 0.5)[:, None].astype(np.float32)
  labels = digits.labels.astype(np.int64)
  b = BATCH_SIZE

  def batch(i):
    return (images[i:i + b].view(Tensor), labels[i:i + b].view(Tensor))
  train = [batch(i) for i in range(0, num_train * b, b)]
  test = [batch(len(images) - (k + 1) * b) for k in range(num_test)]
  return train, test


# --- the range tests and training on the program as it is -------------------

CALLS = ("range_test", "parallel_range_test", "train")
NAME = "equinox_mnist"

eval_fn = lambda model, x, y: {"loss": loss(model, x, y), "accuracy": compute_accuracy(model, x, y)}  # GLUE 1/1  # noqa: E731,E501


def run(*, calls=CALLS, num_steps: int = 40, num_lrs: int = 8,
        sweep_steps: int = 10, train_batches: int = 8,
        group_size: int | str = "auto", progress: bool = False) -> dict:
  """The ``calls`` (``range_test``, ``parallel_range_test``, ``train``) on
  upstream's module, loss and optimizer. Returns the results by call name
  (and ``"trained"``, the module ``train`` returns)."""
  trainloader, testloader = loaders(num_steps)
  out = {}
  if "range_test" in calls:
    out["range_test"] = clr.range_test(
        model, loss, trainloader, optimizer=optax.adamw, start_lr=1e-5,
        end_lr=1.0, num_steps=num_steps, val_data=testloader,
        eval_every=num_steps // 2, eval_fn=eval_fn, progress=progress)
  if "parallel_range_test" in calls:
    out["parallel_range_test"] = clr.parallel_range_test(
        model, loss, trainloader, optimizer=optax.adamw, num_lrs=num_lrs,
        min_lr=1e-5, max_lr=1e-1, num_steps=sweep_steps,
        group_size=group_size, progress=progress)
  if "train" in calls:
    out["trained"], out["train"] = clr.train(
        model, loss, trainloader[:train_batches], optimizer=optim,
        num_epochs=1, val_data=testloader, eval_fn=eval_fn, warn=False,
        progress=progress)
  return out


def main(argv=None):
  import _common  # pylint: disable=import-outside-toplevel
  args = _common.parse_args(NAME, __doc__, argv)
  results = run(progress=True)
  _common.report(args.out, results)
  return results


if __name__ == "__main__":
  main()
