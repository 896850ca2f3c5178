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

"""Flax's NNX MiniGPT tutorial, on its mesh, range-tested as it is.

Upstream: github.com/google/flax, docs_nnx/examples/minigpt.md (the source of
the "Train a miniGPT language model with JAX" notebook) at commit
18f8f311c275d57f46d95e41b15aa97b454754c0. Verbatim: ``TransformerBlock``,
``TokenAndPositionEmbedding``, ``MiniGPT``, ``create_model``, ``loss_fn``,
``train_step``, the mesh (``jax.set_mesh(jax.make_mesh(..., ('batch',
'model')))``), the optimizer and ``prep_target_batch``: explicit sharding
(parameters laid out with ``out_sharding`` metadata, ``reshard`` to the
batch's sharding), dropout holding its own ``nnx.Rngs``, tuple batches
``(inputs, targets)``. Changed, and marked CHANGED below: the
hyperparameters (vocabulary 32 instead of GPT-2's 50257, sequences of 16,
width 16, 2 heads), the mesh (its (2, 1) on two devices, the tutorial's
4x2 on eight, else 1x1; set with ``with`` for the calls instead of for the
whole notebook), and the data (synthetic counting sequences instead of
TinyStories through tiktoken and Grain).

Glue: none. ``optimizer=optax.adam`` names upstream's optimizer for the
range tests to drive (upstream's ``optax.adam(1e-3)`` fixes the LR);
``train`` takes upstream's ``nnx.Optimizer`` as it is. The classic test and
``train`` run on the mesh (batches split over ``'batch'``, parameters kept
on ``'model'``); the parallel test runs its copies side by side on the same
mesh, each laid out as the model.

  python examples/real_code/nnx_minigpt.py   # -> runs/examples/real_code/nnx_minigpt/
"""

import jax
import jax.numpy as jnp

import flax.nnx as nnx
import numpy as np
import optax

from jax.sharding import PartitionSpec as P, reshard

import optax_clr as clr

# --- upstream, verbatim (docs_nnx/examples/minigpt.md) ----------------------
tokenizer = None  # CHANGED: tiktoken.get_encoding("gpt2"); only generate_text uses it


class TransformerBlock(nnx.Module):
    """ A single Transformer block.

    Each Transformer block processes input sequences via self-attention and feed-forward networks.

    Args:
        embed_dim (int): Embedding dimensionality.
        num_heads (int): Number of attention heads.
        ff_dim (int): Dimensionality of the feed-forward network.
        rngs (flax.nnx.Rngs): A Flax NNX stream of JAX PRNG keys.
        rate (float): Dropout rate. Defaults to 0.1.
    """
    def __init__(self, embed_dim: int, num_heads: int, ff_dim: int, *, rngs: nnx.Rngs, rate: float = 0.1):
        self.mha = nnx.MultiHeadAttention(num_heads=num_heads,
              in_features=embed_dim,
              kernel_metadata={'out_sharding': P(None, 'model')},
              bias_metadata={'out_sharding': P('model')},
              rngs=rngs)
        self.dropout1 = nnx.Dropout(rate=rate, rngs=rngs)
        self.layer_norm1 = nnx.LayerNorm(epsilon=1e-6,
             num_features=embed_dim,
             scale_metadata={'out_sharding': P('model')},
             bias_metadata={'out_sharding': P('model')},
             rngs=rngs)
        self.mlp = nnx.Sequential(
            nnx.Linear(in_features=embed_dim,
              out_features=ff_dim,
              kernel_metadata={'out_sharding': P(None, 'model')},
              bias_metadata={'out_sharding': P('model')},
              rngs=rngs),
            nnx.relu, 
            nnx.Linear(in_features=ff_dim,
              out_features=embed_dim,
              kernel_metadata={'out_sharding': P(None, 'model')},
              bias_metadata={'out_sharding': P('model')},
              rngs=rngs),
            nnx.Dropout(rate=rate, rngs=rngs))
        self.layer_norm2 = nnx.LayerNorm(epsilon=1e-6,
         num_features=embed_dim,
         scale_metadata={'out_sharding': P('model')},
         bias_metadata={'out_sharding': P('model')},
         rngs=rngs)


    # Apply the Transformer block to the input sequence.
    def __call__(self, inputs):
        # Instantiate the causal attention mask.
        attention_output = self.mha(
            inputs_q=inputs,
            is_causal=True,
            decode=False
        )
        attention_output = self.dropout1(attention_output)
        out1 = self.layer_norm1(inputs + attention_output)
        ffn_output = self.mlp(out1)
        return self.layer_norm2(out1 + ffn_output)

