"""Regenerates ``pytorch_schedules.json`` from real PyTorch schedulers.

Run from the repository root (needs torch; it is not a runtime dependency):

  python tests/golden/make_pytorch_golden.py

For each configuration below it steps ``torch.optim.lr_scheduler.CyclicLR``
or ``OneCycleLR`` on an SGD optimizer with momentum (so ``cycle_momentum``
applies) and records the learning rate and momentum in effect at each step
``t`` (the values after ``t`` calls of ``scheduler.step()``, i.e. those used
by update ``t``). Long runs are stored at a subset of steps that always
includes the first steps, the last steps and the neighbourhood of every cycle
or phase boundary, so the fixture stays well under 1 MB.

Custom ``scale_fn`` lambdas are stored by name; ``SCALE_FNS`` below defines
them and the tests rebuild the same functions with ``jax.numpy``.
"""

from __future__ import annotations

import json
import math
import pathlib
import warnings

import torch

OUT = pathlib.Path(__file__).with_name("pytorch_schedules.json")
MAX_STORED = 400  # stored steps per run, besides boundary neighbourhoods

# name -> function of the cycle number (from 1) or of the step.
SCALE_FNS = {
    "sin_cycle": lambda x: 0.5 * (1.0 + math.sin(x * math.pi / 2.0)),
    "inv_cycle": lambda x: 1.0 / x,
    "pow_iter": lambda x: 0.999 ** x,
    "inv_sqrt_iter": lambda x: 1.0 / math.sqrt(1.0 + x / 50.0),
}

CYCLIC = [
    dict(name="triangular", base_lr=0.001, max_lr=0.006, step_size_up=20,
         num_steps=200),
    dict(name="triangular_asym", base_lr=0.01, max_lr=0.1, step_size_up=7,
         step_size_down=13, num_steps=200),
    dict(name="triangular_defaults", base_lr=1e-3, max_lr=1.0,
         num_steps=10000),
    dict(name="triangular_odd", base_lr=0.05, max_lr=0.7, step_size_up=1999,
         step_size_down=3001, num_steps=12000),
    dict(name="triangular2", base_lr=1e-4, max_lr=1e-2, step_size_up=15,
         step_size_down=10, mode="triangular2", num_steps=300),
    dict(name="triangular2_long", base_lr=0.0, max_lr=2.0, step_size_up=50,
         mode="triangular2", base_momentum=0.85, max_momentum=0.95,
         num_steps=3000),
    dict(name="exp_range", base_lr=0.01, max_lr=0.5, step_size_up=25,
         mode="exp_range", gamma=0.995, num_steps=400),
    dict(name="exp_range_asym", base_lr=0.001, max_lr=0.1, step_size_up=30,
         step_size_down=50, mode="exp_range", gamma=0.9999, num_steps=2000),
    dict(name="exp_range_gamma1", base_lr=0.2, max_lr=0.3, step_size_up=9,
         mode="exp_range", gamma=1.0, num_steps=100),
    dict(name="scale_fn_cycle_sin", base_lr=0.01, max_lr=0.1,
         step_size_up=10, scale_fn="sin_cycle", scale_mode="cycle",
         num_steps=200),
    dict(name="scale_fn_cycle_inv", base_lr=0.0, max_lr=1.0, step_size_up=6,
         step_size_down=4, scale_fn="inv_cycle", scale_mode="cycle",
         num_steps=300),
    dict(name="scale_fn_iter_pow", base_lr=0.01, max_lr=0.1,
         step_size_up=12, step_size_down=8, scale_fn="pow_iter",
         scale_mode="iterations", num_steps=300),
    dict(name="scale_fn_iter_inv_sqrt", base_lr=0.3, max_lr=3.0,
         step_size_up=40, scale_fn="inv_sqrt_iter", scale_mode="iterations",
         base_momentum=0.7, max_momentum=0.99, num_steps=1000),
]

