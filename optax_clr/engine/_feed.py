"""Host-side data feeding for every driver.

Training data come in one of two forms:

* arrays: any pytree of arrays sharing a leading example axis (a dict with
  several inputs, a tuple, a :class:`optax_clr.data.Dataset` through its
  ``as_batch()``). Batches are drawn on the host with NumPy: each epoch visits
  the examples in the permutation ``np.random.default_rng((seed, epoch))``
  (:func:`epoch_order`) and drops the incomplete last batch -- the same
  batches in the range tests, the sweep, ``train`` and
  ``Dataset.batches(batch_size, seed=seed)``.
* an iterable of batches (a list, a generator, a ``tf.data`` or PyTorch
  loader...): any pytree of NumPy/JAX arrays per batch, all with the same
  structure and shapes. It is consumed lazily and only as far as needed.

Leaves may be typed PRNG keys (``jax.random.key``); they stay JAX arrays on
the host side and are stacked with ``jnp.stack``.

The compiled programs take CHUNKS of ``steps`` training steps stacked on the
host, leaves ``[steps, accumulation, *batch_leaf_shape]``, plus a
``valid[steps]`` mask: a partial last chunk is padded (with copies of its
last step) so that the chunk shape never changes and the program is compiled
once. Neither test needs the whole data set on the device.
"""

from __future__ import annotations

import itertools
import numbers
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optax_clr import _checks

PyTree = Any


def is_single_pytree(data: Any) -> bool:
  """True when ``data`` is a pytree of arrays (one batch, or arrays to
  sample from); False for an iterable of batches.

  Mappings, tuples (including NamedTuples), arrays and registered custom
  pytrees count as one pytree. Lists, iterators, generators and any other
  iterable count as a sequence of batches.
  """
  if isinstance(data, (list, Iterator)):
    return False
  if hasattr(data, "shape") and hasattr(data, "dtype"):
    return True
  if isinstance(data, (Mapping, tuple)):
    return True
  if isinstance(data, Iterable):
    return False
  return _registered_pytree(data)


def _registered_pytree(data: Any) -> bool:
  leaves, treedef = jax.tree.flatten(data)
  return treedef.num_nodes > 1 or (len(leaves) == 1 and leaves[0] is not data)


def as_arrays(data: Any) -> Any:
  """``Dataset``-like objects (with ``as_batch()``) become their arrays."""
  as_batch = getattr(data, "as_batch", None)
  if callable(as_batch) and not isinstance(data, (Mapping, tuple, list)):
    return as_batch()
  return data


def epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The order in which epoch ``epoch`` visits the examples: the one rule
  shared by every driver and ``Dataset.batches``."""
  return np.random.default_rng((seed, epoch)).permutation(num_examples)


def is_key(x: Any) -> bool:
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key)


def stack(xs: list[Any]) -> Any:
  """``np.stack``, or ``jnp.stack`` for typed PRNG keys."""
  return jnp.stack(xs) if is_key(xs[0]) else np.stack(xs)


def to_numpy(batch: PyTree, name: str) -> PyTree:
  """A pytree of NumPy arrays (typed keys stay JAX arrays); raises
  TypeError naming ``name`` otherwise."""
  def convert(x):
    if is_key(x):
      return x
    if isinstance(x, (np.ndarray, np.generic, numbers.Number)) or (
        hasattr(x, "shape") and hasattr(x, "dtype")):
      arr = np.asarray(x)
      if arr.dtype == object or arr.dtype.kind in "USV":
        raise TypeError(f"{name} holds an array of dtype {arr.dtype}; "
                        "batches must hold numbers")
      return arr
    raise TypeError(
        f"{name} must be a pytree of arrays, got a leaf of type "
        f"{type(x).__name__}")
  tree = jax.tree.map(convert, batch)
  if not jax.tree.leaves(tree):
    raise ValueError(f"{name} is empty (no arrays)")
  return tree


def _signature(tree: PyTree) -> tuple[Any, tuple]:
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, tuple((x.shape, x.dtype) for x in leaves)


class Chunk(NamedTuple):
  """``steps`` stacked training steps.

  Attributes:
    batches: pytree with leaves ``[steps, accumulation, ...]`` (NumPy).
    valid: ``[steps]`` bool; False on padding.
    num_valid: number of real steps (a prefix of the chunk).
    exhausted: True when the data ran out while filling this chunk.
  """
  batches: PyTree
  valid: np.ndarray
  num_valid: int
  exhausted: bool


def _pad(micro: list[PyTree], steps: int, accumulation: int) -> PyTree:
  """Stacks ``k * accumulation`` micro-batches into ``[steps, accumulation,
  ...]`` leaves, repeating the last step's micro-batches as padding (real
  data, so the masked-out padded steps cannot produce spurious NaNs)."""
  num_valid = len(micro) // accumulation
  last = micro[(num_valid - 1) * accumulation:num_valid * accumulation]
  micro = micro[:num_valid * accumulation] + last * (steps - num_valid)
  stacked = jax.tree.map(lambda *xs: stack(list(xs)), *micro)
  return jax.tree.map(
      lambda x: x.reshape((steps, accumulation) + x.shape[1:]), stacked)


class ArrayFeed:
  """Samples batches of ``batch_size`` from arrays with a leading example
  axis, epoch after epoch, with a seeded permutation per epoch."""

  def __init__(self, data: PyTree, batch_size: Any, seed: int,
               name: str = "train_data"):
    data = to_numpy(data, name)
    leaves = jax.tree.leaves(data)
    sizes = set()
    for path, leaf in jax.tree_util.tree_leaves_with_path(data):
      if leaf.ndim == 0:
        raise ValueError(
            f"{name}: every array needs a leading example axis, got a scalar "
            f"at {jax.tree_util.keystr(path)}")
      sizes.add(leaf.shape[0])
    if len(sizes) > 1:
      detail = ", ".join(
          f"{jax.tree_util.keystr(p)}: {x.shape[0]}"
          for p, x in jax.tree_util.tree_leaves_with_path(data))
      raise ValueError(
          f"{name}: arrays must share the leading example axis, got sizes "
          f"{detail}")
    self.num_examples = leaves[0].shape[0]
    if self.num_examples == 0:
      raise ValueError(f"{name} is empty (0 examples)")
    if batch_size is None:
      raise ValueError(
          f"batch_size is required when {name} is arrays (a pytree with a "
          "leading example axis)")
    self.batch_size = _checks.check_int("batch_size", batch_size, low=1)
    if self.batch_size > self.num_examples:
      raise ValueError(
          f"batch_size must be in [1, {self.num_examples}] (the size of "
          f"{name}), got {self.batch_size}")
    self.data = data
    self.seed = seed
    self.per_epoch = self.num_examples // self.batch_size
    self.reset()

  def reset(self) -> None:
    """Restarts the batch sequence from the first batch of epoch 0."""
    self._epoch = 0
    self._pos = 0
    self._order = self._permutation(0)

  def _permutation(self, epoch: int) -> np.ndarray:
    return epoch_order(self.seed, epoch, self.num_examples)

  def seek(self, epoch: int, batch: int = 0) -> None:
    """Continues from batch ``batch`` of epoch ``epoch`` (a resumed run)."""
    self._epoch, self._pos = epoch, batch
    self._order = self._permutation(epoch)

  def first_batch(self) -> PyTree:
    index = self._permutation(0)[:self.batch_size]
    return jax.tree.map(lambda x: x[index], self.data)

  def _indices(self, count: int) -> np.ndarray:
    rows = []
    for _ in range(count):
      if self._pos == self.per_epoch:
        self._epoch += 1
        self._pos = 0
        self._order = self._permutation(self._epoch)
      start = self._pos * self.batch_size
      rows.append(self._order[start:start + self.batch_size])
      self._pos += 1
    return np.stack(rows)

  def take(self, steps: int, num_valid: int, accumulation: int) -> Chunk:
    """The next ``num_valid`` steps, padded to ``steps``."""
    index = self._indices(num_valid * accumulation).reshape(
        num_valid, accumulation, self.batch_size)
    if num_valid < steps:
      index = np.concatenate(
          [index, np.repeat(index[-1:], steps - num_valid, 0)])
    batches = jax.tree.map(lambda x: x[index], self.data)
    valid = np.arange(steps) < num_valid
    return Chunk(batches, valid, num_valid, False)


class IterableFeed:
  """Pulls batches from an iterable, lazily; checks they all match the
  first one's structure, shapes and dtypes."""

  def __init__(self, data: Iterable[PyTree], name: str = "train_data"):
    self.name = name
    self._it = iter(data)
    self._count = 0
    try:
      first = next(self._it)
    except StopIteration:
      raise ValueError(f"{name} is empty (the iterable yielded no batch)")
    self._first = to_numpy(first, f"{name} batch 0")
    self._sig = _signature(self._first)
    self._pending: list[PyTree] = [self._first]
    self._exhausted = False

  def first_batch(self) -> PyTree:
    return self._first

  def _next(self) -> PyTree | None:
    if self._pending:
      self._count += 1
      return self._pending.pop(0)
    if self._exhausted:
      return None
    try:
      batch = next(self._it)
    except StopIteration:
      self._exhausted = True
      return None
    batch = to_numpy(batch, f"{self.name} batch {self._count}")
    if _signature(batch) != self._sig:
      raise ValueError(
          f"{self.name} batch {self._count} has structure/shapes "
          f"{_describe(batch)}, but batch 0 has {_describe(self._first)}; "
          "every batch must have the same shapes (drop the last incomplete "
          "batch)")
    self._count += 1
    return batch

  def take(self, steps: int, num_valid: int, accumulation: int) -> Chunk:
    """Up to ``num_valid`` steps (fewer if the data run out), padded."""
    micro = []
    for _ in range(num_valid * accumulation):
      batch = self._next()
      if batch is None:
        break
      micro.append(batch)
    got = len(micro) // accumulation
    exhausted = got < num_valid
    if got == 0:
      return Chunk(None, np.zeros(steps, bool), 0, True)
    batches = _pad(micro[:got * accumulation], steps, accumulation)
    return Chunk(batches, np.arange(steps) < got, got, exhausted)


