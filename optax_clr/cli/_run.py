"""A command's run directory: checks of ``--out``, the lock, the record of
configuration and environment.

A run directory (``--out``, default ``runs/<command>-<timestamp>``) holds
``config.json``, ``environment.json``, the results and the plots, every file
written atomically. It is locked while a command uses it; a directory that
already holds a run is refused unless ``--overwrite`` (which first removes
that run's record, results and plots, so that none of them can pass for
the new run's); an empty ``--out``,
the current directory, the home directory, a filesystem root and a
non-empty directory that is not a run are refused.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import platform
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import click

from optax_clr.cli._common import usage

LOCK_NAME = ".optax-clr.lock"


def _unsafe(path: pathlib.Path) -> str | None:
  resolved = path.resolve()
  if resolved == pathlib.Path(resolved.anchor):
    return "a filesystem root"
  if resolved == pathlib.Path.home().resolve():
    return "the home directory"
  if resolved == pathlib.Path.cwd().resolve():
    return "the current directory"
  return None


def check_out(out: str | None, overwrite: bool) -> pathlib.Path | None:
  """The ``--out`` path after the checks (None: a fresh default)."""
  if out is None:
    return None
  if not out.strip():
    raise usage("--out must name a directory, got an empty string")
  path = pathlib.Path(out).expanduser()
  why = _unsafe(path)
  if why is not None:
    raise usage(f"--out {out} is {why}; give a directory of its own")
  if path.exists() and not path.is_dir():
    raise usage(f"--out {out} exists and is not a directory")
  pid = _lock_holder(path)
  if pid is not None:
    raise usage(f"--out {path} is in use by another optax-clr run (pid "
                f"{pid})")
  if path.is_dir() and any(not _transient(p) for p in path.iterdir()):
    if not (path / "config.json").exists():
      raise usage(f"--out {out} is a non-empty directory that holds no "
                  "optax-clr run; give an empty or new directory")
    if not overwrite:
      raise usage(f"--out {out} already holds a run (config.json); use "
                  "another directory or --overwrite")
  return path


def _transient(p: pathlib.Path) -> bool:
  """The lock, or a temporary file of an atomic write (``.NAME.*.tmp``) that
  a killed run left behind."""
  return p.name == LOCK_NAME or (p.name.startswith(".")
                                 and p.name.endswith(".tmp"))


def clear_previous(path: pathlib.Path) -> list[str]:
  """Removes what a previous run left in ``path`` (its record, results and
  plots: ``*.json``, ``*.csv``, ``*.png``, temporary files), so that no
  file of it can pass for one of the new run; a checkpoint
  (``*.msgpack``) is kept for ``--checkpoint-dir``. Returns the names."""
  removed = []
  for p in sorted(path.iterdir()):
    if p.is_file() and p.name != LOCK_NAME and (
        _transient(p) or p.suffix in (".json", ".csv", ".png")):
      p.unlink()
      removed.append(p.name)
  return removed


def fresh_dir(command: str) -> pathlib.Path:
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  base = pathlib.Path("runs") / f"{command}-{stamp}"
  path, n = base, 1
  while path.exists():
    n += 1
    path = base.with_name(f"{base.name}-{n}")
  return path


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _lock_holder(path: pathlib.Path) -> int | None:
  """The pid of a live process holding ``path``'s lock, else None."""
  try:
    pid = int((path / LOCK_NAME).read_text().strip() or 0)
  except (OSError, ValueError):
    return None
  if pid and pid != os.getpid() and _pid_alive(pid):
    return pid
  return None


@contextlib.contextmanager
def locked(path: pathlib.Path) -> Iterator[None]:
  """Holds ``path/.optax-clr.lock`` (exclusive create) while in use; a lock
  left by a process that no longer runs is taken over."""
  lock = path / LOCK_NAME
  for _ in range(2):
    try:
      fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      break
    except FileExistsError:
      pid = _lock_holder(path)
      if pid is not None:
        raise usage(f"--out {path} is in use by another optax-clr run "
                    f"(pid {pid})")
      lock.unlink(missing_ok=True)
  else:
    raise usage(f"--out {path}: cannot take the lock {lock}")
  try:
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    yield
  finally:
    lock.unlink(missing_ok=True)


