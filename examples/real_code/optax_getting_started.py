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

"""Optax's getting-started MLP fit, range-tested as it is.

Upstream: github.com/google-deepmind/optax, docs/getting_started.ipynb
("Example: Fitting a MLP" and "Weight Decay, Schedules and Clipping") at
commit 2edbcbe2390da13983b92cbef94ac0460ecde1c5. Verbatim: the data
(batches of 8-bit binary numbers labelled odd/even), ``initial_params`` (a
params dict), ``net``, ``loss(params, batch, labels)``, ``fit`` and the
optimizer ``optax.chain(optax.clip(1.0), optax.adamw(learning_rate=
schedule))`` with its warmup-cosine schedule. Changed, and marked CHANGED
below: 60 training batches instead of 1000, drawn with a seed.

Glue: two lines. The loss takes the batch and the labels as two arguments
(``loss_fn = lambda params, batch: loss(params, *batch)``; the batches are
upstream's ``zip(TRAINING_DATA, LABELS)``), and the range tests drive the
LR of the same chain (``tx = lambda lr: optax.chain(optax.clip(1.0),
optax.adamw(learning_rate=lr))``). ``train`` takes upstream's optimizer,
schedule included, as it is, and ends where upstream's ``fit`` ends.

  python examples/real_code/optax_getting_started.py   # -> runs/examples/real_code/optax_getting_started/
"""

import optax
import jax.numpy as jnp
import jax
import numpy as np

import optax_clr as clr

# --- upstream, verbatim (docs/getting_started.ipynb) ------------------------

np.random.seed(0)  # CHANGED: upstream draws without a seed

BATCH_SIZE = 5
NUM_TRAIN_STEPS = 60  # CHANGED: 1_000
RAW_TRAINING_DATA = np.random.randint(255, size=(NUM_TRAIN_STEPS, BATCH_SIZE, 1))

TRAINING_DATA = np.unpackbits(RAW_TRAINING_DATA.astype(np.uint8), axis=-1)
LABELS = jax.nn.one_hot(RAW_TRAINING_DATA % 2, 2).astype(jnp.float32).reshape(NUM_TRAIN_STEPS, BATCH_SIZE, 2)

initial_params = {
    'hidden': jax.random.normal(shape=[8, 32], key=jax.random.PRNGKey(0)),
    'output': jax.random.normal(shape=[32, 2], key=jax.random.PRNGKey(1)),
}


def net(x: jnp.ndarray, params: optax.Params) -> jnp.ndarray:
  x = jnp.dot(x, params['hidden'])
  x = jax.nn.relu(x)
  x = jnp.dot(x, params['output'])
  return x


def loss(params: optax.Params, batch: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  y_hat = net(batch, params)

  # optax also provides a number of common loss functions.
  loss_value = optax.sigmoid_binary_cross_entropy(y_hat, labels).sum(axis=-1)

  return loss_value.mean()


def fit(params: optax.Params, optimizer: optax.GradientTransformation) -> optax.Params:
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, batch, labels):
    loss_value, grads = jax.value_and_grad(loss)(params, batch, labels)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, loss_value

  for i, (batch, labels) in enumerate(zip(TRAINING_DATA, LABELS)):
    params, opt_state, loss_value = step(params, opt_state, batch, labels)
    if i % 100 == 0:
      print(f'step {i}, loss: {loss_value}')

  return params, opt_state


schedule = optax.warmup_cosine_decay_schedule(
  init_value=0.0,
  peak_value=1.0,
  warmup_steps=50,
  decay_steps=1_000,
  end_value=0.0,
)

optimizer = optax.chain(
  optax.clip(1.0),
  optax.adamw(learning_rate=schedule),
)

# --- the range tests and training on the program as it is -------------------

CALLS = ("range_test", "parallel_range_test", "train")
NAME = "optax_getting_started"

loss_fn = lambda params, batch: loss(params, *batch)  # GLUE 1/2  # noqa: E731
tx = lambda lr: optax.chain(optax.clip(1.0), optax.adamw(learning_rate=lr))  # GLUE 2/2  # noqa: E731,E501


def run(*, calls=CALLS, num_steps: int = 40, num_lrs: int = 8,
        sweep_steps: int = 10, group_size: int | str = "auto",
        progress: bool = False) -> dict:
  """The ``calls`` (``range_test``, ``parallel_range_test``, ``train``) on
  upstream's params, loss and optimizer. Returns the results by call name
  (and ``"trained"``, the params ``train`` returns)."""
  out = {}
  if "range_test" in calls:
    out["range_test"] = clr.range_test(
        initial_params, loss_fn, list(zip(TRAINING_DATA, LABELS)),
        optimizer=tx, start_lr=1e-4, end_lr=10.0, num_steps=num_steps,
        progress=progress)
  if "parallel_range_test" in calls:
    out["parallel_range_test"] = clr.parallel_range_test(
        initial_params, loss_fn, list(zip(TRAINING_DATA, LABELS)),
        optimizer=tx, num_lrs=num_lrs, min_lr=1e-4, max_lr=1.0,
        num_steps=sweep_steps, group_size=group_size, progress=progress)
  if "train" in calls:
    out["trained"], out["train"] = clr.train(
        initial_params, loss_fn, list(zip(TRAINING_DATA, LABELS)),
        optimizer=optimizer, num_epochs=1, warn=False, progress=progress)
  return out


def main(argv=None):
  import _common  # pylint: disable=import-outside-toplevel
  args = _common.parse_args(NAME, __doc__, argv)
  results = run(progress=True)
  _common.report(args.out, results)
  return results


if __name__ == "__main__":
  main()