def _describe(tree: PyTree) -> str:
  return str(jax.tree.map(lambda x: f"{x.dtype}{list(x.shape)}", tree))


def make_feed(data: Any, batch_size: Any, seed: int,
              name: str = "train_data") -> ArrayFeed | IterableFeed:
  """An :class:`ArrayFeed` for a pytree of arrays, else an
  :class:`IterableFeed` (``batch_size`` is then ignored)."""
  data = as_arrays(data)
  if data is None or isinstance(data, (str, bytes)):
    raise TypeError(f"{name} must be a pytree of arrays or an iterable of "
                    f"batches, got {type(data).__name__}")
  if is_single_pytree(data):
    return ArrayFeed(data, batch_size, seed, name)
  if not isinstance(data, Iterable):
    raise TypeError(
        f"{name} must be a pytree of arrays or an iterable of batches, got "
        f"{type(data).__name__}")
  return IterableFeed(data, name)


def iter_chunks(feed: ArrayFeed | IterableFeed, num_steps: int,
                steps_per_chunk: int, accumulation: int) -> Iterator[Chunk]:
  """Chunks covering ``num_steps`` steps; stops early when the data run out
  (the last chunk then has ``exhausted=True``, or no chunk is yielded)."""
  done = 0
  while done < num_steps:
    n = min(steps_per_chunk, num_steps - done)
    chunk = feed.take(steps_per_chunk, n, accumulation)
    if chunk.num_valid == 0:
      return
    yield chunk
    done += chunk.num_valid
    if chunk.exhausted:
      return


class ChunkSource:
  """The same chunk sequence, once per pass (the parallel test trains its
  groups of copies one after another on identical batches).

  Array data are re-sampled with the same seed on every pass (nothing is
  kept); an iterable is read once and its chunks are kept on the host for the
  later passes only when ``passes > 1``.
  """

  def __init__(self, feed: ArrayFeed | IterableFeed, num_steps: int,
               steps_per_chunk: int, accumulation: int, passes: int):
    self._feed = feed
    self._args = (num_steps, steps_per_chunk, accumulation)
    self._keep = passes > 1 and isinstance(feed, IterableFeed)
    self._kept: list[Chunk] | None = None

  def __iter__(self) -> Iterator[Chunk]:
    if self._kept is not None:
      # Later passes replay exactly the chunks the first pass used (the
      # first pass may stop before the iterable's end).
      yield from list(self._kept)
      return
    if isinstance(self._feed, ArrayFeed):
      self._feed.reset()
    elif self._keep:
      self._kept = []
      for chunk in iter_chunks(self._feed, *self._args):
        self._kept.append(chunk)
        yield chunk
      return
    yield from iter_chunks(self._feed, *self._args)


