"""The persistent compilation cache, one line to turn on.

On a CPU, compiling is most of a short range test (a first 100-step test:
about 2 s of compilation for 0.3 s of steps). JAX can keep compiled programs
on disk and reuse them in later processes; ``enable_compilation_cache()``
turns that on for every program (also the many small ones: initialisers,
evaluations) in ``~/.cache/optax-clr/xla`` or a directory of your choice.
The CLI calls it for every command.
"""

from __future__ import annotations

import os

import jax


def enable_compilation_cache(path: str | os.PathLike[str] | None = None
                             ) -> str | None:
  """Keeps compiled XLA programs in ``path`` between processes.

  Args:
    path: the cache directory; default ``$OPTAX_CLR_CACHE_DIR/xla`` (an
      empty ``OPTAX_CLR_CACHE_DIR`` turns the cache off), else
      ``~/.cache/optax-clr/xla``.

  Returns:
    The directory used, or None when the cache is off or the directory
    cannot be created (e.g. a read-only home).
  """
  if path is None:
    base = os.environ.get("OPTAX_CLR_CACHE_DIR")
    if base == "":
      return None
    path = os.path.join(base or os.path.join(
        os.path.expanduser("~"), ".cache", "optax-clr"), "xla")
  path = os.fspath(path)
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  return path
