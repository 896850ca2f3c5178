# Copyright 2023 The Flax Authors.
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

"""Flax's VAE example (Linen), range-tested as it is.

Upstream: github.com/google/flax, examples/vae/train.py at commit
18f8f311c275d57f46d95e41b15aa97b454754c0 (models.py is copied verbatim as
vae_models.py). Verbatim: ``kl_divergence``,
``binary_cross_entropy_with_logits``, ``compute_metrics``, ``train_step``
(its loss a closure over the batch, ``z_rng`` and ``latents``), ``eval_f``
(metrics, reconstructions and samples) and ``train_and_evaluate``'s
initialisation (``TrainState`` with ``optax.adam(config.learning_rate)``, the
fixed ``z`` and ``eval_rng``). Changed, and marked CHANGED below: the
configuration (a namespace instead of ``ml_collections``, batch size 16,
one epoch), the data (the embedded 8x8 digits resized to 28x28, binarised
and flattened as ``prepare_image`` flattens binarized MNIST, instead of
TFDS), ``models`` imported from vae_models.py, and the initialisation and
training loop of ``train_and_evaluate`` as functions (no files written).

Glue: two lines. The loss lives inside ``train_step``; lifting it takes a
new ``def`` line (``def loss_fn(params, batch, z_rng,
latents=config.latents)``: the lines under it are ``train_step``'s, one
indentation level out); its ``z_rng`` receives the library's key of each
step (a parameter named ``*_rng`` takes a PRNG key). The second line is the
evaluation: upstream's ``eval_f`` returns its metrics with the images it
saves (``eval_fn = lambda params, images, z_rng: eval_f(params, images, z,
z_rng, config.latents)[0]``). ``optimizer=optax.adam`` names upstream's
optimizer for the range tests; ``train`` takes upstream's ``state.tx``.

  python examples/real_code/vae.py   # -> runs/examples/real_code/vae/
"""

import types

from flax import linen as nn
import vae_models as models  # CHANGED: upstream's `import models`
from flax.training import train_state
import jax
from jax import random
import jax.numpy as jnp
import numpy as np
import optax

import optax_clr as clr

# --- upstream, verbatim (examples/vae/train.py) -----------------------------


@jax.vmap
def kl_divergence(mean, logvar):
  return -0.5 * jnp.sum(1 + logvar - jnp.square(mean) - jnp.exp(logvar))


@jax.vmap
def binary_cross_entropy_with_logits(logits, labels):
  logits = nn.log_sigmoid(logits)
  return -jnp.sum(
      labels * logits + (1.0 - labels) * jnp.log(-jnp.expm1(logits))
  )


def compute_metrics(recon_x, x, mean, logvar):
  bce_loss = binary_cross_entropy_with_logits(recon_x, x).mean()
  kld_loss = kl_divergence(mean, logvar).mean()
  return {'bce': bce_loss, 'kld': kld_loss, 'loss': bce_loss + kld_loss}


def train_step(state, batch, z_rng, latents):
  """Train step."""
  def loss_fn(params):
    recon_x, mean, logvar = models.model(latents).apply(
        {'params': params}, batch, z_rng
    )

    bce_loss = binary_cross_entropy_with_logits(recon_x, batch).mean()
    kld_loss = kl_divergence(mean, logvar).mean()
    loss = bce_loss + kld_loss
    return loss

  grads = jax.grad(loss_fn)(state.params)
  return state.apply_gradients(grads=grads)


def eval_f(params, images, z, z_rng, latents):
  """Evaluation function."""
  def eval_model(vae):
    recon_images, mean, logvar = vae(images, z_rng)
    comparison = jnp.concatenate([
        images[:8].reshape(-1, 28, 28, 1),
        recon_images[:8].reshape(-1, 28, 28, 1),
    ])

    generate_images = vae.generate(z)
    generate_images = generate_images.reshape(-1, 28, 28, 1)
    metrics = compute_metrics(recon_images, images, mean, logvar)
    return metrics, comparison, generate_images

  return nn.apply(eval_model, models.model(latents))({'params': params})


# CHANGED: configs/default.py as a namespace; batch size 128 -> 16, 30 -> 1
# epoch.
config = types.SimpleNamespace(learning_rate=0.001, latents=20,
                               batch_size=16, num_epochs=1)


