"""The parallel LR sweep, sharded over 8 (forced) CPU devices.

K copies of the digits CNN, one per fixed learning rate, trained side by
side on the same batches: the LR axis is sharded over a 1-D mesh of the 8
devices and each device runs its copies in vmapped groups. Every copy ends
with its validation accuracy, so the sweep answers "which fixed LR trains
best in N steps" directly.

``XLA_FLAGS=--xla_force_host_platform_device_count=8`` splits this machine's
CPU into 8 XLA devices; it must be set before jax is imported, which this
script does. On a real multi-device host (GPUs, a TPU slice) leave it out.
The sweep is then run a second time on a mesh of one device, to show that
the sharded result is the same and how long each took (on a 2-core laptop
the 8 "devices" share 2 cores, so do not expect an 8x speed-up there).

  python examples/parallel_sweep.py          # -> docs/img/parallel_sweep.png
  python examples/parallel_sweep.py --quick --out /tmp/parallel_sweep.png
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

# pylint: disable=wrong-import-position
import argparse  # noqa: E402
import functools  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

from optax_clr import data  # noqa: E402
from optax_clr import models  # noqa: E402
from optax_clr import parallel  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def sweep(mesh: Mesh, *, num_lrs: int, num_steps: int, width: int,
          seed: int = 0):
  train, val = data.load_digits().split(0.2, seed)
  model = models.make_model("cnn", num_classes=10, in_channels=1,
                            width=width, seed=seed)
  start = time.perf_counter()
  result = parallel.parallel_range_test(
      model, models.cross_entropy_loss, train, num_lrs=num_lrs,
      min_lr=1e-3, max_lr=3.0, num_steps=num_steps,
      optimizer=functools.partial(optax.sgd, momentum=0.9), batch_size=64,
      val_data=val, mesh=mesh, seed=seed)
  return result, time.perf_counter() - start


def run(path: pathlib.Path, *, num_lrs: int = 32, num_steps: int = 66,
        width: int = 16, compare_one_device: bool = True):
  devices = jax.devices()
  print(f"{len(devices)} devices: {devices[0].device_kind} "
        f"({jax.default_backend()}), {os.cpu_count()} CPU cores")
  mesh = Mesh(np.array(devices), ("lr",))
  result, seconds = sweep(mesh, num_lrs=num_lrs, num_steps=num_steps,
                          width=width)
  print(f"{num_lrs} LRs x {num_steps} steps on {len(devices)} devices: "
        f"{seconds:.1f} s (including compilation)")
  acc = result.eval_metrics["accuracy"]
  for lr, mean, a, bad in zip(result.lrs, result.mean_loss, acc,
                              result.diverged):
    flag = "  diverged" if bad else ""
    print(f"  lr {lr:9.3e}  mean loss {mean:7.4f}  val acc {a:.4f}{flag}")
  ok = ~result.diverged & np.isfinite(acc)
  best = int(np.argmax(np.where(ok, acc, -np.inf)))
  print(f"best fixed LR by validation accuracy: {result.lrs[best]:.3e} "
        f"({acc[best]:.4f})")
  if compare_one_device and len(devices) > 1:
    one, seconds_one = sweep(Mesh(np.array(devices[:1]), ("lr",)),
                             num_lrs=num_lrs, num_steps=num_steps,
                             width=width)
    same = np.allclose(one.mean_loss, result.mean_loss, rtol=1e-4,
                       equal_nan=True)
    print(f"same sweep on 1 device: {seconds_one:.1f} s; mean losses "
          f"{'match' if same else 'DIFFER'} (rtol 1e-4)")
  path.parent.mkdir(parents=True, exist_ok=True)
  result.plot(path=path)
  print(f"wrote {path}")
  return result


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="8 LRs x 10 steps of a narrow CNN (for tests)")
  parser.add_argument("--out", type=pathlib.Path, default=None,
                      help="PNG path (default docs/img/parallel_sweep.png, "
                      "or ./parallel_sweep-quick.png with --quick)")
  args = parser.parse_args(argv)
  out = args.out or (pathlib.Path("parallel_sweep-quick.png") if args.quick
                     else ROOT / "docs" / "img" / "parallel_sweep.png")
  if args.quick:
    return run(out, num_lrs=8, num_steps=10, width=4,
               compare_one_device=False)
  return run(out)


if __name__ == "__main__":
  main()
