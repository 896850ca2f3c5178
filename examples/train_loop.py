"""A hand-written jitted optax train loop with a cyclical LR and momentum.

The optimizer is an ordinary optax chain: gradient clipping, then SGD whose
learning rate follows a triangular2 cycle and whose momentum cycles inversely
(0.9 -> 0.8 -> 0.9): ``optax_clr.policy_schedules("triangular2", ...)`` gives
both schedules and ``optax_clr.cyclic_sgd`` injects them through
``optax.inject_hyperparams``. Because the hyperparameters live in the
optimizer state, the jitted step returns the LR and momentum each update
actually used (``get_hyperparams``); they are collected on the device and
fetched once per epoch, never one host sync per step. The log is packed into
the library's ``TrainHistory``, which writes it as JSON, CSV and a plot.

  python examples/train_loop.py            # -> runs/examples/train_loop/
  python examples/train_loop.py --quick --out /tmp/train_loop
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optax_clr as clr

NAME = "train_loop"


def run(epochs: int = 12, step_size_epochs: int = 2, width: int = 16,
        batch_size: int = 64, base_lr: float = 0.05, max_lr: float = 0.2,
        seed: int = 0) -> clr.TrainHistory:
  train, val = clr.load_digits().split(0.2, seed)
  steps_per_epoch = train.num_batches(batch_size)
  step_size = step_size_epochs * steps_per_epoch  # Smith: 2-10 epochs

  plan = clr.policy_schedules(
      "triangular2", base_lr=base_lr, max_lr=max_lr, step_size_up=step_size,
      total_steps=epochs * steps_per_epoch)
  tx = optax.chain(
      optax.clip_by_global_norm(1.0),
      clr.cyclic_sgd(plan.learning_rate, plan.momentum),
  )

  model = clr.make_model("cnn", num_classes=10, in_channels=1, width=width,
                         seed=seed)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  opt_state = tx.init(params)

  def loss_fn(p, batch):
    return clr.cross_entropy_loss(nnx.merge(graphdef, p, rest), batch)

  @jax.jit
  def train_step(p, opt_state, batch):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, batch)
    updates, opt_state = tx.update(grads, opt_state, p)
    p = optax.apply_updates(p, updates)
    # The values this update used: schedule(k) for update k.
    hp = clr.get_hyperparams(opt_state)
    return p, opt_state, (loss, hp["learning_rate"], hp["momentum"])

  @jax.jit
  def evaluate(p, batch):
    loss, aux = loss_fn(p, batch)
    return loss, aux["accuracy"]

  val_batch = jax.device_put(val.as_batch())
  log = {"losses": [], "lrs": [], "momenta": []}
  evals = {"eval_steps": [], "loss": [], "accuracy": [], "wall_times": []}
  print(f"{steps_per_epoch} iterations per epoch, step size {step_size}; "
        f"triangular2 LR [{base_lr:g}, {max_lr:g}], momentum "
        f"{plan.resolved['max_momentum']:g} -> "
        f"{plan.resolved['base_momentum']:g}")
  print(f"{'epoch':>5}  {'lr (min..max)':>19}  {'momentum':>11}  "
        f"{'loss':>6}  {'val_acc':>7}")
  start = time.perf_counter()
  batches = train.batches(batch_size, seed=seed, epochs=epochs)
  for epoch in range(1, epochs + 1):
    outputs = []
    for _ in range(steps_per_epoch):
      params, opt_state, out = train_step(params, opt_state, next(batches))
      outputs.append(out)  # device arrays: no sync here
    val_out = evaluate(params, val_batch)
    # One transfer per epoch.
    (losses, lrs, moms), (val_loss, val_acc) = jax.device_get(
        (jax.tree.map(lambda *x: jnp.stack(x), *outputs), val_out))
    log["losses"].append(losses)
    log["lrs"].append(lrs)
    log["momenta"].append(moms)
    evals["eval_steps"].append(epoch * steps_per_epoch)
    evals["loss"].append(float(val_loss))
    evals["accuracy"].append(float(val_acc))
    evals["wall_times"].append(time.perf_counter() - start)
    print(f"{epoch:>5}  {lrs.min():.4f} .. {lrs.max():.4f}  "
          f"{moms.min():.3f}..{moms.max():.3f}  {losses.mean():6.3f}  "
          f"{float(val_acc):7.4f}")
  print(f"{time.perf_counter() - start:.1f} s")
  log = {k: np.concatenate(v) for k, v in log.items()}
  # The logged LR is exactly the schedule's value at each update.
  expected = np.asarray(jax.jit(plan.learning_rate)(
      jnp.arange(len(log["lrs"]))))
  np.testing.assert_allclose(log["lrs"], expected, rtol=1e-6)
  return clr.TrainHistory(
      steps=np.arange(len(log["lrs"])), **log,
      eval_steps=evals["eval_steps"],
      eval_metrics={"loss": evals["loss"], "accuracy": evals["accuracy"]},
      wall_times=evals["wall_times"],
      config={"example": NAME, "batch_size": batch_size, "seed": seed,
              "steps_per_epoch": steps_per_epoch, "num_epochs": epochs,
              "width": width, "schedule": plan.resolved,
              "optimizer": "clip_by_global_norm(1.0) + cyclic_sgd"})


def main(argv=None) -> clr.TrainHistory:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="2 epochs of a narrow CNN (for tests)")
  parser.add_argument("--epochs", type=int, default=12)
  parser.add_argument("--out", type=pathlib.Path, default=None,
                      help=f"output directory (default runs/examples/{NAME}/"
                      " under the current directory)")
  args = parser.parse_args(argv)
  out = args.out or pathlib.Path("runs", "examples", NAME)
  if args.quick:
    history = run(epochs=2, step_size_epochs=1, width=4)
  else:
    history = run(epochs=args.epochs)
  out.mkdir(parents=True, exist_ok=True)
  history.to_json(out / "history.json")
  history.to_csv(out / "history.csv")
  history.plot(path=out / "history.png", label="triangular2 CLR",
               title="hand-written train loop: loss, LR and momentum")
  for name in ("history.json", "history.csv", "history.png"):
    print(f"wrote {out / name}")
  return history


if __name__ == "__main__":
  main()