class TokenAndPositionEmbedding(nnx.Module):
    """ Combines token embeddings (words in an input sentence) with
    positional embeddings (the position of each word in a sentence).

    Args:
        maxlen (int): Matimum sequence length.
        vocal_size (int): Vocabulary size.
        embed_dim (int): Embedding dimensionality.
        rngs (flax.nnx.Rngs): A Flax NNX stream of JAX PRNG keys.
    """
    def __init__(self, maxlen: int, vocab_size: int, embed_dim: int, *, rngs: nnx.Rngs):
        # Initialize token embeddings (using `flax.nnx.Embed`).
        # Each unique word has an embedding vector.
        self.token_emb = nnx.Embed(num_embeddings=vocab_size, features=embed_dim, rngs=rngs)
        # Initialize positional embeddings (using `flax.nnx.Embed`).
        self.pos_emb = nnx.Embed(num_embeddings=maxlen, features=embed_dim, rngs=rngs)

    # Takes a token sequence (integers) and returns the combined token and positional embeddings.
    def __call__(self, x):
        # Generate a sequence of positions for the input tokens.
        positions = jnp.arange(0, x.shape[1])[None, :]
        # Look up the positional embeddings for each position in the input sequence.
        position_embedding = self.pos_emb(positions)
        # Look up the token embeddings for each token in the input sequence.
        token_embedding = self.token_emb(x, out_sharding=jax.typeof(x).sharding)
        # Combine token and positional embeddings.
        return token_embedding + position_embedding

class MiniGPT(nnx.Module):
    """ A miniGPT transformer model, inherits from `flax.nnx.Module`.

    Args:
        maxlen (int): Maximum sequence length.
        vocab_size (int): Vocabulary size.
        embed_dim (int): Embedding dimensionality.
        num_heads (int): Number of attention heads.
        feed_forward_dim (int): Dimensionality of the feed-forward network.
        num_transformer_blocks (int): Number of transformer blocks. Each block contains attention and feed-forward networks.
        rngs (nnx.Rngs): A Flax NNX stream of JAX PRNG keys.
    """
    # Initialize miniGPT model components.
    def __init__(self, maxlen: int, vocab_size: int, embed_dim: int, num_heads: int, feed_forward_dim: int, num_transformer_blocks: int, rngs: nnx.Rngs):
        # Initiliaze the `TokenAndPositionEmbedding` that combines token and positional embeddings.
        self.embedding_layer = TokenAndPositionEmbedding(
                    maxlen, vocab_size, embed_dim, rngs=rngs
                )
        # Create a list of `TransformerBlock` instances.
        # Each block processes input sequences using attention and feed-forward networks.
        self.transformer_blocks = nnx.Sequential(*[TransformerBlock(
            embed_dim, num_heads, feed_forward_dim, rngs=rngs
        ) for _ in range(num_transformer_blocks)])
        # Initialize the output `flax.nnx.Linear` layer producing logits over the vocabulary for next-token prediction.
        self.output_layer = nnx.Linear(in_features=embed_dim,
                                       out_features=vocab_size,
                                       kernel_metadata={'out_sharding': P(None, 'model')},
                                       bias_metadata={'out_sharding': P('model')},
                                       rngs=rngs)

    def __call__(self, inputs):
        # Pass the input tokens through the `embedding_layer` to get token embeddings.
        x = self.embedding_layer(inputs)
        # Apply each transformer block sequentially to the embedded input
        x = self.transformer_blocks(x)
        # Pass the output of the transformer blocks through the output layer,
        # and obtain logits for each token in the vocabulary (for next token prediction).
        return reshard(self.output_layer(x), jax.typeof(inputs).sharding)

    def sample_from(self, logits):
        logits, indices = jax.lax.top_k(logits, k=top_k)
        logits = nnx.softmax(logits)
        return jax.random.choice(jax.random.PRNGKey(0), indices, p=logits)

    @nnx.jit(donate_argnums=(1,))
    def generate_step(self, padded_tokens, sample_index):
        logits = self(padded_tokens)
        next_token = self.sample_from(logits[0][sample_index])
        return next_token

    def generate_text(self, max_tokens, start_tokens):
        generated = []
        for i in range(max_tokens):
            sample_index = len(start_tokens) + len(generated) - 1

            padded_tokens = jnp.array((start_tokens + generated + [0] * (maxlen - len(start_tokens) - len(generated))))[None, :]
            next_token = int(self.generate_step(padded_tokens, sample_index))
            if next_token == tokenizer.encode('<|endoftext|>', allowed_special={'<|endoftext|>'})[0]:
              break
            generated.append(next_token)
        return tokenizer.decode(start_tokens + generated)

