"""How many copies fit in a GPU's or TPU's memory at once.

On a device that reports memory (``Device.memory_stats()``; CPUs do not),
the copies resident at once are capped so that a large K (say 4096) runs
in rounds instead of running out of memory:

  n = floor((MEMORY_FRACTION * free - fixed) / per_copy),   at least 1,

with ``per_copy = M(2) - M(1)`` and ``fixed = M(1) - per_copy`` from XLA's
memory analysis ``M(g)`` of the chunk program compiled (not run) for groups
of 1 and 2 copies, plus the chunk's batches (the running and the prefetched
one) and the validation batches. Every process agrees on the smallest n.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from optax_clr.engine import _model

MEMORY_FRACTION = 0.8


def free_bytes(stats: Mapping[str, Any] | None) -> int | None:
  """``bytes_limit - bytes_in_use`` of a ``memory_stats()`` dict (None: no
  statistics, as on CPU, or no limit)."""
  if not stats:
    return None
  limit, used = stats.get("bytes_limit"), stats.get("bytes_in_use")
  if limit is None or used is None or int(limit) <= 0:
    return None
  return max(0, int(limit) - int(used))


def copies_that_fit(free: int | None, per_copy: int, fixed: int,
                    fraction: float = MEMORY_FRACTION) -> int | None:
  """``floor((fraction * free - fixed) / per_copy)``, at least 1; None when
  ``free`` is None (no cap)."""
  if free is None:
    return None
  if per_copy <= 0:
    raise ValueError(f"per_copy must be > 0 bytes, got {per_copy}")
  if not 0 < fraction <= 1:
    raise ValueError(f"fraction must be in (0, 1], got {fraction}")
  return max(1, int((fraction * free - fixed) // per_copy))


def device_free_bytes(devices: Sequence[Any]) -> int | None:
  """The least free memory of this process's ``devices``; None if any of
  them reports no statistics."""
  free = []
  for d in devices:
    if d.process_index != jax.process_index():
      continue
    try:
      stats = d.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None
    f = free_bytes(stats)
    if f is None:
      return None
    free.append(f)
  return min(free) if free else None


def nbytes(tree: Any) -> int:
  total = 0
  for x in jax.tree.leaves(tree):
    size = int(np.prod(np.shape(x)))
    total += size * (8 if _model.is_key(x) else np.dtype(x.dtype).itemsize)
  return total


def _program_bytes(prog: Any, setup: Any, consts: Any, group: int) -> int:
  """Peak bytes of the chunk program for a group of ``group`` copies (XLA's
  memory analysis of the compiled, never run, program)."""
  from optax_clr.engine import _loop  # pylint: disable=import-outside-toplevel
  from optax_clr.engine import _step  # pylint: disable=import-outside-toplevel
  prog = dataclasses.replace(prog, plan=dataclasses.replace(
      prog.plan, group=group, devices=1, mesh=None, copies_axis=None))
  ts = jax.eval_shape(lambda p: _step.init(setup.spec, p), setup.parts)
  carry = jax.eval_shape(prog.solver.init, ts)
  one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x)[1:],
                                                    np.asarray(x).dtype),
                     consts)
  stack = lambda t: jax.tree.map(  # noqa: E731
      lambda x: jax.ShapeDtypeStruct((group,) + x.shape, x.dtype), t)
  batch = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(
          (setup.chunk_steps, setup.options.accumulation_steps) + np.shape(x),
          x.dtype), setup.feed.first_batch())
  steps = jax.ShapeDtypeStruct((setup.chunk_steps,), np.int32)
  xs = (batch, jax.ShapeDtypeStruct((setup.chunk_steps,), np.bool_), steps)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # buffers a copy cannot donate
    a = _loop.chunk_program.lower(prog, stack(carry), stack(one),
                                  setup.val, xs).compile().memory_analysis()
  return int(a.argument_size_in_bytes + a.output_size_in_bytes
             - a.alias_size_in_bytes + a.temp_size_in_bytes)


def copies_per_device(setup: Any, prog: Any, consts: Any) -> int | None:
  """Copies one device holds at once (module docstring); None on CPU or
  without memory statistics."""
  devices = (jax.devices() if setup.mesh is None
             else list(setup.mesh.devices.ravel()))
  if all(d.platform == "cpu" for d in devices):
    return None
  free = device_free_bytes(devices)
  n = None
  if free is not None:
    try:
      m1, m2 = (_program_bytes(prog, setup, consts, g) for g in (1, 2))
    except Exception:  # pylint: disable=broad-except
      m1 = m2 = None  # no memory analysis on this backend: no cap
    if m1 is not None:
      per_copy = max(m2 - m1, nbytes(setup.parts), 1)
      batches = 2 * nbytes(setup.feed.first_batch()) * setup.chunk_steps * (
          setup.options.accumulation_steps) + nbytes(setup.val)
      n = copies_that_fit(free, per_copy, max(m1 - per_copy, 0) + batches)
  return agree_min(n) if jax.process_count() > 1 else n


def agree_min(n: int | None) -> int | None:
  """The smallest ``n`` of all processes (None: no cap, on every one)."""
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  every = np.asarray(multihost_utils.process_allgather(
      np.int64(-1 if n is None else n)))
  capped = every[every >= 0]
  return int(capped.min()) if capped.size else None
