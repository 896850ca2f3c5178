"""What every program in examples/real_code shares: the command line and the
report (printed suggestions, results written under ``--out``).

Nothing here touches a program's model, loss or optimizer: the glue of each
program is in its own file, next to the calls.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Any



def parse_args(name: str, doc: str, argv: Any = None) -> argparse.Namespace:
  """``--out DIR`` (default ``runs/examples/real_code/<name>``)."""
  parser = argparse.ArgumentParser(description=doc.splitlines()[0])
  parser.add_argument(
      "--out", type=pathlib.Path,
      default=pathlib.Path("runs", "examples", "real_code", name),
      help=f"output directory (default runs/examples/real_code/{name}/)")
  return parser.parse_args(argv)


def lr_text(lr: float | None) -> str:
  return "-" if lr is None else f"{lr:.3g}"


def report(out: pathlib.Path, results: dict[str, Any]) -> list[pathlib.Path]:
  """Prints the suggestions of a program's runs and writes them as JSON.

  Args:
    out: the output directory.
    results: ``range_test``, ``parallel_range_test`` and ``train`` results
      by name (as each program's ``run`` returns them).

  Returns:
    The paths written.
  """
  rt, sweep = results["range_test"], results["parallel_range_test"]
  history = results["train"]
  s = rt.suggest()
  pair = "none" if s.base_lr is None else (
      f"({lr_text(s.base_lr)}, {lr_text(s.max_lr)})")
  print(f"range_test: {rt.num_steps} steps ({rt.stop_reason}) on mesh "
        f"{rt.config['mesh']}; steepest {lr_text(s.steepest.lr)}, valley "
        f"{lr_text(s.valley.lr)}; CLR bounds {pair}")
  best = sweep.suggest().best
  print(f"parallel_range_test: {sweep.lrs.size} LRs x "
        f"{sweep.config['steps_run']} steps on mesh {sweep.config['mesh']}; "
        f"best fixed LR {lr_text(best.lr)}; status {', '.join(sweep.status)}")
  print(f"train: {len(history)} steps, loss {history.losses[0]:.4g} -> "
        f"{history.losses[-1]:.4g} ({history.status})")
  out.mkdir(parents=True, exist_ok=True)
  paths = []
  for name in ("range_test", "parallel_range_test", "train"):
    path = out / f"{name}.json"
    results[name].to_json(path)
    paths.append(path)
    print(f"wrote {path}")
  return paths
