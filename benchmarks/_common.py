"""Shared helpers of the benchmarks: machine/version info, timing, results.

Every script records the machine (CPU model, cores, load average before and
after), the library versions and the date next to its numbers, and writes
them to ``benchmarks/results/<name>.json`` plus a flat ``<name>.csv``.
"""

from __future__ import annotations

import dataclasses
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


def cpu_model() -> str:
  """The CPU's model name (``/proc/cpuinfo``; else ``platform``)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


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


# ---------------------------------------------------------------------------
# This machine's matmul rate, the FLOPs of one step, loss agreement.


def matmul_gflops(repeats: int = 5) -> float:
  """This machine's float32 2048x2048 matmul rate (GFLOP/s, best of)."""
  import jax
  import jax.numpy as jnp
  a = jnp.ones((2048, 2048), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  jax.block_until_ready(f(a))
  best = min(time_once(lambda: jax.block_until_ready(f(a)))
             for _ in range(repeats))
  return 2 * 2048 ** 3 / best / 1e9


def cost_flops(fn: Callable[..., Any], *args: Any) -> float:
  """FLOPs of one call of ``fn(*args)`` by XLA's cost analysis of
  ``jax.jit(fn).lower(*args).compile()`` (NaN when not reported)."""
  import jax
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", float("nan")))


def max_rel_diff(ours: Any, theirs: dict[int, Any]) -> float | None:
  """Largest relative difference of ``ours[i]`` (losses per step) from
  ``theirs[i]`` over the steps where both are finite (None: none are)."""
  import numpy as np
  worst = None
  for i, t in theirs.items():
    t = np.asarray(t, np.float64)
    o = np.asarray(ours[i], np.float64)[:t.size]
    ok = np.isfinite(o) & np.isfinite(t)
    if ok.any():
      d = float(np.max(np.abs(o[ok] - t[ok]) /
                       np.maximum(np.abs(t[ok]), 1e-6)))
      worst = d if worst is None else max(worst, d)
  return worst


def epoch_batches(data: Any, batch_size: int, seed: int,
                  num_steps: int) -> list[Any]:
  """``num_steps`` batches of ``data`` (a pytree of arrays with a leading
  example axis) in the library's documented order: epoch ``e`` visits the
  examples in ``np.random.default_rng((seed, e)).permutation(n)``, the
  incomplete last batch dropped (``optax_clr.Options.seed``)."""
  import jax
  import numpy as np
  n = jax.tree.leaves(data)[0].shape[0]
  per_epoch = n // batch_size
  out, epoch = [], 0
  while len(out) < num_steps:
    order = np.random.default_rng((seed, epoch)).permutation(n)
    for b in range(per_epoch):
      if len(out) == num_steps:
        break
      idx = order[b * batch_size:(b + 1) * batch_size]
      out.append(jax.tree.map(lambda x, i=idx: x[i], data))
    epoch += 1
  return out


# ---------------------------------------------------------------------------
# User-style models: written the usual way, each with the loss a user
# writes for it (the library reads its signature) and seeded synthetic data
# of the right shapes where no data set is embedded.

USER_MODELS = {
    "a": "conv: 2 nnx.Conv 3x3 (16, 32) + nnx.max_pool + nnx.Linear, "
         "28x28x1, batch 64",
    "b": "bn-dropout: 2 nnx.Conv + nnx.BatchNorm + nnx.max_pool, "
         "nnx.Dropout, nnx.Linear (loss takes rngs), 28x28x1, batch 64",
    "c": "transformer: char LM, 2 blocks of nnx.MultiHeadAttention + MLP, "
         "width 64, sequence 64, vocab 65, batch 32",
    "d": "mlp: tabular, 32 features -> 256 -> 256 -> 4 classes, batch 128",
    "e": "linen: flax.linen CNN (2 nn.Conv 3x3 16/32 + avg_pool + "
         "2 nn.Dense) as a params pytree, loss calls model.apply, 28x28x1, "
         "batch 64",
    "f": "bundled: clr.make_model('cnn') on the embedded digits "
         "(8x8x1), batch 64",
}


@dataclasses.dataclass
class UserTask:
  """A user-style model, its loss and data.

  Attributes:
    key, name: ``"a"`` ... ``"f"`` and a short name.
    model: what the library is given (an ``nnx.Module`` or a params pytree).
    loss_fn: the user's loss, given to the library as it is.
    call: ``call(model, batch, key) -> loss or (loss, aux)``: how the
      user's own loop calls ``loss_fn`` (``key`` only used by random losses).
    data: training arrays (pytree, leading example axis).
    val: one validation batch.
    batch_size: examples per step.
    random: the loss takes randomness (``rngs``).
    torch_model: ``() -> torch.nn.Module`` of the same architecture, or None.
    torch_batch: numpy batch -> ``(inputs, targets)`` torch tensors.
    torch_loss: ``(outputs, targets) -> loss`` in torch.
  """
  key: str
  name: str
  model: Any
  loss_fn: Callable[..., Any]
  call: Callable[..., Any]
  data: Any
  val: Any
  batch_size: int
  random: bool = False
  torch_model: Callable[[], Any] | None = None
  torch_batch: Callable[[Any], Any] | None = None
  torch_loss: Callable[..., Any] | None = None

  @property
  def is_nnx(self) -> bool:
    from flax import nnx
    return isinstance(self.model, nnx.Module)

  def batches(self, num_steps: int, seed: int = 0) -> list[Any]:
    """The first ``num_steps`` batches (the library's order for ``seed``),
    NumPy arrays, as a user's loader yields them."""
    return epoch_batches(self.data, self.batch_size, seed, num_steps)


def _labelled_images(n: int, shape: tuple[int, ...], classes: int,
                     seed: int):
  """Seeded Gaussian images with labels a random linear map can learn."""
  import numpy as np
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, *shape)).astype(np.float32)
  w = rng.normal(size=(int(np.prod(shape)), classes)).astype(np.float32)
  y = np.argmax(x.reshape(n, -1) @ w, axis=1).astype(np.int32)
  return x, y


