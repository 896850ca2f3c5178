"""Cyclical LR versus a fixed LR (and one-cycle), from one range test.

The workflow of Smith (2017) on the embedded digits:

1. an LR range test gives a (base_lr, max_lr) pair and single-LR
   suggestions (``result.suggest()``);
2. three runs with the same model, data order, seed and number of epochs,
   their schedules from ``optax_clr.policy_schedules``:
   * ``"fixed"`` at the range test's "valley" suggestion (fastai's default
     single LR), momentum 0.9;
   * ``"triangular2"`` between the suggested bounds, step size 3 epochs (4
     cycles in 24 epochs), momentum cycled inversely 0.9 -> 0.8;
   * ``"one-cycle"`` up to max_lr (Smith & Topin 2017), momentum
     0.95 -> 0.85;
3. validation accuracy after every epoch, and the iterations each run needs
   to reach the fixed-LR run's best accuracy
   (``TrainHistory.steps_to_reach``).

This is the library API behind ``optax-clr demo`` (which instead picks the
fixed LR by a parallel sweep).

  python examples/clr_vs_fixed.py               # -> runs/examples/clr_vs_fixed/
  python examples/clr_vs_fixed.py --quick --out /tmp/clr_vs_fixed
  python examples/clr_vs_fixed.py --update-docs  # -> docs/img/clr_vs_fixed.png
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import time

import numpy as np
import optax

import optax_clr as clr
from optax_clr import plotting

NAME = "clr_vs_fixed"
DOCS_FIGURE = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "img"
               / "clr_vs_fixed.png")


def run(out: pathlib.Path, *, epochs: int = 24, step_size_epochs: int = 3,
        range_steps: int = 300, width: int = 16, batch_size: int = 64,
        seed: int = 0, update_docs: bool = False):
  train, val = clr.load_digits().split(0.2, seed)

  def fresh_model():
    return clr.make_model("cnn", num_classes=10, in_channels=1, width=width,
                          seed=seed)

  # 1. Range test (loss-based suggestions: no validation data).
  rt = clr.range_test(
      fresh_model(), clr.cross_entropy_loss, train, start_lr=1e-3,
      end_lr=10.0, num_steps=range_steps, batch_size=batch_size,
      optimizer=functools.partial(optax.sgd, momentum=0.9), seed=seed)
  s = rt.suggest()
  print(f"range test: {rt.num_steps} steps ({rt.stop_reason})")
  print(s)
  if s.base_lr is None or s.valley.lr is None:
    raise SystemExit(f"the range test gave no suggestion: {s.rule}")

  # 2. Three runs.
  steps_per_epoch = train.num_batches(batch_size)
  total = epochs * steps_per_epoch
  up = step_size_epochs * steps_per_epoch
  plans = {
      f"fixed {s.valley.lr:.2e}": clr.policy_schedules(
          "fixed", lr=s.valley.lr, momentum=0.9),
      "triangular2 CLR": clr.policy_schedules(
          "triangular2", base_lr=s.base_lr, max_lr=s.max_lr,
          step_size_up=up, total_steps=total),
      # One-cycle takes only max_lr: it starts at max_lr / 25.
      "one-cycle": clr.policy_schedules(
          "one-cycle", max_lr=s.max_lr, total_steps=total),
  }
  histories = {}
  for name, plan in plans.items():
    start = time.perf_counter()
    _, history = clr.train(
        fresh_model(), clr.cross_entropy_loss, train,
        optimizer=clr.cyclic_sgd(plan.learning_rate, plan.momentum),
        num_epochs=epochs, batch_size=batch_size, val_data=val, seed=seed,
        run_config=plan.resolved)
    histories[name] = (history, time.perf_counter() - start)

  # 3. Comparison.
  fixed_name = next(iter(plans))
  target = float(np.nanmax(histories[fixed_name][0].eval_metrics["accuracy"]))
  print(f"\ntarget: the fixed-LR run's best validation accuracy "
        f"{target:.4f}")
  print(f"{'run':<18} {'iters to target':>15} {'final acc':>9} "
        f"{'best acc':>8} {'time':>6}  status")
  for name, (history, seconds) in histories.items():
    acc = history.eval_metrics["accuracy"]
    iters = history.steps_to_reach("accuracy", target)
    print(f"{name:<18} {'-' if iters is None else iters:>15} "
          f"{acc[-1]:>9.4f} {np.nanmax(acc):>8.4f} {seconds:>5.1f}s  "
          f"{history.status}")

  out.mkdir(parents=True, exist_ok=True)
  paths = [out / "range_test.json", out / "range_test.png"]
  rt.to_json(paths[0])
  rt.plot(suggestions=s, bounds=(s.base_lr, s.max_lr), path=paths[1])
  for name, (history, _) in histories.items():
    slug = name.split()[0].replace("-", "_")  # fixed, triangular2, one_cycle
    paths.append(out / f"history_{slug}.json")
    history.to_json(paths[-1])
  fig = plotting.plot_training(
      {name: h for name, (h, _) in histories.items()},
      title=f"digits CNN, {epochs} epochs, batch {batch_size}, seed {seed}")
  for ax in fig.axes:  # the end of training is where the runs differ
    if ax.get_ylabel() == "validation accuracy":
      ax.set_ylim(max(0.0, target - 0.1), 1.0)
      ax.set_ylabel("validation accuracy (zoomed)")
  figures = [out / "clr_vs_fixed.png"] + ([DOCS_FIGURE] if update_docs
                                          else [])
  for path in figures:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
  for path in paths + figures:
    print(f"wrote {path}")
  return histories


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="3 epochs of a narrow CNN (for tests)")
  parser.add_argument("--out", type=pathlib.Path, default=None,
                      help=f"output directory (default runs/examples/{NAME}/"
                      " under the current directory)")
  parser.add_argument("--update-docs", action="store_true",
                      help="also regenerate the committed figure "
                      "docs/img/clr_vs_fixed.png (not with --quick)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.update_docs and args.quick:
    parser.error("--update-docs regenerates the committed figure from the "
                 "full run; drop --quick")
  out = args.out or pathlib.Path("runs", "examples", NAME)
  if args.quick:
    return run(out, epochs=3, step_size_epochs=1, range_steps=100, width=4,
               seed=args.seed)
  return run(out, seed=args.seed, update_docs=args.update_docs)


if __name__ == "__main__":
  main()
