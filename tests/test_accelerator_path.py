"""The accelerator path, checked as far as a CPU allows: every local copy in
one vmap on GPU/TPU, the carry donated in the chunk programs, the host
reading records once per chunk (never per step), bfloat16 compute in the
sweep."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import _toy
import optax_clr as clr
from optax_clr.engine import _feed
from optax_clr.engine import _layout
from optax_clr.engine import _loop
from optax_clr.engine import _placement


@dataclasses.dataclass(frozen=True)
class Count:
  """A solver: carry += consts * (step + 1) on valid steps."""

  def init(self, ts):
    return ts

  def train_state(self, carry):
    return carry, jnp.bool_(False)

  def step(self, spec, carry, consts, val, x):
    micro, ok, t = x
    new = carry + consts["c"] * (t + 1).astype(jnp.float32) + 0 * micro.sum()
    new = jnp.where(ok, new, carry)
    return new, {"value": new, "recorded": ok}


def program(execution, group=4):
  plan = _layout.Plan(None, None, None, True, 1, group, execution)
  return _loop.Program(None, Count(), plan, False)


def population(execution):
  prog = program(execution)
  consts = {"c": np.arange(4, dtype=np.float32), "seed": np.zeros(4),
            "copy": np.arange(4)}
  pop = _loop.Population([], consts, None)
  pop.blocks.append(pop._block(prog, jnp.zeros(4, jnp.float32),
                               np.arange(4)))
  return pop


def xs_of(first, steps=5):
  placed = (jnp.zeros((steps, 1, 2), jnp.float32), jnp.ones(steps, bool),
            jnp.arange(first, first + steps, dtype=jnp.int32))
  return lambda block: placed


def test_all_local_copies_in_one_vmap_on_accelerators(monkeypatch):
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert _layout.default_group(4096, clr.Options()) == 4096


@pytest.mark.parametrize("execution", ["scan", "steps"])
def test_chunk_programs_donate_the_carry(execution):
  pop = population(execution)
  carry = pop.blocks[0].carry
  pending = pop.dispatch(xs_of(0), 5)
  assert carry.is_deleted()  # its buffer became the new carry's
  # sum over t = 0..4 of c * (t + 1) = 15 * c
  np.testing.assert_allclose(np.asarray(pop.blocks[0].carry),
                             15 * np.arange(4))
  assert pop.collect(pending, 5)["value"].shape == (4, 5)


@pytest.mark.parametrize("execution", ["scan", "steps"])
def test_host_reads_records_once_per_chunk(execution, monkeypatch):
  fetches = []
  real = _placement.fetch
  monkeypatch.setattr(_placement, "fetch",
                      lambda tree: fetches.append(1) or real(tree))
  chunks = iter([_feed.Chunk(np.zeros((5, 1, 2), np.float32),
                             np.ones(5, bool), 5, False)] * 3)
  pop = population(execution)
  outcome = _loop.drive(pop, chunks, lambda chunk, first: xs_of(first), 15)
  assert len(fetches) == 3  # 3 chunks of 5 steps: 3 reads, not 15
  values = _loop.concat(outcome.records, "value")
  np.testing.assert_allclose(values[1], np.cumsum(np.arange(1, 16)))


def test_steps_execution_queues_a_chunk_without_reading_it():
  pending = population("steps").dispatch(xs_of(0), 5)
  # Device arrays, dispatched asynchronously, until collect() reads them.
  records = [out for _, out in pending]
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(records))


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
