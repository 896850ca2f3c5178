"""A model as the engine sees it: a static definition and three trees.

Every model is taken apart into

* ``params``: the trained leaves;
* ``rest``: arrays the model carries but does not train;
* ``state``: state outside the model that the loss threads through and
  returns (declared with :func:`with_state`), or None;

plus a hashable :class:`ModelDef` that rebuilds the model from them. The
kinds:

* a Flax NNX module: ``nnx.split(model, wrt, ...)``; ``params`` are the
  ``wrt`` variables (default ``nnx.Param``, as ``nnx.Optimizer``), ``rest``
  every other variable (batch statistics, RNG keys and counts), updated by
  the forward pass;
* any other pytree -- a params dict, a Linen ``variables["params"]``, an
  Equinox module: its inexact (floating) array leaves are ``params``, its
  other arrays (integers, PRNG keys) ``rest``, and its other leaves
  (activation functions, floats, strings) static, as
  ``eqx.partition(model, eqx.is_inexact_array)`` splits a module;
* :func:`with_state` ``(model, state)``: one of the above plus state the
  loss takes after the model and returns with the loss (an Equinox
  ``eqx.nn.State``, Linen's mutable ``batch_stats``, any pytree of arrays).

Everything works on copies, so the user's module or arrays are never
modified. Two models are the same model when their trees have the same
paths, shapes and dtypes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optax_clr import _checks

PyTree = Any


class WithState:
  """A model and the state its loss threads through (see :func:`with_state`).

  Attributes:
    model: an NNX module or a pytree (e.g. an Equinox module, Linen params).
    state: a pytree of arrays: the state's initial value.
  """

  __slots__ = ("model", "state")

  def __init__(self, model: Any, state: Any):
    self.model = model
    self.state = state

  def __repr__(self) -> str:
    return f"with_state({type(self.model).__name__}, {type(self.state).__name__})"


def with_state(model: Any, state: Any) -> WithState:
  """Declares state that lives outside the model and is returned by the loss.

  The loss is then called ``loss_fn(model, state, batch[, key])`` and returns
  ``(loss, new_state)`` or ``(loss, (new_state, aux))``; every driver carries
  ``new_state`` per copy from step to step, evaluates with the current one,
  checkpoints it and returns it.

  Args:
    model: the model (an NNX module, an Equinox module, Linen params...).
    state: the initial state, a pytree of arrays (Python numbers become
      arrays), e.g. the ``state`` of ``eqx.nn.make_with_state(Model)(key)``,
      Linen's ``{"batch_stats": variables["batch_stats"]}`` or a Flax
      ``TrainState`` holding them (the loss may then return the dict
      ``apply(..., mutable=["batch_stats"])`` returns: it replaces those
      entries).

  Returns:
    What the drivers take as ``model``.

  Examples:
    >>> import jax.numpy as jnp, optax_clr as clr
    >>> m = clr.with_state({"w": jnp.zeros(2)}, {"count": jnp.zeros(())})
    >>> m.state["count"].shape
    ()
  """
  if isinstance(model, WithState):
    raise TypeError("with_state: model already has state (with_state was "
                    "applied twice)")
  # Python numbers (a Flax TrainState's step=0) become arrays.
  state = jax.tree.map(
      lambda x: jnp.asarray(x) if isinstance(x, (bool, int, float)) else x,
      state)
  leaves = jax.tree.leaves(state)
  if not leaves:
    raise ValueError("with_state: state is empty (no arrays); pass the model "
                     "alone")
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    if not _is_array(leaf):
      raise TypeError(
          f"with_state: state must be a pytree of arrays, got a leaf of type "
          f"{type(leaf).__name__} at {jax.tree_util.keystr(path) or 'state'}")
  return WithState(model, state)


def _is_array(x: Any) -> bool:
  return isinstance(x, (jax.Array, np.ndarray, np.generic))


def is_key(x: Any) -> bool:
  """True for a typed PRNG key array (``jax.random.key``)."""
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key)


def _is_trained(x: Any) -> bool:
  return _is_array(x) and not is_key(x) and jnp.issubdtype(
      x.dtype, jnp.inexact)


class Parts(NamedTuple):
  """A model's arrays: trained ``params``, carried ``rest``, declared
  ``state`` (None when there is none)."""
  params: PyTree
  rest: PyTree
  state: PyTree


@dataclasses.dataclass(frozen=True)
class ModelDef:
  """What rebuilds a model from its :class:`Parts` (hashable: it is part of
  the compiled programs' static arguments).

  Attributes:
    graphdef: the NNX ``GraphDef``, or the pytree's treedef.
    static: ``((leaf index, value), ...)``: a pytree's non-array leaves.
    trained: leaf indices of a pytree's trained leaves.
    is_nnx: an NNX module.
    wrt: an NNX module's filter of the trained variables.
    stateful: declared state (:func:`with_state`).
    name: the model's type name, for results.
  """
  graphdef: Any
  static: tuple[tuple[int, Any], ...]
  trained: tuple[int, ...]
  is_nnx: bool
  wrt: Any
  stateful: bool
  name: str

  def build(self, params: PyTree, rest: PyTree) -> Any:
    """The model object the loss is called with (an NNX module owning fresh
    Variables, safe to update inside a trace; or the pytree)."""
    if self.is_nnx:
      return nnx.merge(self.graphdef, params, rest, copy=True)
    n = self.graphdef.num_leaves
    leaves: list[Any] = [None] * n
    for i, v in self.static:
      leaves[i] = v
    p = self.graphdef.flatten_up_to(params)
    r = [None] * n if rest is None else self.graphdef.flatten_up_to(rest)
    for i in range(n):
      if p[i] is not None:
        leaves[i] = p[i]
      elif r[i] is not None:
        leaves[i] = r[i]
    return self.graphdef.unflatten(leaves)

  def rest_after(self, model: Any, rest: PyTree) -> PyTree:
    """The carried arrays after a forward pass (NNX modules update theirs:
    batch statistics, RNG counts)."""
    if not self.is_nnx:
      return rest
    return nnx.split(model, self.wrt, ...)[2]


def _split_nnx(model: nnx.Module, wrt: Any) -> tuple[Any, Parts]:
  graphdef, params, rest = nnx.split(model, wrt, ...)
  return graphdef, Parts(params, rest, None)


def _split_pytree(model: Any) -> tuple[Any, tuple, tuple, Parts]:
  leaves, treedef = jax.tree.flatten(model)
  static, trained = [], []
  p: list[Any] = [None] * len(leaves)
  r: list[Any] = [None] * len(leaves)
  for i, x in enumerate(leaves):
    if _is_trained(x):
      p[i] = x
      trained.append(i)
    elif _is_array(x):
      r[i] = x
    else:
      static.append((i, x))
  return (treedef, tuple(static), tuple(trained),
          Parts(treedef.unflatten(p), treedef.unflatten(r), None))


def split(model: Any, wrt: Any = nnx.Param) -> tuple[ModelDef, Parts]:
  """Takes ``model`` apart without copying (traceable; ``model_init``'s
  models are split inside ``jax.vmap``)."""
  state = None
  stateful = isinstance(model, WithState)
  if stateful:
    model, state = model.model, model.state
  if isinstance(model, nnx.Module):
    graphdef, parts = _split_nnx(model, wrt)
    static, trained, is_nnx = (), (), True
  else:
    graphdef, static, trained, parts = _split_pytree(model)
    is_nnx = False
  defn = ModelDef(graphdef, static, trained, is_nnx,
                  wrt if is_nnx else None, stateful, type(model).__name__)
  return defn, parts._replace(state=state)


def split_model(model: Any, wrt: Any = nnx.Param) -> tuple[ModelDef, Parts]:
  """Takes ``model`` apart into fresh copies of its arrays, after checking
  it.

  Raises:
    TypeError: a non-array leaf of a pytree model is unhashable (it would
      have to be compiled into the program), or ``model`` is None.
    ValueError: it has no floating-point leaves to train.
  """
  if model is None or isinstance(model, (str, bytes)):
    raise TypeError(f"model must be an nnx.Module, an Equinox module or a "
                    f"pytree of arrays, got {_checks.describe(model)}")
  defn, parts = split(model, wrt)
  for i, value in defn.static:
    try:
      hash(value)
    except TypeError:
      raise TypeError(
          f"model: its leaf {i} ({type(value).__name__}) is neither an array "
          "nor hashable; non-array leaves are compiled into the program as "
          "constants and must be hashable") from None
  if not any(jnp.issubdtype(x.dtype, jnp.floating)
             for x in jax.tree.leaves(parts.params)):
    raise ValueError(
        "model has no floating-point parameters to train"
        + (f" (wrt={wrt!r})" if defn.is_nnx else ""))
  # Fresh buffers (donation must never touch the user's arrays), without
  # weak types (a weakly typed input would compile a step twice).
  copy = lambda t: jax.tree.map(strong_copy, t)  # noqa: E731
  return defn, Parts(copy(parts.params), copy(parts.rest),
                     copy(parts.state))


def strong_copy(x: Any) -> Any:
  """A device copy of an array with its dtype made strong (not weak)."""
  if is_key(x):
    return jnp.array(x)
  return jnp.array(x, dtype=x.dtype)


def signature(tree: PyTree) -> list[tuple[str, tuple[int, ...], str]]:
  """``(path, shape, dtype)`` of every leaf: what "the same model" means."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(jax.tree_util.keystr(path), tuple(np.shape(x)), str(x.dtype))
          for path, x in flat]