def load_validation(val_data: Any, val_batches: int,
                    name: str = "val_data") -> PyTree:
  """Validation batches stacked ``[V, ...]`` on the host, read ONCE.

  A pytree of arrays is one batch (``V = 1``, evaluated whole each time). An
  iterable contributes its first ``val_batches`` batches, materialised here
  and reused at every evaluation, so an iterator is never exhausted by the
  first evaluation. A smaller trailing batch is dropped (with a warning) so
  that the batches stack.
  """
  val_data = as_arrays(val_data)
  if is_single_pytree(val_data):
    batch = to_numpy(val_data, name)
    sizes = {np.shape(x)[0] if np.ndim(x) else None
             for x in jax.tree.leaves(batch)}
    if 0 in sizes:
      raise ValueError(f"{name} is empty (0 examples)")
    return jax.tree.map(lambda x: x[None], batch)
  if not isinstance(val_data, Iterable):
    raise TypeError(
        f"{name} must be a batch (pytree of arrays) or an iterable of "
        f"batches, got {type(val_data).__name__}")
  if isinstance(val_data, (str, bytes)):
    raise TypeError(f"{name} must be a batch (pytree of arrays) or an "
                    f"iterable of batches, got {type(val_data).__name__}")
  batches = [to_numpy(b, f"{name} batch {i}") for i, b in
             enumerate(itertools.islice(iter(val_data), val_batches))]
  if not batches:
    raise ValueError(f"{name} is empty (the iterable yielded no batch)")
  for i, b in enumerate(batches):
    if any(np.ndim(x) == 0 for x in jax.tree.leaves(b)):
      raise ValueError(f"{name} batch {i} must be a pytree of arrays with a "
                       "batch axis, got a scalar leaf")
  sig = _signature(batches[0])
  keep = [b for b in batches if _signature(b) == sig]
  if len(keep) != len(batches):
    if len(keep) == len(batches) - 1 and _signature(batches[-1]) != sig:
      warnings.warn(
          f"{name}: dropping the last validation batch, whose shapes "
          f"{_describe(batches[-1])} differ from the first batch's")
    else:
      raise ValueError(
          f"{name}: validation batches must all have the same shapes; got "
          f"{_describe(batches[0])} and "
          f"{[_describe(b) for b in batches if _signature(b) != sig][0]}")
  return jax.tree.map(lambda *xs: stack(list(xs)), *keep)


class Epochs:
  """Training data in epochs (``train`` and ``fit``): where the batches of
  steps ``[first, last)`` come from.

  Array data: one continuous seeded sequence (epoch ``e`` in the order
  ``epoch_order(seed, e)``); a list of batches: iterated again every epoch;
  an iterator: continued (``steps_per_epoch`` required).
  """

  def __init__(self, train_data: Any, batch_size: Any, steps_per_epoch: Any,
               feed: ArrayFeed | IterableFeed, accumulation: int):
    self.data = as_arrays(train_data)
    self.accumulation = accumulation
    self.reiterable = isinstance(self.data, Sequence) and (
        not is_single_pytree(self.data))
    self.feed = feed
    if steps_per_epoch is not None:
      self.steps = _checks.check_int("steps_per_epoch", steps_per_epoch,
                                     low=1)
    elif isinstance(feed, ArrayFeed):
      self.steps = feed.per_epoch // accumulation
    elif self.reiterable:
      self.steps = len(self.data) // accumulation
    else:
      raise ValueError(
          "steps_per_epoch is required when train_data is an iterator (it "
          "has no length); e.g. steps_per_epoch=len(dataset) // batch_size")
    if self.steps < 1:
      raise ValueError(f"batch_size={batch_size} leaves no full batch in "
                       "train_data")
    self._next = 0  # the step an iterator's next batch belongs to

  def chunks(self, first: int, last: int, chunk_steps: int
             ) -> Iterator[Chunk]:
    """Chunks of the steps ``[first, last)``, epoch by epoch."""
    step = first
    while step < last:
      epoch, offset = divmod(step, self.steps)
      end = min(last, (epoch + 1) * self.steps)
      feed = self._at(epoch, offset)
      for chunk in iter_chunks(feed, end - step, chunk_steps,
                               self.accumulation):
        yield chunk
        if chunk.exhausted:
          return
      step = end

  def _at(self, epoch: int, offset: int) -> ArrayFeed | IterableFeed:
    """The feed positioned at batch ``offset`` of epoch ``epoch``."""
    if isinstance(self.feed, ArrayFeed):
      batch = (epoch * self.steps + offset) * self.accumulation
      self.feed.seek(*divmod(batch, self.feed.per_epoch))
      return self.feed
    if self.reiterable and (epoch > 0 or offset > 0):
      feed = make_feed(self.data, None, 0)
      for _ in range(offset * self.accumulation):
        feed.take(1, 1, 1)
      return feed
    return self.feed
