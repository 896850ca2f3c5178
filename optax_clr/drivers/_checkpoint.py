"""Checkpoints of ``train``: write atomically, read strictly, resume exactly.

A checkpoint (``checkpoint.msgpack``, flax msgpack) holds the parameters, the
other model state, the optimizer state, the number of completed epochs, the
history so far and the run's configuration. It is written to a temporary
file and renamed over the old one, so a crash or an interrupt never leaves a
torn checkpoint. Since the data order of an epoch depends only on
``(seed, epoch)`` and the schedule position lives in the optimizer state, a
run resumed from it reproduces the uninterrupted run bit for bit. A
checkpoint of a different configuration is refused with the differing keys;
a file that is not a checkpoint, or one whose fields are missing or
malformed, is refused in one line naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from optax_clr import _serialize
from optax_clr.results import TrainHistory

CHECKPOINT_NAME = "checkpoint.msgpack"
FORMAT = "optax_clr.training.checkpoint"
FORMAT_VERSION = 1
# Config entries that may change between a run and its resumption: resuming
# with a larger num_epochs is how an interrupted run is extended.
NOT_COMPARED = frozenset(
    {"num_epochs", "checkpoint_every", "backend", "execution"})


def digest(*parts: Any) -> str:
  """Short SHA-256 of arrays (shape, dtype and bytes) and strings."""
  h = hashlib.sha256()
  for part in parts:
    if isinstance(part, str):
      h.update(part.encode())
      continue
    arr = np.asarray(part)
    h.update(f"{arr.shape}{arr.dtype}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
  return h.hexdigest()[:16]


def host_leaf(x: Any) -> np.ndarray:
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  return np.asarray(jax.device_get(x))


def tree_digest(tree: Any) -> str:
  leaves, treedef = jax.tree.flatten(tree)
  return digest(str(treedef), *[host_leaf(x) for x in leaves])


def config_diff(saved: Mapping[str, Any], current: Mapping[str, Any]
                ) -> list[str]:
  keys = sorted((set(saved) | set(current)) - NOT_COMPARED)
  return [f"{k}: checkpoint {saved.get(k, '<absent>')!r}, now "
          f"{current.get(k, '<absent>')!r}"
          for k in keys if saved.get(k) != current.get(k)]


def write(path: pathlib.Path, *, state: Any, epochs_done: int,
          history: TrainHistory, config: Mapping[str, Any]) -> None:
  """Atomically writes the checkpoint (process 0 only on multi-host)."""
  if jax.process_index() != 0:
    return
  leaves = jax.tree.leaves(state)
  payload = {
      "format": FORMAT,
      "version": FORMAT_VERSION,
      "config": json.dumps(_serialize.jsonable(config), sort_keys=True),
      "epochs_done": epochs_done,
      "history": history.to_json(),
      "state": {str(i): host_leaf(x) for i, x in enumerate(leaves)},
  }
  _serialize.write_bytes(path, serialization.msgpack_serialize(payload))


def read(path: pathlib.Path) -> dict[str, Any]:
  """The checkpoint's fields, checked (ValueError naming the file)."""
  try:
    raw = serialization.msgpack_restore(path.read_bytes())
  except Exception as e:  # pylint: disable=broad-except
    why = " ".join(str(e).split())[:200] or type(e).__name__
    raise ValueError(f"{path} is not a readable checkpoint: {why}") from e
  if not isinstance(raw, dict) or raw.get("format") != FORMAT:
    raise ValueError(f"{path} is not an optax_clr training checkpoint")
  if raw.get("version") != FORMAT_VERSION:
    raise ValueError(
        f"{path} has checkpoint format version {raw.get('version')}; this "
        f"version reads {FORMAT_VERSION}")
  kinds = {"config": str, "epochs_done": int, "history": str, "state": dict}
  for name, kind in kinds.items():
    if not isinstance(raw.get(name), kind):
      raise ValueError(f"{path}: malformed checkpoint: {name!r} is "
                       f"{'missing' if name not in raw else 'of type ' + type(raw[name]).__name__}")
  try:
    raw["config"] = json.loads(raw["config"])
    raw["history"] = TrainHistory.from_json(raw["history"])
  except ValueError as e:
    raise ValueError(f"{path}: malformed checkpoint: "
                     f"{' '.join(str(e).split())[:200]}") from e
  if not isinstance(raw["config"], dict) or raw["epochs_done"] < 0:
    raise ValueError(f"{path}: malformed checkpoint: bad config or "
                     "epochs_done")
  return raw


def restore_state(path: pathlib.Path, raw: Mapping[str, Any],
                  template: Any) -> Any:
  """Puts the checkpointed leaves into ``template``'s structure."""
  leaves, treedef = jax.tree.flatten(template)
  target = {str(i): host_leaf(x) for i, x in enumerate(leaves)}
  try:
    restored = serialization.from_state_dict(target, raw["state"])
  except (KeyError, ValueError, TypeError) as e:
    raise ValueError(
        f"{path}: the saved state does not match this model and optimizer: "
        f"{e}") from e
  out = []
  for i, like in enumerate(leaves):
    value = np.asarray(restored[str(i)])
    if value.shape != target[str(i)].shape or value.dtype != target[
        str(i)].dtype:
      raise ValueError(
          f"{path}: saved state leaf {i} has shape {value.shape} "
          f"{value.dtype}, expected {target[str(i)].shape} "
          f"{target[str(i)].dtype}")
    if jnp.issubdtype(like.dtype, jax.dtypes.prng_key):
      value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(like))
    # Keep the template's placement: an uncommitted array stays uncommitted,
    # or the compiled program would be lowered (and compiled) again for it.
    out.append(jax.device_put(value, like.sharding) if like.committed
               else jax.device_put(value))
  return jax.tree.unflatten(treedef, out)


def epochs_done(checkpoint_dir: str | os.PathLike[str]) -> int | None:
  """Completed epochs of the checkpoint in ``checkpoint_dir`` (None when
  there is none); ValueError when it is unreadable."""
  path = pathlib.Path(checkpoint_dir) / CHECKPOINT_NAME
  if not path.exists():
    return None
  return int(read(path)["epochs_done"])
