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

"""Equinox's stateful example (BatchNorm, SpectralNorm), range-tested as it is.

Upstream: github.com/patrick-kidger/equinox, docs/examples/stateful.ipynb
at commit 9336d820b2ef66b360fc6cb3611b3da5cefbb14d. Verbatim: ``Model``
(two ``eqx.nn.BatchNorm(axis_name="batch")`` and an ``eqx.nn.SpectralNorm``
whose power iteration is state too), ``compute_loss(model, state, xs, ys)
-> (loss, state)`` (the model vmapped with ``axis_name="batch"``),
``make_step``, the data (``dataset_size = 10`` points, full-batch), the
optimizer ``optax.adam(learning_rate)``, ``eqx.nn.make_with_state`` and the
inference section (``eqx.nn.inference_mode``, ``evaluate``). Changed, and
marked CHANGED below: the training and inference cells, which run at the
notebook's top level, are functions here (run by the test); and the
validation data are the inference cell's ``test_xs`` with targets
computed as upstream computes ``ys`` (upstream only predicts).

Glue: none. The state outside the model is declared with
``clr.with_state(model, state)``: every driver carries it per copy from step
to step, evaluates with the current one (in inference mode:
``eqx.nn.inference_mode``, so BatchNorm uses its running statistics), and
``train`` returns it. ``optimizer=optax.adam`` names upstream's optimizer
for the range tests; ``train`` takes upstream's ``optim``. The batches are
upstream's full batch ``(xs, ys)``, once per step.

  python examples/real_code/equinox_stateful.py   # -> runs/examples/real_code/equinox_stateful/
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax  # https://github.com/deepmind/optax

import optax_clr as clr

# --- upstream, verbatim (docs/examples/stateful.ipynb) ----------------------


# This model is just a weird mish-mash of stateful and non-stateful layers for
# demonstration purposes, it isn't doing any clever.
class Model(eqx.Module):
    norm1: eqx.nn.BatchNorm
    spectral_linear: eqx.nn.SpectralNorm[eqx.nn.Linear]
    norm2: eqx.nn.BatchNorm
    linear1: eqx.nn.Linear
    linear2: eqx.nn.Linear

    def __init__(self, key):
        key1, key2, key3, key4 = jr.split(key, 4)
        self.norm1 = eqx.nn.BatchNorm(input_size=3, axis_name="batch")
        self.spectral_linear = eqx.nn.SpectralNorm(
            layer=eqx.nn.Linear(in_features=3, out_features=32, key=key1),
            weight_name="weight",
            key=key2,
        )
        self.norm2 = eqx.nn.BatchNorm(input_size=32, axis_name="batch")
        self.linear1 = eqx.nn.Linear(in_features=32, out_features=32, key=key3)
        self.linear2 = eqx.nn.Linear(in_features=32, out_features=3, key=key4)

    def __call__(self, x, state):
        x, state = self.norm1(x, state)
        x, state = self.spectral_linear(x, state)
        x = jax.nn.relu(x)
        x, state = self.norm2(x, state)
        x = self.linear1(x)
        x = jax.nn.relu(x)
        x = self.linear2(x)
        return x, state


def compute_loss(model, state, xs, ys):
    batch_model = jax.vmap(
        model, axis_name="batch", in_axes=(0, None), out_axes=(0, None)
    )
    pred_ys, state = batch_model(xs, state)
    loss = jnp.mean((pred_ys - ys) ** 2)
    return loss, state


@eqx.filter_jit
def make_step(model, state, opt_state, xs, ys):
    grads, state = eqx.filter_grad(compute_loss, has_aux=True)(model, state, xs, ys)
    updates, opt_state = optim.update(grads, opt_state)
    model = eqx.apply_updates(model, updates)
    return model, state, opt_state


dataset_size = 10
learning_rate = 3e-4
steps = 5
seed = 5678

key = jr.PRNGKey(seed)
mkey, xkey, xkey2 = jr.split(key, 3)

model, state = eqx.nn.make_with_state(Model)(mkey)

xs = jr.normal(xkey, (dataset_size, 3))
ys = jnp.sin(xs) + 1
optim = optax.adam(learning_rate)
opt_state = optim.init(eqx.filter(model, eqx.is_inexact_array))


def fit(model, state, opt_state):  # CHANGED: upstream's training cell, as a function
  for _ in range(steps):
      # Full-batch gradient descent in this simple example.
      model, state, opt_state = make_step(model, state, opt_state, xs, ys)
  return model, state, opt_state  # CHANGED


def inference(model, state):  # CHANGED: upstream's inference cell, as a function
  inference_model = eqx.nn.inference_mode(model)
  inference_model = eqx.Partial(inference_model, state=state)


  @eqx.filter_jit
  def evaluate(model, xs):
      # discard state
      out, _ = jax.vmap(model)(xs)
      return out


  test_dataset_size = 5
  test_xs = jr.normal(xkey2, (test_dataset_size, 3))
  pred_test_ys = evaluate(inference_model, test_xs)
  return pred_test_ys  # CHANGED


# CHANGED: the inference cell's test points, with targets computed as ys is.
test_xs = jr.normal(xkey2, (5, 3))
test_ys = jnp.sin(test_xs) + 1

# --- the range tests and training on the program as it is -------------------

CALLS = ("range_test", "parallel_range_test", "train")
NAME = "equinox_stateful"


def run(*, calls=CALLS, num_steps: int = 40, num_lrs: int = 8,
        sweep_steps: int = 10, train_steps: int = steps,
        group_size: int | str = "auto", progress: bool = False) -> dict:
  """The ``calls`` (``range_test``, ``parallel_range_test``, ``train``) on
  upstream's model and state, loss and optimizer, full-batch as upstream
  trains. Returns the results by call name (and ``"trained"``,
  ``with_state(model, state)`` as ``train`` returns it)."""
  out = {}
  if "range_test" in calls:
    out["range_test"] = clr.range_test(
        clr.with_state(model, state), compute_loss, [(xs, ys)] * num_steps,
        optimizer=optax.adam, start_lr=1e-4, end_lr=10.0,
        num_steps=num_steps, val_data=(test_xs, test_ys),
        eval_every=num_steps // 2, progress=progress)
  if "parallel_range_test" in calls:
    out["parallel_range_test"] = clr.parallel_range_test(
        clr.with_state(model, state), compute_loss,
        [(xs, ys)] * sweep_steps, optimizer=optax.adam, num_lrs=num_lrs,
        min_lr=1e-4, max_lr=1.0, num_steps=sweep_steps,
        val_data=(test_xs, test_ys), group_size=group_size,
        progress=progress)
  if "train" in calls:
    out["trained"], out["train"] = clr.train(
        clr.with_state(model, state), compute_loss,
        [(xs, ys)] * train_steps, optimizer=optim, num_epochs=1,
        val_data=(test_xs, test_ys), warn=False, progress=progress)
  return out


def main(argv=None):
  import _common  # pylint: disable=import-outside-toplevel
  args = _common.parse_args(NAME, __doc__, argv)
  results = run(progress=True)
  _common.report(args.out, results)
  return results


if __name__ == "__main__":
  main()
