"""Range tests on training code you already have: no changes to the model.

The "existing project" below is a Flax NNX regression model that takes a
dict batch with two inputs (an image and a side vector) and predicts a
scalar, trained by a hand-written step with mean squared error. None of it
knows about optax-clr. To run the range tests on it we only

1. lift the loss out of the train step as ``loss_fn(model, batch)`` (the
   same code, returning ``(loss, metrics)``);
2. hand over the batches as they come: a Python generator of NumPy dicts,
   as a ``grain``/``tf.data``/PyTorch ``DataLoader`` would yield them.

Both tests then run with gradient accumulation (an effective batch of 4
micro-batches per LR step) and bf16 compute (float32 weights and optimizer
state); the parallel sweep shards its copies over 8 forced CPU devices and
reports its best fixed LR (``sweep.suggest().best``). Both results are
written as JSON and plots.

  python examples/adapt_existing_training.py  # -> runs/examples/<this name>/
  python examples/adapt_existing_training.py --quick --out /tmp/adapt
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib

# The flag must be set before jax is imported.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import optax_clr as clr  # noqa: E402

# ----------------------------------------------------------------------------
# The existing project: model, loss, train step, data. Unchanged.


class TwoInputRegressor(nnx.Module):
  """An image branch and a side-vector branch, merged into one output."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(1, 8, (3, 3), rngs=rngs)
    self.side = nnx.Linear(4, 8, rngs=rngs)
    self.head = nnx.Linear(16, 1, rngs=rngs)

  def __call__(self, image, side):
    x = nnx.relu(self.conv(image)).mean(axis=(1, 2))
    s = nnx.relu(self.side(side))
    return self.head(jnp.concatenate([x, s], -1))[:, 0]


def mse(model, batch):
  pred = model(batch["inputs"]["image"], batch["inputs"]["side"])
  err = pred - batch["target"]
  return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}


@nnx.jit
def train_step(model, optimizer, batch):  # the project's own step
  (loss, _), grads = nnx.value_and_grad(mse, has_aux=True)(model, batch)
  optimizer.update(model, grads)
  return loss


def batches(seed: int, batch_size: int = 32):
  """An endless stream of dict batches, the way a data loader yields them."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=4).astype(np.float32)
  while True:
    image = rng.normal(size=(batch_size, 8, 8, 1)).astype(np.float32)
    side = rng.normal(size=(batch_size, 4)).astype(np.float32)
    target = image.mean(axis=(1, 2, 3)) * 3.0 + side @ w
    yield {"inputs": {"image": image, "side": side},
           "target": target.astype(np.float32)}


# ----------------------------------------------------------------------------

NAME = "adapt_existing_training"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help="fewer steps and LRs (a few seconds)")
  parser.add_argument("--out", type=pathlib.Path, default=None,
                      help=f"output directory (default runs/examples/{NAME}/"
                      " under the current directory)")
  args = parser.parse_args(argv)
  out = args.out or pathlib.Path("runs", "examples", NAME)
  steps, num_lrs = (20, 8) if args.quick else (120, 16)

  model = TwoInputRegressor(rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.sgd(0.01, momentum=0.9), wrt=nnx.Param)
  stream = batches(seed=0)
  for _ in range(3):  # the project trains as usual...
    train_step(model, optimizer, next(stream))

  # ...and the range tests take the model and loss as they are.
  val = [next(batches(seed=1)) for _ in range(2)]
  result = clr.range_test(
      model, mse, batches(seed=2), start_lr=1e-4, end_lr=1.0,
      num_steps=steps, accumulation_steps=4, compute_dtype=jnp.bfloat16,
      val_data=val, eval_every=max(1, steps // 10))
  s = result.suggest()
  pair = ("none" if s.base_lr is None
          else f"({s.base_lr:.3g}, {s.max_lr:.3g})")
  print(f"classic: {result.num_steps} steps ({result.stop_reason}); "
        f"steepest {lr_text(s.steepest.lr)}, valley {lr_text(s.valley.lr)}; "
        f"CLR pair {pair}")

  sweep = clr.parallel_range_test(
      model, mse, batches(seed=2), num_lrs=num_lrs, min_lr=1e-4, max_lr=1.0,
      num_steps=steps // 2, accumulation_steps=4, compute_dtype=jnp.bfloat16,
      val_data=val)
  best = sweep.suggest().best
  statuses = ", ".join(f"{n} {k}" for k, n in
                       collections.Counter(sweep.status).items())
  if best.lr is None:
    found = f"no LR trained ({best.reason})"
  else:
    found = (f"best fixed LR {best.lr:.3g} (val loss "
             f"{sweep.eval_metrics['loss'][best.index]:.4f}, val mae "
             f"{sweep.eval_metrics['mae'][best.index]:.4f})")
  print(f"parallel on {jax.device_count()} devices: {found}; {num_lrs} LRs: "
        f"{statuses}")

  out.mkdir(parents=True, exist_ok=True)
  for name, res in (("range_test", result), ("sweep", sweep)):
    res.to_json(out / f"{name}.json")
    res.plot(path=out / f"{name}.png")
    print(f"wrote {out / f'{name}.json'} and {out / f'{name}.png'}")
  return result, sweep


def lr_text(lr):
  return "-" if lr is None else f"{lr:.3g}"


if __name__ == "__main__":
  main()