def _markov_tokens(n: int, length: int, vocab: int, seed: int):
  """Seeded token sequences of a sparse Markov chain (3 successors per
  token): a character model has something to learn."""
  import numpy as np
  rng = np.random.default_rng(seed)
  succ = rng.integers(0, vocab, size=(vocab, 3))
  seq = np.empty((n, length), np.int32)
  seq[:, 0] = rng.integers(0, vocab, size=n)
  for t in range(1, length):
    seq[:, t] = succ[seq[:, t - 1], rng.integers(0, 3, size=n)]
  return seq


def _cross_entropy(logits, labels):
  import optax
  return optax.softmax_cross_entropy_with_integer_labels(logits,
                                                         labels).mean()


def _task_conv(seed: int, small: bool) -> UserTask:
  from flax import nnx

  class ConvNet(nnx.Module):
    """The issue's model: conv 3x3 (16) relu pool, conv 3x3 (32) relu pool,
    linear."""

    def __init__(self, rngs: nnx.Rngs):
      self.conv1 = nnx.Conv(1, 16, kernel_size=(3, 3), rngs=rngs)
      self.conv2 = nnx.Conv(16, 32, kernel_size=(3, 3), rngs=rngs)
      self.linear = nnx.Linear(7 * 7 * 32, 10, rngs=rngs)

    def __call__(self, x):
      x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), (2, 2))
      x = nnx.max_pool(nnx.relu(self.conv2(x)), (2, 2), (2, 2))
      return self.linear(x.reshape(x.shape[0], -1))

  def loss_fn(model, x, y):
    return _cross_entropy(model(x), y)

  x, y = _labelled_images(4096, (28, 28, 1), 10, seed)
  return UserTask(
      "a", "conv", ConvNet(nnx.Rngs(seed)), loss_fn,
      lambda m, b, k: loss_fn(m, *b), (x, y), (x[:256], y[:256]), 64,
      torch_model=_torch_conv, torch_batch=_torch_images,
      torch_loss=_torch_ce)


