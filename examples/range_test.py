"""The classic LR range test on the embedded digits, with its suggestions.

One compiled run of the small CNN whose learning rate rises exponentially
from 1e-3 to 10 over 300 steps (about 14 epochs: Smith ran the test over
several epochs), SGD with momentum 0.9. The loss is smoothed by a
bias-corrected EMA and the test stops when the smoothed loss exceeds 4x its
best. Validation accuracy is measured every 15 steps, which gives Smith's
accuracy-based bounds next to the loss-based suggestions (steepest descent,
minimum/10, fastai's valley); ``result.suggest()`` prints them as a table
with the CLR pair and the rule that chose it.

  python examples/range_test.py               # -> runs/examples/range_test/
  python examples/range_test.py --quick --out /tmp/range_test
  python examples/range_test.py --update-docs  # -> docs/img/range_test.png
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import time

import optax

import optax_clr as clr

NAME = "range_test"
DOCS_FIGURE = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "img"
               / "range_test.png")


def run(out: pathlib.Path, *, num_steps: int = 300, eval_every: int = 15,
        width: int = 16, seed: int = 0, update_docs: bool = False
        ) -> clr.RangeTestResult:
  train, val = clr.load_digits().split(0.2, seed)
  model = clr.make_model("cnn", num_classes=10, in_channels=1, width=width,
                         seed=seed)
  start = time.perf_counter()
  result = clr.range_test(
      model, clr.cross_entropy_loss, train,
      start_lr=1e-3, end_lr=10.0, num_steps=num_steps, ramp="exp",
      optimizer=functools.partial(optax.sgd, momentum=0.9), batch_size=64,
      smoothing=0.05, diverge_threshold=4.0,
      val_data=val, eval_every=eval_every, seed=seed)
  elapsed = time.perf_counter() - start
  print(f"{result.num_steps} steps, stopped: {result.stop_reason} "
        f"({elapsed:.1f} s including compilation)")
  suggestions = result.suggest()
  print(suggestions)

  out.mkdir(parents=True, exist_ok=True)
  paths = [out / "range_test.json", out / "range_test.csv"]
  result.to_json(paths[0])
  result.to_csv(paths[1])
  fig = result.plot(suggestions=suggestions, path=out / "range_test.png")
  paths.append(out / "range_test.png")
  if update_docs:
    DOCS_FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(DOCS_FIGURE, dpi=100)
    paths.append(DOCS_FIGURE)
  for path in paths:
    print(f"wrote {path}")
  return result


def main(argv=None) -> clr.RangeTestResult:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true",
                      help="60 steps of a narrow CNN (for tests)")
  parser.add_argument("--out", type=pathlib.Path, default=None,
                      help=f"output directory (default runs/examples/{NAME}/"
                      " under the current directory)")
  parser.add_argument("--update-docs", action="store_true",
                      help="also regenerate the committed figure "
                      "docs/img/range_test.png (not with --quick)")
  args = parser.parse_args(argv)
  if args.update_docs and args.quick:
    parser.error("--update-docs regenerates the committed figure from the "
                 "full run; drop --quick")
  out = args.out or pathlib.Path("runs", "examples", NAME)
  if args.quick:
    return run(out, num_steps=60, eval_every=10, width=4)
  return run(out, update_docs=args.update_docs)


if __name__ == "__main__":
  main()