# Creates the miniGPT model with 4 transformer blocks.
def create_model(rngs):
    return MiniGPT(maxlen, vocab_size, embed_dim, num_heads, feed_forward_dim, num_transformer_blocks=4, rngs=rngs)


# CHANGED: tiny hyperparameters (upstream: tokenizer.n_vocab, 8, 256, 256, 8,
# 256, 144, 1, 10).
vocab_size = 32
num_transformer_blocks = 8
maxlen = 16
embed_dim = 16
num_heads = 2
feed_forward_dim = 16
batch_size = 8
num_epochs = 1
top_k = 10


# Defines the loss function using `optax.softmax_cross_entropy_with_integer_labels`.
def loss_fn(model, batch):
    logits = model(batch[0])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits=logits, labels=batch[1]).mean()
    return loss, logits

# Define the training step with the `flax.nnx.jit` transformation decorator.
@nnx.jit(donate_argnums=(0, 1, 3))
def train_step(model: MiniGPT, optimizer: nnx.Optimizer, metrics: nnx.MultiMetric, batch):
    grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
    (loss, logits), grads = grad_fn(model, batch)
    metrics.update(loss=loss, logits=logits, lables=batch[1])
    optimizer.update(model, grads)


# The training loop's target preparation, verbatim.
prep_target_batch = jax.vmap(
    lambda tokens: jnp.concatenate((tokens[1:], jnp.array([0])))
)


# --- CHANGED: synthetic data instead of TinyStories --------------------------


def text_batches(num_batches: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """Batches ``(input_batch, target_batch)`` as the training loop builds them
  (``prep_target_batch``), of counting sequences ``s, s+1, ...`` (mod the
  vocabulary, 0 kept for padding)."""
  rng = np.random.default_rng(seed)
  start = rng.integers(1, vocab_size, (num_batches * batch_size, 1))
  tokens = (start + np.arange(maxlen)) % (vocab_size - 1) + 1
  out = []
  for i in range(num_batches):
    input_batch = jnp.asarray(tokens[i * batch_size:(i + 1) * batch_size], jnp.int32)
    out.append((np.asarray(input_batch), np.asarray(prep_target_batch(input_batch))))
  return out


# --- the range tests and training on the program as it is -------------------

CALLS = ("range_test", "parallel_range_test", "train")
NAME = "nnx_minigpt"


def mesh_shape() -> tuple[int, int]:
  """CHANGED: the tutorial's 4x2 (``batch`` x ``model``) on 8 devices, its
  notebook's (2, 1) on 2, else 1x1."""
  return {8: (4, 2), 2: (2, 1)}.get(jax.device_count(), (1, 1))


def run(*, calls=CALLS, num_steps: int = 40, num_lrs: int = 8,
        sweep_steps: int = 10, train_batches: int = 8,
        group_size: int | str = "auto", progress: bool = False) -> dict:
  """The ``calls`` (``range_test``, ``parallel_range_test``, ``train``) on
  upstream's model, loss and optimizer, on the mesh. Returns the results by
  call name (and ``"trained"``, the model ``train`` returns)."""
  text_dl = text_batches(num_steps, 0)
  out = {}
  # Upstream's mesh, CHANGED: its shape, and set for this block only
  # (upstream sets it for the whole notebook with `_ = jax.set_mesh(...)`).
  with jax.set_mesh(jax.make_mesh(mesh_shape(), ('batch', 'model'))):
    # Upstream's training section: the model and its optimizer.
    model = create_model(rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    if "range_test" in calls:
      out["range_test"] = clr.range_test(
          model, loss_fn, text_dl, optimizer=optax.adam, start_lr=1e-4,
          end_lr=10.0, num_steps=num_steps, progress=progress)
    if "parallel_range_test" in calls:
      out["parallel_range_test"] = clr.parallel_range_test(
          model, loss_fn, text_dl, optimizer=optax.adam, num_lrs=num_lrs,
          min_lr=1e-4, max_lr=1.0, num_steps=sweep_steps,
          group_size=group_size, progress=progress)
    if "train" in calls:
      out["trained"], out["train"] = clr.train(
          model, loss_fn, text_dl[:train_batches], optimizer=optimizer,
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