def _task_bn_dropout(seed: int, small: bool) -> UserTask:
  from flax import nnx

  class BNDropoutCNN(nnx.Module):

    def __init__(self, rngs: nnx.Rngs):
      self.conv1 = nnx.Conv(1, 16, kernel_size=(3, 3), rngs=rngs)
      self.bn1 = nnx.BatchNorm(16, rngs=rngs)
      self.conv2 = nnx.Conv(16, 32, kernel_size=(3, 3), rngs=rngs)
      self.bn2 = nnx.BatchNorm(32, rngs=rngs)
      self.dropout = nnx.Dropout(0.25)
      self.linear = nnx.Linear(7 * 7 * 32, 10, rngs=rngs)

    def __call__(self, x, rngs=None):
      x = nnx.max_pool(nnx.relu(self.bn1(self.conv1(x))), (2, 2), (2, 2))
      x = nnx.max_pool(nnx.relu(self.bn2(self.conv2(x))), (2, 2), (2, 2))
      x = self.dropout(x.reshape(x.shape[0], -1), rngs=rngs)
      return self.linear(x)

  def loss_fn(model, x, y, rngs):
    return _cross_entropy(model(x, rngs=rngs), y)

  x, y = _labelled_images(4096, (28, 28, 1), 10, seed + 1)
  return UserTask(
      "b", "bn-dropout", BNDropoutCNN(nnx.Rngs(seed)), loss_fn,
      lambda m, b, k: loss_fn(m, *b, rngs=nnx.Rngs(k)), (x, y),
      (x[:256], y[:256]), 64, random=True)


def _task_transformer(seed: int, small: bool) -> UserTask:
  import jax.numpy as jnp
  from flax import nnx
  vocab, seq, width, heads = (65, 16, 16, 2) if small else (65, 64, 64, 4)

  class Block(nnx.Module):

    def __init__(self, rngs: nnx.Rngs):
      self.ln1 = nnx.LayerNorm(width, rngs=rngs)
      self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=width,
                                         decode=False, rngs=rngs)
      self.ln2 = nnx.LayerNorm(width, rngs=rngs)
      self.up = nnx.Linear(width, 4 * width, rngs=rngs)
      self.down = nnx.Linear(4 * width, width, rngs=rngs)

    def __call__(self, x, mask):
      x = x + self.attn(self.ln1(x), mask=mask)
      return x + self.down(nnx.gelu(self.up(self.ln2(x))))

  class CharTransformer(nnx.Module):

    def __init__(self, rngs: nnx.Rngs):
      self.tok = nnx.Embed(vocab, width, rngs=rngs)
      self.pos = nnx.Embed(seq, width, rngs=rngs)
      self.blocks = nnx.List([Block(rngs) for _ in range(2)])
      self.ln = nnx.LayerNorm(width, rngs=rngs)
      self.head = nnx.Linear(width, vocab, rngs=rngs)

    def __call__(self, tokens):
      x = self.tok(tokens) + self.pos(jnp.arange(tokens.shape[1]))
      mask = nnx.make_causal_mask(tokens)
      for block in self.blocks:
        x = block(x, mask)
      return self.head(self.ln(x))

  def loss_fn(model, batch):
    tokens = batch["tokens"]
    return _cross_entropy(model(tokens[:, :-1]), tokens[:, 1:])

  data = {"tokens": _markov_tokens(2048, seq + 1, vocab, seed)}
  return UserTask(
      "c", "transformer", CharTransformer(nnx.Rngs(seed)), loss_fn,
      lambda m, b, k: loss_fn(m, b), data,
      {"tokens": data["tokens"][:128]}, 32)


def _task_mlp(seed: int, small: bool) -> UserTask:
  import numpy as np
  from flax import nnx

  class MLP(nnx.Module):

    def __init__(self, rngs: nnx.Rngs):
      self.l1 = nnx.Linear(32, 256, rngs=rngs)
      self.l2 = nnx.Linear(256, 256, rngs=rngs)
      self.out = nnx.Linear(256, 4, rngs=rngs)

    def __call__(self, x):
      return self.out(nnx.relu(self.l2(nnx.relu(self.l1(x)))))

  def loss_fn(model, batch):
    return _cross_entropy(model(batch["x"]), batch["y"])

  rng = np.random.default_rng(seed + 3)
  x = rng.normal(size=(8192, 32)).astype(np.float32)
  w = rng.normal(size=(32, 4)).astype(np.float32)
  y = np.argmax(np.tanh(x @ w) + 0.3 * (x[:, :4] ** 2), 1).astype(np.int32)
  data = {"x": x, "y": y}
  return UserTask(
      "d", "mlp", MLP(nnx.Rngs(seed)), loss_fn,
      lambda m, b, k: loss_fn(m, b), data, {"x": x[:512], "y": y[:512]},
      128, torch_model=_torch_mlp,
      torch_batch=lambda b: _torch_xy(b["x"], b["y"]), torch_loss=_torch_ce)


