"""Shared helpers of the benchmarks: machine/version info, timing, results.

Every script records the machine (CPU model, cores, load average before and
after), the library versions and the date next to its numbers, and writes
them to ``benchmarks/results/<name>.json`` plus a flat ``<name>.csv``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from optax_clr import _serialize
from optax_clr.engine._autotune import cpu_model

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "results")


def _version(module: str) -> str | None:
  try:
    mod = __import__(module)
  except Exception:  # noqa: BLE001 - a missing peer is reported, not fatal
    return None
  version = getattr(mod, "__version__", None)
  if version is None:  # e.g. torch_lr_finder has no __version__
    import importlib.metadata
    try:
      version = importlib.metadata.version(module.replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
      version = "unknown"
  return str(version)


def machine_info() -> dict[str, Any]:
  """CPU, cores, load average (1/5/15 min), versions and date."""
  return {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      "cpu_model": cpu_model(),
      "cores": os.cpu_count(),
      "loadavg": [round(x, 2) for x in os.getloadavg()],
      "platform": platform.platform(),
      "versions": {
          "python": platform.python_version(),
          "jax": _version("jax"),
          "jaxlib": _version("jaxlib"),
          "optax": _version("optax"),
          "flax": _version("flax"),
          "torch": _version("torch"),
          "numpy": _version("numpy"),
          "torch_lr_finder": _version("torch_lr_finder"),
      },
      "argv": sys.argv[1:],
  }


def time_once(fn: Callable[[], Any]) -> float:
  """Wall seconds of one call (``fn`` must block on its own results)."""
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def time_repeats(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
  """Times ``repeats`` calls; the median is the number to quote."""
  times = [time_once(fn) for _ in range(repeats)]
  return {"median": statistics.median(times), "min": min(times),
          "max": max(times), "all": times}


class PeakRSS:
  """Peak resident set size of this process above its value at entry.

  A thread samples psutil's RSS every ``interval`` seconds. XLA allocates
  outside Python's allocator, so tracemalloc would miss it; the RSS delta
  includes compiled code, buffers and any allocator caching.
  """

  def __init__(self, interval: float = 0.005):
    import psutil  # only the memory benchmarks need it
    self._proc = psutil.Process()
    self._interval = interval
    self.base = self.peak = 0

  def _run(self):
    while not self._stop.is_set():
      self.peak = max(self.peak, self._proc.memory_info().rss)
      time.sleep(self._interval)

  def __enter__(self):
    self.base = self.peak = self._proc.memory_info().rss
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, self._proc.memory_info().rss)

  @property
  def delta_mb(self) -> float:
    return (self.peak - self.base) / 2**20


def print_table(rows: Sequence[dict[str, Any]],
                columns: Sequence[str] | None = None) -> str:
  """Prints rows as a Markdown table (also returned)."""
  if not rows:
    return ""
  columns = list(columns or rows[0].keys())

  def fmt(v):
    if isinstance(v, float):
      return f"{v:.4g}"
    return str(v)

  lines = ["| " + " | ".join(columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
  lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |"
            for r in rows]
  text = "\n".join(lines)
  print(text)
  return text


def write_results(name: str, rows: Sequence[dict[str, Any]],
                  summary: dict[str, Any], machine: dict[str, Any],
                  config: dict[str, Any]) -> None:
  """Writes ``results/<name>.json`` (everything) and ``<name>.csv`` (rows),
  strict JSON and full-precision CSV as the library writes its results."""
  os.makedirs(RESULTS_DIR, exist_ok=True)
  machine = dict(machine)
  machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
  data = _serialize.jsonable({"benchmark": name, "machine": machine,
                              "config": config, "summary": summary,
                              "rows": list(rows)}, name)
  _serialize.dump_json(data, os.path.join(RESULTS_DIR, f"{name}.json"), 1)
  columns: list[str] = []
  for r in data["rows"]:
    columns += [k for k in r if k not in columns]
  # Nested values (lists, dicts) go into one cell as JSON text.
  flat = lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v  # noqa: E731
  _serialize.write_csv(columns, [[flat(r.get(k)) for k in columns]
                                 for r in data["rows"]],
                       os.path.join(RESULTS_DIR, f"{name}.csv"))
  print(f"load average start {machine['loadavg']} end "
        f"{machine['loadavg_end']}; wrote {RESULTS_DIR}/{name}.json/.csv")


# ---------------------------------------------------------------------------
# The bundled CNN in JAX (one jitted train step) and the same CNN in PyTorch.


def digits_arrays() -> tuple[Any, Any]:
  """The embedded 8x8 digits as NHWC float32 images and int32 labels."""
  import optax_clr as oc
  ds = oc.load_digits()
  return ds.images, ds.labels


def jax_cnn(seed: int = 0, width: int = 16):
  """(graphdef, params) of ``optax_clr.CNN`` for 8x8 grey digits."""
  from flax import nnx
  import optax_clr as oc
  model = oc.CNN(num_classes=10, in_channels=1, width=width,
                 rngs=nnx.Rngs(seed))
  return nnx.split(model)


def jax_train_step(graphdef, optimizer):
  """A jitted ``step(params, opt_state, images, labels) -> (params,
  opt_state, loss)`` for the bundled CNN (buffers donated)."""
  import jax
  import optax
  from flax import nnx
  import optax_clr as oc

  def loss_fn(params, images, labels):
    model = nnx.merge(graphdef, params)
    return oc.cross_entropy_loss(model, {"image": images, "label": labels})[0]

  def step(params, opt_state, images, labels):
    loss, grads = jax.value_and_grad(loss_fn)(params, images, labels)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1)), step


def torch_cnn(jax_params=None, width: int = 16):
  """``optax_clr.CNN`` in PyTorch (NCHW): conv3x3(w) relu conv3x3(2w) relu
  avgpool2x2 conv3x3(2w) relu global-max-pool linear(10); 'SAME' padding 1.

  With ``jax_params`` (from :func:`jax_cnn`) the weights are copied, so both
  frameworks start from the same point.
  """
  import numpy as np
  import torch
  from torch import nn

  class CNN(nn.Module):

    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(1, width, 3, padding=1)
      self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
      self.conv3 = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
      self.head = nn.Linear(2 * width, 10)

    def forward(self, x):
      x = torch.relu(self.conv1(x))
      x = torch.relu(self.conv2(x))
      x = nn.functional.avg_pool2d(x, 2)
      x = torch.relu(self.conv3(x))
      return self.head(x.amax(dim=(2, 3)))

  net = CNN()
  if jax_params is not None:
    p = jax_params
    with torch.no_grad():
      for name in ("conv1", "conv2", "conv3"):
        k = np.asarray(p[name]["kernel"][...])
        conv = getattr(net, name)
        out, inp = conv.weight.shape[:2]
        # [kh*kw*in, out] (row-major kh, kw, in) -> [out, in, kh, kw]
        conv.weight.copy_(torch.from_numpy(
            k.reshape(3, 3, inp, out).transpose(3, 2, 0, 1).copy()))
        conv.bias.copy_(torch.from_numpy(np.array(p[name]["bias"][...])))
      net.head.weight.copy_(torch.from_numpy(
          np.asarray(p["head"]["kernel"][...]).T.copy()))
      net.head.bias.copy_(torch.from_numpy(
          np.array(p["head"]["bias"][...])))
  return net


def to_nchw(images):
  import numpy as np
  import torch
  return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def add_torch_threads_flag(ap) -> None:
  ap.add_argument(
      "--torch-threads", type=int, default=1,
      help="torch.set_num_threads for the PyTorch side (default 1: on this "
      "shared 2-core machine, 2 intra-op threads made a CNN step 15-40x "
      "slower under load, 125-370 ms vs 9-10 ms)")


def set_torch_threads(n: int) -> None:
  import torch
  torch.set_num_threads(n)
