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

"""Flax's lm1b example (Linen), range-tested as it is.

Upstream: github.com/google/flax, examples/lm1b/train.py and utils.py at
commit 18f8f311c275d57f46d95e41b15aa97b454754c0 (models.py is copied
verbatim as lm1b_models.py). Verbatim: the LR schedule, the weighted cross
entropy, accuracy and metrics, ``train_step``, ``eval_step`` and the
initialisation (``init_train_state``, ``unbox_logicallypartioned_trainstate``):
a Linen ``TransformerLM`` on a plain params pytree, packed dict batches
(``inputs``, ``inputs_segmentation``, ``inputs_position``, ``targets...``),
a dropout rng and a metrics dict whose ``"loss"`` is a *sum* over tokens.
Changed, and marked CHANGED below: the configuration (a namespace instead of
``ml_collections``; a 1-layer, 16-wide model over a 32-token vocabulary,
sequences of 16) and the data (synthetic counting sentences, packed as
``input_pipeline.pack_dataset`` packs them, instead of TFDS lm1b with a
SentencePiece vocabulary); ``models`` is imported from lm1b_models.py.

Glue: two lines. The loss lives inside ``train_step`` as a closure over
the batch and the dropout rng; lifting it to ``loss_fn(params, batch,
dropout_rng)`` takes a new ``def`` line (the lines under it are
``train_step``'s, one indentation level out, its ``return mean_loss,
logits`` included; ``train_step``'s ``fold_in(dropout_rng, state.step)`` is
left to the library, whose key of step t is ``fold_in(fold_in(key(seed),
copy), t)``: upstream's scheme with ``dropout_rng = fold_in(key(seed),
copy)``). The second line is the AdamW factory the range tests drive
(upstream's optimizer holds the warmup-rsqrt schedule, which ``train`` takes
as it is). The recorded loss is the mean loss; the validation metrics are
upstream's ``eval_step`` (``eval_fn=``), whose ``"loss"`` is summed over
tokens, next to its ``"denominator"``.

  python examples/real_code/lm1b.py   # -> runs/examples/real_code/lm1b/
"""

# pytype: disable=wrong-arg-count
# pytype: disable=attribute-error

import functools
import types

from flax import linen as nn
from flax.training import common_utils
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax

import lm1b_models as models  # CHANGED: upstream's `import models`
import optax_clr as clr

# --- upstream, verbatim (examples/lm1b/train.py) ----------------------------


def rsqrt_schedule(
    init_value: float,
    shift: int = 0,
):
  """Applies a reverse square-root schedule.

  The reverse square root schedule is simply `lr = init_value / sqrt(step)`.

  Args:
    init_value: Base learning rate (before applying the rsqrt schedule).
    shift: How many steps the rsqrt should be shifted. Shifting the rsqrt
      schedule makes it less steep in the beginning (close to 0).

  Returns:
    A schedule that applies the reverse square root.
  """

  def schedule(count):
    return init_value * (count + shift) ** -0.5 * shift**0.5

  return schedule


def create_learning_rate_schedule(learning_rate: float, warmup_steps: int):
  """Creates a rsqrt schedule with linear warmup."""
  return optax.join_schedules(
      [
          optax.linear_schedule(
              init_value=0,
              end_value=learning_rate,
              transition_steps=warmup_steps,
          ),
          rsqrt_schedule(init_value=learning_rate, shift=warmup_steps),
      ],
      boundaries=[warmup_steps],
  )


