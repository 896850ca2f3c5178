"""The persistent compilation cache, one line to turn on.

On a CPU, compiling is most of a short range test (a first 100-step test:
about 2 s of compilation for 0.3 s of steps). JAX can keep compiled programs
on disk and reuse them in later processes; ``enable_compilation_cache()``
turns that on for every program (also the many small ones: initialisers,
evaluations) in ``~/.cache/optax-clr/xla`` (``$XDG_CACHE_HOME/optax-clr/xla``
where that is set) or a directory of your choice. The CLI calls it for every
command.
"""

from __future__ import annotations

import os

import jax


def default_cache_dir() -> str | None:
  """Where compiled programs go when no directory is given.

  Returns:
    ``$OPTAX_CLR_CACHE_DIR/xla``; None when ``OPTAX_CLR_CACHE_DIR`` is set and
    empty (the cache is off); else ``$XDG_CACHE_HOME/optax-clr/xla``, with
    ``~/.cache`` when ``XDG_CACHE_HOME`` is unset (the XDG base-directory
    rule).
  """
  base = os.environ.get("OPTAX_CLR_CACHE_DIR")
  if base == "":
    return None
  if base is None:
    base = os.path.join(os.environ.get("XDG_CACHE_HOME")
                        or os.path.join(os.path.expanduser("~"), ".cache"),
                        "optax-clr")
  return os.path.join(base, "xla")


def enable_compilation_cache(path: str | os.PathLike[str] | None = None
                             ) -> str | None:
  """Keeps compiled XLA programs in ``path`` between processes.

  Args:
    path: the cache directory; default ``$OPTAX_CLR_CACHE_DIR/xla`` (an
      empty ``OPTAX_CLR_CACHE_DIR`` turns the cache off), else
      ``$XDG_CACHE_HOME/optax-clr/xla`` (``~/.cache`` when unset).

  Returns:
    The directory used, or None when the cache is off or the directory
    cannot be created (e.g. a read-only home).
  """
  path = default_cache_dir() if path is None else os.fspath(path)
  if path is None:
    return None
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  return path
