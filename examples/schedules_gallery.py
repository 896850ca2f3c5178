"""Every schedule policy side by side, learning rate and momentum.

The classic CLR picture (Smith 2017, fig. 2 and 3): triangular,
triangular2, exp_range (amplitude-only as in PyTorch/Keras, and the paper's
form where both bounds decay), the cosine and Welch waveforms, an asymmetric
cycle, and the one-cycle policy (Smith & Topin 2017) with two and three
phases. Every panel is one ``optax_clr.policy_schedules`` call -- the same
function the CLI trains with -- and draws the LR and, dashed on the right
axis, the momentum that the policy cycles inversely to it.

  python examples/schedules_gallery.py    # -> runs/examples/schedules_gallery/
  python examples/schedules_gallery.py --quick --out /tmp/gallery
  python examples/schedules_gallery.py --update-docs  # docs/img/schedules.png
"""

from __future__ import annotations

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

import optax_clr as clr  # noqa: E402
from optax_clr import plotting  # noqa: E402

NAME = "schedules_gallery"
DOCS_FIGURE = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "img"
               / "schedules.png")

BASE_LR, MAX_LR = 0.001, 0.006  # Smith's CIFAR-10 bounds
STEP = 1000                      # half a cycle, in iterations
TOTAL = 8 * STEP                 # four cycles


def gallery(step: int = STEP, total: int = TOTAL):
  """name -> (LR schedule, momentum schedule, note), each from
  ``clr.policy_schedules``."""
  cyclic = dict(base_lr=BASE_LR, max_lr=MAX_LR, step_size_up=step,
                total_steps=total)
  out = {}

  def add(name, plan, note):
    out[name] = (plan.learning_rate, plan.momentum, note)

  add("triangular", clr.policy_schedules("triangular", **cyclic),
      "amplitude constant")
  add("triangular2", clr.policy_schedules("triangular2", **cyclic),
      "amplitude halves each cycle")
  # Without gamma, exp_range decays the amplitude to a tenth by total_steps.
  plan = clr.policy_schedules("exp_range", **cyclic)
  add("exp_range", plan,
      f"amplitude * gamma^t (PyTorch), gamma={plan.resolved['gamma']:.6f}")
  add("exp_range, decay_bounds",
      clr.policy_schedules("exp_range", decay_bounds=True, **cyclic),
      "both bounds * gamma^t (the paper)")
  for waveform, note in (("cosine", "Hann window"),
                         ("welch", "parabolic window")):
    add(f"triangular, {waveform}",
        clr.policy_schedules("triangular", waveform=waveform, **cyclic), note)
  add("asymmetric (up 1/4, down 3/4)",
      clr.policy_schedules("triangular", base_lr=BASE_LR, max_lr=MAX_LR,
                           step_size_up=step // 2,
                           step_size_down=3 * step // 2, total_steps=total),
      "fast rise, slow fall")
  for three_phase in (False, True):
    plan = clr.policy_schedules("one-cycle", max_lr=MAX_LR, total_steps=total,
                                three_phase=three_phase)
    r = plan.resolved
    start = f"max/{r['div_factor']:g}"
    end = f"{start}/{r['final_div_factor']:g}"
    add("one-cycle, three phases" if three_phase else "one-cycle", plan,
        f"{start} -> max -> {start} -> {end}" if three_phase
        else f"{start} -> max -> {end}")
  return out


def draw(step: int = STEP, total: int = TOTAL) -> Figure:
  entries = gallery(step, total)
  cols = 3
  rows = -(-len(entries) // cols)
  fig = Figure(figsize=(4.2 * cols, 2.6 * rows), layout="constrained")
  axes = fig.subplots(rows, cols, sharex=True, squeeze=False).ravel()
  t = range(total)
  for ax, (name, (lr_fn, mom_fn, note)) in zip(axes, entries.items()):
    lr = plotting.evaluate_schedule(lr_fn, total)
    mom = plotting.evaluate_schedule(mom_fn, total)
    ax.plot(t, lr * 1e3, color="tab:blue", linewidth=1.5)
    ax.set_title(name, fontsize="medium")
    ax.text(0.02, 0.97, note, transform=ax.transAxes, va="top",
            fontsize="x-small", color="0.3")
    ax.set_ylabel("LR (x 1e-3)", color="tab:blue", fontsize="small")
    ax.set_ylim(0, MAX_LR * 1e3 * 1.25)
    twin = ax.twinx()
    twin.plot(t, mom, color="tab:orange", linestyle="--", linewidth=1.0)
    twin.set_ylim(0.78, 0.97)
    twin.set_ylabel("momentum", color="tab:orange", fontsize="small")
  for ax in axes[len(entries):]:
    ax.set_visible(False)
  for ax in axes[-cols:]:
    ax.set_xlabel("iteration")
  fig.suptitle(f"Cyclical LR policies: base {BASE_LR:g}, max {MAX_LR:g}, "
               f"step size {step} iterations")
  return fig


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="fewer steps (for tests)")
  parser.add_argument("--out", type=pathlib.Path, default=None,
                      help=f"output directory (default runs/examples/{NAME}/"
                      " under the current directory)")
  parser.add_argument("--update-docs", action="store_true",
                      help="also regenerate the committed figure "
                      "docs/img/schedules.png (not with --quick)")
  args = parser.parse_args(argv)
  if args.update_docs and args.quick:
    parser.error("--update-docs regenerates the committed figure from the "
                 "full run; drop --quick")
  args.out = args.out or pathlib.Path("runs", "examples", NAME)
  return args


def main(argv=None) -> list[pathlib.Path]:
  args = parse_args(argv)
  fig = draw(step=50, total=400) if args.quick else draw()
  paths = [args.out / "schedules.png"]
  if args.update_docs:
    paths.append(DOCS_FIGURE)
  for path in paths:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")
  return paths


if __name__ == "__main__":
  main()
