"""Parallel LR sweep: K LRs x N steps, vmapped/sharded vs sequential vs PyTorch.

For each K in ``--ks`` (fixed LRs log-spaced 1e-4..1, bundled CNN, digits,
batch 64, SGD momentum 0.9, N steps):

* ``parallel_range_test`` (K vmapped copies, grouped by its memory model,
  sharded over every device);
* K sequential jitted runs: one jitted step (LR injected into the optimizer
  state, so one compilation serves every K), a Python loop over K and N,
  blocked at the end;
* the same K runs in PyTorch (same architecture and initial weights).

Each is timed on its first call (JAX: including compilation) and on a second
call with the same shapes (excluding it). Peak memory is the increase of the
process RSS (psutil, sampled every 5 ms in a thread) during the call: XLA
allocates outside Python's allocator, so tracemalloc would not see it.

Device counts: one subprocess per D in ``--devices`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` set before jax is
imported. Forced host devices share the same physical cores, so D > cores
cannot add compute; it shows the sharding overhead. The sequential and
PyTorch baselines run in the D=1 process only.

Finally the FLOPs of one step of one copy (XLA ``cost_analysis``) give
ESTIMATES (not measurements) of the sweep's time on GPUs.

  python benchmarks/bench_parallel_sweep.py [--ks 8,32,128] [--steps 20]
      [--devices 1,2,4,8]   # bigger: --ks 8,32,128,512
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import _common  # noqa: E402


def _batches(images, labels, n, batch_size, seed=0):
  rng = np.random.default_rng(seed)
  idx = [rng.choice(len(images), batch_size, replace=False) for _ in range(n)]
  return [(images[i], labels[i]) for i in idx]


def measure(fn):
  """(seconds, peak RSS increase in MB) of one call."""
  with _common.PeakRSS() as mem:
    t = _common.time_once(fn)
  return t, mem.delta_mb


def worker(args) -> None:
  import jax
  import optax
  from flax import nnx
  import optax_clr as oc
  devices = jax.device_count()
  images, labels = _common.digits_arrays()
  graphdef, params0 = _common.jax_cnn(args.seed)
  model = nnx.merge(graphdef, params0)
  data = {"image": images, "label": labels}
  baselines = devices == 1 and not args.no_baselines
  out = {"devices": devices, "rows": []}
  if devices == 1 and not args.no_baselines:
    # torch imports torch._dynamo on the first optimizer.step() (seconds);
    # keep that one-time import out of the "first call" of the K runs.
    import torch
    w = torch.nn.Parameter(torch.zeros(1))
    torch.optim.SGD([w], lr=0.1).step()

  if baselines:
    # FLOPs of one train step of one copy.
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1,
                                              momentum=0.9)
    step, raw_step = _common.jax_train_step(graphdef, opt)
    b0 = _batches(images, labels, 1, args.batch_size)[0]
    s0 = opt.init(params0)
    cost = jax.jit(raw_step).lower(params0, s0, *b0).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
      cost = cost[0]
    out["flops_per_step_per_copy"] = float(cost.get("flops", float("nan")))

  for k in args.ks:
    lrs = np.geomspace(1e-4, 1.0, k)
    row = {"devices": devices, "K": k, "N": args.steps}

    def par():
      r = oc.parallel_range_test(
          model, oc.cross_entropy_loss, data, lrs=lrs,
          num_steps=args.steps, batch_size=args.batch_size, seed=args.seed)
      return r

    row["parallel_first_s"], row["parallel_first_rss_mb"] = measure(par)
    row["parallel_warm_s"], row["parallel_warm_rss_mb"] = measure(par)

    if baselines:
      batches = [(jax.device_put(x), jax.device_put(y)) for x, y in
                 _batches(images, labels, args.steps, args.batch_size)]
      step, _ = _common.jax_train_step(graphdef, opt)

      def seq():
        loss = None
        for lr in lrs:
          p = jax.tree.map(lambda x: x.copy(), params0)
          s = opt.init(p)
          s.hyperparams["learning_rate"] = jax.numpy.asarray(
              lr, jax.numpy.float32)
          for x, y in batches:
            p, s, loss = step(p, s, x, y)
        jax.block_until_ready(loss)

      row["sequential_first_s"], row["sequential_first_rss_mb"] = measure(seq)
      row["sequential_warm_s"], row["sequential_warm_rss_mb"] = measure(seq)

      import torch
      tb = [(_common.to_nchw(x), torch.from_numpy(y).long())
            for x, y in _batches(images, labels, args.steps, args.batch_size)]
      crit = torch.nn.CrossEntropyLoss()

      def torch_runs():
        for lr in lrs:
          net = _common.torch_cnn(params0)
          o = torch.optim.SGD(net.parameters(), lr=float(lr), momentum=0.9)
          for x, y in tb:
            o.zero_grad()
            crit(net(x), y).backward()
            o.step()

      row["torch_first_s"], row["torch_first_rss_mb"] = measure(torch_runs)
      row["torch_warm_s"], row["torch_warm_rss_mb"] = measure(torch_runs)
    out["rows"].append(row)
    print("progress", json.dumps(row), file=sys.stderr, flush=True)
  print("RESULT " + json.dumps(out), flush=True)


def gpu_estimates(flops, ks, steps, args) -> list[dict]:
  """ESTIMATED sweep times on GPUs from the FLOP count (not measured)."""
  rows = []
  rate = args.gpu_tflops * 1e12 * args.gpu_util
  for k in ks:
    for g in args.gpus:
      used = min(g, k)
      compute = k * steps * flops / (rate * used)
      floor = steps * args.gpu_step_floor_ms / 1e3
      rows.append({"K": k, "N": steps, "gpus": g,
                   "ESTIMATE_s": max(compute, floor),
                   "compute_bound_s": compute, "latency_floor_s": floor})
  return rows


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--ks", default="8,32,128",
                  help="comma-separated K values (add 512 for the full run)")
  ap.add_argument("--steps", type=int, default=20, help="N steps per LR")
  ap.add_argument("--devices", default="1,2,4,8",
                  help="forced host device counts, one subprocess each")
  ap.add_argument("--batch-size", type=int, default=64)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--gpu-tflops", type=float, default=19.5,
                  help="fp32 peak of the GPU for the estimate (A100: 19.5)")
  ap.add_argument("--gpu-util", type=float, default=0.2,
                  help="assumed fraction of peak reached (small convs)")
  ap.add_argument("--gpu-step-floor-ms", type=float, default=0.3,
                  help="assumed minimum time of one step on a GPU "
                  "(kernel launches; a step is ~100 small kernels)")
  ap.add_argument("--gpus", default="1,2,4,8")
  _common.add_torch_threads_flag(ap)
  ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--no-baselines", action="store_true",
                  help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  args.ks = [int(k) for k in args.ks.split(",")]
  if args.worker:
    _common.set_torch_threads(args.torch_threads)
    worker(args)
    return
  args.gpus = [int(g) for g in args.gpus.split(",")]
  machine = _common.machine_info()
  results = []
  for d in [int(d) for d in args.devices.split(",")]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={d}").strip()
    cmd = [sys.executable, os.path.abspath(__file__), "--worker",
           "--ks", ",".join(map(str, args.ks)), "--steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--seed", str(args.seed),
           "--torch-threads", str(args.torch_threads)]
    print(f"devices={d}: {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not line:
      print(proc.stderr[-3000:])
      raise SystemExit(f"worker for {d} devices failed")
    results.append(json.loads(line[0][len("RESULT "):]))
  flops = next(r["flops_per_step_per_copy"] for r in results
               if "flops_per_step_per_copy" in r)
  base = {r["K"]: r for r in results[0]["rows"]}
  rows = []
  for res in results:
    for r in res["rows"]:
      b = base[r["K"]]
      r = dict(r)
      for when in ("warm", "first"):
        r[f"par_over_seq_{when}"] = (r[f"parallel_{when}_s"] /
                                     b[f"sequential_{when}_s"])
        r[f"par_over_torch_{when}"] = (r[f"parallel_{when}_s"] /
                                       b[f"torch_{when}_s"])
      if "sequential_warm_s" in r:
        r["seq_over_torch_warm"] = r["sequential_warm_s"] / r["torch_warm_s"]
        r["cpu_gflops_seq_warm"] = (r["K"] * r["N"] * flops /
                                    r["sequential_warm_s"] / 1e9)
      rows.append(r)
  print("\nMeasured (seconds; ratios vs the D=1 baselines):")
  _common.print_table(rows, [
      "devices", "K", "parallel_warm_s", "parallel_first_s",
      "sequential_warm_s", "sequential_first_s", "torch_warm_s",
      "torch_first_s", "par_over_seq_warm", "par_over_seq_first",
      "par_over_torch_warm", "par_over_torch_first"])
  print("\nPeak RSS increase during the call (MB):")
  _common.print_table(rows, [
      "devices", "K", "parallel_first_rss_mb", "parallel_warm_rss_mb",
      "sequential_first_rss_mb", "sequential_warm_rss_mb",
      "torch_first_rss_mb", "torch_warm_rss_mb"])
  est = gpu_estimates(flops, args.ks, args.steps, args)
  print(f"\nGPU ESTIMATES (not measured): {flops:.4g} FLOP per step per "
        f"copy, {args.gpu_tflops} TFLOP/s peak x {args.gpu_util} assumed "
        f"utilisation, linear in GPUs up to K, floor "
        f"{args.gpu_step_floor_ms} ms/step:")
  _common.print_table(est)
  summary = {
      "flops_per_step_per_copy": flops,
      "ratios_D1": {r["K"]: {k: r[k] for k in (
          "par_over_seq_warm", "par_over_seq_first", "par_over_torch_warm",
          "par_over_torch_first", "seq_over_torch_warm")}
          for r in rows if r["devices"] == 1},
      "best_parallel_warm_by_K": {
          k: min((r["parallel_warm_s"], r["devices"]) for r in rows
                 if r["K"] == k) for k in args.ks},
      "gpu_estimates": est,
      "gpu_assumptions": {"tflops": args.gpu_tflops, "util": args.gpu_util,
                          "step_floor_ms": args.gpu_step_floor_ms},
      "memory_method": "psutil RSS sampled every 5 ms in a thread; peak "
                       "minus RSS at call start",
  }
  _common.write_results("parallel_sweep", rows, summary, machine,
                        {k: v for k, v in vars(args).items()})


if __name__ == "__main__":
  main()
