"""Range tests on meshes: explicit sharding, data parallelism, the sweep
over copies x data, the multi-seed test, on 8 forced CPU devices against
one device (a subprocess: the device count is fixed when jax starts)."""

import json
import os
import subprocess
import sys

import pytest

from _devices import forced_devices


@pytest.fixture(scope="module")
def report():
  script = os.path.join(os.path.dirname(__file__), "_sharded_programs.py")
  env = {**os.environ,
         "XLA_FLAGS": forced_devices(8),
         "JAX_PLATFORMS": "cpu", "OPTAX_CLR_CACHE_DIR": ""}
  proc = subprocess.run([sys.executable, script], env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_explicit_sharding_model_runs_on_the_users_mesh(report):
  # The model's kernel keeps its tensor-parallel layout; its reshard calls
  # see the mesh and the batch split over "batch".
  r = report["explicit"]
  assert r["kernel_spec"] == "P(None, 'model')"
  assert r["stop"] == "completed" and r["steps"] == 12 and r["finite"]
  assert r["mesh"] == {"batch": 4, "model": 2}


def test_data_parallel_range_test_equals_one_device(report):
  r = report["data_parallel"]
  assert r["mesh"] == {"data": 8}
  assert r["losses"] < 1e-5 and r["val"] < 1e-5


def test_sweep_over_copies_and_data_equals_one_device(report):
  r = report["sweep_2d"]
  assert r["data_axis"] == "data" and r["devices"] == 4
  assert r["losses"] < 1e-5 and r["val"] < 1e-5


def test_multi_seed_on_8_devices_equals_separate_ramps(report):
  r = report["multi_seed"]
  assert r["devices"] == 8
  assert r["max_err"] < 1e-5


def test_hyperparameter_grid_on_8_devices_equals_one_device(report):
  # 12 configurations over 8 devices (padded to 16); the LR-1e4 ones
  # blow up exactly as on one device, the others are unaffected.
  r = report["grid"]
  assert r["devices"] == 8 and r["status_equal"]
  assert r["nonfinite"] >= 2  # LR 1e4: non-finite (with weight decay)
  assert r["losses"] < 1e-5