def _task_linen(seed: int, small: bool) -> UserTask:
  import jax
  import jax.numpy as jnp
  from flax import linen as nn

  class LinenCNN(nn.Module):
    """The Flax MNIST example's CNN, narrower (16/32 channels, 64 units)."""

    @nn.compact
    def __call__(self, x):
      x = nn.avg_pool(nn.relu(nn.Conv(16, (3, 3))(x)), (2, 2), (2, 2))
      x = nn.avg_pool(nn.relu(nn.Conv(32, (3, 3))(x)), (2, 2), (2, 2))
      x = nn.relu(nn.Dense(64)(x.reshape((x.shape[0], -1))))
      return nn.Dense(10)(x)

  model = LinenCNN()
  params = model.init(jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))[
      "params"]

  def loss_fn(params, x, y):
    return _cross_entropy(model.apply({"params": params}, x), y)

  x, y = _labelled_images(4096, (28, 28, 1), 10, seed + 4)
  return UserTask("e", "linen", params, loss_fn,
                  lambda p, b, k: loss_fn(p, *b), (x, y),
                  (x[:256], y[:256]), 64)


def _task_bundled(seed: int, small: bool) -> UserTask:
  import optax_clr as clr
  data = clr.load_digits().as_batch()
  model = clr.make_model("cnn", num_classes=10, in_channels=1, seed=seed)
  return UserTask(
      "f", "bundled-cnn", model, clr.cross_entropy_loss,
      lambda m, b, k: clr.cross_entropy_loss(m, b), data,
      {k: v[:256] for k, v in data.items()}, 64,
      torch_model=lambda: torch_cnn(), torch_batch=lambda b: (
          to_nchw(b["image"]), _torch_labels(b["label"])),
      torch_loss=_torch_ce)


_TASKS = {"a": _task_conv, "b": _task_bn_dropout, "c": _task_transformer,
          "d": _task_mlp, "e": _task_linen, "f": _task_bundled}


def user_task(key: str, seed: int = 0, small: bool = False) -> UserTask:
  """The user-style model ``key`` (one of :data:`USER_MODELS`); ``small``
  shrinks the transformer for smoke runs."""
  if key not in _TASKS:
    raise ValueError(f"unknown model {key!r}; choose from "
                     f"{','.join(USER_MODELS)}")
  return _TASKS[key](seed, small)


