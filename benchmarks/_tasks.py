"""Ten small tasks of different kinds, for the suggestions benchmark.

Five kinds of model, each trained twice: once with SGD (momentum 0.9) and
once with Adam, at two batch sizes. The first variant of each kind is in
the **tune** half (the rule book's and ``fit``'s constants may be chosen on
it), the second in the **report** half (numbers quoted as held out):

=====================  ===========================  ==========================
kind                   tune                         report
=====================  ===========================  ==========================
conv net, no BN        ``conv-sgd-b32``             ``conv-adam-b128``
conv net + BatchNorm   ``bn-conv-adam-b32``         ``bn-conv-sgd-b128``
tabular MLP (classes)  ``tabular-sgd-b128``         ``tabular-adam-b32``
regression MLP         ``regression-adam-b128``     ``regression-sgd-b32``
char transformer LM    ``char-lm-adam-b32``         ``char-lm-sgd-b16``
=====================  ===========================  ==========================

Everything is embedded or generated (nothing downloads), small enough for
a 2-core CPU (a step takes a few ms), and non-trivial: learnable structure
plus noise, with validation rows that are never trained on.

* conv: the bundled CNN (``clr.make_model("cnn")``, no normalisation) on
  the embedded 8x8 digits (a fixed 75/25 split); metric: accuracy.
* bn-conv: a 3-conv CNN (8/16/16 channels) with ``nnx.BatchNorm`` on *noisy, shifted* digits
  (each 8x8 digit placed at a random offset in a 12x12 canvas, Gaussian
  pixel noise sd 0.35; 3 noisy copies of every training digit, 2 of every
  held-out one -- the held-out digits never appear in training); metric:
  accuracy.
* tabular: 24 features (12 informative, 6 noisy copies of them, 6 pure
  noise), 6 classes drawn from the softmax of a random 2-layer teacher
  (so the Bayes error is well above 0), an MLP 24-128-128-6; metric:
  accuracy.
* regression: 8 inputs, ``y = sum sin(x W) + 0.5 x0 x1 + noise`` (sd 0.3),
  an MLP 8-64-64-1; metric: validation MSE (lower is better).
* char-lm: a causal transformer (one block, width 32, context 32) over a
  text generated from a fixed grammar, split 90/10 by position; metric:
  validation cross-entropy per character (perplexity = its exp).

Each :class:`Task` knows its model for a seed (the seed sets the initial
weights; the benchmark also uses it for the batch order), its loss
(``(loss, {"accuracy": ...})`` for the classifiers), data, optimizer factory
(the momentum as a keyword, so schedules can cycle it), batch size, budget
(steps; a multiple of 24 so that 6 evaluation points and 4 CLR cycles fall
on whole steps) and its dense fixed-LR grid.
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

TUNE, REPORT = "tune", "report"


@dataclasses.dataclass(frozen=True)
class Task:
  """One benchmark task.

  Attributes:
    name: ``<kind>-<optimizer>-b<batch>``.
    kind: the model kind (``conv``, ``bn-conv``, ``tabular``, ``regression``,
      ``char-lm``).
    half: ``"tune"`` or ``"report"``.
    make_model: seed -> a fresh model.
    loss_fn: ``loss_fn(model, batch) -> loss or (loss, aux)``.
    train, val: training arrays and the validation batch (dicts).
    batch_size: examples per step.
    optimizer: the factory ``learning_rate -> optax transformation``.
    optimizer_name: ``"sgd"`` or ``"adam"``.
    momentum_name: the factory's momentum keyword (``momentum``/``b1``).
    budget: training steps.
    metric: the validation metric ranked on: ``"accuracy"`` or ``"loss"``.
    higher_is_better: True for accuracy.
    quality_kind: ``"accuracy"`` (ratio of accuracies), ``"loss"`` (ratio
      of validation MSE, grid / answer) or ``"perplexity"`` (grid / answer
      perplexity).
    grid: the dense fixed-LR grid (log-spaced).
  """
  name: str
  kind: str
  half: str
  make_model: Callable[[int], Any]
  loss_fn: Callable[..., Any]
  train: Any
  val: Any
  batch_size: int
  optimizer: Callable[..., Any]
  optimizer_name: str
  momentum_name: str
  budget: int
  metric: str
  higher_is_better: bool
  quality_kind: str
  grid: tuple[float, ...]

  @property
  def steps_per_epoch(self) -> int:
    """Steps of one full pass over the training rows."""
    return len(next(iter(self.train.values()))) // self.batch_size

  def replace(self, **changes: Any) -> "Task":
    return dataclasses.replace(self, **changes)


def sgd(learning_rate, momentum=0.9):
  """SGD with (heavy-ball) momentum 0.9."""
  return optax.sgd(learning_rate, momentum=momentum)


def adam(learning_rate, b1=0.9):
  return optax.adam(learning_rate, b1=b1)


FACTORIES = {"sgd": (sgd, "momentum"), "adam": (adam, "b1")}


def lr_grid(low: float, high: float, num: int = 13) -> tuple[float, ...]:
  return tuple(float(x) for x in np.geomspace(low, high, num))


# Grids: 13 LRs, a factor 10**0.25 = 1.78 apart (3 decades); checked on the
# benchmark's own runs (``grid_best_interior`` in the rows); two tasks
# (BatchNorm and the transformer with SGD) need theirs higher.
SGD_GRID = lr_grid(1e-3, 1.0)
ADAM_GRID = lr_grid(1e-4, 1e-1)


def _task(name, kind, half, opt, batch_size, budget, *, make_model, loss_fn,
          train, val, metric="accuracy", quality_kind=None, grid=None):
  factory, mom = FACTORIES[opt]
  return Task(
      name=name, kind=kind, half=half, make_model=make_model,
      loss_fn=loss_fn, train=train, val=val, batch_size=batch_size,
      optimizer=factory, optimizer_name=opt, momentum_name=mom,
      budget=budget, metric=metric, higher_is_better=metric == "accuracy",
      quality_kind=quality_kind or metric,
      grid=grid or (SGD_GRID if opt == "sgd" else ADAM_GRID))


def classification_loss(model, batch):
  logits = model(batch["x"])
  loss = optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["y"]).mean()
  return loss, {"accuracy": (jnp.argmax(logits, -1) == batch["y"]).mean()}


# ----------------------------------------------------------------------------
# Conv net without normalisation: the bundled CNN on the digits.


@functools.lru_cache(maxsize=None)
def _digits_split() -> tuple[dict, dict]:
  train, val = clr.load_digits().split(0.25, seed=0)
  return train.as_batch(), val.as_batch()


def conv_task(opt: str, batch_size: int, budget: int, half: str) -> Task:
  train, val = _digits_split()
  return _task(
      f"conv-{opt}-b{batch_size}", "conv", half, opt, batch_size, budget,
      make_model=lambda seed: clr.make_model(
          "cnn", num_classes=10, in_channels=1, seed=seed),
      loss_fn=clr.cross_entropy_loss, train=train, val=val)


# ----------------------------------------------------------------------------
# Conv net with BatchNorm: noisy, shifted digits in a 12x12 canvas.


def noisy_digits(batch: dict, copies: int, seed: int,
                 noise: float = 0.35) -> dict[str, np.ndarray]:
  """``copies`` noisy copies of every digit: placed at a random offset
  (0..4 pixels each way) in a 12x12 canvas, plus Gaussian pixel noise."""
  rng = np.random.default_rng(seed)
  images, labels = batch["image"], batch["label"]
  n = images.shape[0]
  out = np.zeros((copies * n, 12, 12, 1), np.float32)
  for c in range(copies):
    dy, dx = rng.integers(0, 5, size=(2, n))
    for i in range(n):
      out[c * n + i, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8] = images[i]
  out += noise * rng.normal(size=out.shape).astype(np.float32)
  return {"x": out, "y": np.tile(np.asarray(labels, np.int32), copies)}


class BNConv(nnx.Module):
  """conv3x3(8)-BN-relu, conv3x3(16)-BN-relu, maxpool 2, conv3x3(16)-BN-
  relu, global mean pool, linear(10). BatchNorm momentum 0.9 (running
  statistics settle within a short budget)."""

  def __init__(self, rngs: nnx.Rngs, width: int = 8):
    bn = functools.partial(nnx.BatchNorm, momentum=0.9, rngs=rngs)
    w = width
    self.c1 = nnx.Conv(1, w, (3, 3), rngs=rngs)
    self.b1 = bn(w)
    self.c2 = nnx.Conv(w, 2 * w, (3, 3), rngs=rngs)
    self.b2 = bn(2 * w)
    self.c3 = nnx.Conv(2 * w, 2 * w, (3, 3), rngs=rngs)
    self.b3 = bn(2 * w)
    self.head = nnx.Linear(2 * w, 10, rngs=rngs)

  def __call__(self, x):
    x = jax.nn.relu(self.b1(self.c1(x)))
    x = jax.nn.relu(self.b2(self.c2(x)))
    x = nnx.max_pool(x, (2, 2), (2, 2))
    x = jax.nn.relu(self.b3(self.c3(x)))
    return self.head(x.mean(axis=(1, 2)))


@functools.lru_cache(maxsize=None)
def _noisy_digits_split() -> tuple[dict, dict]:
  train, val = _digits_split()
  return noisy_digits(train, 3, seed=10), noisy_digits(val, 2, seed=11)


def bn_conv_task(opt: str, batch_size: int, budget: int, half: str,
                 grid: tuple[float, ...] | None = None) -> Task:
  train, val = _noisy_digits_split()
  return _task(
      f"bn-conv-{opt}-b{batch_size}", "bn-conv", half, opt, batch_size,
      budget, make_model=lambda seed: BNConv(nnx.Rngs(seed)),
      loss_fn=classification_loss, train=train, val=val, grid=grid)


# ----------------------------------------------------------------------------
# Tabular classification.


@functools.lru_cache(maxsize=None)
def tabular_data(n_train: int = 6000, n_val: int = 2000
                 ) -> tuple[dict, dict]:
  """24 features: 12 informative (standard normal), 6 noisy copies of the
  first 6 (noise sd 0.5), 6 pure noise; the class is sampled from the
  softmax of a random tanh teacher (12-32-6, logits x 2.5) on the
  informative ones. Seeded (fixed data for every run)."""
  rng = np.random.default_rng(2024)
  w1 = rng.normal(size=(12, 32)) / np.sqrt(12)
  w2 = rng.normal(size=(32, 6)) / np.sqrt(32)
  n = n_train + n_val
  inf = rng.normal(size=(n, 12))
  x = np.concatenate([inf, inf[:, :6] + 0.5 * rng.normal(size=(n, 6)),
                      rng.normal(size=(n, 6))], axis=1)
  logits = 2.5 * np.tanh(inf @ w1 * 1.5) @ w2 * 2.0
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
  x = x.astype(np.float32)
  y = y.astype(np.int32)
  return ({"x": x[:n_train], "y": y[:n_train]},
          {"x": x[n_train:], "y": y[n_train:]})


class TabularMLP(nnx.Module):

  def __init__(self, rngs: nnx.Rngs, width: int = 128):
    self.l1 = nnx.Linear(24, width, rngs=rngs)
    self.l2 = nnx.Linear(width, width, rngs=rngs)
    self.l3 = nnx.Linear(width, 6, rngs=rngs)

  def __call__(self, x):
    return self.l3(jax.nn.relu(self.l2(jax.nn.relu(self.l1(x)))))


def tabular_task(opt: str, batch_size: int, budget: int, half: str) -> Task:
  train, val = tabular_data()
  return _task(
      f"tabular-{opt}-b{batch_size}", "tabular", half, opt, batch_size,
      budget, make_model=lambda seed: TabularMLP(nnx.Rngs(seed)),
      loss_fn=classification_loss, train=train, val=val)


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


def regression_data(n: int, seed: int, noise: float = 0.3
                    ) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 8)).astype(np.float32)
  w = np.random.default_rng(123).normal(size=(8, 4))
  y = np.sin(x @ w).sum(1) + 0.5 * (x[:, 0] * x[:, 1]) + noise * rng.normal(
      size=n)
  return {"x": x, "y": y.astype(np.float32)}


def regression_task(opt: str, batch_size: int, budget: int, half: str
                    ) -> Task:
  return _task(
      f"regression-{opt}-b{batch_size}", "regression", half, opt,
      batch_size, budget, make_model=lambda seed: MLP(nnx.Rngs(seed)),
      loss_fn=mse_loss, train=regression_data(4096, 0),
      val=regression_data(2048, 1), metric="loss")


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
  """One pre-norm causal self-attention block over characters."""

  def __init__(self, vocab: int, context: int, rngs: nnx.Rngs, d: int = 32):
    self.tok = nnx.Embed(vocab, d, rngs=rngs)
    self.pos = nnx.Embed(context, d, rngs=rngs)
    self.norm1 = nnx.LayerNorm(d, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(num_heads=2, in_features=d,
                                       decode=False, rngs=rngs)
    self.norm2 = nnx.LayerNorm(d, rngs=rngs)
    self.ff1 = nnx.Linear(d, 4 * d, rngs=rngs)
    self.ff2 = nnx.Linear(4 * d, d, rngs=rngs)
    self.norm3 = nnx.LayerNorm(d, rngs=rngs)
    self.head = nnx.Linear(d, vocab, rngs=rngs)

  def __call__(self, x):
    t = x.shape[1]
    h = self.tok(x) + self.pos(jnp.arange(t))[None]
    mask = nnx.make_causal_mask(x)
    h = h + self.attn(self.norm1(h), mask=mask)
    h = h + self.ff2(jax.nn.gelu(self.ff1(self.norm2(h))))
    return self.head(self.norm3(h))


def lm_loss(model, batch):
  logits = model(batch["x"])
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch["y"]).mean()


@functools.lru_cache(maxsize=None)
def char_data(context: int = 32) -> tuple[dict, dict, int]:
  text = corpus()
  chars = sorted(set(text))
  ids = np.array([chars.index(c) for c in text], np.int32)
  split = int(0.9 * ids.size)

  def windows(a, n, seed):
    starts = np.random.default_rng(seed).integers(0, a.size - context - 1, n)
    x = np.stack([a[s:s + context] for s in starts])
    y = np.stack([a[s + 1:s + context + 1] for s in starts])
    return {"x": x, "y": y}

  return windows(ids[:split], 4096, 0), windows(ids[split:], 512, 1), len(
      chars)


def char_task(opt: str, batch_size: int, budget: int, half: str,
              grid: tuple[float, ...] | None = None) -> Task:
  train, val, vocab = char_data()
  return _task(
      f"char-lm-{opt}-b{batch_size}", "char-lm", half, opt, batch_size,
      budget, make_model=lambda seed: CharTransformer(vocab, 32,
                                                      nnx.Rngs(seed)),
      loss_fn=lm_loss, train=train, val=val, metric="loss",
      quality_kind="perplexity", grid=grid)


# ----------------------------------------------------------------------------
# The task list, split up front.

BUDGET = 192  # steps; a multiple of 24 (6 evaluations, 4 CLR cycles)


@functools.lru_cache(maxsize=None)
def all_tasks() -> tuple[Task, ...]:
  """The ten tasks, tune half first."""
  b = BUDGET
  return (
      # tune half
      conv_task("sgd", 32, b, TUNE),
      bn_conv_task("adam", 32, b, TUNE),
      tabular_task("sgd", 128, b, TUNE),
      regression_task("adam", 128, b, TUNE),
      char_task("adam", 32, b, TUNE),
      # report half
      conv_task("adam", 128, b, REPORT),
      # BatchNorm with SGD trains best at LR ~1 (the grid's top on 2 of 5
      # seeds over 1e-3..1): its grid reaches 10.
      bn_conv_task("sgd", 128, b, REPORT, grid=lr_grid(1e-2, 10.0)),
      tabular_task("adam", 32, b, REPORT),
      regression_task("sgd", 32, b, REPORT),
      char_task("sgd", 16, b, REPORT, grid=lr_grid(3e-3, 3.0)),
  )


def tasks_of(half: str) -> list[Task]:
  return [t for t in all_tasks() if t.half == half]


def by_name(name: str) -> Task:
  names = {t.name: t for t in all_tasks()}
  if name not in names:
    raise ValueError(f"unknown task {name!r}; choose from {sorted(names)}")
  return names[name]
