"""Parallel LR sweep: K LRs x N steps, vmapped/sharded vs K sequential runs.

For each K in ``--ks`` (fixed LRs log-spaced 1e-4..1, bundled CNN, digits,
batch 64, SGD momentum 0.9, N = 30 steps):

* ``parallel_range_test`` as a user calls it (default arguments, a normal
  process): with the data as arrays, and as an iterable of batches;
* K sequential runs of the loop a user writes: one jitted optax step
  (the LR injected into the optimizer state, so one compilation serves
  every K), a Python loop over K and N, blocked at the end;
* the same K runs in PyTorch (same architecture and initial weights; one
  measurement each, ``--no-torch`` skips them).

"first" is the first call in the process with an empty optax-clr cache
(tracing, XLA compilation and the sweep's one-time layout measurement,
which is then cached per machine and model); "warm" is the median of
``--repeats`` later calls, the sweep and the sequential loop alternated.
Peak memory is the increase of the process RSS during the first call
(psutil, sampled every 5 ms: XLA allocates outside Python's allocator).
FLOP utilisation is K*N*FLOP(one step, XLA cost analysis) / time, divided
by this machine's measured float32 2048x2048 matmul rate.

Device counts: one subprocess per D in ``--devices`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=D`` set before jax is
imported (what a program that owns its process can do: one host device per
core). Forced devices share the physical cores. The sequential and PyTorch
baselines run in the D=1 process only; ratios are against them. At K=32
(D=1) the sweep is also timed at other step counts (``--steps-scan``).

Finally the FLOPs of one step give ESTIMATES (not measurements) of the
sweep's time on GPUs; ``gpu_check.sh`` measures on a real one.

  python benchmarks/bench_parallel_sweep.py [--ks 8,32,128] [--steps 30]
      [--devices 1,2,8] [--repeats 3]   # bigger: --ks 8,32,128,512
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

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


def matmul_gflops(repeats: int = 5) -> float:
  """This machine's float32 2048x2048 matmul rate (GFLOP/s, best of)."""
  import jax
  import jax.numpy as jnp
  a = jnp.ones((2048, 2048), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  jax.block_until_ready(f(a))
  best = min(_common.time_once(lambda: jax.block_until_ready(f(a)))
             for _ in range(repeats))
  return 2 * 2048 ** 3 / best / 1e9


def step_flops(graphdef, params0, opt, images, labels, batch_size) -> float:
  """FLOPs of one train step of one copy (XLA cost analysis)."""
  import jax
  _, raw_step = _common.jax_train_step(graphdef, opt)
  b0 = _batches(images, labels, 1, batch_size)[0]
  cost = jax.jit(raw_step).lower(params0, opt.init(params0),
                                 *b0).compile().cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get("flops", float("nan")))


def sequential_runs(graphdef, params0, opt, batches, lrs):
  """The loop a user writes: K runs of one jitted step, one after another."""
  import jax
  import jax.numpy as jnp
  step, _ = _common.jax_train_step(graphdef, opt)

  def run():
    loss = None
    for lr in lrs:
      p = jax.tree.map(lambda x: x.copy(), params0)
      s = opt.init(p)
      s.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
      for x, y in batches:
        p, s, loss = step(p, s, x, y)
    jax.block_until_ready(loss)
  return run


def torch_runs(params0, images, labels, args, lrs):
  import torch
  tb = [(_common.to_nchw(x), torch.from_numpy(y).long())
        for x, y in _batches(images, labels, args.steps, args.batch_size)]
  crit = torch.nn.CrossEntropyLoss()

  def run():
    for lr in lrs:
      net = _common.torch_cnn(params0)
      o = torch.optim.SGD(net.parameters(), lr=float(lr), momentum=0.9)
      for x, y in tb:
        o.zero_grad()
        crit(net(x), y).backward()
        o.step()
  return run


