"""The parallel LR sweep, sharded over 8 (forced) CPU devices.

K copies of the digits CNN, one per fixed learning rate, trained side by
side on the same batches: the copies are sharded over a 1-D mesh of the 8
devices (its axis must be named ``"copies"``) and each device runs its
copies in vmapped groups. Every copy ends with its validation accuracy and a
status (trained, stalled, spiked, diverged), so the sweep answers "which
fixed LR trains best in N steps" directly: ``result.suggest()`` gives the
best fixed LR, the stable range and CLR bounds read from the sweep.

``XLA_FLAGS=--xla_force_host_platform_device_count=8`` splits this machine's
CPU into 8 XLA devices; it must be set before jax is imported, which this
script does. On a real multi-device host (GPUs, a TPU slice) leave it out.
The sweep is then run a second time on a mesh of one device, to show that
the sharded result is the same and how long each took (on a 2-core laptop
the 8 "devices" share 2 cores, so do not expect an 8x speed-up there).

  python examples/parallel_sweep.py        # -> runs/examples/parallel_sweep/
  python examples/parallel_sweep.py --quick --out /tmp/parallel_sweep
  python examples/parallel_sweep.py --update-docs  # docs/img/parallel_sweep.png
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

import optax_clr as clr  # noqa: E402

NAME = "parallel_sweep"
DOCS_FIGURE = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "img"
               / "parallel_sweep.png")


def sweep(mesh: Mesh, *, num_lrs: int, num_steps: int, width: int,
          seed: int = 0):
  train, val = clr.load_digits().split(0.2, seed)
  model = clr.make_model("cnn", num_classes=10, in_channels=1, width=width,
                         seed=seed)
  start = time.perf_counter()
  result = clr.parallel_range_test(
      model, clr.cross_entropy_loss, train, num_lrs=num_lrs,
      min_lr=1e-3, max_lr=3.0, num_steps=num_steps,
      optimizer=functools.partial(optax.sgd, momentum=0.9), batch_size=64,
      val_data=val, mesh=mesh, seed=seed)
  return result, time.perf_counter() - start


def run(out: pathlib.Path, *, num_lrs: int = 32, num_steps: int = 66,
        width: int = 16, compare_one_device: bool = True,
        update_docs: bool = False) -> clr.ParallelSweepResult:
  devices = jax.devices()
  print(f"{len(devices)} devices: {devices[0].device_kind} "
        f"({jax.default_backend()}), {os.cpu_count()} CPU cores")
  mesh = Mesh(np.array(devices), ("copies",))
  result, seconds = sweep(mesh, num_lrs=num_lrs, num_steps=num_steps,
                          width=width)
  print(f"{num_lrs} LRs x {num_steps} steps on {len(devices)} devices: "
        f"{seconds:.1f} s (including compilation)")
  acc = result.eval_metrics["accuracy"]
  for lr, mean, a, status in zip(result.lrs, result.mean_loss, acc,
                                 result.status):
    print(f"  lr {lr:9.3e}  mean loss {mean:7.4f}  val acc {a:.4f}  "
          f"{status}")
  suggestions = result.suggest()
  print(suggestions)
  best = suggestions.best
  if best.lr is not None:
    print(f"best fixed LR: {best.lr:.3e} (val acc {acc[best.index]:.4f})")
  if compare_one_device and len(devices) > 1:
    one, seconds_one = sweep(Mesh(np.array(devices[:1]), ("copies",)),
                             num_lrs=num_lrs, num_steps=num_steps,
                             width=width)
    same = np.allclose(one.mean_loss, result.mean_loss, rtol=1e-4,
                       equal_nan=True)
    print(f"same sweep on 1 device: {seconds_one:.1f} s; mean losses "
          f"{'match' if same else 'DIFFER'} (rtol 1e-4), best fixed LR "
          f"{'the same' if one.best_lr == result.best_lr else one.best_lr}")

  out.mkdir(parents=True, exist_ok=True)
  paths = [out / "sweep.json", out / "sweep.csv"]
  result.to_json(paths[0])
  result.to_csv(paths[1])
  fig = result.plot(suggestions=suggestions, path=out / "parallel_sweep.png")
  paths.append(out / "parallel_sweep.png")
  if update_docs:
    DOCS_FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(DOCS_FIGURE, dpi=100)
    paths.append(DOCS_FIGURE)
  for path in paths:
    print(f"wrote {path}")
  return result


def main(argv=None) -> clr.ParallelSweepResult:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="8 LRs x 10 steps of a narrow CNN (for tests)")
  parser.add_argument("--out", type=pathlib.Path, default=None,
                      help=f"output directory (default runs/examples/{NAME}/"
                      " under the current directory)")
  parser.add_argument("--update-docs", action="store_true",
                      help="also regenerate the committed figure "
                      "docs/img/parallel_sweep.png (not with --quick)")
  args = parser.parse_args(argv)
  if args.update_docs and args.quick:
    parser.error("--update-docs regenerates the committed figure from the "
                 "full run; drop --quick")
  out = args.out or pathlib.Path("runs", "examples", NAME)
  if args.quick:
    return run(out, num_lrs=8, num_steps=10, width=4,
               compare_one_device=False)
  return run(out, update_docs=args.update_docs)


if __name__ == "__main__":
  main()
