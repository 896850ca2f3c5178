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

"""Optax's gradient-accumulation example (NNX), range-tested as it is.

Upstream: github.com/google-deepmind/optax,
examples/gradient_accumulation.ipynb at commit
2edbcbe2390da13983b92cbef94ac0460ecde1c5. Verbatim: the NNX ``MLP``,
``loss_fn(model, batch)`` (a scalar loss), ``build_train_step``, ``fit``,
the random image-like data (9 examples, 28x28x1, 10 classes) and the
optimizers: ``optax.sgd(1e-4)``, and wrapped in ``optax.MultiSteps(...,
every_k_schedule=3)`` inside an ``nnx.Optimizer``. Nothing is changed.

Glue: one line, the LR factory the range tests drive, gradient
accumulation included (``tx = lambda lr: optax.MultiSteps(optax.sgd(lr),
every_k_schedule=3)``). ``train`` takes upstream's accumulating
``nnx.Optimizer`` on upstream's three batches as it is, and ends where
upstream's single-batch ``fit`` ends (the notebook's own check).

  python examples/real_code/optax_gradient_accumulation.py   # -> runs/examples/real_code/optax_gradient_accumulation/
"""

from typing import Iterable

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_clr as clr

# --- upstream, verbatim (examples/gradient_accumulation.ipynb) --------------


class MLP(nnx.Module):
  """A simple multilayer perceptron model using flax.nnx."""

  def __init__(self, rngs: nnx.Rngs):
    self.linear1 = nnx.Linear(28 * 28, 512, rngs=rngs)
    self.linear2 = nnx.Linear(512, 512, rngs=rngs)
    self.linear3 = nnx.Linear(512, 10, rngs=rngs)

  def __call__(self, x):
    # Flattens inputs in the batch.
    x = x.reshape((x.shape[0], -1))
    x = self.linear1(x)
    x = jax.nn.relu(x)
    x = self.linear2(x)
    x = jax.nn.relu(x)
    x = self.linear3(x)
    return x

def loss_fn(model, batch):
  """Computes loss over a mini-batch."""
  logits = model(batch['image'])
  loss = optax.softmax_cross_entropy_with_integer_labels(
      logits=logits, labels=batch['label']
  ).mean()
  return loss


def build_train_step():
  """Builds a function for executing a single step in the optimization."""

  @jax.jit
  def update(model, optimizer, batch):
    grads = nnx.grad(loss_fn)(model, batch)
    optimizer.update(model, grads)

  return update


def fit(
    model: nnx.Module,
    optimizer: nnx.Optimizer,
    batches: Iterable[dict[str, jnp.ndarray]],
):
  """Executes a train loop over the train batches using the given optimizer."""

  train_step = build_train_step()

  for batch in batches:
    train_step(model, optimizer, batch)


EXAMPLES = jax.random.uniform(jax.random.PRNGKey(0), (9, 28, 28, 1))
LABELS = jax.random.randint(jax.random.PRNGKey(0), (9,), minval=0, maxval=10)

optimizer = optax.sgd(1e-4)

# --- the range tests and training on the program as it is -------------------

CALLS = ("range_test", "parallel_range_test", "train")
NAME = "optax_gradient_accumulation"

tx = lambda lr: optax.MultiSteps(optax.sgd(lr), every_k_schedule=3)  # GLUE 1/1  # noqa: E731


def run(*, calls=CALLS, num_steps: int = 42, num_lrs: int = 8,
        sweep_steps: int = 12, group_size: int | str = "auto",
        progress: bool = False) -> dict:
  """The ``calls`` (``range_test``, ``parallel_range_test``, ``train``):
  the range tests on upstream's model, loss and accumulating optimizer
  (batches of 3 sampled from upstream's 9 examples), ``train`` on
  upstream's three batches with its ``nnx.Optimizer``. Returns the results
  by call name (and ``"trained"``, the model ``train`` returns)."""
  model_gradient_accumulation = MLP(nnx.Rngs(0))
  opt_gradient_accumulation = nnx.Optimizer(
      model_gradient_accumulation,
      optax.MultiSteps(optimizer, every_k_schedule=3),
      wrt=nnx.Param
  )

  out = {}
  if "range_test" in calls:
    out["range_test"] = clr.range_test(
        model_gradient_accumulation, loss_fn,
        dict(image=EXAMPLES, label=LABELS), batch_size=3, optimizer=tx,
        start_lr=1e-4, end_lr=10.0, num_steps=num_steps, progress=progress)
  if "parallel_range_test" in calls:
    out["parallel_range_test"] = clr.parallel_range_test(
        model_gradient_accumulation, loss_fn,
        dict(image=EXAMPLES, label=LABELS), batch_size=3, optimizer=tx,
        num_lrs=num_lrs, min_lr=1e-4, max_lr=1.0, num_steps=sweep_steps,
        group_size=group_size, progress=progress)
  if "train" in calls:
    out["trained"], out["train"] = clr.train(
        model_gradient_accumulation, loss_fn,
        [
            dict(image=EXAMPLES[0:3], label=LABELS[0:3]),
            dict(image=EXAMPLES[3:6], label=LABELS[3:6]),
            dict(image=EXAMPLES[6:9], label=LABELS[6:9]),
        ],
        optimizer=opt_gradient_accumulation, num_epochs=1, warn=False,
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
