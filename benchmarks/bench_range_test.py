"""Classic LR range test: optax_clr.range_test vs torch-lr-finder.

Same CNN architecture (``optax_clr.CNN`` rebuilt in PyTorch, starting from the
same weights), same digits data, batch 64, SGD momentum 0.9, exponential ramp
1e-7 -> 10 over 100 iterations, EMA smoothing 0.05, stop at 5 x the best
smoothed loss (torch-lr-finder's default; ours is given the same). Wall time
of the first call (ours includes compilation) and of later calls with the
same shapes (our compiled chunk is cached), medians over repeats; ratios ours
/ theirs. Writes both curves with both suggestions to
``results/range_test_vs_torch_lr_finder.png``.

Also timed: our first call in a new process once the persistent
compilation cache (``optax_clr.enable_compilation_cache()``, one line) has
been filled by an earlier process.

  python benchmarks/bench_range_test.py [--num-iter 100] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import _common  # noqa: E402


def run_ours(args, images, labels, graphdef, params):
  import jax
  from flax import nnx
  import optax_clr as oc
  model = nnx.merge(graphdef, jax.tree.map(lambda x: x.copy(), params))
  return oc.range_test(
      model, oc.cross_entropy_loss, {"image": images, "label": labels},
      start_lr=args.start_lr, end_lr=args.end_lr, num_steps=args.num_iter,
      ramp="exp", batch_size=args.batch_size, smoothing=0.05,
      diverge_threshold=5.0, seed=args.seed)


def run_theirs(args, images, labels, params):
  import torch
  from torch_lr_finder import LRFinder
  torch.manual_seed(args.seed)
  net = _common.torch_cnn(params)
  data = torch.utils.data.TensorDataset(_common.to_nchw(images),
                                        torch.from_numpy(labels).long())
  loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size,
                                       shuffle=True)
  opt = torch.optim.SGD(net.parameters(), lr=args.start_lr, momentum=0.9)
  finder = LRFinder(net, opt, torch.nn.CrossEntropyLoss())
  with contextlib.redirect_stderr(io.StringIO()):  # tqdm bar
    finder.range_test(loader, end_lr=args.end_lr, num_iter=args.num_iter,
                      step_mode="exp", smooth_f=0.05, diverge_th=5)
  finder.reset()
  return finder.history


def their_suggestion(history, skip_start=10, skip_end=5):
  """torch-lr-finder's plot() rule: min np.gradient (w.r.t. index)."""
  lrs = np.asarray(history["lr"])[skip_start:-skip_end]
  losses = np.asarray(history["loss"])[skip_start:-skip_end]
  if len(losses) < 2:
    return None
  return float(lrs[np.gradient(losses).argmin()])


def plot(path, ours, ours_sg, theirs, theirs_lr):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
  ax = axes[0]
  ax.plot(ours.lrs, ours.losses, color="0.75", lw=0.8, label="raw loss")
  ax.plot(ours.lrs, ours.smoothed_losses, label="smoothed (bias-corrected)")
  for s, c in ((ours_sg.steepest, "C1"), (ours_sg.valley, "C2")):
    if s.lr is not None:
      ax.axvline(s.lr, color=c, ls="--", label=f"{s.method} {s.lr:.3g}")
  ax.set_title("optax_clr.range_test")
  ax = axes[1]
  ax.plot(theirs["lr"], theirs["loss"], label="smoothed (no bias corr.)")
  if theirs_lr is not None:
    ax.axvline(theirs_lr, color="C1", ls="--",
               label=f"min gradient {theirs_lr:.3g}")
  ax.set_title("torch-lr-finder")
  for ax in axes:
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.legend(fontsize=8)
  axes[0].set_ylabel("training loss")
  finite = np.asarray(ours.smoothed_losses)[np.isfinite(ours.smoothed_losses)]
  if finite.size:
    axes[0].set_ylim(0, min(4 * finite[0], np.nanmax(finite) * 1.1))
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def first_call_with_cache(args) -> list[float]:
  """Our first call in two new processes sharing an empty persistent
  compilation cache (``optax_clr.enable_compilation_cache``): the first
  fills it, the second is what a user meets from then on."""
  import json
  import subprocess
  import tempfile
  cache = tempfile.mkdtemp(prefix="bench-xla-cache-")
  out = []
  for _ in range(2):
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--first-only", cache,
         "--num-iter", str(args.num_iter), "--seed", str(args.seed)],
        capture_output=True, text=True, check=True)
    out.append(json.loads(proc.stdout.strip().splitlines()[-1])["first_s"])
  return out