def measure_k(k, model, data, baseline, args, torch_run) -> dict:
  """One K: first calls, then alternated warm repeats (medians)."""
  import optax_clr as oc
  lrs = np.geomspace(1e-4, 1.0, k)
  listed = [{"image": x, "label": y} for x, y in _batches(
      data["image"], data["label"], args.steps, args.batch_size)]
  common = dict(lrs=lrs, num_steps=args.steps, batch_size=args.batch_size,
                seed=args.seed, progress=False)
  last = {}

  def arrays():
    last["r"] = oc.parallel_range_test(model, oc.cross_entropy_loss, data,
                                       **common)

  def iterable():
    oc.parallel_range_test(model, oc.cross_entropy_loss, iter(listed),
                           **common)
  row = {"K": k, "N": args.steps}
  row["parallel_first_s"], row["parallel_first_rss_mb"] = measure(arrays)
  row["lanes"] = last["r"].config["lanes"]
  row["group_size"] = last["r"].config["group_size"]
  row["iterable_first_s"], _ = measure(iterable)
  seq = None if baseline is None else baseline(lrs)
  if seq is not None:
    row["sequential_first_s"], row["sequential_first_rss_mb"] = measure(seq)
  times = {"parallel": [], "iterable": [], "sequential": []}
  for _ in range(args.repeats):
    times["parallel"].append(_common.time_once(arrays))
    if seq is not None:
      times["sequential"].append(_common.time_once(seq))
    times["iterable"].append(_common.time_once(iterable))
  for name, ts in times.items():
    if ts:
      row[f"{name}_warm_s"] = float(np.median(ts))
      row[f"{name}_warm_spread"] = float(max(ts) / min(ts))
  if torch_run is not None:
    run = torch_run(lrs)
    row["torch_first_s"] = _common.time_once(run)
    row["torch_warm_s"] = _common.time_once(run)
  return row


def worker(args) -> None:
  import optax
  import jax
  from flax import nnx
  import optax_clr as oc
  devices = jax.device_count()
  images, labels = _common.digits_arrays()
  graphdef, params0 = _common.jax_cnn(args.seed)
  model = nnx.merge(graphdef, params0)
  data = {"image": images, "label": labels}
  out = {"devices": devices, "rows": [], "steps_rows": []}
  baseline = torch_run = None
  if devices == 1:
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1,
                                              momentum=0.9)
    out["flops_per_step_per_copy"] = step_flops(
        graphdef, params0, opt, images, labels, args.batch_size)
    out["matmul_gflops"] = matmul_gflops()
    batches = [(jax.device_put(x), jax.device_put(y)) for x, y in
               _batches(images, labels, args.steps, args.batch_size)]
    baseline = lambda lrs: sequential_runs(  # noqa: E731
        graphdef, params0, opt, batches, lrs)
    if not args.no_torch:
      # torch imports torch._dynamo on the first optimizer.step()
      # (seconds): keep that one-time import out of the timed calls.
      import torch
      w = torch.nn.Parameter(torch.zeros(1))
      torch.optim.SGD([w], lr=0.1).step()
      torch_run = lambda lrs: torch_runs(  # noqa: E731
          params0, images, labels, args, lrs)
  for k in args.ks:
    row = {"devices": devices, **measure_k(k, model, data, baseline, args,
                                           torch_run)}
    out["rows"].append(row)
    print("progress", json.dumps(row), file=sys.stderr, flush=True)
  if devices == 1:
    for n in args.steps_scan:
      lrs = np.geomspace(1e-4, 1.0, 32)
      call = lambda n=n: oc.parallel_range_test(  # noqa: E731
          model, oc.cross_entropy_loss, data, lrs=lrs, num_steps=n,
          batch_size=args.batch_size, seed=args.seed, progress=False)
      first = _common.time_once(call)
      out["steps_rows"].append({"K": 32, "N": n, "parallel_first_s": first,
                                "parallel_warm_s": _common.time_once(call)})
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


