"""What a cyclic schedule costs.

(a) Per-step time of a jitted train step of the bundled CNN (digits, batch 64):
    ``optax.sgd`` with a constant LR and momentum vs ``cyclic_sgd`` with a
    cyclic LR and a cyclic momentum schedule (``inject_hyperparams``). The two
    variants are timed alternately, each repeat a Python loop of jitted steps
    blocked at the end; medians over repeats.
(b) Evaluating a schedule (LR and momentum) for 1,000,000 steps:
    ``jit(vmap(schedule))(arange(n))`` vs PyTorch's scheduler stepped in a
    Python loop. PyTorch is timed over ``--torch-steps`` steps (default
    100,000) and extrapolated linearly to n.

  python benchmarks/bench_schedule_cost.py [--steps 200] [--repeats 11]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import _common  # noqa: E402


def train_step_cost(args) -> list[dict]:
  import jax
  import optax
  import optax_clr as oc
  images, labels = _common.digits_arrays()
  rng = np.random.default_rng(0)
  idx = [rng.choice(len(images), args.batch_size, replace=False)
         for _ in range(16)]
  batches = [(jax.device_put(images[i]), jax.device_put(labels[i]))
             for i in idx]
  variants = {
      "optax.sgd(const lr, momentum=0.9)": optax.sgd(0.05, momentum=0.9),
      "cyclic_sgd(cyclic lr, cyclic momentum)": oc.cyclic_sgd(
          oc.cyclic_schedule(0.01, 0.1, 50, 30, mode="triangular2"),
          oc.cyclic_momentum_schedule(0.85, 0.95, 50, 30,
                                      mode="triangular2")),
  }
  graphdef, params0 = _common.jax_cnn()
  state = {}
  for name, opt in variants.items():
    step, _ = _common.jax_train_step(graphdef, opt)
    p = jax.tree.map(lambda x: x.copy(), params0)
    s = opt.init(p)
    compile_s = _common.time_once(
        lambda: step.lower(p, s, *batches[0]).compile())
    state[name] = [step, p, s, compile_s, []]

  def run(name):
    st = state[name]
    step, p, s = st[:3]
    for i in range(args.steps):
      p, s, loss = step(p, s, *batches[i % len(batches)])
    jax.block_until_ready(loss)
    st[1], st[2] = p, s

  for name in variants:  # warm-up (first call compiles)
    run(name)
  for _ in range(args.repeats):
    for name in variants:
      state[name][4].append(_common.time_once(lambda: run(name)) /
                            args.steps)
  rows = []
  for name in variants:
    t = state[name][4]
    rows.append({"part": "a", "variant": name,
                 "median_ms_per_step": 1e3 * float(np.median(t)),
                 "min_ms_per_step": 1e3 * min(t),
                 "compile_s": state[name][3]})
  base = rows[0]["median_ms_per_step"]
  base_min = rows[0]["min_ms_per_step"]
  for r in rows:
    r["ratio_vs_const"] = r["median_ms_per_step"] / base
    # Under load the minimum is the least disturbed repeat.
    r["ratio_min_vs_const"] = r["min_ms_per_step"] / base_min
  return rows


def vectorised_cost(args) -> list[dict]:
  import jax
  import jax.numpy as jnp
  import torch
  import optax_clr as oc
  n = args.eval_steps
  kinds = {
      "CyclicLR triangular2 (+momentum)": (
          lambda: (oc.cyclic_schedule(1e-3, 1e-1, 2000, 1500,
                                      mode="triangular2"),
                   oc.cyclic_momentum_schedule(0.85, 0.95, 2000, 1500,
                                               mode="triangular2")),
          lambda opt: torch.optim.lr_scheduler.CyclicLR(
              opt, 1e-3, 1e-1, 2000, 1500, mode="triangular2",
              base_momentum=0.85, max_momentum=0.95)),
      "OneCycleLR cos (+momentum)": (
          lambda: (oc.one_cycle_schedule(0.1, n),
                   oc.one_cycle_momentum_schedule(n)),
          lambda opt: torch.optim.lr_scheduler.OneCycleLR(
              opt, 0.1, total_steps=n)),
  }
  rows = []
  for name, (make_ours, make_theirs) in kinds.items():
    lr, mom = make_ours()
    f = jax.jit(lambda t: (jax.vmap(lr)(t), jax.vmap(mom)(t)))
    t = jnp.arange(n)
    first = _common.time_once(lambda: jax.block_until_ready(f(t)))
    ours = _common.time_repeats(lambda: jax.block_until_ready(f(t)),
                                args.repeats)

    def torch_loop(steps=args.torch_steps):
      p = torch.nn.Parameter(torch.zeros(1))
      opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
      sched = make_theirs(opt)
      opt.step()  # PyTorch's order (optimizer, then scheduler); no warning
      group = opt.param_groups[0]
      lrs = np.empty(steps)
      moms = np.empty(steps)
      for i in range(steps):
        lrs[i] = group["lr"]
        moms[i] = group["momentum"]
        sched.step()

    # The first optimizer.step() imports torch._dynamo lazily (seconds).
    torch_loop(10)
    theirs = _common.time_repeats(torch_loop, max(1, args.repeats // 2))
    theirs_n = theirs["median"] * n / args.torch_steps
    rows.append({"part": "b", "variant": name, "steps": n,
                 "ours_first_call_s": first, "ours_median_s": ours["median"],
                 "torch_measured_steps": args.torch_steps,
                 "torch_measured_s": theirs["median"],
                 "torch_extrapolated_s": theirs_n,
                 "ratio_ours_over_torch": ours["median"] / theirs_n,
                 "ratio_incl_compile": first / theirs_n})
  return rows


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--steps", type=int, default=200,
                  help="train steps per timed repeat (part a)")
  ap.add_argument("--batch-size", type=int, default=64)
  ap.add_argument("--repeats", type=int, default=11)
  ap.add_argument("--eval-steps", type=int, default=1_000_000,
                  help="schedule steps evaluated vectorised (part b)")
  ap.add_argument("--torch-steps", type=int, default=100_000,
                  help="PyTorch scheduler steps timed, then extrapolated")
  args = ap.parse_args(argv)
  machine = _common.machine_info()
  rows_a = train_step_cost(args)
  _common.print_table(rows_a, ["variant", "median_ms_per_step",
                               "min_ms_per_step", "ratio_vs_const",
                               "ratio_min_vs_const", "compile_s"])
  rows_b = vectorised_cost(args)
  _common.print_table(rows_b, ["variant", "steps", "ours_first_call_s",
                               "ours_median_s", "torch_measured_s",
                               "torch_extrapolated_s",
                               "ratio_ours_over_torch",
                               "ratio_incl_compile"])
  summary = {
      "train_step_ratio_cyclic_over_const": rows_a[1]["ratio_vs_const"],
      "train_step_ratio_min_cyclic_over_const":
          rows_a[1]["ratio_min_vs_const"],
      "vectorised_1M_ratio_ours_over_torch": {
          r["variant"]: r["ratio_ours_over_torch"] for r in rows_b},
      "torch_extrapolated_from_steps": args.torch_steps,
  }
  print("summary:", summary)
  _common.write_results("schedule_cost", rows_a + rows_b, summary, machine,
                        vars(args))


if __name__ == "__main__":
  main()
