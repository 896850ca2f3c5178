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

"""Flax's ImageNet ResNet (Linen, written for pmap), range-tested as it is.

Upstream: github.com/google/flax, examples/imagenet/train.py at commit
18f8f311c275d57f46d95e41b15aa97b454754c0 (models.py is copied verbatim as
imagenet_models.py). Verbatim: ``create_model``, ``initialized``, the loss
and metrics (``compute_metrics`` averages them with ``lax.pmean(...,
axis_name='batch')``), ``create_learning_rate_fn``, ``train_step`` (its
loss a closure over the ``TrainState``: ``apply_fn(..., mutable=
['batch_stats'])``, a weight penalty, ``lax.pmean`` of the gradients and of
the new batch statistics), ``eval_step``, ``TrainState`` (with
``batch_stats``) and ``create_train_state`` (SGD with Nesterov momentum on
the warmup-cosine schedule); the ResNet's ``nn.BatchNorm(axis_name=
'batch')`` averages its statistics over the pmap axis. Changed, and marked
CHANGED below: the configuration (a namespace instead of ``ml_collections``:
the test-only ``_ResNet1`` with 8 filters, 10 classes, 32x32 images, batch
16, 2 epochs with 1 of warmup), the data (the embedded digits resized to
32x32x3 instead of TFDS ImageNet), the imports (no TF, TFDS, CLU, Orbax),
and ``train_and_evaluate``'s initialisation and pmap loop as functions.

Glue: two lines. The loss lives inside ``train_step``; lifting it takes a
new ``def`` line (``def loss_fn(params, state, batch)``: the lines under it
are ``train_step``'s, one indentation level out). ``state`` is upstream's
``TrainState``, declared as the state the loss threads through
(``clr.with_state(state.params, state)``): the loss reads
``state.apply_fn`` and the current ``state.batch_stats``, and returns what
Linen's ``apply(..., mutable=['batch_stats'])`` returns, which replaces
them. The second line is the evaluation (``eval_fn = lambda params,
state, batch: eval_step(state.replace(params=params), batch)``: upstream's
``eval_step`` with the current params and batch statistics). The range
tests name upstream's optimizer with its arguments
(``functools.partial(optax.sgd, momentum=config.momentum,
nesterov=True)``); ``train`` takes upstream's ``state.tx``. Every call
passes ``data_axis='batch'``: the batch is split over every device along
an axis named ``'batch'``, so ``lax.pmean(..., 'batch')`` and the
BatchNorm's ``axis_name='batch'`` run as under upstream's ``jax.pmap``.

  python examples/real_code/imagenet.py   # -> runs/examples/real_code/imagenet/
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python examples/real_code/imagenet.py
"""

import functools
import types
from typing import Any

from flax.training import common_utils
from flax.training import dynamic_scale as dynamic_scale_lib
from flax.training import train_state
import jax
from jax import lax
import jax.numpy as jnp
from jax import random
import numpy as np
import optax

import imagenet_models as models  # CHANGED: upstream's `import models`
import optax_clr as clr

# --- upstream, verbatim (examples/imagenet/train.py) ------------------------


NUM_CLASSES = 10  # CHANGED: 1000


def create_model(*, model_cls, half_precision, **kwargs):
  platform = jax.local_devices()[0].platform
  if half_precision:
    if platform == 'tpu':
      model_dtype = jnp.bfloat16
    else:
      model_dtype = jnp.float16
  else:
    model_dtype = jnp.float32
  return model_cls(num_classes=NUM_CLASSES, dtype=model_dtype, **kwargs)


def initialized(key, image_size, model):
  input_shape = (1, image_size, image_size, 3)

  @jax.jit
  def init(*args):
    return model.init(*args)

  variables = init({'params': key}, jnp.ones(input_shape, model.dtype))
  return variables['params'], variables['batch_stats']


def cross_entropy_loss(logits, labels):
  one_hot_labels = common_utils.onehot(labels, num_classes=NUM_CLASSES)
  xentropy = optax.softmax_cross_entropy(logits=logits, labels=one_hot_labels)
  return jnp.mean(xentropy)


def compute_metrics(logits, labels):
  loss = cross_entropy_loss(logits, labels)
  accuracy = jnp.mean(jnp.argmax(logits, -1) == labels)
  metrics = {
      'loss': loss,
      'accuracy': accuracy,
  }
  metrics = lax.pmean(metrics, axis_name='batch')
  return metrics


def create_learning_rate_fn(
    config: Any,  # CHANGED: ml_collections.ConfigDict
    base_learning_rate: float,
    steps_per_epoch: int,
):
  """Create learning rate schedule."""
  warmup_fn = optax.linear_schedule(
      init_value=0.0,
      end_value=base_learning_rate,
      transition_steps=config.warmup_epochs * steps_per_epoch,
  )
  cosine_epochs = max(config.num_epochs - config.warmup_epochs, 1)
  cosine_fn = optax.cosine_decay_schedule(
      init_value=base_learning_rate, decay_steps=cosine_epochs * steps_per_epoch
  )
  schedule_fn = optax.join_schedules(
      schedules=[warmup_fn, cosine_fn],
      boundaries=[config.warmup_epochs * steps_per_epoch],
  )
  return schedule_fn