def environment_info() -> dict[str, Any]:
  """Versions, backend, devices and CPU: what a result needs to be
  compared."""
  import importlib.metadata as md

  import jax

  from optax_clr import __version__
  from optax_clr.engine import _autotune

  def version(dist: str) -> str | None:
    try:
      return md.version(dist)
    except md.PackageNotFoundError:
      return None

  devices = jax.devices()
  return {
      "optax_clr": __version__, "python": platform.python_version(),
      "jax": jax.__version__, "jaxlib": version("jaxlib"),
      "optax": version("optax"), "flax": version("flax"),
      "numpy": version("numpy"), "backend": jax.default_backend(),
      "device_count": jax.device_count(),
      "local_device_count": jax.local_device_count(),
      "process_count": jax.process_count(),
      "device_kind": devices[0].device_kind if devices else None,
      "cpu_model": _autotune.cpu_model(), "platform": platform.platform(),
      "machine": platform.machine(), "cpu_count": os.cpu_count(),
      "xla_flags": os.environ.get("XLA_FLAGS"),
  }


def compilation_cache_dir() -> str | None:
  """Where compiled XLA programs are kept between runs (None: not kept).

  ``OPTAX_CLR_CACHE_DIR`` (empty: off) + ``/xla``, else
  ``$XDG_CACHE_HOME/optax-clr/xla`` (``~/.cache/optax-clr/xla``). A
  ``JAX_COMPILATION_CACHE_DIR`` set by the user wins.
  """
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  from optax_clr.engine import _autotune
  base = _autotune.cache_dir()
  return None if base is None else str(base / "xla")


def configure_jax() -> str | None:
  """Turns on the persistent compilation cache; returns its directory."""
  from optax_clr import enable_compilation_cache
  path = compilation_cache_dir()
  if path is None or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return path
  return enable_compilation_cache(path)


class Run:
  """One command's output directory: config, environment, files written,
  and where human-readable lines go (stderr under ``--json``)."""

  def __init__(self, ctx: click.Context, out: pathlib.Path | None,
               as_json: bool = False):
    self.cache_dir = configure_jax()
    self.command = ctx.info_name or "run"
    self.dir = out if out is not None else fresh_dir(self.command)
    self.dir.mkdir(parents=True, exist_ok=True)
    self.as_json = as_json
    self.start = time.perf_counter()
    self.files: list[str] = []
    self._lock = locked(self.dir)
    self._lock.__enter__()
    # check_out let through a directory that is new, holds only what a
    # killed run left (temporary files), or holds a run and --overwrite.
    clear_previous(self.dir)
    self.config = {
        "command": self.command,
        "options": {k: (str(v) if isinstance(v, pathlib.Path) else v)
                    for k, v in ctx.params.items()},
        "argv": sys.argv[1:],
        "started": datetime.datetime.now().astimezone().isoformat(
            timespec="seconds"),
        "compilation_cache": self.cache_dir,
    }
    self.write_json("config.json", self.config)
    self.write_json("environment.json", environment_info())

  def say(self, text: str = "") -> None:
    click.echo(text, err=self.as_json)

  def path(self, name: str) -> pathlib.Path:
    if name not in self.files:
      self.files.append(name)
    return self.dir / name

  def write_json(self, name: str, data: Any) -> None:
    from optax_clr import _serialize
    _serialize.dump_json(_serialize.jsonable(data, name), self.path(name), 2)

  def finish(self, summary: Mapping[str, Any] | None = None,
             **resolved: Any) -> float:
    """Adds the derived values and the wall time to config.json, prints
    the file list (and the JSON summary under ``--json``), releases the
    directory."""
    wall = time.perf_counter() - self.start
    self.config["resolved"] = resolved
    self.config["wall_time_s"] = round(wall, 3)
    self.write_json("config.json", self.config)
    self.say(f"wrote {self.dir}/: {', '.join(sorted(self.files))}")
    if self.as_json:
      from optax_clr import _serialize
      click.echo(json.dumps(_serialize.jsonable(
          {"command": self.command, "out": str(self.dir),
           "files": sorted(self.files), "wall_time_s": round(wall, 3),
           **(summary or {})}), allow_nan=False))
    self.close()
    return wall

  def close(self) -> None:
    if self._lock is not None:
      self._lock.__exit__(None, None, None)
      self._lock = None


@contextlib.contextmanager
def run_dir(ctx: click.Context, out: str | None, overwrite: bool,
            as_json: bool) -> Iterator[Run]:
  run = Run(ctx, check_out(out, overwrite), as_json)
  try:
    yield run
  finally:
    run.close()