def compute_weighted_cross_entropy(
    logits, targets, weights=None, label_smoothing=0.0
):
  """Compute weighted cross entropy and entropy for log probs and targets.

  Args:
   logits: [batch, length, num_classes] float array.
   targets: categorical targets [batch, length] int array.
   weights: None or array of shape [batch, length].
   label_smoothing: label smoothing constant, used to determine the on and off
     values.

  Returns:
    Tuple of scalar loss and batch normalizing factor.
  """
  if logits.ndim != targets.ndim + 1:
    raise ValueError(
        "Incorrect shapes. Got shape %s logits and %s targets"
        % (str(logits.shape), str(targets.shape))
    )
  vocab_size = logits.shape[-1]
  confidence = 1.0 - label_smoothing
  low_confidence = (1.0 - confidence) / (vocab_size - 1)
  normalizing_constant = -(
      confidence * jnp.log(confidence)
      + (vocab_size - 1) * low_confidence * jnp.log(low_confidence + 1e-20)
  )
  soft_targets = common_utils.onehot(
      targets, vocab_size, on_value=confidence, off_value=low_confidence
  )

  loss = -jnp.sum(soft_targets * nn.log_softmax(logits), axis=-1)
  loss = loss - normalizing_constant

  normalizing_factor = np.prod(targets.shape)
  if weights is not None:
    loss = loss * weights
    normalizing_factor = weights.sum()

  return loss.sum(), normalizing_factor


def compute_weighted_accuracy(logits, targets, weights=None):
  """Compute weighted accuracy for log probs and targets.

  Args:
   logits: [batch, length, num_classes] float array.
   targets: categorical targets [batch, length] int array.
   weights: None or array of shape [batch, length]

  Returns:
    Tuple of scalar loss and batch normalizing factor.
  """
  if logits.ndim != targets.ndim + 1:
    raise ValueError(
        "Incorrect shapes. Got shape %s logits and %s targets"
        % (str(logits.shape), str(targets.shape))
    )
  loss = jnp.equal(jnp.argmax(logits, axis=-1), targets)
  normalizing_factor = np.prod(logits.shape[:-1])
  if weights is not None:
    loss = loss * weights
    normalizing_factor = weights.sum()

  return loss.sum(), normalizing_factor


def compute_metrics(logits, labels, weights, label_smoothing=0.0):
  """Compute summary metrics."""
  loss, weight_sum = compute_weighted_cross_entropy(
      logits, labels, weights, label_smoothing
  )
  acc, _ = compute_weighted_accuracy(logits, labels, weights)
  metrics = {
      "loss": loss,
      "accuracy": acc,
      "denominator": weight_sum,
  }
  return metrics


def train_step(
    state,
    batch,
    config,
    learning_rate_fn,
    label_smoothing=0.0,
    dropout_rng=None,
):
  """Perform a single training step."""
  # X_position and X_segmentation are needed only when using "packed examples"
  # where multiple sequences are packed into the same example with this
  # metadata.
  # if such features are not present they are ignored and the example is treated
  # like a normal, unpacked sequence example.
  train_keys = ["inputs", "inputs_position", "inputs_segmentation"]
  (inputs, inputs_positions, inputs_segmentation) = (
      batch.get(k, None) for k in train_keys
  )

  weights = jnp.where(inputs > 0, 1, 0).astype(jnp.float32)

  dropout_rng = jax.random.fold_in(dropout_rng, state.step)

  def loss_fn(params):
    """loss function used for training."""
    logits = models.TransformerLM(config).apply(
        {"params": params},
        inputs,
        inputs_positions=inputs_positions,
        inputs_segmentation=inputs_segmentation,
        rngs={"dropout": dropout_rng},
    )

    loss, weight_sum = compute_weighted_cross_entropy(
        logits, inputs, weights, label_smoothing
    )
    mean_loss = loss / weight_sum
    return mean_loss, logits

  step = state.step
  lr = learning_rate_fn(step)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (_, logits), grads = grad_fn(state.params)
  new_state = state.apply_gradients(grads=grads)
  metrics = compute_metrics(logits, inputs, weights)
  metrics["learning_rate"] = lr

  return new_state, metrics


def eval_step(params, batch, config, label_smoothing=0.0):
  """Calculate evaluation metrics on a batch."""
  inputs = batch["inputs"]
  weights = jnp.where(inputs > 0, 1.0, 0.0)
  logits = models.TransformerLM(config).apply({"params": params}, inputs)

  return compute_metrics(logits, inputs, weights, label_smoothing)


# --- upstream, verbatim (examples/lm1b/utils.py) ----------------------------


