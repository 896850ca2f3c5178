"""Smith's disciplined approach (2018) on the digits CNN, in three programs.

1. ``clr.weight_decay_range_test``: LR range tests at four weight decays x
   two momenta, all ramps in one compiled program on the same batches from
   the same weights; Smith's rule picks the weight decay (and momentum) that
   lets the largest LR train at about the lowest loss, with its CLR bounds
   and the cyclical momentum 0.95 -> 0.85 (``result.suggest()``). Figure: the
   smoothed loss over LR x weight decay (``weight_decay.png``).
2. ``clr.sweep``: a grid of fixed LRs (around the chosen max_lr) x weight
   decays trained side by side for three epochs, validation accuracy as a
   heat map (``grid.png``) -- the check of step 1's choice with finished
   runs.
3. ``clr.batch_size_sweep``: LR sweeps at batch sizes 32 / 64 / 128 for the
   same number of examples, loss vs examples seen (``batch_sizes.png``).

Then one-cycle training with the recipe (chosen weight decay, max_lr,
momentum 0.95 -> 0.85) against the grid's best fixed configuration.

  python examples/disciplined.py                 # -> runs/examples/disciplined/
  python examples/disciplined.py --quick --out /tmp/disciplined
  python examples/disciplined.py --update-docs   # -> docs/img/disciplined_*.png
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import pathlib
import shutil

import numpy as np
import optax

import optax_clr as clr
from optax_clr import optimizers

NAME = "disciplined"
DOCS_IMG = pathlib.Path(__file__).resolve().parents[1] / "docs" / "img"
FIGURES = ("weight_decay.png", "grid.png", "batch_sizes.png")
WRITTEN = ("weight_decay.json", "grid.json", "batch_sizes.json") + FIGURES


@dataclasses.dataclass(frozen=True)
class Settings:
  width: int = 16
  weight_decays: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2)
  momenta: tuple[float, ...] = (0.9, 0.95)
  ramp_start: float = 1e-4
  ramp_steps: int = 200
  grid_lrs: int = 6
  grid_epochs: int = 3
  batch_sizes: tuple[int, ...] = (32, 64, 128)
  epochs: int = 12

  @classmethod
  def quick(cls) -> Settings:
    return cls(width=4, weight_decays=(0.0, 1e-3), momenta=(0.9,),
               ramp_start=1e-2, ramp_steps=80, grid_lrs=3, grid_epochs=1,
               batch_sizes=(32, 64), epochs=2)


def run(out: pathlib.Path, cfg: Settings, seed: int = 0):
  train, val = clr.load_digits().split(0.2, seed)
  model = clr.make_model("cnn", num_classes=10, in_channels=1,
                         width=cfg.width, seed=seed)
  batch = 64
  per_epoch = train.num_batches(batch)
  out.mkdir(parents=True, exist_ok=True)

  ramps = clr.weight_decay_range_test(
      model, clr.cross_entropy_loss, train, weight_decays=cfg.weight_decays,
      momenta=cfg.momenta, start_lr=cfg.ramp_start,
      num_steps=cfg.ramp_steps, batch_size=batch, seed=seed, progress=False)
  recipe = ramps.suggest()
  print(f"[1/3] {len(ramps.weight_decays)} range tests in one program:\n"
        f"{recipe}")
  ramps.to_json(out / "weight_decay.json")
  ramps.plot(path=out / "weight_decay.png")
  if recipe.max_lr is None:
    raise SystemExit(recipe.rule)  # "no ramp gave CLR bounds (why)"

  lrs = np.geomspace(recipe.max_lr / 10, recipe.max_lr * 3, cfg.grid_lrs)
  grid = clr.sweep(
      model, clr.cross_entropy_loss, train, optimizer=optimizers.sgd,
      hyperparams={"learning_rate": lrs.tolist(),
                   "weight_decay": list(cfg.weight_decays)},
      num_steps=cfg.grid_epochs * per_epoch, batch_size=batch, val_data=val,
      seed=seed, progress=False)
  best = grid.best()
  print(f"[2/3] {grid.num_configs} configurations in one program; best: {best}")
  grid.to_json(out / "grid.json")
  grid.plot(path=out / "grid.png")

  sizes = clr.batch_size_sweep(
      model, clr.cross_entropy_loss, train, batch_sizes=cfg.batch_sizes,
      num_examples=cfg.grid_epochs * len(train), num_lrs=cfg.grid_lrs,
      min_lr=recipe.max_lr / 10, max_lr=recipe.max_lr * 3, seed=seed,
      progress=False)
  print(f"[3/3] batch sizes {list(cfg.batch_sizes)}: best {sizes.best()}")
  sizes.to_json(out / "batch_sizes.json")
  sizes.plot(path=out / "batch_sizes.png")

  histories = train_both(model, train, val, recipe, best, cfg, per_epoch,
                         batch, seed)
  for name, history in histories.items():
    acc = history.eval_metrics["accuracy"]
    print(f"  {name:<44} final val acc {acc[-1]:.4f}  best "
          f"{np.nanmax(acc):.4f}  ({history.status})")
  return recipe, grid, sizes, histories


def train_both(model, train, val, recipe, best, cfg: Settings,
               per_epoch: int, batch: int, seed: int):
  """One-cycle with the recipe vs the grid's best fixed configuration."""
  total = cfg.epochs * per_epoch
  one_cycle = clr.policy_schedules(
      "one-cycle", max_lr=recipe.max_lr, total_steps=total,
      base_momentum=recipe.base_momentum, max_momentum=recipe.max_momentum)
  runs = {
      f"one-cycle max {recipe.max_lr:.2g}, wd {recipe.weight_decay:g}":
          # L2 weight decay as in optimizers.sgd, schedules injected.
          optax.chain(optax.add_decayed_weights(recipe.weight_decay),
                      clr.cyclic_sgd(one_cycle.learning_rate,
                                     one_cycle.momentum)),
      f"fixed {best['learning_rate']:.2g}, wd {best['weight_decay']:g}":
          optimizers.sgd(best["learning_rate"], 0.9,
                         weight_decay=best["weight_decay"])}
  fit = functools.partial(clr.train, model, clr.cross_entropy_loss, train,
                          num_epochs=cfg.epochs, batch_size=batch,
                          val_data=val, seed=seed, progress=False)
  return {name: fit(optimizer=tx)[1] for name, tx in runs.items()}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true",
                 help="a tiny variant (seconds; what the tests run)")
  p.add_argument("--out", type=pathlib.Path, default=None,
                 help=f"output directory (default runs/examples/{NAME}/)")
  p.add_argument("--update-docs", action="store_true",
                 help="also rewrite docs/img/disciplined_*.png (full run)")
  p.add_argument("--seed", type=int, default=0)
  a = p.parse_args(argv)
  if a.update_docs and a.quick:
    p.error("--update-docs regenerates the committed figures from the full "
            "run; drop --quick")
  out = a.out or pathlib.Path("runs", "examples", NAME)
  result = run(out, Settings.quick() if a.quick else Settings(), a.seed)
  if a.update_docs:
    for name in FIGURES:
      shutil.copyfile(out / name, DOCS_IMG / f"{NAME}_{name}")
  print(f"wrote {out}/: {', '.join(WRITTEN)}")
  return result


if __name__ == "__main__":
  main()
