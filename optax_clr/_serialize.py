"""Strict JSON, CSV and atomic file writes, shared by every result and the
CLI.

* JSON: NaN/inf become ``null`` (strict JSON has no NaN) and are read back
  as NaN; NumPy arrays and scalars become lists and numbers. Anything else
  is an error naming where it is (never a silent ``str(value)``).
* CSV: full float precision (``repr``), ``nan``/``inf`` kept, missing cells
  blank.
* Every file is written to a temporary file in the same directory and then
  renamed over the target (``os.replace``): a crash or an interrupt never
  leaves a torn file, and a reader sees the old or the new file whole.
* In a multi-process JAX run (``jax.distributed.initialize``) only process
  0 writes files: every process holds the same results, and N processes
  renaming over one path on a shared file system would race.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import pathlib
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

PathLike = str | os.PathLike[str]


def jsonable(value: Any, where: str = "value") -> Any:
  """Strict-JSON form of ``value``: lists for arrays, None for NaN/inf."""
  if isinstance(value, np.ndarray):
    if value.dtype.kind in "OUSV":
      raise TypeError(f"{where} is not JSON-able: an array of dtype "
                      f"{value.dtype}")
    return jsonable(value.tolist(), where)
  if isinstance(value, np.generic):
    return jsonable(value.item(), where)
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if value is None or isinstance(value, (str, bool, int)):
    return value
  if isinstance(value, Mapping):
    return {str(k): jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [jsonable(v, where) for v in value]
  if isinstance(value, (np.dtype, type)):
    return str(value)
  if isinstance(value, pathlib.PurePath):
    return str(value)
  raise TypeError(
      f"{where} is not JSON-able: {type(value).__name__} {value!r}"[:200])


def is_writer() -> bool:
  """False on the processes other than 0 of a multi-process JAX run."""
  import jax  # here: this module is also used without jax's backends
  return not jax.distributed.is_initialized() or jax.process_index() == 0


def umask() -> int:
  """The process's umask, read without changing it where Linux tells it
  (``/proc/self/status``); elsewhere set and restored at once."""
  try:
    with open("/proc/self/status", encoding="ascii") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError, IndexError):
    pass
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w") -> Iterator[Any]:
  """Opens a temporary file next to ``path``; renames it over ``path`` when
  the block succeeds, deletes it otherwise. On a process other than 0 of
  a multi-process run (:func:`is_writer`) nothing is written: the block
  writes into memory."""
  if not is_writer():
    yield io.BytesIO() if "b" in mode else io.StringIO()
    return
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                             suffix=".tmp")
  kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
  try:
    with os.fdopen(fd, mode, **kwargs) as f:
      # mkstemp made it -rw-------; the file gets the mode open() would
      # give it (0o666 less the umask: 0644 under umask 022).
      os.chmod(tmp, 0o666 & ~umask())
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def write_text(path: PathLike, text: str) -> None:
  """Writes ``text`` to ``path`` atomically."""
  with atomic_open(path) as f:
    f.write(text)


def write_bytes(path: PathLike, data: bytes) -> None:
  """Writes ``data`` to ``path`` atomically."""
  with atomic_open(path, "wb") as f:
    f.write(data)


def source_name(source: PathLike) -> str:
  """How :func:`load_json` names ``source`` in its errors."""
  if isinstance(source, str) and source.lstrip().startswith(("{", "[")):
    return "JSON text"
  return os.fspath(source)


def load_json(source: PathLike) -> Any:
  """Parses JSON text, or the file at ``source`` when it is not JSON text.

  Raises:
    ValueError: naming the file, for text that is not UTF-8, not JSON, or
      nested too deeply to read.
    OSError: the file cannot be read.
  """
  name = source_name(source)
  if name == "JSON text":
    text = source
  else:
    raw = pathlib.Path(source).read_bytes()
    try:
      text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      raise ValueError(f"{name}: not a JSON file (not UTF-8 text: byte "
                       f"{e.start} is {raw[e.start]:#04x})") from e
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"{name}: invalid JSON ({e.msg} at line {e.lineno} "
                     f"column {e.colno})") from e
  except RecursionError as e:
    raise ValueError(f"{name}: JSON nested too deeply to read") from e


def dump_json(data: Any, path: PathLike | None, indent: int | None) -> str:
  """Strict JSON text of ``data``; also written atomically to ``path``."""
  text = json.dumps(data, allow_nan=False, indent=indent)
  if path is not None:
    write_text(path, text + "\n")
  return text


def check_type(cls: type, data: Mapping[str, Any]) -> None:
  kind = data.get("type", cls.__name__)
  if kind != cls.__name__:
    raise ValueError(f"expected a {cls.__name__}, got type {kind!r}")


def cell(value: Any) -> str:
  """A CSV cell: full float precision, 'nan'/'inf' kept, None left blank."""
  if value is None:
    return ""
  if isinstance(value, (bool, np.bool_)):
    return str(bool(value))
  if isinstance(value, (int, np.integer)):
    return str(int(value))
  if isinstance(value, str):
    return value
  return repr(float(value))


def write_csv(header: list[str], rows: list[list[Any]],
              path: PathLike | None) -> str:
  """CSV text of ``rows``; also written atomically to ``path``."""
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(header)
  for row in rows:
    writer.writerow([cell(v) for v in row])
  text = buf.getvalue()
  if path is not None:
    write_text(path, text)
  return text
