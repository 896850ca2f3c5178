"""Subprocess for tests/test_determinism.py: one workload on 8 and 1 devices.

Run with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (set here if
missing, before jax is imported). Runs, on the bundled CNN and the embedded
digits: a parallel sweep on a mesh of all 8 devices and on a mesh of 1
device, a classic range test, and a short ``train`` run; prints one JSON line
with every curve. The test compares the two meshes with each other and the
classic test and training run with the same workload run in the test's own
(single-device) process, which imports :func:`workload` from this file.
"""

import json
import os
import sys

if __name__ == "__main__":
  os.environ.setdefault("XLA_FLAGS",
                        "--xla_force_host_platform_device_count=8")
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import optax_clr  # noqa: E402

LRS = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0]


def setup(n_train=256):
  train, val = optax_clr.load_digits().split(0.2, 0)
  train = optax_clr.Dataset(train.images[:n_train], train.labels[:n_train],
                            train.num_classes, "digits-subset")
  model = optax_clr.make_model("cnn", num_classes=10, in_channels=1,
                               width=2, seed=0)
  return model, train, val


def sweep(devices, seed=0):
  model, train, val = setup()
  return optax_clr.parallel_range_test(
      model, optax_clr.cross_entropy_loss, train.as_batch(), lrs=LRS,
      num_steps=12, batch_size=32, steps_per_chunk=5,
      val_data=val.as_batch(), mesh=Mesh(np.array(devices), ("copies",)),
      seed=seed)


def classic(seed=0):
  model, train, _ = setup()
  return optax_clr.range_test(
      model, optax_clr.cross_entropy_loss, train.as_batch(), start_lr=1e-3,
      end_lr=10.0, num_steps=24, batch_size=32, steps_per_chunk=10,
      diverge_threshold=None, seed=seed)


def training(seed=0):
  model, train, val = setup()
  optimizer = optax_clr.cyclic_sgd(
      optax_clr.triangular2_schedule(0.01, 0.1, 8),
      optax_clr.cyclic_momentum_schedule(0.8, 0.9, 8))
  _, history = optax_clr.train(
      model, optax_clr.cross_entropy_loss, train, optimizer=optimizer,
      num_epochs=2, batch_size=32, val_data=val, seed=seed)
  return history


def workload(devices):
  """Every curve as JSON-able lists (float32 values, NaN kept as NaN)."""
  many, one = sweep(devices), sweep(devices[:1])
  rt = classic()
  h = training()
  return {
      "devices": [many.config["devices"], one.config["devices"]],
      "sweep_8": {"losses": many.losses.tolist(),
                  "diverged_at": many.diverged_at.tolist(),
                  "val_accuracy": many.eval_metrics["accuracy"].tolist()},
      "sweep_1": {"losses": one.losses.tolist(),
                  "diverged_at": one.diverged_at.tolist(),
                  "val_accuracy": one.eval_metrics["accuracy"].tolist()},
      "classic": {"lrs": rt.lrs.tolist(), "losses": rt.losses.tolist(),
                  "stop_reason": rt.stop_reason},
      "train": {"loss": h.losses.tolist(),
                "val_accuracy": h.eval_metrics["accuracy"].tolist(),
                "val_loss": h.eval_metrics["loss"].tolist()},
  }


if __name__ == "__main__":
  assert len(jax.devices()) == 8, jax.devices()
  print(json.dumps(workload(jax.devices())))