def unbox_logicallypartioned_trainstate(
    boxed_train_state: train_state.TrainState,
):
  """Unboxes the flax.LogicallyPartitioned pieces in a train state.

  Args:
    boxed_train_state: a train state that includes LogicallyPartitioned
      leaves.
  Returns:
    a TrainState where all all LogicallyPartitioned leaves have been unboxed.
  """
  return jax.tree_util.tree_map(
      lambda x: x.unbox() if isinstance(x, nn.spmd.LogicallyPartitioned) else x,
      boxed_train_state,
      is_leaf=lambda k: isinstance(k, nn.spmd.LogicallyPartitioned),
  )


def init_train_state(model, tx, config, key):
  """
  We pass in "static" objects like model, tx, config as JAX compares them by
  object hash, and instantiating them inside causes pjit top-level annotations
  to fail to match as pytree prefixes if we re-instantiate.

  Args: model, tx, config, key
  """
  input_shape = (config.per_device_batch_size, config.max_target_length)
  initial_variables = jax.jit(model.init)(
      key, jnp.ones(input_shape, jnp.float32)
  )

  state = train_state.TrainState.create(
      apply_fn=model.apply, params=initial_variables["params"], tx=tx
  )
  return state


# --- CHANGED: configuration and synthetic packed data ------------------------

EOS_ID = 2  # temperature_sampler.EOS_ID

# configs/default.py with tiny values.
config = types.SimpleNamespace(
    vocab_size=32,
    per_device_batch_size=8,
    learning_rate=0.0016,
    warmup_steps=1000,
    label_smoothing=0.0,
    weight_decay=0.1,
    max_target_length=16,
    max_eval_target_length=16,
    logits_via_embedding=False,
    num_layers=1,
    qkv_dim=16,
    emb_dim=16,
    mlp_dim=32,
    num_heads=2,
    dropout_rate=0.1,
    attention_dropout_rate=0.1,
    use_bfloat16=False,
    seed=0,
)

# train_and_evaluate's model configurations.
vocab_size = config.vocab_size
train_config = models.TransformerConfig(
    vocab_size=vocab_size,
    output_vocab_size=vocab_size,
    logits_via_embedding=config.logits_via_embedding,
    dtype=jnp.bfloat16 if config.use_bfloat16 else jnp.float32,
    emb_dim=config.emb_dim,
    num_heads=config.num_heads,
    num_layers=config.num_layers,
    qkv_dim=config.qkv_dim,
    mlp_dim=config.mlp_dim,
    max_len=max(config.max_target_length, config.max_eval_target_length),
    dropout_rate=config.dropout_rate,
    attention_dropout_rate=config.attention_dropout_rate,
    deterministic=False,
    decode=False,
    kernel_init=nn.initializers.xavier_uniform(),
    bias_init=nn.initializers.normal(stddev=1e-6),
)
eval_config = train_config.replace(deterministic=True)


def packed_batches(num_batches: int, seed: int) -> list[dict[str, np.ndarray]]:
  """Counting sentences (``s, s+1, ...`` over tokens 3..V-1, then EOS) of 3
  to 8 tokens, packed into rows of ``max_target_length`` as
  ``input_pipeline.pack_dataset`` packs them: ``<key>``, ``<key>_segmentation``
  (1, 2, ... per sentence, 0 for padding) and ``<key>_position`` for
  ``inputs`` and ``targets`` (the same text, as lm1b's pipeline has it)."""
  rng = np.random.default_rng(seed)
  rows, length = num_batches * config.per_device_batch_size, config.max_target_length
  out = {k: np.zeros((rows, length), np.int32)
         for k in ("inputs", "inputs_segmentation", "inputs_position")}
  for r in range(rows):
    at, segment = 0, 1
    while True:
      n = int(rng.integers(3, 9))
      if at + n > length:
        break
      start = int(rng.integers(0, vocab_size - 3))
      words = 3 + (start + np.arange(n - 1)) % (vocab_size - 3)
      out["inputs"][r, at:at + n] = np.append(words, EOS_ID)
      out["inputs_segmentation"][r, at:at + n] = segment
      out["inputs_position"][r, at:at + n] = np.arange(n)
      at, segment = at + n, segment + 1
  for k in ("", "_segmentation", "_position"):
    out["targets" + k] = out["inputs" + k]
  b = config.per_device_batch_size
  return [{k: v[i:i + b] for k, v in out.items()} for i in range(0, rows, b)]


