"""How many copies to vmap together on one device, chosen by measurement.

On GPU/TPU all local copies are vmapped at once (wide vmaps are what
accelerators are for). On a CPU a vmapped group is faster than the same
copies one after another only while its working set (group size x
activations) stays in cache, which depends on the model, the batch and the
CPU: measured on two 2-core machines with the bundled CNN on digits, the
best group was 2 on an AMD EPYC and 1 on an Intel Xeon (clr-facts). No
cache-size model predicts that, so :func:`group_size` times one vmapped
step for group sizes 1, 2, 4, ... and keeps the fastest per copy.

The choice is cached per machine (backend, device kind, CPU model, device
count) and model signature (shapes and dtypes of parameters, state and
batch, optimizer, compute dtype), in memory and in
``$OPTAX_CLR_CACHE_DIR/autotune.json`` (default
``~/.cache/optax-clr/autotune.json``; an empty ``OPTAX_CLR_CACHE_DIR``
keeps it in memory only), so a model is measured once per machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optax_clr import _serialize
from optax_clr.engine import _model

PyTree = Any
# Fewer local copies than this are run one by one without measuring: the
# gain of grouping two or three copies does not pay for compiling the
# candidates.
MIN_COPIES_TO_MEASURE = 4
MAX_GROUP = 16
_MEMORY: dict[str, int] = {}


def cache_dir() -> pathlib.Path | None:
  """``$OPTAX_CLR_CACHE_DIR`` (empty: none), else ``~/.cache/optax-clr``."""
  env = os.environ.get("OPTAX_CLR_CACHE_DIR")
  if env is not None:
    return pathlib.Path(env) if env else None
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return pathlib.Path(base) / "optax-clr"


def cpu_model() -> str:
  """The CPU model name (``/proc/cpuinfo``), or the platform's processor."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _key(setup: Any, local: int) -> str:
  parts = setup.parts
  batch = setup.feed.first_batch()
  sig = json.dumps([
      jax.default_backend(), jax.devices()[0].device_kind, cpu_model(),
      jax.device_count(), local, _model.signature(parts.params),
      _model.signature(parts.rest), _model.signature(batch),
      setup.engine.optimizer.description,
      str(setup.engine.compute_dtype)], default=str)
  return hashlib.sha256(sig.encode()).hexdigest()[:20]


def _load() -> dict[str, int]:
  d = cache_dir()
  if d is None:
    return {}
  try:
    data = json.loads((d / "autotune.json").read_text(encoding="utf-8"))
    return {str(k): int(v) for k, v in data.items()}
  except (OSError, ValueError, TypeError, AttributeError):
    return {}


def _store(key: str, value: int) -> None:
  _MEMORY[key] = value
  d = cache_dir()
  if d is None:
    return
  data = _load()
  data[key] = value
  try:
    _serialize.write_text(d / "autotune.json", json.dumps(data, indent=0))
  except OSError:
    pass  # a read-only home: keep the choice in memory only


def _time_group(setup: Any, g: int, repeats: int = 3) -> float:
  """Seconds per copy of one vmapped step of ``g`` copies (warm)."""
  engine = setup.engine
  state = engine.init(setup.parts.params, setup.parts.rest)
  states = jax.tree.map(lambda x: jnp.broadcast_to(x, (g,) + x.shape), state)
  micro = jax.tree.map(lambda x: np.asarray(x)[None] if not _model.is_key(
      x) else x[None], setup.feed.first_batch())
  key = jax.random.key(0)

  def step(s, lr):
    return engine.step(s, micro, key, {name: lr for name in
                                       engine.optimizer.driven})[0]
  f = jax.jit(jax.vmap(step))
  lrs = jnp.full((g,), 1e-3, jnp.float32)
  jax.block_until_ready(f(states, lrs))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(f(states, lrs))
    best = min(best, time.perf_counter() - t0)
  return best / g


def group_size(setup: Any, local: int) -> int:
  """Copies vmapped together on one device for ``local`` copies per device.

  All of them on GPU/TPU; on CPU the fastest per copy among 1, 2, 4, ...
  (up to ``MAX_GROUP``), measured once per machine and model (see the
  module docstring); 1 for fewer than ``MIN_COPIES_TO_MEASURE`` copies.
  """
  if local <= 1:
    return 1
  if jax.default_backend() != "cpu":
    return local
  if local < MIN_COPIES_TO_MEASURE or not setup.engine.optimizer.driven:
    return 1
  key = _key(setup, local)
  if key not in _MEMORY:
    cached = _load().get(key)
    if cached is not None:
      _MEMORY[key] = cached
  if key in _MEMORY:
    return min(_MEMORY[key], local)
  best_g, best_t, worse = 1, _time_group(setup, 1), 0
  g = 2
  while g <= min(local, MAX_GROUP) and worse < 2:
    t = _time_group(setup, g)
    if t < best_t:
      best_g, best_t, worse = g, t, 0
    else:
      worse += 1
    g *= 2
  _store(key, best_g)
  return best_g