def init_state(config):  # CHANGED: train_and_evaluate's initialisation, as a function
  rng = random.key(0)
  rng, key = random.split(rng)

  init_data = jnp.ones((config.batch_size, 784), jnp.float32)
  params = models.model(config.latents).init(key, init_data, rng)['params']

  state = train_state.TrainState.create(
      apply_fn=models.model(config.latents).apply,
      params=params,
      tx=optax.adam(config.learning_rate),
  )

  rng, z_key, eval_rng = random.split(rng, 3)
  z = random.normal(z_key, (64, config.latents))
  return state, rng, z, eval_rng  # CHANGED


def fit(state, rng, train_ds, test_ds, z, eval_rng, keys=None):  # CHANGED: train_and_evaluate's loop, as a function
  for epoch in range(config.num_epochs):
    for step in range(len(train_ds)):  # CHANGED: steps_per_epoch, the batches given
      batch = train_ds[step]  # CHANGED: next(train_ds)
      rng, key = random.split(rng)
      key = key if keys is None else keys[step]  # CHANGED: the test passes the library's keys
      state = train_step(state, batch, key, config.latents)

    metrics, comparison, sample = eval_f(
        state.params, test_ds, z, eval_rng, config.latents
    )
  return state, metrics  # CHANGED


state, rng, z, eval_rng = init_state(config)  # CHANGED

# --- CHANGED: local data instead of TFDS binarized MNIST --------------------


def datasets(num_train: int) -> tuple[list[np.ndarray], np.ndarray]:
  """``(train_ds, test_ds)``: ``num_train`` batches of ``config.batch_size``
  flattened binary 28x28 images (the digits resized and thresholded at 0.5,
  float32 0/1 like ``prepare_image``'s), and a test set of the last 16."""
  digits = clr.load_digits()
  images = np.asarray(jax.image.resize(
      digits.images[..., 0], (len(digits.images), 28, 28), 'bilinear'))
  images = (images > 0.5).astype(np.float32).reshape(len(images), 784)
  b = config.batch_size
  train_ds = [images[i:i + b] for i in range(0, num_train * b, b)]
  return train_ds, images[-16:]


# --- GLUE: train_step's loss, lifted out of its closure ----------------------
# After the GLUE line: train_step's lines, one indentation level out.


def loss_fn(params, batch, z_rng, latents=config.latents):  # GLUE 1/2
  recon_x, mean, logvar = models.model(latents).apply(
      {'params': params}, batch, z_rng
  )

  bce_loss = binary_cross_entropy_with_logits(recon_x, batch).mean()
  kld_loss = kl_divergence(mean, logvar).mean()
  loss = bce_loss + kld_loss
  return loss


eval_fn = lambda params, images, z_rng: eval_f(params, images, z, z_rng, config.latents)[0]  # GLUE 2/2  # noqa: E731,E501

# --- the range tests and training on the program as it is -------------------

CALLS = ("range_test", "parallel_range_test", "train")
NAME = "vae"


def run(*, calls=CALLS, num_steps: int = 40, num_lrs: int = 8,
        sweep_steps: int = 10, train_batches: int = 8,
        group_size: int | str = "auto", progress: bool = False) -> dict:
  """The ``calls`` (``range_test``, ``parallel_range_test``, ``train``) on
  upstream's params, loss and optimizer. Returns the results by call name
  (and ``"trained"``, the params ``train`` returns)."""
  train_ds, test_ds = datasets(num_steps)
  out = {}
  if "range_test" in calls:
    out["range_test"] = clr.range_test(
        state.params, loss_fn, train_ds, optimizer=optax.adam,
        start_lr=1e-5, end_lr=1.0, num_steps=num_steps, val_data=test_ds,
        eval_every=num_steps // 2, eval_fn=eval_fn, progress=progress)
  if "parallel_range_test" in calls:
    out["parallel_range_test"] = clr.parallel_range_test(
        state.params, loss_fn, train_ds, optimizer=optax.adam,
        num_lrs=num_lrs, min_lr=1e-5, max_lr=1e-1, num_steps=sweep_steps,
        group_size=group_size, progress=progress)
  if "train" in calls:
    out["trained"], out["train"] = clr.train(
        state.params, loss_fn, train_ds[:train_batches], optimizer=state.tx,
        num_epochs=config.num_epochs, val_data=test_ds, eval_fn=eval_fn,
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