# --- GLUE: train_step's loss, lifted out of its closure ----------------------
# After the GLUE line: train_step's lines, one indentation level out.


def loss_fn(params, batch, dropout_rng, config=train_config, label_smoothing=0.0):  # GLUE 1/2
  train_keys = ["inputs", "inputs_position", "inputs_segmentation"]
  (inputs, inputs_positions, inputs_segmentation) = (
      batch.get(k, None) for k in train_keys
  )

  weights = jnp.where(inputs > 0, 1, 0).astype(jnp.float32)

  logits = models.TransformerLM(config).apply(
      {"params": params},
      inputs,
      inputs_positions=inputs_positions,
      inputs_segmentation=inputs_segmentation,
      rngs={"dropout": dropout_rng},
  )

  loss, weight_sum = compute_weighted_cross_entropy(
      logits, inputs, weights, label_smoothing
  )
  mean_loss = loss / weight_sum
  return mean_loss, logits


# --- the range tests and training on the program as it is -------------------

CALLS = ("range_test", "parallel_range_test", "train")
NAME = "lm1b"


def init_params(seed: int = config.seed):
  """train_and_evaluate's initialisation (without the mesh): the unboxed
  params and upstream's optimizer (AdamW on the warmup-rsqrt schedule)."""
  rng = jax.random.PRNGKey(seed)
  rng, init_rng = jax.random.split(rng)
  m = models.TransformerLM(eval_config)
  learning_rate_fn = create_learning_rate_schedule(
      learning_rate=config.learning_rate, warmup_steps=config.warmup_steps
  )
  optimizer = optax.adamw(
      learning_rate_fn,
      b1=0.9,
      b2=0.98,
      eps=1e-9,
      weight_decay=config.weight_decay,
  )
  state = unbox_logicallypartioned_trainstate(
      init_train_state(m, optimizer, config, init_rng))
  return state, learning_rate_fn


def run(*, calls=CALLS, num_steps: int = 40, num_lrs: int = 8,
        sweep_steps: int = 10, train_batches: int = 8,
        group_size: int | str = "auto", progress: bool = False) -> dict:
  """The ``calls`` (``range_test``, ``parallel_range_test``, ``train``) on
  upstream's params, loss and optimizer. Returns the results by call name
  (and ``"trained"``, the params ``train`` returns)."""
  state, _ = init_params()
  params, optimizer = state.params, state.tx
  train_ds, eval_ds = packed_batches(num_steps, 0), packed_batches(1, 1)

  tx = lambda lr: optax.adamw(lr, b1=0.9, b2=0.98, eps=1e-9, weight_decay=config.weight_decay)  # GLUE 2/2  # noqa: E731,E501

  out = {}
  if "range_test" in calls:
    out["range_test"] = clr.range_test(
        params, loss_fn, train_ds, optimizer=tx, start_lr=1e-4, end_lr=10.0,
        num_steps=num_steps, val_data=eval_ds, eval_every=num_steps // 2,
        eval_fn=functools.partial(eval_step, config=eval_config),
        progress=progress)
  if "parallel_range_test" in calls:
    out["parallel_range_test"] = clr.parallel_range_test(
        params, loss_fn, train_ds, optimizer=tx, num_lrs=num_lrs,
        min_lr=1e-4, max_lr=1.0, num_steps=sweep_steps,
        group_size=group_size, progress=progress)
  if "train" in calls:
    out["trained"], out["train"] = clr.train(
        params, loss_fn, train_ds[:train_batches], optimizer=optimizer,
        num_epochs=1, warn=False, progress=progress)
  return out


def main(argv=None):
  import _common  # pylint: disable=import-outside-toplevel
  args = _common.parse_args(NAME, __doc__, argv)
  results = run(progress=True)
  _common.report(args.out, results)
  return results


if __name__ == "__main__":
  main()
