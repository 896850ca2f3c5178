"""A model as the engine sees it: ``(graphdef, params, rest)``.

* A Flax NNX module is split with ``nnx.split(model, wrt, ...)``: ``params``
  are the trained leaves (``wrt``, default ``nnx.Param``, as
  ``nnx.Optimizer(model, tx, wrt=...)``), ``rest`` every other variable
  (batch statistics, RNG keys and counts, ...), carried from step to step.
* A plain params pytree (a Linen ``variables["params"]``, a dict of arrays)
  is the params, with no graphdef and no rest.

Everything works on copies of the split state, so the user's module or
arrays are never modified. Two models are the same model when their state
has the same tree paths, shapes and dtypes (not when their graphdefs compare
equal: a ``functools.partial`` attribute makes two identical models'
graphdefs differ).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

PyTree = Any


class ModelParts(NamedTuple):
  """A model taken apart: ``graphdef`` is None for a params pytree."""
  graphdef: Any
  params: PyTree
  rest: PyTree


def is_key(x: Any) -> bool:
  """True for a typed PRNG key array (``jax.random.key``)."""
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key)


def split(model: Any, wrt: Any = nnx.Param) -> ModelParts:
  """Splits without copying or checking (traceable)."""
  if isinstance(model, nnx.Module):
    return ModelParts(*nnx.split(model, wrt, ...))
  return ModelParts(None, model, None)


def split_model(model: Any, wrt: Any = nnx.Param) -> ModelParts:
  """Splits ``model`` into fresh copies of its state, after checking it.

  Raises:
    TypeError: ``model`` is neither an ``nnx.Module`` nor a pytree of arrays.
    ValueError: it has no floating-point leaves to train.
  """
  if not isinstance(model, nnx.Module):
    leaves = jax.tree.leaves(model)
    if not leaves:
      raise ValueError("model has no parameters (an empty pytree)")
    for leaf in leaves:
      if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
        raise TypeError(
            "model must be an nnx.Module or a pytree of arrays, got a leaf "
            f"of type {type(leaf).__name__}")
  parts = split(model, wrt)
  if not any(jnp.issubdtype(x.dtype, jnp.floating)
             for x in jax.tree.leaves(parts.params)):
    raise ValueError(
        "model has no floating-point parameters to train"
        + ("" if parts.graphdef is None else f" (wrt={wrt!r})"))
  # Fresh buffers (later buffer donation must never touch the user's
  # arrays), without weak types (a step's outputs are strongly typed: a
  # weakly typed input would compile the step a second time).
  copy = lambda t: jax.tree.map(strong_copy, t)  # noqa: E731
  return ModelParts(parts.graphdef, copy(parts.params), copy(parts.rest))


def strong_copy(x: Any) -> Any:
  """A copy of an array with its dtype made strong (not weak)."""
  if is_key(x):
    return jnp.array(x)
  return jnp.array(x, dtype=x.dtype)


def merge(graphdef: Any, params: PyTree, rest: PyTree) -> Any:
  """A module that owns fresh Variables (safe to mutate inside a trace), or
  the params pytree itself."""
  if graphdef is None:
    return params
  return nnx.merge(graphdef, params, rest, copy=True)


def signature(tree: PyTree) -> list[tuple[str, tuple[int, ...], str]]:
  """``(path, shape, dtype)`` of every leaf: what "the same model" means."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(jax.tree_util.keystr(path), tuple(x.shape), str(x.dtype))
          for path, x in flat]


def check_same_model(name: str, got: ModelParts, want: ModelParts) -> None:
  """Raises ValueError naming the first leaf whose path, shape or dtype
  differs between ``got`` and ``want``."""
  for part in ("params", "rest"):
    a = signature(getattr(got, part))
    b = signature(getattr(want, part))
    if a == b:
      continue
    paths_a = {p: (s, d) for p, s, d in a}
    paths_b = {p: (s, d) for p, s, d in b}
    missing = sorted(set(paths_b) - set(paths_a))
    extra = sorted(set(paths_a) - set(paths_b))
    if missing or extra:
      detail = (f"missing {missing[:3]}" if missing else "") + (
          ", " if missing and extra else "") + (
              f"unexpected {extra[:3]}" if extra else "")
    else:
      path = next(p for p in paths_b if paths_a[p] != paths_b[p])
      detail = (f"{path} is {paths_a[path][1]}{list(paths_a[path][0])}, "
                f"expected {paths_b[path][1]}{list(paths_b[path][0])}")
    raise ValueError(
        f"{name} must build a model with the same structure, shapes and "
        f"dtypes as model: {part} differ ({detail})")


def fold_in_keys(tree: PyTree, seed: Any, copy: Any) -> PyTree:
  """Folds ``seed`` and then ``copy`` into every typed PRNG key of ``tree``.

  Gives each run (seed) and each copy of a model its own random stream: an
  NNX module that holds ``nnx.Rngs`` keeps its keys in ``rest``, and copies
  that shared them would draw the same dropout masks.
  """
  def fold(x):
    if not is_key(x):
      return x
    return jax.random.fold_in(jax.random.fold_in(x, seed), copy)
  return jax.tree.map(fold, tree)


def describe_model(model: Any) -> str:
  return type(model).__name__
