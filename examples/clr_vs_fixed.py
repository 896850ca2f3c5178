"""Cyclical LR versus a fixed LR (and one-cycle), from one range test.

The workflow of Smith (2017) on the embedded digits:

1. an LR range test gives a (base_lr, max_lr) pair and single-LR
   suggestions;
2. three runs with the same model, data order, seed and number of epochs:
   * a fixed LR at the range test's "valley" suggestion (fastai's default
     single LR), momentum 0.9;
   * triangular2 CLR between the suggested bounds, step size 3 epochs (4
     cycles in 24 epochs), momentum cycled inversely 0.9 -> 0.8;
   * one-cycle up to max_lr (Smith & Topin 2017), momentum 0.95 -> 0.85;
3. validation accuracy after every epoch, and the iterations each run needs
   to reach the fixed-LR run's best accuracy.

This is the library API behind ``optax-clr demo`` (which instead picks the
fixed LR by a parallel sweep).

  python examples/clr_vs_fixed.py          # -> docs/img/clr_vs_fixed.png
  python examples/clr_vs_fixed.py --quick --out /tmp/clr_vs_fixed.png
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import time

import numpy as np
import optax

from optax_clr import data
from optax_clr import models
from optax_clr import momentum
from optax_clr import optimizers
from optax_clr import plotting
from optax_clr.range_test import range_test
from optax_clr import schedules
from optax_clr import training

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(path: pathlib.Path, *, epochs: int = 24, step_size_epochs: int = 3,
        range_steps: int = 300, width: int = 16, batch_size: int = 64,
        seed: int = 0):
  train, val = data.load_digits().split(0.2, seed)

  def fresh_model():
    return models.make_model("cnn", num_classes=10, in_channels=1,
                             width=width, seed=seed)

  # 1. Range test (loss-based suggestions: no validation data).
  rt = range_test(
      fresh_model(), models.cross_entropy_loss, train, start_lr=1e-3,
      end_lr=10.0, num_steps=range_steps, batch_size=batch_size,
      optimizer=functools.partial(optax.sgd, momentum=0.9), seed=seed)
  s = rt.suggest()
  if s.base_lr is None or s.valley.lr is None:
    raise SystemExit(f"the range test gave no suggestion: {s.rule}")
  print(f"range test: {rt.num_steps} steps ({rt.stop_reason}); CLR bounds "
        f"[{s.base_lr:.3e}, {s.max_lr:.3e}], valley {s.valley.lr:.3e}")

  # 2. Three runs.
  steps_per_epoch = train.num_batches(batch_size)
  total = epochs * steps_per_epoch
  up = step_size_epochs * steps_per_epoch
  runs = {
      f"fixed {s.valley.lr:.2e}": optimizers.cyclic_sgd(s.valley.lr, 0.9),
      "triangular2 CLR": optimizers.cyclic_sgd(
          schedules.triangular2_schedule(s.base_lr, s.max_lr, up),
          momentum.cyclic_momentum_schedule(0.8, 0.9, up,
                                            mode="triangular2")),
      "one-cycle": optimizers.cyclic_sgd(
          schedules.one_cycle_schedule(s.max_lr, total),
          momentum.one_cycle_momentum_schedule(total)),
  }
  histories = {}
  for name, optimizer in runs.items():
    start = time.perf_counter()
    _, history = training.train(
        fresh_model(), models.cross_entropy_loss, train, optimizer=optimizer,
        num_epochs=epochs, batch_size=batch_size, val_data=val, seed=seed)
    histories[name] = (history, time.perf_counter() - start)

  # 3. Comparison.
  fixed_name = next(iter(runs))
  target = float(np.max(histories[fixed_name][0].eval_metrics["accuracy"]))
  print(f"\ntarget: the fixed-LR run's best validation accuracy "
        f"{target:.4f}")
  print(f"{'run':<18} {'iters to target':>15} {'final acc':>9} "
        f"{'best acc':>8} {'time':>6}")
  for name, (history, seconds) in histories.items():
    acc = history.eval_metrics["accuracy"]
    iters = history.steps_to_reach("accuracy", target)
    print(f"{name:<18} {'-' if iters is None else iters:>15} "
          f"{acc[-1]:>9.4f} {acc.max():>8.4f} {seconds:>5.1f}s")

  curves = {}
  for name, (h, _) in histories.items():
    curves[name] = {"step": h.steps, "loss": h.loss, "lr": h.lr,
                    "momentum": h.momentum, "val_step": h.eval_steps,
                    "val_accuracy": h.eval_metrics["accuracy"],
                    "val_loss": h.eval_metrics["loss"]}
  path.parent.mkdir(parents=True, exist_ok=True)
  fig = plotting.plot_training(curves)
  for ax in fig.axes:  # the end of training is where the runs differ
    if ax.get_ylabel() == "validation accuracy":
      ax.set_ylim(max(0.0, target - 0.1), 1.0)
      ax.set_ylabel("validation accuracy (zoomed)")
  fig.suptitle(f"digits CNN, {epochs} epochs, batch {batch_size}, seed "
               f"{seed}")
  fig.savefig(path, dpi=100)
  print(f"wrote {path}")
  return histories


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="3 epochs of a narrow CNN (for tests)")
  parser.add_argument("--out", type=pathlib.Path, default=None,
                      help="PNG path (default docs/img/clr_vs_fixed.png, or "
                      "./clr_vs_fixed-quick.png with --quick)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  out = args.out or (pathlib.Path("clr_vs_fixed-quick.png") if args.quick
                     else ROOT / "docs" / "img" / "clr_vs_fixed.png")
  if args.quick:
    return run(out, epochs=3, step_size_epochs=1, range_steps=60, width=4,
               seed=args.seed)
  return run(out, seed=args.seed)


if __name__ == "__main__":
  main()