def _first_only(args) -> None:
  import json
  import optax_clr as oc
  oc.enable_compilation_cache(args.first_only)
  images, labels = _common.digits_arrays()
  graphdef, params = _common.jax_cnn(args.seed)
  t = _common.time_once(lambda: run_ours(args, images, labels, graphdef,
                                         params))
  print(json.dumps({"first_s": t}))


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--num-iter", type=int, default=100)
  ap.add_argument("--batch-size", type=int, default=64)
  ap.add_argument("--start-lr", type=float, default=1e-7)
  ap.add_argument("--end-lr", type=float, default=10.0)
  ap.add_argument("--repeats", type=int, default=5,
                  help="timed warm calls of each (median reported)")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--first-only", metavar="CACHE_DIR",
                  help=argparse.SUPPRESS)
  _common.add_torch_threads_flag(ap)
  args = ap.parse_args(argv)
  if args.first_only:
    _first_only(args)
    return
  _common.set_torch_threads(args.torch_threads)
  machine = _common.machine_info()
  images, labels = _common.digits_arrays()
  graphdef, params = _common.jax_cnn(args.seed)

  import torch
  # torch imports torch._dynamo on the first optimizer.step() (seconds);
  # a one-time import, kept out of torch-lr-finder's first call.
  torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1).step()
  first_ours = _common.time_once(
      lambda: run_ours(args, images, labels, graphdef, params))
  first_theirs = _common.time_once(
      lambda: run_theirs(args, images, labels, params))
  warm_ours, warm_theirs = [], []
  for _ in range(args.repeats):  # alternate, so load changes hit both
    warm_ours.append(_common.time_once(
        lambda: run_ours(args, images, labels, graphdef, params)))
    warm_theirs.append(_common.time_once(
        lambda: run_theirs(args, images, labels, params)))
  ours = run_ours(args, images, labels, graphdef, params)
  theirs = run_theirs(args, images, labels, params)
  ours_sg = ours.suggest()
  theirs_lr = their_suggestion(theirs)

  m_ours, m_theirs = np.median(warm_ours), np.median(warm_theirs)
  filling, cached = first_call_with_cache(args)
  rows = [
      {"call": "first (ours incl. compile)", "ours_s": first_ours,
       "theirs_s": first_theirs, "ratio_ours_over_theirs":
       first_ours / first_theirs},
      {"call": "first in a new process, persistent cache filled",
       "ours_s": cached, "theirs_s": first_theirs,
       "ratio_ours_over_theirs": cached / first_theirs},
      {"call": f"warm, median of {args.repeats}", "ours_s": float(m_ours),
       "theirs_s": float(m_theirs),
       "ratio_ours_over_theirs": float(m_ours / m_theirs)},
  ]
  _common.print_table(rows)
  sugg = [
      {"tool": "optax_clr", "rule": "steepest (min d loss / d log lr)",
       "lr": ours_sg.steepest.lr},
      {"tool": "optax_clr", "rule": "valley (fastai)", "lr": ours_sg.valley.lr},
      {"tool": "optax_clr", "rule": "minimum / 10", "lr": ours_sg.minimum.lr},
      {"tool": "torch-lr-finder", "rule": "min np.gradient (index), "
       "skip 10/5", "lr": theirs_lr},
  ]
  _common.print_table(sugg)
  path = os.path.join(_common.RESULTS_DIR, "range_test_vs_torch_lr_finder.png")
  os.makedirs(_common.RESULTS_DIR, exist_ok=True)
  plot(path, ours, ours_sg, theirs, theirs_lr)
  print("wrote", path)
  summary = {
      "ratio_first_call": rows[0]["ratio_ours_over_theirs"],
      "ratio_first_call_cached": rows[1]["ratio_ours_over_theirs"],
      "first_call_filling_cache_s": filling,
      "ratio_warm_median": rows[2]["ratio_ours_over_theirs"],
      "ours_steps_recorded": int(len(ours.lrs)),
      "ours_stop_reason": ours.stop_reason,
      "theirs_steps_recorded": len(theirs["lr"]),
      "suggestions": sugg, "warm_ours_all_s": warm_ours,
      "warm_theirs_all_s": warm_theirs,
  }
  print("summary:", {k: summary[k] for k in list(summary)[:6]})
  _common.write_results("range_test", rows + sugg, summary, machine,
                        vars(args))


if __name__ == "__main__":
  main()