def _sharding_spec(x: Any) -> Any:
  """The partition spec of an array laid out on a mesh the user set
  (explicit sharding), else None (unsharded, or a mesh of optax-clr's)."""
  try:
    sharding = jax.typeof(x).sharding
  except Exception:  # pylint: disable=broad-except
    return None
  mesh = getattr(sharding, "mesh", None)
  if mesh is None or mesh.empty or not mesh.are_all_axes_explicit:
    return None
  return sharding.spec


def difference(got: PyTree, want: PyTree) -> str | None:
  """The first difference between two trees, in words, naming the leaf path
  and what differs: the leaves present, a leaf's shape or dtype, the
  containers, or (under explicit sharding) a leaf's sharding; None when
  they match."""
  a, b = signature(got), signature(want)
  if a != b:
    paths_a = {p: (s, d) for p, s, d in a}
    paths_b = {p: (s, d) for p, s, d in b}
    missing = sorted(set(paths_b) - set(paths_a))
    extra = sorted(set(paths_a) - set(paths_b))
    if missing or extra:
      return ", ".join(
          ([f"missing {missing[:3]}"] if missing else [])
          + ([f"unexpected {extra[:3]}"] if extra else []))
    path = next(p for p in paths_b if paths_a[p] != paths_b[p])
    (sa, da), (sb, db) = paths_a[path], paths_b[path]
    what = "dtype" if list(sa) == list(sb) else "shape"
    return (f"{path or 'the root'} is {da}{list(sa)}, expected {db}"
            f"{list(sb)} (its {what} differs)")
  tree_a, tree_b = jax.tree.structure(got), jax.tree.structure(want)
  if tree_a != tree_b:
    return (f"the containers differ (same leaves): got {_short(tree_a)}, "
            f"expected {_short(tree_b)}")
  flat_a = jax.tree_util.tree_leaves_with_path(got)
  for (path, x), y in zip(flat_a, jax.tree.leaves(want)):
    sa, sb = _sharding_spec(x), _sharding_spec(y)
    if sa != sb:
      return (f"{jax.tree_util.keystr(path) or 'the root'} is sharded as "
              f"{sa}, expected {sb} (its sharding differs)")
  return None


def _short(treedef: Any, limit: int = 160) -> str:
  text = str(treedef)
  return text if len(text) <= limit else text[:limit] + "..."


def check_same_model(name: str, got: Parts, want: Parts) -> None:
  """Raises ValueError naming the first leaf whose path, shape or dtype
  differs between ``got`` and ``want``."""
  for part in ("params", "rest", "state"):
    detail = difference(getattr(got, part), getattr(want, part))
    if detail is not None:
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


def rebuild(defn: ModelDef, parts: Parts) -> Any:
  """The user-facing model of ``parts``: the module or pytree, wrapped in
  :class:`WithState` when it has declared state."""
  model = defn.build(parts.params, parts.rest)
  if defn.is_nnx:
    model = nnx.merge(*nnx.split(model))  # Variables owned by no trace
  return WithState(model, parts.state) if defn.stateful else model