def train_step(state, batch, learning_rate_fn):
  """Perform a single training step."""

  def loss_fn(params):
    """loss function used for training."""
    logits, new_model_state = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats},
        batch['image'],
        mutable=['batch_stats'],
    )
    loss = cross_entropy_loss(logits, batch['label'])
    weight_penalty_params = jax.tree_util.tree_leaves(params)
    weight_decay = 0.0001
    weight_l2 = sum(
        jnp.sum(x**2) for x in weight_penalty_params if x.ndim > 1
    )
    weight_penalty = weight_decay * 0.5 * weight_l2
    loss = loss + weight_penalty
    return loss, (new_model_state, logits)

  step = state.step
  dynamic_scale = state.dynamic_scale
  lr = learning_rate_fn(step)

  if dynamic_scale:
    grad_fn = dynamic_scale.value_and_grad(
        loss_fn, has_aux=True, axis_name='batch'
    )
    dynamic_scale, is_fin, aux, grads = grad_fn(state.params)
    # dynamic loss takes care of averaging gradients across replicas
  else:
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    aux, grads = grad_fn(state.params)
    # Re-use same axis_name as in the call to `pmap(...train_step...)` below.
    grads = lax.pmean(grads, axis_name='batch')
  new_model_state, logits = aux[1]
  metrics = compute_metrics(logits, batch['label'])
  metrics['learning_rate'] = lr

  new_state = state.apply_gradients(
      grads=grads,
      batch_stats=lax.pmean(new_model_state['batch_stats'], 'batch'),
  )
  if dynamic_scale:
    # if is_fin == False the gradients contain Inf/NaNs and optimizer state and
    # params should be restored (= skip this step).
    new_state = new_state.replace(
        opt_state=jax.tree_util.tree_map(
            functools.partial(jnp.where, is_fin),  # pyrefly: ignore[unbound-name]
            new_state.opt_state,
            state.opt_state,
        ),
        params=jax.tree_util.tree_map(
            functools.partial(jnp.where, is_fin), new_state.params, state.params
        ),
        dynamic_scale=dynamic_scale,
    )
    metrics['scale'] = dynamic_scale.scale

  return new_state, metrics


def eval_step(state, batch):
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  logits = state.apply_fn(variables, batch['image'], train=False, mutable=False)
  return compute_metrics(logits, batch['label'])


class TrainState(train_state.TrainState):
  batch_stats: Any
  dynamic_scale: dynamic_scale_lib.DynamicScale


def create_train_state(
    rng, config: Any, model, image_size, learning_rate_fn  # CHANGED: config's annotation
):
  """Create initial training state."""
  dynamic_scale = None
  platform = jax.local_devices()[0].platform
  if config.half_precision and platform == 'gpu':
    dynamic_scale = dynamic_scale_lib.DynamicScale()

  params, batch_stats = initialized(rng, image_size, model)
  tx = optax.sgd(
      learning_rate=learning_rate_fn,
      momentum=config.momentum,
      nesterov=True,
  )
  state = TrainState.create(
      apply_fn=model.apply,
      params=params,
      tx=tx,
      batch_stats=batch_stats,
      dynamic_scale=dynamic_scale,
  )
  return state


# CHANGED: configs/default.py as a namespace, tiny: the test-only _ResNet1
# with 8 filters, 32x32 images, batch 16, 2 epochs (1 of warmup).
config = types.SimpleNamespace(
    model='_ResNet1', num_filters=8, image_size=32, learning_rate=0.1,
    warmup_epochs=1.0, momentum=0.9, batch_size=16, num_epochs=2.0,
    half_precision=False)


def init(steps_per_epoch):  # CHANGED: train_and_evaluate's initialisation, as a function
  rng = random.key(0)

  image_size = config.image_size  # CHANGED: 224

  base_learning_rate = config.learning_rate * config.batch_size / 256.0

  model_cls = getattr(models, config.model)
  model = create_model(
      model_cls=model_cls, half_precision=config.half_precision,
      num_filters=config.num_filters,  # CHANGED: upstream's default, 64
  )

  learning_rate_fn = create_learning_rate_fn(
      config, base_learning_rate, steps_per_epoch
  )

  state = create_train_state(rng, config, model, image_size, learning_rate_fn)
  return model, state, learning_rate_fn  # CHANGED


