"""Parity with PyTorch's CyclicLR and OneCycleLR (learning rate and momentum).

Two sources of truth: the stored fixture ``golden/pytorch_schedules.json``
(made by ``golden/make_pytorch_golden.py`` from torch 2.x, checked without
torch), and torch itself on random configurations when it is importable.
Tolerance: float32 rounding, ``rtol=1e-6`` plus ``atol=1e-7 * max`` (the
largest value of the schedule); one-cycle values meet ``rtol=1e-6`` alone.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import pathlib

import _reference as ref
import jax.numpy as jnp
import numpy as np
import pytest

from optax_clr import schedules as mom  # momentum lives with the LR schedules
from optax_clr import schedules as sch

GOLDEN = pathlib.Path(__file__).parent / "golden" / "pytorch_schedules.json"
RTOL = 1e-6
ATOL_REL = 1e-7

# The fixture's scale_fn names, rebuilt with jax.numpy as float32-accurate
# versions of the same functions: ``0.999 ** x`` in float32 would round 0.999
# first (off by ~1e-5 relative at x = 300) and ``sin(x pi / 2)`` at x = 22
# would carry the rounding of 11 pi (~1e-6); errors of the function, not of
# the schedule. The cycle number x is a whole number, so x mod 4 is exact.
JNP_SCALE_FNS = {
    "sin_cycle": lambda x: 0.5 * (1.0 + jnp.sin(jnp.remainder(x, 4.0)
                                                * (jnp.pi / 2.0))),
    "inv_cycle": lambda x: 1.0 / x,
    "pow_iter": lambda x: jnp.exp(x * math.log(0.999)),
    "inv_sqrt_iter": lambda x: 1.0 / jnp.sqrt(1.0 + x / 50.0),
}
_CYCLIC_DEFAULTS = dict(step_size_up=2000, step_size_down=None,
                        mode="triangular", gamma=1.0, scale_fn=None,
                        scale_mode="cycle", base_momentum=0.8,
                        max_momentum=0.9)
_ONE_CYCLE_DEFAULTS = dict(pct_start=0.3, anneal_strategy="cos",
                           div_factor=25.0, final_div_factor=1e4,
                           three_phase=False, base_momentum=0.85,
                           max_momentum=0.95)


def _ours_cyclic(kwargs: dict):
  k = dict(_CYCLIC_DEFAULTS, **kwargs)
  scale_fn = JNP_SCALE_FNS[k["scale_fn"]] if k["scale_fn"] else None
  cycle = dict(step_size_up=k["step_size_up"],
               step_size_down=k["step_size_down"], mode=k["mode"],
               gamma=k["gamma"], scale_fn=scale_fn,
               scale_mode=k["scale_mode"])
  lr = sch.cyclic_schedule(k["base_lr"], k["max_lr"], **cycle)
  m = mom.cyclic_momentum_schedule(k["base_momentum"], k["max_momentum"],
                                   **cycle)
  return lr, m, k["max_lr"], k["max_momentum"]


def _ours_one_cycle(kwargs: dict):
  k = dict(_ONE_CYCLE_DEFAULTS, **kwargs)
  phases = dict(pct_start=k["pct_start"],
                anneal_strategy=k["anneal_strategy"],
                three_phase=k["three_phase"])
  lr = sch.one_cycle_schedule(k["max_lr"], k["total_steps"],
                              div_factor=k["div_factor"],
                              final_div_factor=k["final_div_factor"],
                              **phases)
  m = mom.one_cycle_momentum_schedule(k["total_steps"],
                                      base_momentum=k["base_momentum"],
                                      max_momentum=k["max_momentum"],
                                      **phases)
  return lr, m, k["max_lr"], k["max_momentum"]


def _evaluate(schedule, steps) -> np.ndarray:
  return ref.evaluate(schedule, steps)


def _assert_close(ours: np.ndarray, torch_values, scale: float,
                  atol_rel: float = ATOL_REL) -> None:
  """Asserts agreement to float32 rounding (``scale``: the schedule's max)."""
  np.testing.assert_allclose(ours, np.asarray(torch_values, np.float64),
                             rtol=RTOL, atol=atol_rel * scale)


def _golden():
  return json.loads(GOLDEN.read_text())


def test_fixture_covers_the_required_configurations():
  data = _golden()
  cyclic = [r["kwargs"] for r in data["cyclic"]]
  assert {k.get("mode", "triangular") for k in cyclic} == set(sch.MODES)
  assert {k.get("scale_mode") for k in cyclic if "scale_fn" in k} == {
      "cycle", "iterations"}
  assert any("step_size_down" in k for k in cyclic)
  assert set(JNP_SCALE_FNS) == {k["scale_fn"] for k in cyclic
                                if "scale_fn" in k}
  one = [r["kwargs"] for r in data["one_cycle"]]
  assert {k.get("anneal_strategy", "cos") for k in one} == {"cos", "linear"}
  assert any(k.get("three_phase") for k in one)
  assert any("div_factor" in k and "base_momentum" in k for k in one)
  assert GOLDEN.stat().st_size < 1_000_000


@pytest.mark.parametrize("record", _golden()["cyclic"],
                         ids=lambda r: r["name"])
def test_cyclic_matches_pytorch_fixture(record):
  lr, m, max_lr, max_m = _ours_cyclic(record["kwargs"])
  _assert_close(_evaluate(lr, record["steps"]), record["lr"], max_lr)
  _assert_close(_evaluate(m, record["steps"]), record["momentum"], max_m)


@pytest.mark.parametrize("record", _golden()["one_cycle"],
                         ids=lambda r: r["name"])
def test_one_cycle_matches_pytorch_fixture(record):
  lr, m, max_lr, max_m = _ours_one_cycle(record["kwargs"])
  # Relative precision holds everywhere, down to the final max / 2.5e5.
  _assert_close(_evaluate(lr, record["steps"]), record["lr"], max_lr,
                atol_rel=0.0)
  _assert_close(_evaluate(m, record["steps"]), record["momentum"], max_m,
                atol_rel=0.0)


# --- live comparison against torch on fresh random configurations ---------


@functools.cache
def _generator():
  """The fixture's generator script, imported only when torch is installed:
  the one place that drives torch's schedulers and defines the torch-side
  ``scale_fn`` lambdas."""
  pytest.importorskip("torch")
  path = GOLDEN.parent / "make_pytorch_golden.py"
  spec = importlib.util.spec_from_file_location("make_pytorch_golden", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _torch_run(make_scheduler, num_steps):
  gen = _generator()
  lrs, moms = gen.run_scheduler(
      lambda opt: make_scheduler(gen.torch, opt), num_steps)
  return np.array(lrs), np.array(moms)


def _random_cyclic(rng: np.random.Generator) -> dict:
  base = float(10 ** rng.uniform(-4, -1))
  k = dict(base_lr=base, max_lr=base * float(rng.uniform(1.5, 100.0)),
           step_size_up=int(rng.integers(1, 60)))
  if rng.random() < 0.6:
    k["step_size_down"] = int(rng.integers(1, 60))
  k["mode"] = str(rng.choice(sch.MODES))
  k["gamma"] = float(rng.uniform(0.99, 1.0))
  if rng.random() < 0.4:
    k["scale_fn"] = str(rng.choice(sorted(JNP_SCALE_FNS)))
    k["scale_mode"] = "iterations" if k["scale_fn"].endswith(
        "_iter") else "cycle"
  b = float(rng.uniform(0.0, 0.9))
  k["base_momentum"], k["max_momentum"] = b, float(rng.uniform(b, 1.0))
  return k


def _random_one_cycle(rng: np.random.Generator) -> dict:
  n = int(rng.integers(10, 800))
  three = bool(rng.random() < 0.4)
  high = min(0.9, (n + 1) / (2 * n) - 1e-3) if three else 0.9
  pct = float(rng.uniform(max(0.02, 2.0 / n), high))
  b = float(rng.uniform(0.0, 0.9))
  return dict(max_lr=float(10 ** rng.uniform(-3, 0.5)), total_steps=n,
              pct_start=pct, anneal_strategy=str(rng.choice(["cos", "linear"])),
              div_factor=float(rng.uniform(2.0, 50.0)),
              final_div_factor=float(10 ** rng.uniform(1, 5)),
              three_phase=three, base_momentum=b,
              max_momentum=float(rng.uniform(b, 1.0)))


@pytest.mark.parametrize("seed", range(8))
def test_cyclic_matches_live_pytorch_on_random_configs(seed):
  kwargs = _random_cyclic(np.random.default_rng(seed))
  num_steps = 400
  torch_kwargs = dict(kwargs)
  if "scale_fn" in torch_kwargs:
    torch_kwargs["scale_fn"] = _generator().SCALE_FNS[
        torch_kwargs["scale_fn"]]
  lrs, moms = _torch_run(
      lambda torch, opt: torch.optim.lr_scheduler.CyclicLR(opt,
                                                           **torch_kwargs),
      num_steps)
  lr, m, max_lr, max_m = _ours_cyclic(kwargs)
  steps = np.arange(num_steps)
  _assert_close(_evaluate(lr, steps), lrs, max_lr)
  _assert_close(_evaluate(m, steps), moms, max_m)


@pytest.mark.parametrize("seed", range(6))
def test_one_cycle_matches_live_pytorch_on_random_configs(seed):
  kwargs = _random_one_cycle(np.random.default_rng(100 + seed))
  lrs, moms = _torch_run(
      lambda torch, opt: torch.optim.lr_scheduler.OneCycleLR(opt, **kwargs),
      kwargs["total_steps"])
  lr, m, max_lr, max_m = _ours_one_cycle(kwargs)
  steps = np.arange(kwargs["total_steps"])
  _assert_close(_evaluate(lr, steps), lrs, max_lr, atol_rel=0.0)
  _assert_close(_evaluate(m, steps), moms, max_m, atol_rel=0.0)
