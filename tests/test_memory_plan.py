"""Copies per round from device memory (GPU/TPU), checked on the CPU with
faked ``memory_stats()`` dicts and faked devices.

  n = floor((0.8 * (bytes_limit - bytes_in_use) - fixed) / per_copy)

copies per device, at least 1; on CPU (``memory_stats()`` is None) no cap.
"""

import types

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh

import _toy
import optax_clr as clr
from optax_clr.drivers import _population
from optax_clr.drivers import _setup
from optax_clr.engine import _autotune

GIB, MIB = 2 ** 30, 2 ** 20
# What an H200's allocator reports with XLA's default preallocation (75%
# of 141 GiB), 2 GiB in use.
H200_STATS = {"bytes_limit": 105 * GIB, "bytes_in_use": 2 * GIB,
              "peak_bytes_in_use": 3 * GIB, "largest_free_block_bytes":
              103 * GIB, "num_allocs": 120}


def fake_device(stats, platform="gpu", process_index=0):
  return types.SimpleNamespace(platform=platform, process_index=process_index,
                               memory_stats=lambda: stats)


def test_free_bytes_is_limit_minus_use():
  assert _autotune.free_bytes(H200_STATS) == 103 * GIB
  assert _autotune.free_bytes({"bytes_limit": 10, "bytes_in_use": 12}) == 0


@pytest.mark.parametrize("stats", [None, {}, {"bytes_in_use": 5},
                                   {"bytes_limit": 0, "bytes_in_use": 0}])
def test_free_bytes_unknown_without_a_limit(stats):
  assert _autotune.free_bytes(stats) is None


def test_copies_that_fit_formula():
  # (0.8 * 10 GiB - 1 GiB) / 20 MiB = (8192 - 1024) / 20 = 358.4
  assert _autotune.copies_that_fit(10 * GIB, 20 * MIB, GIB) == 358


def test_4096_copies_of_a_40_mib_model_run_in_rounds_on_an_h200():
  free = _autotune.free_bytes(H200_STATS)
  n = _autotune.copies_that_fit(free, 40 * MIB, 512 * MIB)
  # (0.8 * 103 GiB - 0.5 GiB) / 40 MiB = 2096.6: 4096 copies do not fit
  assert n == 2096
  plan = _population.plan(4096, Mesh(np.array(jax.devices()[:1]),
                                     ("copies",)), n, 1, None)
  assert plan.rounds == 2 and plan.per_round == 2048
  assert plan.per_round * 40 * MIB + 512 * MIB <= 0.8 * free


def test_at_least_one_copy_when_none_fits():
  assert _autotune.copies_that_fit(GIB, 2 * GIB, 0) == 1


def test_no_cap_when_memory_is_unknown():
  assert _autotune.copies_that_fit(None, 20 * MIB, 0) is None


def test_least_free_local_device_decides():
  devices = [fake_device(H200_STATS),
             fake_device({"bytes_limit": 105 * GIB, "bytes_in_use": 50 * GIB}),
             # another process's device: not readable here, not counted
             fake_device({"bytes_limit": 1, "bytes_in_use": 1},
                         process_index=1)]
  assert _autotune.device_free_bytes(devices) == 55 * GIB


def test_a_device_without_statistics_disables_the_cap():
  devices = [fake_device(H200_STATS), fake_device(None)]
  assert _autotune.device_free_bytes(devices) is None


def test_cpu_devices_report_no_memory():
  assert jax.devices()[0].memory_stats() is None
  assert not _autotune.reports_memory(jax.devices())
  assert _autotune.reports_memory([fake_device(H200_STATS)])


class Wide(nnx.Module):
  def __init__(self, width, rngs):
    self.l1 = nnx.Linear(5, width, rngs=rngs)
    self.l2 = nnx.Linear(width, 1, rngs=rngs)

  def __call__(self, x):
    return self.l2(jax.nn.relu(self.l1(x)))[:, 0]


def setup_of(model, num_steps=10):
  return _setup.prepare(
      model, _toy.mlp_loss, _toy.make_data(), optimizer=None,
      driven=("learning_rate",), batch_size=8, seed=0, val_data=None,
      val_batches=4, eval_fn=None, accumulation_steps=1, compute_dtype=None,
      wrt=nnx.Param, step_mode="train", eval_mode="eval", execution="auto",
      steps_per_chunk=None, num_steps=num_steps)


def test_step_bytes_cover_the_state_and_grow_with_the_model():
  small = _autotune.step_bytes(setup_of(Wide(8, nnx.Rngs(0))))[0]
  large = _autotune.step_bytes(setup_of(Wide(512, nnx.Rngs(0))))[0]
  params_512 = (5 * 512 + 512 + 512 + 1) * 4
  # params and the momentum trace at least; activations and gradients more
  assert large >= 2 * params_512
  assert large > 30 * small  # 64x the parameters


def test_chunk_bytes_count_the_running_and_the_prefetched_chunk():
  # 25 steps of 8 examples x (3 + 2 + 1) float32s, twice
  assert _autotune.chunk_bytes(setup_of(Wide(8, nnx.Rngs(0)), 50), 1) == (
      2 * 25 * 8 * 6 * 4)


def test_sweep_on_a_device_with_little_memory_runs_in_rounds(monkeypatch):
  kw = dict(lrs=np.geomspace(1e-3, 0.3, 16), num_steps=6, batch_size=8,
            group_size=1, progress=False)
  capped = clr.parallel_range_test(_toy.make_params(), _toy.regression_loss,
                                   _toy.make_data(), max_parallel=4, **kw)
  # Pretend the CPU reports memory: 5000 free bytes, 1000 per copy.
  monkeypatch.setattr(_autotune, "reports_memory", lambda devices: True)
  monkeypatch.setattr(_autotune, "device_free_bytes", lambda devices: 5000)
  monkeypatch.setattr(_autotune, "step_bytes", lambda setup: (1000, 0))
  monkeypatch.setattr(_autotune, "chunk_bytes", lambda setup, a: 0)
  auto = clr.parallel_range_test(_toy.make_params(), _toy.regression_loss,
                                 _toy.make_data(), **kw)
  # floor(0.8 * 5000 / 1000) = 4 copies per round: 4 rounds of 4
  assert auto.config["memory_cap"] == 4
  assert auto.config["rounds"] == 4 and auto.config["copies_per_round"] == 4
  np.testing.assert_array_equal(auto.losses, capped.losses)


def test_sweep_on_cpu_is_not_capped():
  result = clr.parallel_range_test(
      _toy.make_params(), _toy.regression_loss, _toy.make_data(),
      lrs=np.geomspace(1e-3, 0.3, 16), num_steps=3, batch_size=8,
      group_size=1, progress=False)
  assert result.config["memory_cap"] is None
  assert result.config["rounds"] == 1
