"""The classic LR range test on the embedded digits, with its suggestions.

One compiled run of the small CNN whose learning rate rises exponentially
from 1e-3 to 10 over 300 steps (about 14 epochs: Smith ran the test over
several epochs), SGD with momentum 0.9. The loss is smoothed by a
bias-corrected EMA and the test stops when the smoothed loss exceeds 4x its
best. Validation accuracy is measured every 15 steps, which gives Smith's
accuracy-based bounds next to the loss-based suggestions (steepest descent,
minimum/10, fastai's valley).

  python examples/range_test.py            # -> docs/img/range_test.png
  python examples/range_test.py --quick --out /tmp/range_test.png
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import time

import optax

from optax_clr import data
from optax_clr import models
from optax_clr.range_test import range_test

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(path: pathlib.Path, *, num_steps: int = 300, eval_every: int = 15,
        width: int = 16, seed: int = 0):
  train, val = data.load_digits().split(0.2, seed)
  model = models.make_model("cnn", num_classes=10, in_channels=1,
                            width=width, seed=seed)
  start = time.perf_counter()
  result = range_test(
      model, models.cross_entropy_loss, train,
      start_lr=1e-3, end_lr=10.0, num_steps=num_steps, ramp="exp",
      optimizer=functools.partial(optax.sgd, momentum=0.9), batch_size=64,
      smoothing=0.05, diverge_threshold=4.0,
      val_data=val, eval_every=eval_every, seed=seed)
  elapsed = time.perf_counter() - start
  print(f"{result.num_steps} steps, stopped: {result.stop_reason} "
        f"({elapsed:.1f} s including compilation)")

  s = result.suggest()
  for sug in (s.steepest, s.minimum, s.valley, s.accuracy_base,
              s.accuracy_max):
    lr = "-" if sug.lr is None else f"{sug.lr:.3e}"
    print(f"  {sug.method:<14} {lr:>10}  [{sug.derivative}] {sug.reason}")
  if s.base_lr is not None:
    print(f"CLR bounds: base_lr={s.base_lr:.3e}, max_lr={s.max_lr:.3e}")
  print(f"  {s.rule}")

  path.parent.mkdir(parents=True, exist_ok=True)
  result.plot(path=path)
  print(f"wrote {path}")
  return result


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="60 steps of a narrow CNN (for tests)")
  parser.add_argument("--out", type=pathlib.Path, default=None,
                      help="PNG path (default docs/img/range_test.png, or "
                      "./range_test-quick.png with --quick)")
  args = parser.parse_args(argv)
  out = args.out or (pathlib.Path("range_test-quick.png") if args.quick
                     else ROOT / "docs" / "img" / "range_test.png")
  if args.quick:
    return run(out, num_steps=60, eval_every=10, width=4)
  return run(out)


if __name__ == "__main__":
  main()