class UserLoop:
  """The loop a user writes, for any :class:`UserTask`.

  ``nnx.split`` once (NNX models: parameters, and the other state such as
  batch statistics, which the step returns updated); ONE ``jax.jit``-ted
  optax step (the parameters, other state and optimizer state donated;
  the hyperparameters injected, so one compilation serves every LR); a
  Python loop over the runs and their steps, fed the batches as given
  (NumPy arrays), the hyperparameters set in the optimizer state, each
  run's losses read once at its end.
  """

  def __init__(self, task: UserTask, tx: Any, seed: int = 0):
    import jax
    import optax
    from flax import nnx
    self.task, self.tx = task, tx
    if task.is_nnx:
      train = nnx.clone(task.model)
      train.train()
      evaluate = nnx.clone(task.model)
      evaluate.eval()
      graphdef, self.params0, self.rest0 = nnx.split(train, nnx.Param, ...)
      eval_def = nnx.split(evaluate, nnx.Param, ...)[0]
    else:
      graphdef = eval_def = None
      self.params0, self.rest0 = task.model, None
    base = jax.random.key(seed)

    def build(gdef, params, rest):
      # copy=True: fresh Variables in this trace (Flax refuses to update
      # batch statistics of Variables created outside the grad's trace).
      return params if gdef is None else nnx.merge(gdef, params, rest,
                                                   copy=True)

    def loss_of(params, rest, batch, at):
      model = build(graphdef, params, rest)
      # ``at``: None, or (seed, step) of a random loss: a fresh key per step.
      key = None if at is None else jax.random.fold_in(
          jax.random.fold_in(base, at[0]), at[1])
      out = task.call(model, batch, key)
      loss = out[0] if isinstance(out, tuple) else out
      if graphdef is not None:
        rest = nnx.split(model, nnx.Param, ...)[2]
      return loss, rest

    def step(params, rest, opt_state, batch, at):
      (loss, rest), grads = jax.value_and_grad(loss_of, has_aux=True)(
          params, rest, batch, at)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), rest, opt_state, loss

    def evaluate_fn(params, rest, batch):
      out = task.call(build(eval_def, params, rest), batch, base)
      loss, aux = out if isinstance(out, tuple) else (out, {})
      metrics = {k: v for k, v in (aux if isinstance(aux, dict) else
                                   {}).items() if getattr(v, "ndim", 1) == 0}
      return {**metrics, "loss": loss}

    self.raw_step = step
    self.step = jax.jit(step, donate_argnums=(0, 1, 2))
    self.evaluate = jax.jit(evaluate_fn)

  def init(self, hyper: dict[str, Any] | None = None):
    """Fresh ``(params, rest, opt_state)`` with ``hyper`` set."""
    import jax
    import jax.numpy as jnp
    params = jax.tree.map(jnp.copy, self.params0)
    rest = jax.tree.map(jnp.copy, self.rest0)
    opt_state = self.tx.init(params)
    for name, value in (hyper or {}).items():
      opt_state.hyperparams[name] = jnp.asarray(value, jnp.float32)
    return params, rest, opt_state

  def train(self, carry, batches, first_step: int = 0,
            schedule: dict[str, Any] | None = None, seed: int = 0):
    """Steps ``first_step ...`` over ``batches`` (``schedule``: name ->
    per-step values, indexed by the global step; ``seed``: of a random
    loss's keys); ``(carry, losses)`` with the losses still on the
    device."""
    import jax.numpy as jnp
    params, rest, opt_state = carry
    losses = []
    random = self.task.random
    for i, batch in enumerate(batches):
      t = first_step + i
      for name, values in (schedule or {}).items():
        opt_state.hyperparams[name] = jnp.float32(values[t])
      params, rest, opt_state, loss = self.step(
          params, rest, opt_state, batch, (seed, t) if random else None)
      losses.append(loss)
    return (params, rest, opt_state), losses

  def run(self, batches, hyper: dict[str, Any] | None = None,
          schedule: dict[str, Any] | None = None, seed: int = 0):
    """One run from the initial weights; its losses (NumPy, one read)."""
    import jax
    import numpy as np
    _, losses = self.train(self.init(hyper), batches, schedule=schedule,
                           seed=seed)
    return np.asarray(jax.device_get(losses), np.float64)

  def step_args(self, batch):
    """Arguments of one step (for the FLOP count)."""
    params, rest, opt_state = self.init()
    return (params, rest, opt_state, batch,
            (0, 0) if self.task.random else None)


# PyTorch versions of the models that exist there (NCHW images).


def _torch_conv():
  from torch import nn
  return nn.Sequential(
      nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
      nn.Flatten(), nn.Linear(7 * 7 * 32, 10))


def _torch_mlp():
  from torch import nn
  return nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256),
                       nn.ReLU(), nn.Linear(256, 4))


def _torch_labels(y):
  import numpy as np
  import torch
  return torch.from_numpy(np.asarray(y).astype(np.int64))


def _torch_xy(x, y):
  import numpy as np
  import torch
  return torch.from_numpy(np.ascontiguousarray(x)), _torch_labels(y)


def _torch_images(batch):
  return to_nchw(batch[0]), _torch_labels(batch[1])


def _torch_ce(outputs, targets):
  import torch
  return torch.nn.functional.cross_entropy(outputs, targets)


class TorchLoop:
  """The same runs as a plain PyTorch loop (same architecture, its own
  initial weights: a timing baseline), SGD with momentum 0.9."""

  def __init__(self, task: UserTask, batches, device: str = "cpu"):
    import copy
    import torch
    self.torch, self.task, self.device = torch, task, device
    self.net0 = task.torch_model().to(device)
    self.copy = copy.deepcopy
    self.batches = [tuple(t.to(device) for t in task.torch_batch(b))
                    for b in batches]

  def run(self, lr: float) -> None:
    torch = self.torch
    net = self.copy(self.net0)
    opt = torch.optim.SGD(net.parameters(), lr=float(lr), momentum=0.9)
    losses = []
    for x, y in self.batches:
      opt.zero_grad()
      loss = self.task.torch_loss(net(x), y)
      loss.backward()
      opt.step()
      losses.append(loss.detach())
    torch.stack(losses).cpu()
    if self.device == "cuda":
      torch.cuda.synchronize()
