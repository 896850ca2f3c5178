"""Subprocess for tests/test_parallel.py: the sweep on 8 host devices equals
the sweep on 1 device.

Run with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before
jax is imported (this script sets it if missing). Prints one JSON line with
the comparison and exits non-zero on a mismatch.
"""

import json
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from optax_clr import parallel_range_test  # noqa: E402


def loss_fn(params, batch):
  pred = batch["x1"] @ params["w1"] + batch["x2"] @ params["w2"] + params["b"]
  err = pred - batch["y"]
  return jnp.mean(err ** 2), {"mae": jnp.mean(jnp.abs(err))}


def main():
  rng = np.random.default_rng(0)
  x1 = rng.normal(size=(64, 3)).astype(np.float32)
  x2 = rng.normal(size=(64, 2)).astype(np.float32)
  data = {"x1": x1, "x2": x2,
          "y": (x1 @ [1.0, 2.0, -1.0] + x2 @ [0.5, -0.5]).astype(np.float32)}
  params = {"w1": jnp.zeros(3), "w2": jnp.zeros(2), "b": jnp.zeros(())}
  devices = jax.devices()
  assert len(devices) == 8, devices
  # K = 11 is not a multiple of 8 (padding); the largest LR diverges.
  lrs = np.geomspace(1e-3, 3.0, 11)
  kw = dict(lrs=lrs, num_steps=9, batch_size=8, steps_per_chunk=4,
            val_data=data)
  many = parallel_range_test(params, loss_fn, data,
                             mesh=Mesh(np.array(devices), ("copies",)), **kw)
  chunked = parallel_range_test(params, loss_fn, data, max_parallel=8,
                                mesh=Mesh(np.array(devices), ("copies",)), **kw)
  one = parallel_range_test(params, loss_fn, data,
                            mesh=Mesh(np.array(devices[:1]), ("copies",)), **kw)

  def diff(a, b):
    same_nan = np.array_equal(np.isnan(a), np.isnan(b))
    finite = np.isfinite(a) & np.isfinite(b)
    err = float(np.max(np.abs(a[finite] - b[finite]) /
                       np.maximum(np.abs(b[finite]), 1e-6), initial=0.0))
    return err if same_nan else float("inf")

  report = {
      "devices": [many.config["devices"], chunked.config["devices"],
                  one.config["devices"]],
      "rounds": [many.config["rounds"],
                     chunked.config["rounds"]],
      "losses_rel_err_8_vs_1": diff(many.losses, one.losses),
      "losses_rel_err_chunked_vs_1": diff(chunked.losses, one.losses),
      "eval_rel_err_8_vs_1": diff(many.eval_metrics["loss"],
                                  one.eval_metrics["loss"]),
      "diverged_equal": bool(
          np.array_equal(many.diverged, one.diverged) and
          np.array_equal(chunked.diverged, one.diverged) and
          np.array_equal(many.diverged_at, one.diverged_at)),
      "num_diverged": int(one.diverged.sum()),
      "num_lrs": [many.num_lrs, chunked.num_lrs],
  }
  print(json.dumps(report))
  ok = (report["devices"] == [8, 8, 1]
        and report["rounds"] == [1, 2]
        and report["losses_rel_err_8_vs_1"] < 1e-5
        and report["losses_rel_err_chunked_vs_1"] < 1e-5
        and report["eval_rel_err_8_vs_1"] < 1e-5
        and report["diverged_equal"] and report["num_diverged"] >= 1
        and report["num_lrs"] == [11, 11])
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  main()
