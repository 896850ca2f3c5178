"""Subprocess for tests/test_sharding.py: data parallelism and explicit
sharding on 8 forced host devices, against one device.

Run with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (set here if
missing) before jax is imported. Prints one JSON line.
"""

import json
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import Mesh  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402
from jax.sharding import reshard  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import _toy  # noqa: E402
import optax_clr as clr  # noqa: E402

QUIET = dict(progress=False)


class TinyGPT(nnx.Module):
  """The explicit-sharding idioms of Flax's NNX MiniGPT tutorial."""

  def __init__(self, rngs):
    self.emb = nnx.Embed(16, 8, rngs=rngs)
    self.out = nnx.Linear(
        8, 16, kernel_metadata={"out_sharding": P(None, "model")},
        bias_metadata={"out_sharding": P("model")}, rngs=rngs)

  def __call__(self, x):
    h = self.emb(x, out_sharding=jax.typeof(x).sharding)
    return reshard(self.out(h), jax.typeof(x).sharding)


def gpt_loss(model, batch):
  logits = model(batch[0])
  return optax.softmax_cross_entropy_with_integer_labels(
      logits=logits, labels=batch[1]).mean(), logits


def rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-6)))


def explicit_sharding():
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 16, (256, 12)).astype(np.int32)
  data = (tokens, np.roll(tokens, -1, 1))
  mesh = jax.make_mesh((4, 2), ("batch", "model"))
  with jax.set_mesh(mesh):
    model = TinyGPT(nnx.Rngs(0))
    kernel_spec = str(jax.typeof(model.out.kernel[...]).sharding.spec)
    ambient = clr.range_test(model, gpt_loss, data, batch_size=32,
                             num_steps=12, start_lr=1e-3, end_lr=1.0, **QUIET)
  return {"kernel_spec": kernel_spec, "stop": ambient.stop_reason,
          "steps": ambient.num_steps,
          "finite": bool(np.isfinite(ambient.losses).all()),
          "mesh": ambient.config["mesh"]}


def data_parallel():
  kw = dict(batch_size=16, num_steps=10, start_lr=1e-3, end_lr=0.3,
            val_data=_toy.make_data(seed=1), eval_every=5, **QUIET)
  one = clr.range_test(_toy.make_params(), _toy.regression_loss,
                       _toy.make_data(), **kw)
  many = clr.range_test(_toy.make_params(), _toy.regression_loss,
                        _toy.make_data(), data_axis="data", **kw)
  return {"mesh": many.config["mesh"],
          "losses": rel_err(many.losses, one.losses),
          "val": rel_err(many.eval_metrics["loss"], one.eval_metrics["loss"])}


def sweep_over_copies_and_data():
  lrs = np.geomspace(1e-3, 0.3, 8)
  kw = dict(lrs=lrs, num_steps=10, batch_size=8,
            val_data=_toy.make_data(seed=1), **QUIET)
  devices = np.array(jax.devices())
  two_d = clr.parallel_range_test(
      _toy.make_params(), _toy.regression_loss, _toy.make_data(),
      mesh=Mesh(devices.reshape(4, 2), ("copies", "data")), **kw)
  one = clr.parallel_range_test(
      _toy.make_params(), _toy.regression_loss, _toy.make_data(),
      mesh=Mesh(devices[:1], ("copies",)), **kw)
  return {"data_axis": two_d.config["data_axis"],
          "devices": two_d.config["devices"],
          "losses": rel_err(two_d.losses, one.losses),
          "val": rel_err(two_d.eval_metrics["loss"],
                         one.eval_metrics["loss"])}


def multi_seed():
  kw = dict(batch_size=8, num_steps=12, start_lr=1e-3, end_lr=1.0, **QUIET)
  seeds = clr.multi_seed_range_test(_toy.make_params(), _toy.regression_loss,
                                    _toy.make_data(), seeds=[0, 4, 9], **kw)
  errors = []
  for i, s in enumerate((0, 4, 9)):
    single = clr.range_test(_toy.make_params(), _toy.regression_loss,
                            _toy.make_data(), seed=s, **kw)
    run = seeds.run(i)
    errors.append(rel_err(run.losses, single.losses)
                  if run.num_steps == single.num_steps else float("inf"))
  return {"devices": seeds.config["devices"], "max_err": max(errors)}


def grid_sweep():
  kw = dict(hyperparams={"learning_rate": [1e-3, 1e-2, 0.1, 1e4],
                         "weight_decay": [0.0, 0.1, 1.0]},
            optimizer=optax.adamw, num_steps=8, batch_size=8,
            val_data=_toy.make_data(seed=1), **QUIET)
  devices = np.array(jax.devices())
  many = clr.sweep(_toy.make_params(), _toy.regression_loss,
                   _toy.make_data(), mesh=Mesh(devices, ("copies",)), **kw)
  one = clr.sweep(_toy.make_params(), _toy.regression_loss, _toy.make_data(),
                  mesh=Mesh(devices[:1], ("copies",)), **kw)
  finite = np.isfinite(one.losses).all(1)
  return {"devices": many.config["devices"],
          "status_equal": list(many.status) == list(one.status),
          "nonfinite": int((~finite).sum()),
          "losses": rel_err(many.losses[finite], one.losses[finite])}


if __name__ == "__main__":
  assert len(jax.devices()) == 8, jax.devices()
  print(json.dumps({"explicit": explicit_sharding(),
                    "data_parallel": data_parallel(),
                    "sweep_2d": sweep_over_copies_and_data(),
                    "multi_seed": multi_seed(),
                    "grid": grid_sweep()}))
