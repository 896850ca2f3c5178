"""Four small tasks of different kinds, for benchmarks of the suggestions.

Each :class:`Task` knows how to build its model for a seed, its loss, its
data, its optimizer factory (the LR driven; the momentum-like argument as a
keyword, so that schedules may cycle it), its batch size, a training budget
(steps), and whether its validation metric is an accuracy (higher is
better) or a loss.

* ``digits-sgd``: the bundled CNN on the embedded 8x8 digits, SGD with
  momentum 0.9.
* ``digits-adam``: the same with Adam.
* ``regression-mlp``: a 2-hidden-layer MLP on a synthetic nonlinear
  regression (8 inputs), SGD with momentum; metric: validation MSE.
* ``char-lm``: a one-block causal transformer on a bundled text (generated
  from a fixed grammar, so it needs no download), Adam; metric: validation
  cross-entropy per character.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optax_clr as clr


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  make_model: Callable[[int], Any]
  loss_fn: Callable[..., Any]
  train: Any
  val: Any
  batch_size: int
  optimizer: Callable[..., Any]
  momentum_name: str
  budget: int
  metric: str          # "accuracy" or "loss"
  higher_is_better: bool


def sgd(learning_rate, momentum=0.9):
  return optax.sgd(learning_rate, momentum=momentum)


def adam(learning_rate, b1=0.9):
  return optax.adam(learning_rate, b1=b1)


# ----------------------------------------------------------------------------
# Digits.


def digits_task(optimizer: str) -> Task:
  train, val = clr.load_digits().split(0.2, seed=0)
  factory, name = (sgd, "momentum") if optimizer == "sgd" else (adam, "b1")
  return Task(
      name=f"digits-{optimizer}",
      make_model=lambda seed: clr.make_model(
          "cnn", num_classes=10, in_channels=1, seed=seed),
      loss_fn=clr.cross_entropy_loss, train=train.as_batch(),
      val=val.as_batch(), batch_size=64, optimizer=factory,
      momentum_name=name, budget=3 * (len(train) // 64), metric="accuracy",
      higher_is_better=True)


# ----------------------------------------------------------------------------
# Regression MLP.


class MLP(nnx.Module):

  def __init__(self, rngs: nnx.Rngs, width: int = 64):
    self.l1 = nnx.Linear(8, width, rngs=rngs)
    self.l2 = nnx.Linear(width, width, rngs=rngs)
    self.l3 = nnx.Linear(width, 1, rngs=rngs)

  def __call__(self, x):
    x = jax.nn.relu(self.l1(x))
    x = jax.nn.relu(self.l2(x))
    return self.l3(x)[:, 0]


def mse_loss(model, batch):
  return jnp.mean((model(batch["x"]) - batch["y"]) ** 2)


def regression_data(n: int, seed: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 8)).astype(np.float32)
  w = np.random.default_rng(123).normal(size=(8, 4))
  y = np.sin(x @ w).sum(1) + 0.5 * (x[:, 0] * x[:, 1]) + 0.1 * rng.normal(
      size=n)
  return {"x": x, "y": y.astype(np.float32)}


def regression_task() -> Task:
  return Task(
      name="regression-mlp",
      make_model=lambda seed: MLP(nnx.Rngs(seed)), loss_fn=mse_loss,
      train=regression_data(4096, 0), val=regression_data(1024, 1),
      batch_size=64, optimizer=sgd, momentum_name="momentum",
      budget=5 * 64, metric="loss", higher_is_better=False)


# ----------------------------------------------------------------------------
# Character-level language model.

_WORDS = {
    "det": ["the", "a", "one", "every", "no", "some"],
    "adj": ["small", "quick", "green", "silent", "old", "bright", "heavy",
            "curious", "distant", "warm"],
    "noun": ["model", "river", "garden", "signal", "machine", "teacher",
             "window", "forest", "number", "letter", "engine", "child"],
    "verb": ["follows", "sees", "builds", "carries", "finds", "opens",
             "learns", "moves", "keeps", "writes"],
    "adv": ["slowly", "again", "today", "quietly", "often", "never"],
    "prep": ["near", "under", "beyond", "with", "after", "inside"],
}


def corpus(num_sentences: int = 3000, seed: int = 0) -> str:
  """Sentences from a fixed grammar: det adj? noun verb det adj? noun
  (prep det noun)? adv?. Deterministic for a seed."""
  rng = np.random.default_rng(seed)
  pick = lambda k: _WORDS[k][rng.integers(len(_WORDS[k]))]  # noqa: E731
  out = []
  for _ in range(num_sentences):
    words = [pick("det")]
    if rng.random() < 0.5:
      words.append(pick("adj"))
    words += [pick("noun"), pick("verb"), pick("det")]
    if rng.random() < 0.4:
      words.append(pick("adj"))
    words.append(pick("noun"))
    if rng.random() < 0.3:
      words += [pick("prep"), pick("det"), pick("noun")]
    if rng.random() < 0.3:
      words.append(pick("adv"))
    out.append(" ".join(words) + ".")
  return " ".join(out)


class CharTransformer(nnx.Module):
  """One causal self-attention block over characters."""

  def __init__(self, vocab: int, context: int, rngs: nnx.Rngs, d: int = 32):
    self.tok = nnx.Embed(vocab, d, rngs=rngs)
    self.pos = nnx.Embed(context, d, rngs=rngs)
    self.norm1 = nnx.LayerNorm(d, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(num_heads=2, in_features=d,
                                       decode=False, rngs=rngs)
    self.norm2 = nnx.LayerNorm(d, rngs=rngs)
    self.ff1 = nnx.Linear(d, 4 * d, rngs=rngs)
    self.ff2 = nnx.Linear(4 * d, d, rngs=rngs)
    self.head = nnx.Linear(d, vocab, rngs=rngs)

  def __call__(self, x):
    t = x.shape[1]
    h = self.tok(x) + self.pos(jnp.arange(t))[None]
    mask = nnx.make_causal_mask(x)
    h = h + self.attn(self.norm1(h), mask=mask)
    h = h + self.ff2(jax.nn.gelu(self.ff1(self.norm2(h))))
    return self.head(h)


def lm_loss(model, batch):
  logits = model(batch["x"])
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["y"]).mean()


def char_task(context: int = 32) -> Task:
  text = corpus()
  chars = sorted(set(text))
  ids = np.array([chars.index(c) for c in text], np.int32)
  split = int(0.9 * ids.size)

  def windows(a, n, seed):
    starts = np.random.default_rng(seed).integers(0, a.size - context - 1, n)
    x = np.stack([a[s:s + context] for s in starts])
    y = np.stack([a[s + 1:s + context + 1] for s in starts])
    return {"x": x, "y": y}

  vocab = len(chars)
  return Task(
      name="char-lm",
      make_model=lambda seed: CharTransformer(vocab, context,
                                              nnx.Rngs(seed)),
      loss_fn=lm_loss, train=windows(ids[:split], 4096, 0),
      val=windows(ids[split:], 512, 1), batch_size=32, optimizer=adam,
      momentum_name="b1", budget=300, metric="loss",
      higher_is_better=False)


def all_tasks() -> list[Task]:
  return [digits_task("sgd"), digits_task("adam"), regression_task(),
          char_task()]


@functools.lru_cache(maxsize=None)
def by_name(name: str) -> Task:
  return {t.name: t for t in all_tasks()}[name]
