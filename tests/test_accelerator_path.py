"""The accelerator path, checked as far as a CPU allows: every local copy in
one vmap on GPU/TPU, the carry donated in the chunk programs, the host
reading outputs once per chunk (never per step), bfloat16 compute in the
sweep."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

import _toy
import optax_clr as clr
from optax_clr.engine import _autotune
from optax_clr.engine import _feed
from optax_clr.engine import _placement
from optax_clr.engine import _runner

MESH = Mesh(np.array(jax.devices()[:1]), ("copies",))


def count_body(carry, consts, shared, x):
  """carry += consts * (step + 1) on valid steps; records the new value."""
  micro, ok, t, _ = x
  new = carry + consts * (t + 1).astype(jnp.float32) + 0 * micro.sum()
  new = jnp.where(ok, new, carry)
  return new, {"value": new, "recorded": ok}


def program(execution, group=4):
  return _runner.population_program(count_body, execution, MESH, group,
                                    per_copy_batches=False)


def xs(first, steps=5):
  return (_placement.put(np.zeros((steps, 1, 2), np.float32), MESH),
          *_placement.put((np.ones(steps, bool),
                           _runner.steps_array(first, steps), None), MESH))


def test_all_local_copies_in_one_vmap_on_accelerators(monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert _autotune.layout(None, 4096) == _autotune.Layout(1, 4096)


@pytest.mark.parametrize("execution", ["scan", "steps"])
def test_chunk_program_donates_the_carry(execution):
  carry = _placement.put_copies(np.zeros(4, np.float32), MESH)
  consts = _placement.put_copies(np.arange(4, dtype=np.float32), MESH)
  new, pending = program(execution)(carry, consts, None, xs(0), 5)
  assert carry.is_deleted()  # its buffer became the new carry's
  # sum over t = 0..4 of consts * (t + 1) = 15 * consts
  np.testing.assert_allclose(np.asarray(new), 15 * np.arange(4))
  assert pending.get()["value"].shape == (4, 5)


@pytest.mark.parametrize("execution", ["scan", "steps"])
def test_host_reads_outputs_once_per_chunk(execution, monkeypatch):
  fetches = []
  real = _placement.fetch
  monkeypatch.setattr(_placement, "fetch",
                      lambda tree: fetches.append(1) or real(tree))
  chunks = iter([_feed.Chunk(np.zeros((5, 1, 2), np.float32),
                             np.ones(5, bool), 5, False)] * 3)
  outcome = _runner.drive(
      program(execution), _placement.put_copies(np.zeros(4, np.float32),
                                                MESH),
      _placement.put_copies(np.ones(4, np.float32), MESH), None, chunks,
      lambda chunk, first: xs(first), lambda out, chunk, done: False, 15)
  assert len(fetches) == 3  # 3 chunks of 5 steps: 3 reads, not 15
  values = np.concatenate([r["value"] for r in outcome.records], 1)
  np.testing.assert_allclose(values[0], np.cumsum(np.arange(1, 16)))


def test_steps_execution_queues_a_chunk_without_reading_it():
  carry = _placement.put_copies(np.zeros(4, np.float32), MESH)
  consts = _placement.put_copies(np.ones(4, np.float32), MESH)
  _, pending = program("steps")(carry, consts, None, xs(0), 5)
  # Still device arrays (dispatched asynchronously) until get().
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(
      pending._value))  # pylint: disable=protected-access


def test_bfloat16_sweep_keeps_float32_losses_close_to_float32():
  kw = dict(lrs=[1e-3, 1e-2, 3e-2], num_steps=6, batch_size=8,
            group_size=3, progress=False)
  f32 = clr.parallel_range_test(_toy.make_params(), _toy.regression_loss,
                                _toy.make_data(), **kw)
  bf16 = clr.parallel_range_test(_toy.make_params(), _toy.regression_loss,
                                 _toy.make_data(),
                                 compute_dtype=jnp.bfloat16, **kw)
  assert bf16.losses.dtype == np.float64  # recorded from float32 losses
  assert bf16.config["compute_dtype"] == "bfloat16"
  # bfloat16 keeps 8 bits of mantissa: within a few percent, not equal
  rel = np.abs(bf16.losses - f32.losses) / f32.losses
  assert 0 < rel.max() < 0.05
