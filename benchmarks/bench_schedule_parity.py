"""Schedule parity: optax_clr vs PyTorch CyclicLR / OneCycleLR.

Draws random hyperparameters (asymmetric step sizes, every mode, gamma,
custom ``scale_fn`` in both scale modes, one-cycle with cos/linear annealing
and two/three phases, momentum bounds), evaluates our schedules for every step
of a long horizon with ``jit(vmap(schedule))(arange(steps))``, steps the
PyTorch scheduler once per step on a dummy SGD optimizer, and reports the max
absolute and relative error of LR and momentum.

  python benchmarks/bench_schedule_parity.py [--configs 24] [--steps 20000]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import _common  # noqa: E402

# scale_fns written with operators only, so the same lambda serves PyTorch
# (Python floats) and optax_clr (float arrays).
SCALE_FNS = {
    "cycle:0.8**(c-1)": (lambda c: 0.8 ** (c - 1.0), "cycle"),
    "cycle:1/c": (lambda c: 1.0 / c, "cycle"),
    "iterations:1/(1+t/5000)": (lambda t: 1.0 / (1.0 + t / 5000.0),
                                "iterations"),
}


def draw_config(rng: np.random.Generator, index: int, steps: int) -> dict:
  if index % 2 == 0:
    base = float(10 ** rng.uniform(-5, -2))
    cfg = {
        "kind": "cyclic",
        "base_lr": base,
        "max_lr": float(base * 10 ** rng.uniform(0.3, 2.5)),
        "step_size_up": int(rng.integers(7, 3000)),
        "step_size_down": (None if rng.random() < 0.25
                           else int(rng.integers(5, 3000))),
        "mode": str(rng.choice(["triangular", "triangular2", "exp_range",
                                "scale_fn"])),
        "gamma": 1.0,
        "scale_fn": None,
        "base_momentum": float(rng.uniform(0.7, 0.88)),
        "max_momentum": float(rng.uniform(0.9, 0.99)),
    }
    if cfg["mode"] == "exp_range":
      cfg["gamma"] = float(1 - 10 ** rng.uniform(-6, -3.5))
    if cfg["mode"] == "scale_fn":
      cfg["scale_fn"] = str(rng.choice(list(SCALE_FNS)))
    return cfg
  total = int(steps)
  three = bool(rng.random() < 0.5)
  return {
      "kind": "one_cycle",
      "max_lr": float(10 ** rng.uniform(-3, 0.5)),
      "total_steps": total,
      "pct_start": float(rng.uniform(0.05, 0.45 if three else 0.9)),
      "anneal_strategy": str(rng.choice(["cos", "linear"])),
      "div_factor": float(10 ** rng.uniform(0.5, 2)),
      "final_div_factor": float(10 ** rng.uniform(1, 5)),
      "three_phase": three,
      "base_momentum": float(rng.uniform(0.7, 0.88)),
      "max_momentum": float(rng.uniform(0.9, 0.99)),
  }


def ours(cfg: dict, steps: int):
  import jax
  import jax.numpy as jnp
  import optax_clr as oc
  if cfg["kind"] == "cyclic":
    kw = dict(step_size_up=cfg["step_size_up"],
              step_size_down=cfg["step_size_down"])
    if cfg["mode"] == "scale_fn":
      fn, scale_mode = SCALE_FNS[cfg["scale_fn"]]
      kw.update(scale_fn=fn, scale_mode=scale_mode)
    else:
      kw.update(mode=cfg["mode"], gamma=cfg["gamma"])
    lr = oc.cyclic_schedule(cfg["base_lr"], cfg["max_lr"], **kw)
    mom = oc.cyclic_momentum_schedule(cfg["base_momentum"],
                                      cfg["max_momentum"], **kw)
  else:
    lr = oc.one_cycle_schedule(
        cfg["max_lr"], cfg["total_steps"], pct_start=cfg["pct_start"],
        anneal_strategy=cfg["anneal_strategy"], div_factor=cfg["div_factor"],
        final_div_factor=cfg["final_div_factor"],
        three_phase=cfg["three_phase"])
    mom = oc.one_cycle_momentum_schedule(
        cfg["total_steps"], pct_start=cfg["pct_start"],
        anneal_strategy=cfg["anneal_strategy"],
        base_momentum=cfg["base_momentum"], max_momentum=cfg["max_momentum"],
        three_phase=cfg["three_phase"])
  t = jnp.arange(steps)
  f = jax.jit(lambda t: (jax.vmap(lr)(t), jax.vmap(mom)(t)))
  a, b = f(t)
  return np.asarray(a, np.float64), np.asarray(b, np.float64)


def theirs(cfg: dict, steps: int):
  import torch
  p = torch.nn.Parameter(torch.zeros(1))
  if cfg["kind"] == "cyclic":
    opt = torch.optim.SGD([p], lr=cfg["base_lr"], momentum=0.9)
    kw = dict(step_size_up=cfg["step_size_up"],
              step_size_down=cfg["step_size_down"],
              base_momentum=cfg["base_momentum"],
              max_momentum=cfg["max_momentum"], cycle_momentum=True)
    if cfg["mode"] == "scale_fn":
      fn, scale_mode = SCALE_FNS[cfg["scale_fn"]]
      kw.update(scale_fn=fn, scale_mode=scale_mode)
    else:
      kw.update(mode=cfg["mode"], gamma=cfg["gamma"])
    sched = torch.optim.lr_scheduler.CyclicLR(
        opt, cfg["base_lr"], cfg["max_lr"], **kw)
  else:
    opt = torch.optim.SGD([p], lr=cfg["max_lr"], momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, cfg["max_lr"], total_steps=cfg["total_steps"],
        pct_start=cfg["pct_start"], anneal_strategy=cfg["anneal_strategy"],
        div_factor=cfg["div_factor"],
        final_div_factor=cfg["final_div_factor"],
        three_phase=cfg["three_phase"], base_momentum=cfg["base_momentum"],
        max_momentum=cfg["max_momentum"])
  group = opt.param_groups[0]
  lrs = np.empty(steps)
  moms = np.empty(steps)
  for t in range(steps):
    lrs[t] = group["lr"]
    moms[t] = group["momentum"]
    if t + 1 < steps:
      opt.step()
      sched.step()
  return lrs, moms


def errors(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
  diff = np.abs(a - b)
  rel = diff / np.maximum(np.abs(b), np.finfo(np.float64).tiny)
  return float(diff.max()), float(rel.max())


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--configs", type=int, default=24,
                  help="random configurations (half cyclic, half one-cycle)")
  ap.add_argument("--steps", type=int, default=20000,
                  help="steps per configuration")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--x64", action="store_true",
                  help="enable jax_enable_x64 (float64 schedules)")
  args = ap.parse_args(argv)
  if args.x64:
    import jax
    jax.config.update("jax_enable_x64", True)
  machine = _common.machine_info()
  rng = np.random.default_rng(args.seed)
  rows = []
  for i in range(args.configs):
    cfg = draw_config(rng, i, args.steps)
    a_lr, a_m = ours(cfg, args.steps)
    b_lr, b_m = theirs(cfg, args.steps)
    lr_abs, lr_rel = errors(a_lr, b_lr)
    m_abs, m_rel = errors(a_m, b_m)
    desc = (f"{cfg['mode'] if cfg['kind'] == 'cyclic' else 'one_cycle'}"
            + (f"[{cfg['scale_fn']}]" if cfg.get("scale_fn") else "")
            + (f" up={cfg['step_size_up']} down={cfg['step_size_down']}"
               if cfg["kind"] == "cyclic" else
               f" {cfg['anneal_strategy']} pct={cfg['pct_start']:.3f}"
               f"{' 3-phase' if cfg['three_phase'] else ''}"))
    rows.append({"config": i, "kind": cfg["kind"], "desc": desc,
                 "steps": args.steps, "lr_max_abs_err": lr_abs,
                 "lr_max_rel_err": lr_rel, "mom_max_abs_err": m_abs,
                 "mom_max_rel_err": m_rel, "params": cfg})
  _common.print_table(rows, ["config", "desc", "lr_max_abs_err",
                             "lr_max_rel_err", "mom_max_abs_err",
                             "mom_max_rel_err"])
  summary = {}
  for kind in ("cyclic", "one_cycle"):
    sub = [r for r in rows if r["kind"] == kind]
    if sub:
      summary[kind] = {k: max(r[k] for r in sub) for k in (
          "lr_max_abs_err", "lr_max_rel_err", "mom_max_abs_err",
          "mom_max_rel_err")}
      summary[kind]["configs"] = len(sub)
  summary["dtype"] = "float64" if args.x64 else "float32"
  print("summary:", summary)
  _common.write_results("schedule_parity", rows, summary, machine,
                        vars(args))


if __name__ == "__main__":
  main()
