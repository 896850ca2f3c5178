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

import _toy
import optax_clr as clr
from optax_clr.drivers import _sweep
from optax_clr.engine import _memory
from optax_clr.engine import _population
from optax_clr.engine import _setup

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
  assert _memory.free_bytes(H200_STATS) == 103 * GIB
  assert _memory.free_bytes({"bytes_limit": 10, "bytes_in_use": 12}) == 0


@pytest.mark.parametrize("stats", [None, {}, {"bytes_in_use": 5},
                                   {"bytes_limit": 0, "bytes_in_use": 0}])
def test_free_bytes_unknown_without_a_limit(stats):
  assert _memory.free_bytes(stats) is None


def test_copies_that_fit_formula():
  # (0.8 * 10 GiB - 1 GiB) / 20 MiB = (8192 - 1024) / 20 = 358.4
  assert _memory.copies_that_fit(10 * GIB, 20 * MIB, GIB) == 358


def test_4096_copies_of_a_40_mib_model_run_in_rounds_on_an_h200():
  free = _memory.free_bytes(H200_STATS)
  n = _memory.copies_that_fit(free, 40 * MIB, 512 * MIB)
  # (0.8 * 103 GiB - 0.5 GiB) / 40 MiB = 2096.6: 4096 copies do not fit
  assert n == 2096
  rounds = _population.split_rounds(4096, 1, n)
  assert [r.size for r in rounds] == [2048, 2048]
  assert 2048 * 40 * MIB + 512 * MIB <= 0.8 * free


def test_rounds_hold_whole_device_multiples_and_are_balanced():
  rounds = _population.split_rounds(10, 4, 6)  # cap 6 -> 4 per round
  assert [r.size for r in rounds] == [4, 4, 2]
  assert np.array_equal(np.concatenate(rounds), np.arange(10))
  assert [r.size for r in _population.split_rounds(5, 8, 1)] == [5]


def test_at_least_one_copy_when_none_fits():
  assert _memory.copies_that_fit(GIB, 2 * GIB, 0) == 1


def test_no_cap_when_memory_is_unknown():
  assert _memory.copies_that_fit(None, 20 * MIB, 0) is None


def test_least_free_local_device_decides():
  devices = [fake_device(H200_STATS),
             fake_device({"bytes_limit": 105 * GIB, "bytes_in_use": 50 * GIB}),
             # another process's device: not readable here, not counted
             fake_device({"bytes_limit": 1, "bytes_in_use": 1},
                         process_index=1)]
  assert _memory.device_free_bytes(devices) == 55 * GIB


def test_a_device_without_statistics_disables_the_cap():
  devices = [fake_device(H200_STATS), fake_device(None)]
  assert _memory.device_free_bytes(devices) is None


class Wide(nnx.Module):
  def __init__(self, width, rngs):
    self.l1 = nnx.Linear(5, width, rngs=rngs)
    self.l2 = nnx.Linear(width, 1, rngs=rngs)

  def __call__(self, x):
    return self.l2(jax.nn.relu(self.l1(x)))[:, 0]


def program_of(model, num_steps=10):
  setup = _setup.prepare(model, _toy.mlp_loss, _toy.make_data(),
                         clr.Options(batch_size=8), val_data=None,
                         optimizer=None, driven=("learning_rate",),
                         num_steps=num_steps, num_copies=2)
  consts = {"hyper": {"learning_rate": np.ones(2, np.float32)},
            "seed": np.zeros(2, np.int32), "copy": np.arange(2)}
  prog, _, _ = _population.program(setup, _sweep.Fixed(), consts, False,
                                   False)
  return setup, prog, consts


def test_cpu_devices_report_no_memory_and_set_no_cap():
  assert jax.devices()[0].memory_stats() is None
  assert _memory.copies_per_device(*program_of(Wide(8, nnx.Rngs(0)))) is None


def test_program_bytes_cover_the_state_and_grow_with_the_model():
  per_copy = []
  for width in (8, 512):
    setup, prog, consts = program_of(Wide(width, nnx.Rngs(0)))
    one, two = (_memory._program_bytes(prog, setup, consts, g) for g in (1, 2))
    per_copy.append(two - one)
  params_512 = (5 * 512 + 512 + 512 + 1) * 4
  # params and the momentum trace at least; activations and gradients more
  assert per_copy[1] >= 2 * params_512
  assert per_copy[1] > 30 * per_copy[0]  # 64x the parameters


def test_sweep_on_a_device_with_little_memory_runs_in_rounds(monkeypatch):
  kw = dict(lrs=np.geomspace(1e-3, 0.3, 16), num_steps=6, batch_size=8,
            group_size=1, progress=False)
  capped = clr.parallel_range_test(_toy.make_params(), _toy.regression_loss,
                                   _toy.make_data(), max_parallel=4, **kw)
  # Pretend the device reports memory for 4 copies.
  monkeypatch.setattr(_memory, "copies_per_device", lambda *a: 4)
  auto = clr.parallel_range_test(_toy.make_params(), _toy.regression_loss,
                                 _toy.make_data(), **kw)
  assert auto.config["rounds"] == 4 and auto.config["copies_per_round"] == 4
  np.testing.assert_array_equal(auto.losses, capped.losses)


def test_sweep_on_cpu_is_not_capped():
  result = clr.parallel_range_test(
      _toy.make_params(), _toy.regression_loss, _toy.make_data(),
      lrs=np.geomspace(1e-3, 0.3, 16), num_steps=3, batch_size=8,
      group_size=1, progress=False)
  assert result.config["rounds"] == 1
  assert result.config["copies_per_round"] == 16