def pmapped(learning_rate_fn):  # CHANGED: train_and_evaluate's pmap'ed steps, returned
  p_train_step = jax.pmap(
      functools.partial(train_step, learning_rate_fn=learning_rate_fn),
      in_axes=(None, 0),
      out_axes=(None, 0),
      axis_name='batch',
  )
  p_eval_step = jax.pmap(eval_step, in_axes=(None, 0), axis_name='batch')
  return p_train_step, p_eval_step  # CHANGED


def prepare(xs):  # CHANGED: prepare_tf_data on NumPy batches
  local_device_count = jax.local_device_count()
  return jax.tree_util.tree_map(
      lambda x: x.reshape((local_device_count, -1) + x.shape[1:]), xs)


# --- CHANGED: local data instead of TFDS ImageNet ---------------------------


def datasets(num_train: int, num_eval: int = 1
             ) -> tuple[list[dict], list[dict]]:
  """``(train, eval)`` lists of ``{'image', 'label'}`` batches of
  ``config.batch_size`` (the digits resized to 32x32, grey in three
  channels, normalised to zero mean and unit variance)."""
  digits = clr.load_digits()
  size = config.image_size
  images = np.asarray(jax.image.resize(
      digits.images, (len(digits.images), size, size, 1), 'bilinear'))
  images = np.repeat((images - images.mean()) / images.std(), 3, axis=-1)
  images = images.astype(np.float32)
  labels = digits.labels.astype(np.int32)
  b = config.batch_size

  def batch(i):
    return {'image': images[i:i + b], 'label': labels[i:i + b]}
  return ([batch(i) for i in range(0, num_train * b, b)],
          [batch(len(images) - (k + 1) * b) for k in range(num_eval)])


# --- GLUE: train_step's loss, lifted out of its closure ----------------------
# After the GLUE line: train_step's lines, one indentation level out.


def loss_fn(params, state, batch):  # GLUE 1/2
  """loss function used for training."""
  logits, new_model_state = state.apply_fn(
      {'params': params, 'batch_stats': state.batch_stats},
      batch['image'],
      mutable=['batch_stats'],
  )
  loss = cross_entropy_loss(logits, batch['label'])
  weight_penalty_params = jax.tree_util.tree_leaves(params)
  weight_decay = 0.0001
  weight_l2 = sum(
      jnp.sum(x**2) for x in weight_penalty_params if x.ndim > 1
  )
  weight_penalty = weight_decay * 0.5 * weight_l2
  loss = loss + weight_penalty
  return loss, (new_model_state, logits)


eval_fn = lambda params, state, batch: eval_step(state.replace(params=params), batch)  # GLUE 2/2  # noqa: E731,E501

# --- the range tests and training on the program as it is -------------------

CALLS = ("range_test", "parallel_range_test", "train")
NAME = "imagenet"


def run(*, calls=CALLS, num_steps: int = 40, num_lrs: int = 8,
        sweep_steps: int = 10, steps_per_epoch: int = 4,
        group_size: int | str = "auto", progress: bool = False) -> dict:
  """The ``calls`` (``range_test``, ``parallel_range_test``, ``train``) on
  upstream's params, TrainState, loss and optimizer, with the batch split
  over every device along ``'batch'``. Returns the results by call name
  (and ``"trained"``, ``with_state(params, state)`` as ``train`` returns
  it)."""
  train_ds, eval_ds = datasets(max(num_steps, steps_per_epoch))
  _, state, _ = init(steps_per_epoch)
  out = {}
  if "range_test" in calls:
    out["range_test"] = clr.range_test(
        clr.with_state(state.params, state), loss_fn, train_ds[:num_steps],
        optimizer=functools.partial(optax.sgd, momentum=config.momentum,
                                    nesterov=True),
        start_lr=1e-4, end_lr=10.0, num_steps=num_steps, val_data=eval_ds,
        eval_every=num_steps // 2, eval_fn=eval_fn, data_axis='batch',
        progress=progress)
  if "parallel_range_test" in calls:
    out["parallel_range_test"] = clr.parallel_range_test(
        clr.with_state(state.params, state), loss_fn, train_ds[:num_steps],
        optimizer=functools.partial(optax.sgd, momentum=config.momentum,
                                    nesterov=True),
        num_lrs=num_lrs, min_lr=1e-4, max_lr=1.0, num_steps=sweep_steps,
        val_data=eval_ds, eval_fn=eval_fn, data_axis='batch',
        group_size=group_size, progress=progress)
  if "train" in calls:
    out["trained"], out["train"] = clr.train(
        clr.with_state(state.params, state), loss_fn,
        train_ds[:steps_per_epoch], optimizer=state.tx,
        num_epochs=int(config.num_epochs), val_data=eval_ds, eval_fn=eval_fn,
        data_axis='batch', warn=False, progress=progress)
  return out


def main(argv=None):
  import _common  # pylint: disable=import-outside-toplevel
  args = _common.parse_args(NAME, __doc__, argv)
  results = run(progress=True)
  _common.report(args.out, results)
  return results


if __name__ == "__main__":
  main()