def _worker_results(args) -> list[dict]:
  """One subprocess per device count, each with an empty optax-clr cache."""
  results = []
  for d in args.devices:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                        f" --xla_force_host_platform_device_count={d}").strip()
    env["OPTAX_CLR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-cache-")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker",
           "--ks", ",".join(map(str, args.ks)), "--steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--seed", str(args.seed),
           "--repeats", str(args.repeats), "--steps-scan",
           ",".join(map(str, args.steps_scan)),
           "--torch-threads", str(args.torch_threads)]
    if args.no_torch:
      cmd.append("--no-torch")
    print(f"devices={d}: {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not line:
      print(proc.stderr[-3000:])
      raise SystemExit(f"worker for {d} devices failed")
    results.append(json.loads(line[0][len("RESULT "):]))
  return results


def _with_ratios(results: list[dict], flops: float, matmul: float
                 ) -> list[dict]:
  """Rows with ratios against the D=1 baselines and FLOP utilisation."""
  base = {r["K"]: r for r in results[0]["rows"]}
  rows = []
  for res in results:
    for r in res["rows"]:
      b, r = base[r["K"]], dict(r)
      work = r["K"] * r["N"] * flops / 1e9
      for name in ("parallel", "iterable"):
        for when in ("warm", "first"):
          r[f"{name}_over_seq_{when}"] = (r[f"{name}_{when}_s"] /
                                          b[f"sequential_{when}_s"])
        r[f"{name}_flop_util"] = work / r[f"{name}_warm_s"] / matmul
        if "torch_warm_s" in b:
          r[f"{name}_over_torch_warm"] = r[f"{name}_warm_s"] / b[
              "torch_warm_s"]
      r["speedup_warm"] = 1 / r["parallel_over_seq_warm"]
      if "sequential_warm_s" in r:
        r["sequential_flop_util"] = work / r["sequential_warm_s"] / matmul
      rows.append(r)
  return rows


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--ks", default="8,32,128",
                  help="comma-separated K values (add 512 for the full run)")
  ap.add_argument("--steps", type=int, default=30, help="N steps per LR")
  ap.add_argument("--devices", default="1,2,8",
                  help="forced host device counts, one subprocess each")
  ap.add_argument("--repeats", type=int, default=3,
                  help="warm calls per variant (alternated; median)")
  ap.add_argument("--steps-scan", default="15,60",
                  help="other step counts timed at K=32, D=1")
  ap.add_argument("--batch-size", type=int, default=64)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--no-torch", action="store_true",
                  help="skip the PyTorch runs")
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
  args = ap.parse_args(argv)
  args.ks = [int(k) for k in args.ks.split(",")]
  args.steps_scan = [int(n) for n in args.steps_scan.split(",") if n]
  if args.worker:
    _common.set_torch_threads(args.torch_threads)
    worker(args)
    return
  args.gpus = [int(g) for g in args.gpus.split(",")]
  args.devices = [int(d) for d in args.devices.split(",")]
  if args.devices[0] != 1:
    raise SystemExit("--devices must start with 1 (the baselines run there)")
  machine = _common.machine_info()
  results = _worker_results(args)
  flops = results[0]["flops_per_step_per_copy"]
  matmul = results[0]["matmul_gflops"]
  rows = _with_ratios(results, flops, matmul)
  print(f"\nMeasured (seconds; ratios vs the D=1 sequential loop; matmul "
        f"{matmul:.0f} GFLOP/s):")
  _common.print_table(rows, [
      "devices", "K", "lanes", "group_size", "parallel_warm_s",
      "iterable_warm_s", "sequential_warm_s", "torch_warm_s",
      "parallel_over_seq_warm", "iterable_over_seq_warm", "speedup_warm",
      "parallel_first_s", "sequential_first_s", "parallel_over_seq_first",
      "parallel_flop_util", "sequential_flop_util"])
  print("\nFirst call vs warm, peak RSS of the first call (MB):")
  _common.print_table(rows, [
      "devices", "K", "parallel_first_s", "parallel_warm_s",
      "iterable_first_s", "parallel_first_rss_mb",
      "sequential_first_rss_mb", "parallel_warm_spread",
      "sequential_warm_spread"])
  print("\nSteps scaling (K=32, D=1):")
  _common.print_table(results[0]["steps_rows"])
  est = gpu_estimates(flops, args.ks, args.steps, args)
  print(f"\nGPU ESTIMATES (not measured): {flops:.4g} FLOP per step per "
        f"copy, {args.gpu_tflops} TFLOP/s peak x {args.gpu_util} assumed "
        f"utilisation, linear in GPUs up to K, floor "
        f"{args.gpu_step_floor_ms} ms/step:")
  _common.print_table(est)
  summary = {
      "flops_per_step_per_copy": flops, "matmul_gflops": matmul,
      "by_devices_and_K": {f"D{r['devices']}_K{r['K']}": {k: r.get(k) for k in (
          "parallel_over_seq_warm", "iterable_over_seq_warm",
          "parallel_over_seq_first", "parallel_flop_util",
          "sequential_flop_util", "parallel_over_torch_warm", "lanes",
          "group_size")} for r in rows},
      "steps_scaling": results[0]["steps_rows"],
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
