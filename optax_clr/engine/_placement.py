"""Meshes and shardings, written for many devices and many hosts.

Every array placed on a mesh here (:func:`put`) is built with
``jax.make_array_from_callback`` when several processes share the mesh,
never assuming that all devices are local: every process holds the whole
host value (the same data, sampled with the same seed) and the callback
materialises only the shards of its own devices. Results are read back by
:func:`fetch`: replicated arrays from a local shard, sharded ones gathered
in one compiled program. On one process these reduce to
``jax.device_put`` and ``jax.device_get``.

Mesh axes the drivers use:

* ``"copies"``: the K copies of a sweep (or the S seeds of a multi-seed
  range test) are split over it;
* a data axis (``data_axis``, default ``"data"`` or ``"batch"`` if the mesh
  has one): the batch dimension is split over it (data parallelism).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

PyTree = Any
COPY_AXIS = "copies"
DATA_AXES = ("data", "batch")


def ambient_mesh() -> Mesh | None:
  """The mesh set with ``jax.set_mesh`` (or ``jax.sharding.use_mesh``), if
  any, as Flax's sharded examples do."""
  try:
    mesh = jax.sharding.get_mesh()
  except Exception:  # pylint: disable=broad-except
    return None
  if mesh is None or getattr(mesh, "empty", True) or not isinstance(
      mesh, Mesh):
    return None
  return mesh


def copy_mesh(devices: Sequence[Any] | None = None) -> Mesh:
  """A 1-D mesh over all devices with axis ``"copies"``."""
  return Mesh(np.array(devices or jax.devices()), (COPY_AXIS,))


def resolve_data_axis(mesh: Mesh, data_axis: str | None) -> str | None:
  """``data_axis`` if given (checked), else ``"data"``/``"batch"`` when the
  mesh has one of them, else None (batches replicated)."""
  if data_axis is not None:
    if data_axis not in mesh.axis_names:
      raise ValueError(
          f"data_axis={data_axis!r} is not an axis of the mesh; its axes "
          f"are {list(mesh.axis_names)}")
    return data_axis
  for name in DATA_AXES:
    if name in mesh.axis_names:
      return name
  return None


def batch_spec(ndim: int, lead: int, data_axis: str | None,
               copy_axis: str | None = None) -> P:
  """The spec of a stacked batch leaf ``[*lead dims, B, ...]``: the batch
  dimension (after ``lead`` leading dims) over ``data_axis``; with
  ``copy_axis``, the first dimension over the copies."""
  spec: list[Any] = [None] * ndim
  if copy_axis is not None:
    spec[0] = copy_axis
  if data_axis is not None and ndim > lead:
    spec[lead] = data_axis
  while spec and spec[-1] is None:
    spec.pop()
  return P(*spec)


def put(tree: PyTree, mesh: Mesh | None, spec_of: Any = None) -> PyTree:
  """Places ``tree`` on ``mesh`` (replicated, or by ``spec_of(leaf)``);
  on the default device without a mesh. Every process passes the whole
  value."""
  if mesh is None:
    return jax.device_put(tree)

  def one(x):
    spec = P() if spec_of is None else spec_of(x)
    sharding = NamedSharding(mesh, spec)
    if jax.process_count() == 1:
      return jax.device_put(x, sharding)
    if _is_key(x):  # keys travel as their data and are wrapped again
      data = put(jax.random.key_data(x), mesh, lambda _: spec)
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding,
                                        lambda index: host[index])
  return jax.tree.map(one, tree)


def _is_key(x: Any) -> bool:
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key)


def fetch(tree: PyTree) -> PyTree:
  """NumPy copies of (possibly not fully addressable) arrays.

  On one process every array is addressable and this is
  ``jax.device_get``. Across processes, a replicated array is read from a
  local shard; the arrays sharded over other processes' devices are
  gathered together in ONE compiled program (all-gathers to replicated),
  so that a chunk's outputs cost one collective program, not one per
  leaf. Every process must call it with the same arrays, in the same
  order (the program is a collective).
  """
  leaves, treedef = jax.tree.flatten(tree)
  remote = [i for i, x in enumerate(leaves) if _is_remote(x)]
  if remote:
    gathered = _replicate([leaves[i] for i in remote])
    for i, x in zip(remote, gathered):
      leaves[i] = x
  out = [np.asarray(x.addressable_data(0)) if _is_replicated_global(x)
         else np.asarray(jax.device_get(x)) for x in leaves]
  return jax.tree.unflatten(treedef, out)


def _is_global(x: Any) -> bool:
  return isinstance(x, jax.Array) and not x.is_fully_addressable


def _is_replicated_global(x: Any) -> bool:
  return _is_global(x) and x.sharding.is_fully_replicated


def _is_remote(x: Any) -> bool:
  """Sharded over devices of other processes: needs a gather."""
  return _is_global(x) and not x.sharding.is_fully_replicated


def _identity(x: Any) -> Any:
  return x


def _replicate(arrays: list[jax.Array]) -> list[jax.Array]:
  """The arrays replicated on their devices, by one jitted identity."""
  shardings = []
  for x in arrays:
    if isinstance(x.sharding, NamedSharding):
      shardings.append(NamedSharding(x.sharding.mesh, P()))
    else:  # e.g. a PositionalSharding: process_allgather's own fallback
      from jax.experimental import multihost_utils
      return [multihost_utils.process_allgather(x, tiled=True)
              for x in arrays]
  return jax.jit(_identity, out_shardings=shardings)(arrays)


def mesh_context(mesh: Mesh | None) -> Any:
  """``jax.set_mesh(mesh)`` while tracing and running, so that models using
  explicit sharding (``reshard``, ``out_sharding``) see their mesh."""
  if mesh is None:
    return contextlib.nullcontext()
  return jax.set_mesh(mesh)
