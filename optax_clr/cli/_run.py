"""A command's run directory (``--out``, default
``runs/<command>-<timestamp>``): config.json, environment.json, results and
plots, every file written atomically, locked while in use. ``--out`` may
not be empty, the current or home directory, a filesystem root, or a
non-empty directory that is no run; one that holds a run needs
``--overwrite``, which first removes that run's record, results and plots
(a checkpoint is kept).
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
from collections.abc import Mapping
from typing import Any

import click

from optax_clr.cli._common import usage

LOCK_NAME = ".optax-clr.lock"


def _transient(p: pathlib.Path) -> bool:
  """The lock, or the temporary file of an atomic write (``.NAME.*.tmp``)
  that a killed run left behind."""
  return p.name == LOCK_NAME or (p.name.startswith(".")
                                 and p.name.endswith(".tmp"))


def check_out(out: str | None, overwrite: bool) -> pathlib.Path | None:
  """The ``--out`` path after the checks (None: a fresh default)."""
  if out is None:
    return None
  if not out.strip():
    raise usage("--out must name a directory, got an empty string")
  path = pathlib.Path(out).expanduser()
  resolved = path.resolve()
  for place, why in ((pathlib.Path(resolved.anchor), "a filesystem root"),
                     (pathlib.Path.home().resolve(), "the home directory"),
                     (pathlib.Path.cwd().resolve(), "the current directory")):
    if resolved == place:
      raise usage(f"--out {out} is {why}; give a directory of its own")
  if path.exists() and not path.is_dir():
    raise usage(f"--out {out} exists and is not a directory")
  _check_lock(path)
  if path.is_dir() and any(not _transient(p) for p in path.iterdir()):
    if not (path / "config.json").exists():
      raise usage(f"--out {out} is a non-empty directory that holds no "
                  "optax-clr run; give an empty or new directory")
    if not overwrite:
      raise usage(f"--out {out} already holds a run (config.json); use "
                  "another directory or --overwrite")
  return path


def _check_lock(path: pathlib.Path) -> None:
  """A usage error while a live process (not this one) holds the lock."""
  try:
    pid = int((path / LOCK_NAME).read_text().strip() or 0)
    if pid and pid != os.getpid():
      os.kill(pid, 0)
    else:
      return
  except PermissionError:  # alive, another user's
    pass
  except (OSError, ValueError):
    return
  raise usage(f"--out {path} is in use by another optax-clr run (pid {pid})")


def _lock(path: pathlib.Path) -> pathlib.Path:
  """Takes ``path/.optax-clr.lock`` (exclusive create, our pid inside); a
  lock left by a process that no longer runs is taken over."""
  lock = path / LOCK_NAME
  for _ in range(2):
    try:
      fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      _check_lock(path)
      lock.unlink(missing_ok=True)
      continue
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return lock
  raise usage(f"--out {path}: cannot take the lock {lock}")


def environment_info() -> dict[str, Any]:
  """Versions, backend and devices: what a result needs to be compared."""
  import importlib.metadata as md

  import jax

  from optax_clr import __version__

  def version(dist):
    with contextlib.suppress(md.PackageNotFoundError):
      return md.version(dist)
  return {
      "optax_clr": __version__, "python": platform.python_version(),
      "jax": jax.__version__, **{d: version(d) for d in (
          "jaxlib", "optax", "flax", "numpy")},
      "backend": jax.default_backend(), "device_count": jax.device_count(),
      "local_device_count": jax.local_device_count(),
      "process_count": jax.process_count(),
      "device_kind": jax.devices()[0].device_kind,
      "platform": platform.platform(), "machine": platform.machine(),
      "processor": platform.processor() or None, "cpu_count": os.cpu_count(),
      "xla_flags": os.environ.get("XLA_FLAGS")}


def compilation_cache() -> str | None:
  """Keeps compiled programs between runs; returns the directory (None:
  off). ``JAX_COMPILATION_CACHE_DIR`` set by the user wins; else the
  library's ``default_cache_dir()``."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  from optax_clr import enable_compilation_cache
  return enable_compilation_cache()


class Run:
  """One command's run directory, used as ``with Run(ctx, flags) as run``:
  config, environment, results, and where human-readable lines go (stderr
  under ``--json``)."""

  def __init__(self, ctx: click.Context, f: Any):
    out = check_out(f.out, f.overwrite)
    self.command = ctx.info_name or "run"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    self.dir, n = out or pathlib.Path("runs", f"{self.command}-{stamp}"), 1
    while out is None and self.dir.exists():
      n += 1
      self.dir = pathlib.Path("runs", f"{self.command}-{stamp}-{n}")
    self.dir.mkdir(parents=True, exist_ok=True)
    self.as_json, self.start = f.as_json, time.perf_counter()
    self._lock = _lock(self.dir)
    # check_out let through a new directory, one holding only what a killed
    # run left (temporary files), or one holding a run with --overwrite.
    for p in self.dir.iterdir():
      if p.is_file() and p.name != LOCK_NAME and (
          _transient(p) or p.suffix in (".json", ".csv", ".png")):
        p.unlink()
    self.config = {
        "command": self.command, "argv": sys.argv[1:],
        "options": {k: (str(v) if isinstance(v, pathlib.Path) else v)
                    for k, v in ctx.params.items()},
        "started": datetime.datetime.now().astimezone().isoformat(
            timespec="seconds"), "compilation_cache": compilation_cache()}
    self.write_json("config.json", self.config)
    self.write_json("environment.json", environment_info())

  def say(self, text: str = "") -> None:
    click.echo(text, err=self.as_json)

  def path(self, name: str) -> pathlib.Path:
    return self.dir / name

  def write_json(self, name: str, data: Any) -> None:
    from optax_clr import _serialize
    _serialize.dump_json(_serialize.jsonable(data, name), self.path(name), 2)

  def save(self, result: Any, stem: str, plot: str | None = None,
           **plot_kwargs: Any) -> None:
    """A result's ``stem.json``, ``stem.csv`` and plot (``plot.png``)."""
    result.to_json(self.path(f"{stem}.json"))
    result.to_csv(self.path(f"{stem}.csv"))
    result.plot(path=self.path(f"{plot or stem}.png"), **plot_kwargs)

  def finish(self, summary: Mapping[str, Any] | None = None,
             **resolved: Any) -> float:
    """Adds the derived values and the wall time to config.json, prints
    the files written (and the JSON summary under ``--json``), releases
    the directory."""
    wall = round(time.perf_counter() - self.start, 3)
    self.config.update(resolved=resolved, wall_time_s=wall)
    self.write_json("config.json", self.config)
    files = sorted(p.name for p in self.dir.iterdir() if not _transient(p))
    self.say(f"wrote {self.dir}/: {', '.join(files)}")
    if self.as_json:
      from optax_clr import _serialize
      click.echo(json.dumps(_serialize.jsonable(
          {"command": self.command, "out": str(self.dir), "files": files,
           "wall_time_s": wall, **(summary or {})}), allow_nan=False))
    self.close()
    return wall

  def close(self) -> None:
    if self._lock is not None:
      self._lock.unlink(missing_ok=True)
      self._lock = None

  def __enter__(self) -> Run:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()
