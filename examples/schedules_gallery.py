"""Every schedule policy side by side, learning rate and momentum.

The classic CLR picture (Smith 2017, fig. 2 and 3): triangular,
triangular2, exp_range (amplitude-only as in PyTorch/Keras, and the paper's
form where both bounds decay), the cosine and Welch waveforms, an asymmetric
cycle, and the one-cycle policy (Smith & Topin 2017) with two and three
phases. Each panel draws the LR and, dashed on the right axis, the momentum
that cycles inversely to it.

  python examples/schedules_gallery.py            # -> docs/img/schedules.png
  python examples/schedules_gallery.py --quick --out /tmp/schedules.png
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from optax_clr import momentum as mom_lib  # noqa: E402
from optax_clr import schedules  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]

BASE_LR, MAX_LR = 0.001, 0.006  # Smith's CIFAR-10 bounds
STEP = 1000                      # half a cycle, in iterations
TOTAL = 8 * STEP                 # four cycles


def gallery(step: int = STEP, total: int = TOTAL):
  """name -> (LR schedule, momentum schedule, note)."""
  # exp_range: gamma chosen so the amplitude is 10% of the start at the end.
  gamma = 0.1 ** (1 / total)
  cyc = dict(step_size_up=step)
  mom = dict(base_momentum=0.8, max_momentum=0.9)
  out = {}
  for mode in ("triangular", "triangular2"):
    out[mode] = (
        schedules.cyclic_schedule(BASE_LR, MAX_LR, mode=mode, **cyc),
        mom_lib.cyclic_momentum_schedule(mode=mode, **cyc, **mom),
        "amplitude constant" if mode == "triangular" else
        "amplitude halves each cycle")
  out["exp_range"] = (
      schedules.cyclic_schedule(BASE_LR, MAX_LR, mode="exp_range",
                                gamma=gamma, **cyc),
      mom_lib.cyclic_momentum_schedule(mode="exp_range", gamma=gamma, **cyc,
                                       **mom),
      f"amplitude * gamma^t (PyTorch), gamma={gamma:.6f}")
  out["exp_range, decay_bounds"] = (
      schedules.cyclic_schedule(BASE_LR, MAX_LR, mode="exp_range",
                                gamma=gamma, decay_bounds=True, **cyc),
      mom_lib.cyclic_momentum_schedule(mode="exp_range", gamma=gamma, **cyc,
                                       **mom),
      "both bounds * gamma^t (the paper)")
  for waveform in ("cosine", "welch"):
    out[f"triangular, {waveform}"] = (
        schedules.cyclic_schedule(BASE_LR, MAX_LR, waveform=waveform, **cyc),
        mom_lib.cyclic_momentum_schedule(waveform=waveform, **cyc, **mom),
        "Hann window" if waveform == "cosine" else "parabolic window")
  out["asymmetric (up 1/4, down 3/4)"] = (
      schedules.cyclic_schedule(BASE_LR, MAX_LR, step_size_up=step // 2,
                                step_size_down=3 * step // 2),
      mom_lib.cyclic_momentum_schedule(step_size_up=step // 2,
                                       step_size_down=3 * step // 2, **mom),
      "fast rise, slow fall")
  for three_phase in (False, True):
    name = "one-cycle, three phases" if three_phase else "one-cycle"
    out[name] = (
        schedules.one_cycle_schedule(MAX_LR, total, three_phase=three_phase),
        mom_lib.one_cycle_momentum_schedule(total, three_phase=three_phase),
        "max/25 -> max -> max/25 -> max/25e4" if three_phase
        else "max/25 -> max -> max/25e4")
  return out


def draw(path: pathlib.Path, step: int = STEP, total: int = TOTAL) -> None:
  entries = gallery(step, total)
  t = jnp.arange(total)
  cols = 3
  rows = -(-len(entries) // cols)
  fig = Figure(figsize=(4.2 * cols, 2.6 * rows), layout="constrained")
  axes = fig.subplots(rows, cols, sharex=True, squeeze=False).ravel()
  for ax, (name, (lr_fn, mom_fn, note)) in zip(axes, entries.items()):
    lr = jax.jit(lr_fn)(t)
    mom = jax.jit(mom_fn)(t)
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
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  print(f"wrote {path}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="fewer steps (for tests)")
  parser.add_argument("--out", type=pathlib.Path, default=None,
                      help="PNG path (default docs/img/schedules.png, or "
                      "./schedules-quick.png with --quick)")
  args = parser.parse_args(argv)
  out = args.out or (pathlib.Path("schedules-quick.png") if args.quick
                     else ROOT / "docs" / "img" / "schedules.png")
  if args.quick:
    draw(out, step=50, total=400)
  else:
    draw(out)


if __name__ == "__main__":
  main()
