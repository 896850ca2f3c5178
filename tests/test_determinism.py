"""Same seed, same numbers: range tests, sweeps and training are reproducible.

In one process, running the same thing twice with the same seed gives
bit-identical curves (and a different seed a different curve, so the check
can fail). Across device counts, a subprocess with 8 forced CPU devices runs
the workload of ``tests/_determinism_devices.py`` on a mesh of all 8 devices
and on a mesh of 1 device; its curves must agree with each other and with
the same workload run here, on this process's single device, to float32
tolerance.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from _devices import forced_devices

HERE = pathlib.Path(__file__).resolve().parent


def _load_workload():
  spec = importlib.util.spec_from_file_location(
      "_determinism_devices", HERE / "_determinism_devices.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


W = _load_workload()


# ----------------------------------------------------------------------------
# Twice in one process.


def test_classic_range_test_is_bit_identical_for_the_same_seed():
  a, b, other = W.classic(seed=0), W.classic(seed=0), W.classic(seed=1)
  assert a.num_steps == 24
  assert a == b
  np.testing.assert_array_equal(a.losses, b.losses)
  np.testing.assert_array_equal(a.smoothed_losses, b.smoothed_losses)
  assert not np.array_equal(a.losses, other.losses)  # the seed matters


def test_parallel_sweep_is_bit_identical_for_the_same_seed():
  devices = jax.devices()[:1]
  a, b, other = W.sweep(devices, 0), W.sweep(devices, 0), W.sweep(devices, 1)
  assert a == b
  np.testing.assert_array_equal(a.losses, b.losses)
  np.testing.assert_array_equal(a.diverged_at, b.diverged_at)
  np.testing.assert_array_equal(a.eval_metrics["accuracy"],
                                b.eval_metrics["accuracy"])
  assert a.diverged.any() and not a.diverged.all()  # both kinds compared
  assert not np.array_equal(a.losses, other.losses, equal_nan=True)


def test_training_is_bit_identical_for_the_same_seed():
  a, b, other = W.training(0), W.training(0), W.training(1)
  assert len(a) == 16  # 2 epochs x 256 // 32
  for name in ("losses", "lrs", "momenta", "eval_steps"):
    np.testing.assert_array_equal(getattr(a, name), getattr(b, name), name)
  for name in ("loss", "accuracy"):
    np.testing.assert_array_equal(a.eval_metrics[name], b.eval_metrics[name])
  assert not np.array_equal(a.losses, other.losses)  # another data order


# ----------------------------------------------------------------------------
# 8 forced devices versus 1.


def assert_close_until_divergence(actual, expected, diverged_at, what):
  """Rows compared up to their divergence step: past it a run is chaotic
  (losses in the hundreds), and float32 rounding differences between
  groupings of the copies grow without bound."""
  actual = np.asarray(actual, np.float64)
  expected = np.asarray(expected, np.float64)
  for k, at in enumerate(diverged_at):
    end = actual.shape[1] if at < 0 else at
    assert_close(actual[k, :end], expected[k, :end], f"{what}[{k}]")


def assert_close(actual, expected, what):
  actual = np.asarray(actual, np.float64)
  expected = np.asarray(expected, np.float64)
  np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), what)
  np.testing.assert_allclose(actual, expected, rtol=2e-5, atol=1e-6,
                             equal_nan=True, err_msg=what)


@pytest.fixture(scope="module")
def eight_device_report():
  env = {**os.environ,
         "XLA_FLAGS": forced_devices(8),
         "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, str(HERE / "_determinism_devices.py")],
                        env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a subprocess compiling the whole workload twice over
@pytest.mark.skipif(sys.platform == "win32", reason="subprocess env")
def test_sweep_on_8_devices_equals_the_sweep_on_1(eight_device_report):
  r = eight_device_report
  assert r["devices"] == [8, 1]
  many, one = r["sweep_8"], r["sweep_1"]
  assert many["diverged_at"] == one["diverged_at"]
  assert any(d >= 0 for d in one["diverged_at"])
  assert any(d < 0 for d in one["diverged_at"])
  assert_close_until_divergence(many["losses"], one["losses"],
                                one["diverged_at"], "sweep losses")
  kept = [d < 0 for d in one["diverged_at"]]
  assert_close(np.asarray(many["val_accuracy"])[kept],
               np.asarray(one["val_accuracy"])[kept], "sweep accuracy")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="subprocess env")
def test_8_device_process_agrees_with_this_single_device_process(
    eight_device_report):
  assert len(jax.devices()) == 1
  r = eight_device_report
  here_sweep = W.sweep(jax.devices())
  np.testing.assert_array_equal(r["sweep_1"]["diverged_at"],
                                here_sweep.diverged_at)
  assert_close_until_divergence(r["sweep_1"]["losses"], here_sweep.losses,
                                here_sweep.diverged_at, "sweep losses")
  here = W.classic()
  assert r["classic"]["stop_reason"] == here.stop_reason
  assert_close(r["classic"]["lrs"], here.lrs, "classic lrs")
  assert_close(r["classic"]["losses"], here.losses, "classic losses")
  h = W.training()
  assert_close(r["train"]["loss"], h.losses, "train loss")
  assert_close(r["train"]["val_loss"], h.eval_metrics["loss"], "val loss")
  assert_close(r["train"]["val_accuracy"], h.eval_metrics["accuracy"],
               "val accuracy")
