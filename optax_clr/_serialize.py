"""Strict JSON and CSV for result objects (range tests, sweeps, training).

NaN/inf become ``null`` in JSON (strict JSON has no NaN) and are read back as
NaN; CSV keeps full float precision and leaves missing cells blank.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np


def jsonable(value: Any, where: str = "value") -> Any:
  """Strict-JSON form of ``value``: lists for arrays, None for NaN/inf."""
  if isinstance(value, np.ndarray):
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
  raise TypeError(
      f"{where} is not JSON-able: {type(value).__name__} {value!r}")


def load_json(source: str | os.PathLike[str]) -> Any:
  """Parses JSON text, or the file at ``source`` when it is not JSON text."""
  if isinstance(source, str) and source.lstrip().startswith("{"):
    return json.loads(source)
  with open(source, encoding="utf-8") as f:
    return json.load(f)


def dump_json(data: dict[str, Any], path: str | os.PathLike[str] | None,
               indent: int | None) -> str:
  text = json.dumps(data, allow_nan=False, indent=indent)
  if path is not None:
    with open(path, "w", encoding="utf-8") as f:
      f.write(text + "\n")
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
  return repr(float(value))


def write_csv(header: list[str], rows: list[list[Any]],
               path: str | os.PathLike[str] | None) -> str:
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(header)
  for row in rows:
    writer.writerow([cell(v) for v in row])
  text = buf.getvalue()
  if path is not None:
    with open(path, "w", encoding="utf-8", newline="") as f:
      f.write(text)
  return text
