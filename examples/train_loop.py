"""A hand-written jitted optax train loop with a cyclical LR and momentum.

The optimizer is an ordinary optax chain: gradient clipping, then SGD whose
learning rate follows a triangular2 cycle and whose momentum cycles inversely
(0.9 -> 0.8 -> 0.9), built by ``optax_clr.optimizers.cyclic_sgd`` on top of
``optax.inject_hyperparams``. Because the hyperparameters live in the
optimizer state, the jitted step returns the LR and momentum each update
actually used (``get_hyperparams``); they are collected on the device and
fetched once per epoch, never one host sync per step.

  python examples/train_loop.py
  python examples/train_loop.py --quick
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from optax_clr import data
from optax_clr import models
from optax_clr import momentum
from optax_clr import optimizers
from optax_clr import schedules


def run(epochs: int = 12, step_size_epochs: int = 2, width: int = 16,
        batch_size: int = 64, base_lr: float = 0.05, max_lr: float = 0.2,
        seed: int = 0) -> dict[str, np.ndarray]:
  train, val = data.load_digits().split(0.2, seed)
  steps_per_epoch = train.num_batches(batch_size)
  step_size = step_size_epochs * steps_per_epoch  # Smith: 2-10 epochs

  lr_schedule = schedules.triangular2_schedule(base_lr, max_lr, step_size)
  momentum_schedule = momentum.cyclic_momentum_schedule(
      0.8, 0.9, step_size, mode="triangular2")
  tx = optax.chain(
      optax.clip_by_global_norm(1.0),
      optimizers.cyclic_sgd(lr_schedule, momentum_schedule),
  )

  model = models.make_model("cnn", num_classes=10, in_channels=1,
                            width=width, seed=seed)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  opt_state = tx.init(params)

  def loss_fn(p, batch):
    return models.cross_entropy_loss(nnx.merge(graphdef, p, rest), batch)

  @jax.jit
  def train_step(p, opt_state, batch):
    (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, batch)
    updates, opt_state = tx.update(grads, opt_state, p)
    p = optax.apply_updates(p, updates)
    # The values this update used: schedule(k) for update k.
    hp = optimizers.get_hyperparams(opt_state)
    return p, opt_state, (loss, hp["learning_rate"], hp["momentum"])

  @jax.jit
  def evaluate(p, batch):
    loss, aux = loss_fn(p, batch)
    return loss, aux["accuracy"]

  val_batch = jax.device_put(val.as_batch())
  log = {"loss": [], "lr": [], "momentum": []}
  print(f"{steps_per_epoch} iterations per epoch, step size {step_size}; "
        f"triangular2 LR [{base_lr:g}, {max_lr:g}], momentum 0.9 -> 0.8")
  print(f"{'epoch':>5}  {'lr (min..max)':>19}  {'momentum':>11}  "
        f"{'loss':>6}  {'val_acc':>7}")
  start = time.perf_counter()
  batches = train.batches(batch_size, seed=seed, epochs=epochs)
  for epoch in range(1, epochs + 1):
    outputs = []
    for _ in range(steps_per_epoch):
      params, opt_state, out = train_step(params, opt_state, next(batches))
      outputs.append(out)  # device arrays: no sync here
    val_loss, val_acc = evaluate(params, val_batch)
    # One transfer per epoch.
    (losses, lrs, moms), val_acc = jax.device_get(
        (jax.tree.map(lambda *x: jnp.stack(x), *outputs), val_acc))
    log["loss"].append(losses)
    log["lr"].append(lrs)
    log["momentum"].append(moms)
    print(f"{epoch:>5}  {lrs.min():.4f} .. {lrs.max():.4f}  "
          f"{moms.min():.3f}..{moms.max():.3f}  {losses.mean():6.3f}  "
          f"{float(val_acc):7.4f}")
  print(f"{time.perf_counter() - start:.1f} s")
  log = {k: np.concatenate(v) for k, v in log.items()}
  # The logged LR is exactly the schedule's value at each update.
  expected = np.asarray(jax.jit(lr_schedule)(jnp.arange(len(log["lr"]))))
  np.testing.assert_allclose(log["lr"], expected, rtol=1e-6)
  log["val_accuracy"] = np.asarray(val_acc)
  return log


def main(argv=None) -> dict[str, np.ndarray]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="2 epochs of a narrow CNN (for tests)")
  parser.add_argument("--epochs", type=int, default=12)
  args = parser.parse_args(argv)
  if args.quick:
    return run(epochs=2, step_size_epochs=1, width=4)
  return run(epochs=args.epochs)


if __name__ == "__main__":
  main()