ONE_CYCLE = [
    dict(name="defaults_100", max_lr=1.0, total_steps=100),
    dict(name="linear_1000", max_lr=0.1, total_steps=1000, pct_start=0.25,
         anneal_strategy="linear"),
    dict(name="three_phase_500", max_lr=0.5, total_steps=500,
         three_phase=True),
    dict(name="three_phase_linear_333", max_lr=2.0, total_steps=333,
         pct_start=0.4, anneal_strategy="linear", three_phase=True),
    dict(name="custom_factors_2000", max_lr=0.3, total_steps=2000,
         pct_start=0.35, div_factor=10.0, final_div_factor=100.0,
         base_momentum=0.8, max_momentum=0.9),
    dict(name="fractional_phase_end_97", max_lr=0.01, total_steps=97,
         pct_start=0.3),
    dict(name="short_5", max_lr=1.0, total_steps=5, pct_start=0.5),
    dict(name="three_phase_fractional_101", max_lr=0.7, total_steps=101,
         pct_start=0.27, three_phase=True, div_factor=5.0,
         final_div_factor=1e3, base_momentum=0.9, max_momentum=0.98),
]


def _boundaries(cfg: dict, kind: str) -> list[float]:
  """Steps where the schedule changes phase (cycle or one-cycle phases)."""
  n = cfg["num_steps"]
  if kind == "cyclic":
    up = cfg.get("step_size_up", 2000)
    down = cfg.get("step_size_down") or up
    out = []
    for start in range(0, n + up + down, up + down):
      out += [start, start + up]
    return out
  p, total = cfg.get("pct_start", 0.3), cfg["total_steps"]
  ends = [p * total - 1, total - 1]
  if cfg.get("three_phase"):
    ends.insert(1, 2 * p * total - 2)
  return ends


def _stored_steps(n: int, boundaries: list[float]) -> list[int]:
  if n <= MAX_STORED:
    return list(range(n))
  # A stride coprime to typical cycle lengths visits every phase position.
  stride = n // MAX_STORED + 1
  while math.gcd(stride, 10) != 1:
    stride += 1
  keep = set(range(0, 50)) | set(range(n - 20, n)) | set(range(0, n, stride))
  for b in boundaries:
    keep |= {math.floor(b) + d for d in range(-2, 4)}
  return sorted(t for t in keep if 0 <= t < n)


def run_scheduler(make_scheduler,
                  num_steps: int) -> tuple[list[float], list[float]]:
  """LR and momentum before each of ``num_steps`` SGD steps under
  ``make_scheduler(optimizer)``; the live parity test drives torch with it too.
  """
  param = torch.nn.Parameter(torch.zeros(1))
  opt = torch.optim.SGD([param], lr=0.1, momentum=0.9)
  sched = make_scheduler(opt)
  lrs, moms = [], []
  for _ in range(num_steps):
    lrs.append(float(sched.get_last_lr()[0]))
    moms.append(float(opt.param_groups[0]["momentum"]))
    opt.step()
    sched.step()
  return lrs, moms


def cyclic_record(cfg: dict) -> dict:
  kwargs = {k: v for k, v in cfg.items() if k not in ("name", "num_steps")}
  torch_kwargs = dict(kwargs)
  if "scale_fn" in torch_kwargs:
    torch_kwargs["scale_fn"] = SCALE_FNS[torch_kwargs["scale_fn"]]
  lrs, moms = run_scheduler(
      lambda opt: torch.optim.lr_scheduler.CyclicLR(opt, **torch_kwargs),
      cfg["num_steps"])
  steps = _stored_steps(cfg["num_steps"], _boundaries(cfg, "cyclic"))
  return dict(name=cfg["name"], kwargs=kwargs, num_steps=cfg["num_steps"],
              steps=steps, lr=[lrs[t] for t in steps],
              momentum=[moms[t] for t in steps])


def one_cycle_record(cfg: dict) -> dict:
  kwargs = {k: v for k, v in cfg.items() if k != "name"}
  n = cfg["total_steps"]
  lrs, moms = run_scheduler(
      lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, **kwargs), n)
  steps = _stored_steps(n, _boundaries(dict(cfg, num_steps=n), "one_cycle"))
  return dict(name=cfg["name"], kwargs=kwargs, steps=steps,
              lr=[lrs[t] for t in steps], momentum=[moms[t] for t in steps])


def main() -> None:
  warnings.simplefilter("ignore")  # scheduler deprecation chatter
  data = dict(
      generator="tests/golden/make_pytorch_golden.py",
      torch_version=torch.__version__,
      cyclic=[cyclic_record(c) for c in CYCLIC],
      one_cycle=[one_cycle_record(c) for c in ONE_CYCLE],
  )
  OUT.write_text(json.dumps(data, separators=(",", ":")) + "\n")
  print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
  main()
