"""Hostile input against the command line: one line, the flag, the exit code.

Every case runs ``optax_clr.cli.main(argv)`` in-process and must end with
the exit status it names (2: a usage error -- a bad flag, file or value --
found before anything is written; 1: a run that failed), exactly one stderr
line
``optax-clr: error: ...`` that matches every pattern (the flag or the file,
and the value or the problem), no traceback, and no library parameter name
(``max_value``, ``step_size_up``, ...) where a flag is meant. A usage error
leaves no ``--out`` directory behind.

Files the cases read (binary garbage, malformed results, a fake run, a
locked directory) are written into ``tmp_path``; the few cases that load
data use the embedded digits and fail before training.
"""

import gzip
import json
import os
import pathlib
import pickle
import re
import struct

import numpy as np
import pytest

from optax_clr import cli

TINY = ["--width", "4", "--batch-size", "32", "--no-progress"]
CLR = ["--base-lr", "0.01", "--max-lr", "0.1"]
LIBRARY_NAMES = re.compile(
    r"(?<![\w\-])(max_value|base_value|step_size_up|step_size_down|num_steps"
    r"|start_lr|end_lr|learning_rate|div_factor|final_div_factor|pct_start"
    r"|total_steps|base_momentum|max_momentum|num_lrs|min_lr|max_lr"
    r"|num_epochs|batch_size)(?![\w])")


@pytest.fixture(autouse=True)
def _no_caches(monkeypatch):
  monkeypatch.setenv("OPTAX_CLR_CACHE_DIR", "")
  monkeypatch.delenv("OPTAX_CLR_DEBUG", raising=False)


# ----------------------------------------------------------------------------
# Files the cases point at (each a function of tmp_path returning a path).


def binary_file(t):
  path = t / "garbage.bin"
  path.write_bytes(bytes(range(256)))
  return path


def empty_dir(t):
  path = t / "empty"
  path.mkdir()
  return path


def results_file(name, data):
  def make(t):
    path = t / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path
  return make


def plot_schedule_run(t):
  """What plot-schedule writes: a results.json that is not a result."""
  run = t / "plots"
  run.mkdir()
  (run / "config.json").write_text("{}")
  (run / "results.json").write_text(json.dumps(
      {"schedules": {}, "summary": {}, "values": "schedule.csv"}))
  return run


HISTORY = {"type": "TrainHistory", "format_version": 2, "steps": [0],
           "losses": [1.0], "lrs": [0.1], "momenta": [0.9],
           "eval_steps": [1], "eval_metrics": {}, "wall_times": [1.0]}
RANGE = {"type": "RangeTestResult", "format_version": 2, "lrs": [0.1, 0.2],
         "losses": [1.0, 0.5], "smoothed_losses": [1.0, 0.5],
         "stop_reason": "completed"}


def fake_run(t):
  """A directory that holds a run (config.json)."""
  run = t / "old"
  run.mkdir()
  (run / "config.json").write_text("{}")
  return run


def locked_run(t):
  run = t / "busy"
  run.mkdir()
  (run / ".optax-clr.lock").write_text("1")  # pid 1 is alive
  return run


def a_file(t):
  path = t / "file.txt"
  path.write_text("mine")
  return path


def not_a_run(t):
  d = t / "notes"
  d.mkdir()
  (d / "notes.txt").write_text("mine")
  return d


def npz_garbage(t):
  path = t / "data.npz"
  path.write_bytes(b"PK\x03\x04 not a zip")
  return f"npz:{path}"


def npz_huge_label(t):
  path = t / "labels.npz"
  np.savez(path, x=np.zeros((2, 8, 8), np.uint8), y=np.array([0, 2**32]))
  return f"npz:{path}"


def mnist_overflow(t):
  d = t / "mnist"
  d.mkdir()
  (d / "train-images-idx3-ubyte").write_bytes(struct.pack(
      ">IIII", 2051, 65536, 16777216, 16777216))
  (d / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 1)
                                              + b"\x00")
  return f"mnist:{d}"


def mnist_corrupt_gzip(t):
  d = t / "mnistgz"
  d.mkdir()
  (d / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08junk")
  (d / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(
      struct.pack(">II", 2049, 1) + b"\x00"))
  return f"mnist:{d}"


class Evil:
  def __init__(self, path):
    self.path = str(path)

  def __reduce__(self):
    return (os.system, (f"touch {self.path}",))


def cifar_evil(t):
  d = t / "cifar"
  d.mkdir()
  for i in range(1, 6):
    with open(d / f"data_batch_{i}", "wb") as f:
      pickle.dump({b"data": Evil(t / "pwned"), b"labels": [0]}, f)
  return f"cifar10:{d}"


def garbled_checkpoint(t):
  d = t / "ckpt"
  d.mkdir()
  (d / "checkpoint.msgpack").write_bytes(b"\xc1 garbled")
  return d


def F(make):
  """An argument made from tmp_path."""
  return make


# ----------------------------------------------------------------------------
# The matrix: id -> (argv, exit code, patterns).

RT, TR, PS = "range-test", "train", "plot-schedule"
CASES = {
    # Flags by value and by type.
    "range-test/steps-string": ([RT, "--steps", "abc"], 2, r"--steps",
                                r"integer, got abc"),
    "range-test/steps-float": ([RT, "--steps", "1.5"], 2, r"--steps",
                               r"1\.5"),
    "range-test/steps-zero": ([RT, "--steps", "0"], 2, r"--steps", r">= 1"),
    "range-test/steps-one-classic": ([RT, "--steps", "1"], 2, r"--steps",
                                     r"integer >= 2"),
    "range-test/steps-2**40": ([RT, "--steps", str(2**40)], 2, r"--steps",
                               r"int32"),
    "range-test/start-lr-nan": ([RT, "--start-lr", "nan"], 2,
                                r"--start-lr", r"finite.*nan"),
    "range-test/start-lr-inf": ([RT, "--start-lr", "inf"], 2,
                                r"--start-lr", r"finite"),
    "range-test/start-lr-1e39": ([RT, "--start-lr", "1e39"], 2,
                                 r"--start-lr", r"float32"),
    "range-test/start-lr-underflows-float32": ([RT, "--start-lr", "1e-50"],
                                               2, r"--start-lr",
                                               r"> 0 in float32.*1e-50"),
    "range-test/start-lr-negative": ([RT, "--start-lr", "-1"], 2,
                                     r"--start-lr", r"> 0"),
    "range-test/start-lr-hex": ([RT, "--start-lr", "0x10"], 2,
                                r"--start-lr", r"0x10"),
    "range-test/end-below-start": ([RT, "--start-lr", "1", "--end-lr",
                                    "0.1"], 2, r"--start-lr.*--end-lr",
                                   r"--end-lr=0\.1"),
    "range-test/smoothing-zero": ([RT, "--smoothing", "0"], 2,
                                  r"--smoothing", r"> 0"),
    "range-test/smoothing-two": ([RT, "--smoothing", "2"], 2,
                                 r"--smoothing", r"<= 1"),
    "range-test/diverge-threshold-one": ([RT, "--diverge-threshold", "1"],
                                         2, r"--diverge-threshold", r"> 1"),
    "range-test/eval-every-zero": ([RT, "--eval-every", "0"], 2,
                                   r"--eval-every", r">= 1"),
    "range-test/seeds-zero": ([RT, "--seeds", "0"], 2, r"--seeds", r">= 1"),
    "range-test/parallel-one": ([RT, "--parallel", "1"], 2, r"--parallel",
                                r"0 \(classic\) or >= 2"),
    "range-test/parallel-negative": ([RT, "--parallel", "-2"], 2,
                                     r"--parallel", r">= 0"),
    "range-test/parallel-with-start-lr": ([RT, "--parallel", "4",
                                           "--start-lr", "1e-3"], 2,
                                          r"--start-lr",
                                          r"not with --parallel"),
    "range-test/min-lr-without-parallel": ([RT, "--min-lr", "1e-3"], 2,
                                           r"--min-lr", r"only with"),
    "range-test/parallel-min-above-max": ([RT, "--parallel", "4",
                                           "--min-lr", "1", "--max-lr",
                                           "0.1"], 2, r"--min-lr",
                                          r"--max-lr=0\.1"),
    "range-test/parallel-seeds": ([RT, "--parallel", "4", "--seeds", "2"],
                                  2, r"--seeds", r"not with --parallel"),
    "range-test/momentum-one": ([RT, "--momentum", "1"], 2, r"--momentum",
                                r"< 1"),
    "range-test/momentum-negative": ([RT, "--momentum", "-0.5"], 2,
                                     r"--momentum", r">= 0"),
    "range-test/weight-decay-nan": ([RT, "--weight-decay", "nan"], 2,
                                    r"--weight-decay", r"finite"),
    "range-test/weight-decay-negative": ([RT, "--weight-decay", "-1"], 2,
                                         r"--weight-decay", r">= 0"),
    "range-test/optimizer-unknown": ([RT, "--optimizer", "lamb"], 2,
                                     r"--optimizer", r"lamb"),
    "range-test/ramp-unknown": ([RT, "--ramp", "cos"], 2, r"--ramp",
                                r"'cos'"),
    "range-test/batch-size-zero": ([RT, "--batch-size", "0"], 2,
                                   r"--batch-size", r">= 1"),
    "range-test/batch-size-above-data": ([RT, "--batch-size", "100000"], 2,
                                         r"--batch-size",
                                         r"<= the 1438 training examples"),
    "range-test/val-fraction-zero": ([RT, "--val-fraction", "0"], 2,
                                     r"--val-fraction", r"> 0"),
    "range-test/val-fraction-one": ([RT, "--val-fraction", "1"], 2,
                                    r"--val-fraction", r"< 1"),
    "range-test/width-zero": ([RT, "--width", "0"], 2, r"--width", r">= 1"),
    "range-test/model-unknown": ([RT, "--model", "vgg"], 2, r"--model",
                                 r"'vgg'"),
    "range-test/seed-negative": ([RT, "--seed", "-1"], 2, r"--seed",
                                 r">= 0"),
    "range-test/seed-2**40": ([RT, "--seed", str(2**40)], 2, r"--seed",
                              r"int32"),
    "range-test/unknown-flag": ([RT, "--bogus"], 2, r"--bogus"),
    "cli/unknown-command": (["fly"], 2, r"fly"),
    # Data.
    "data/unknown-spec": ([RT, "--data", "imagenet:/x"], 2,
                          r"imagenet", r"valid specs"),
    "data/digits-with-a-path": ([RT, "--data", "digits:/x"], 2, r"digits",
                                r"no path"),
    "data/npz-missing": ([RT, "--data", "npz:/nonexistent/x.npz"], 2,
                         r"/nonexistent/x\.npz", r"no such file"),
    "data/npz-garbage": ([RT, "--data", F(npz_garbage)], 2, r"data\.npz",
                         r"not a readable \.npz"),
    "data/npz-label-2**32": ([RT, "--data", F(npz_huge_label)], 2,
                             r"labels\.npz", r"4294967296"),
    "data/idx-dims-overflow": ([RT, "--data", F(mnist_overflow)], 2,
                               r"train-images-idx3-ubyte",
                               r"declares shape"),
    "data/corrupt-gzip": ([RT, "--data", F(mnist_corrupt_gzip)], 2,
                          r"train-images-idx3-ubyte\.gz", r"corrupt gzip"),
    "data/malicious-cifar-pickle": ([RT, "--data", F(cifar_evil)], 2,
                                    r"data_batch_1", r"not allowed"),
    # The run directory.
    "out/empty": ([PS, "--steps", "10", "--out", ""], 2, r"--out",
                  r"empty string"),
    "out/blank": ([PS, "--steps", "10", "--out", "  "], 2, r"--out",
                  r"empty string"),
    "out/current-directory": ([PS, "--steps", "10", "--out", "."], 2,
                              r"--out \.", r"the current directory"),
    "out/filesystem-root": ([PS, "--steps", "10", "--out", "/"], 2,
                            r"--out /", r"a filesystem root"),
    "out/home": ([PS, "--steps", "10", "--out", "~"], 2, r"--out ~",
                 r"the home directory"),
    "out/a-file": ([PS, "--steps", "10", "--out", F(a_file)], 2,
                   r"file\.txt", r"not a directory|is a file"),
    "out/not-a-run": ([PS, "--steps", "10", "--out", F(not_a_run)], 2,
                      r"--out .*notes", r"holds no optax-clr run"),
    "out/holds-a-run": ([PS, "--steps", "10", "--out", F(fake_run)], 2,
                        r"--out .*old", r"already holds a run.*--overwrite"),
    "out/locked-by-a-live-pid": ([PS, "--steps", "10", "--out",
                                  F(locked_run)], 2, r"--out .*busy",
                                 r"in use by another optax-clr run \(pid 1\)"),
    "out/locked-even-with-overwrite": ([PS, "--steps", "10", "--overwrite",
                                        "--out", F(locked_run)], 2,
                                       r"--out .*busy", r"pid 1"),
    # train.
    "train/lr-1e39": ([TR, "--policy", "fixed", "--lr", "1e39"], 2, r"--lr",
                      r"float32"),
    "train/step-size-1e308": ([TR, *CLR, "--step-size", "1e308"], 2,
                              r"--step-size", r"float32"),
    "train/step-size-zero": ([TR, *CLR, "--step-size", "0"], 2,
                             r"--step-size", r"> 0"),
    "train/step-size-nan": ([TR, *CLR, "--step-size", "nan"], 2,
                            r"--step-size", r"finite"),
    "train/step-size-down-zero": ([TR, *CLR, "--step-size-down", "0"], 2,
                                  r"--step-size-down", r"> 0"),
    "train/epochs-zero": ([TR, *CLR, "--epochs", "0"], 2, r"--epochs",
                          r">= 1"),
    "train/epochs-2**40": ([TR, *CLR, "--epochs", str(2**40)], 2,
                           r"--epochs", r"int32"),
    "train/base-above-max": ([TR, "--base-lr", "0.5", "--max-lr", "0.1"],
                             2, r"--base-lr.*--max-lr", r"--base-lr=0\.5"),
    "train/fixed-with-base-lr": ([TR, "--policy", "fixed", "--lr", "0.1",
                                  "--base-lr", "0.01"], 2, r"--base-lr",
                                 r"not used by --policy fixed"),
    "train/fixed-without-lr": ([TR, "--policy", "fixed"], 2,
                               r"--policy fixed needs --lr"),
    "train/cyclic-without-max-lr": ([TR, "--base-lr", "0.01"], 2,
                                    r"--max-lr"),
    "train/one-cycle-base-and-div": ([TR, "--policy", "one-cycle",
                                      "--max-lr", "0.1", "--base-lr",
                                      "0.01", "--div-factor", "10"], 2,
                                     r"--base-lr or --div-factor"),
    "train/gamma-zero": ([TR, "--policy", "exp_range", *CLR, "--gamma",
                          "0"], 2, r"--gamma", r"> 0"),
    "train/gamma-with-triangular": ([TR, *CLR, "--gamma", "0.9"], 2,
                                    r"--gamma", r"not used by --policy "
                                    r"triangular"),
    "train/pct-start-one": ([TR, "--policy", "one-cycle", "--max-lr", "0.1",
                             "--pct-start", "1"], 2, r"--pct-start", r"< 1"),
    "train/div-factor-zero": ([TR, "--policy", "one-cycle", "--max-lr",
                               "0.1", "--div-factor", "0"], 2,
                              r"--div-factor", r"> 0"),
    "train/final-div-factor-negative": ([TR, "--policy", "one-cycle",
                                         "--max-lr", "0.1",
                                         "--final-div-factor", "-1"], 2,
                                        r"--final-div-factor", r"> 0"),
    "train/base-momentum-one": ([TR, *CLR, "--base-momentum", "1"], 2,
                                r"--base-momentum", r"< 1"),
    "train/momentum-bounds-inverted": ([TR, *CLR, "--base-momentum", "0.95",
                                        "--max-momentum", "0.85"], 2,
                                       r"--base-momentum.*--max-momentum",
                                       r"0\.95"),
    "train/nesterov-with-adam": ([TR, *CLR, "--optimizer", "adam",
                                  "--nesterov"], 2,
                                 r"--nesterov needs --optimizer sgd"),
    "train/auto-bounds-with-max-lr": ([TR, "--auto-bounds", "--max-lr",
                                       "0.1"], 2, r"--max-lr",
                                      r"not with --auto-bounds"),
    "train/waveform-unknown": ([TR, *CLR, "--waveform", "square"], 2,
                               r"--waveform", r"'square'"),
    "train/anneal-unknown": ([TR, "--policy", "one-cycle", "--max-lr", "0.1",
                              "--anneal-strategy", "quad"], 2,
                             r"--anneal-strategy", r"'quad'"),
    "train/checkpoint-every-zero": ([TR, *CLR, "--checkpoint-every", "0"],
                                    2, r"--checkpoint-every", r">= 1"),
    "train/three-phase-pct-too-large": ([TR, *TINY, "--policy", "one-cycle",
                                         "--max-lr", "0.1", "--three-phase",
                                         "--pct-start", "0.6", "--epochs",
                                         "1"], 2, r"--pct-start",
                                        r"three_phase|phase ends"),
    "train/garbled-checkpoint": ([TR, *TINY, *CLR, "--epochs", "1",
                                  "--step-size", "0.5",
                                  "--checkpoint-dir",
                                  F(garbled_checkpoint)], 2,
                                 r"checkpoint\.msgpack",
                                 r"not a readable checkpoint"),
    "train/auto-bounds-with-policy": ([TR, "--auto-bounds", "--policy",
                                       "one-cycle"], 2, r"--policy",
                                      r"not with --auto-bounds"),
    "train/auto-bounds-with-step-size": ([TR, "--auto-bounds",
                                          "--step-size", "2"], 2,
                                         r"--step-size",
                                         r"not with --auto-bounds"),
    # fit.
    "fit/epochs-zero": (["fit", "--epochs", "0"], 2, r"--epochs", r">= 1"),
    "fit/cycles-zero": (["fit", "--cycles", "0"], 2, r"--cycles", r">= 1"),
    "fit/momentum-is-fits-choice": (["fit", "--momentum", "0.9"], 2,
                                    r"--momentum", r"No such option"),
    "fit/optimizer-unknown": (["fit", "--optimizer", "lamb"], 2,
                              r"--optimizer", r"lamb"),
    "fit/data-missing": (["fit", "--data", "mnist:/nonexistent"], 2,
                         r"/nonexistent"),
    "fit/batch-size-above-data": (["fit", "--batch-size", "5000"], 2,
                                  r"--batch-size",
                                  r"<= the 1438 training examples"),
    # --bounds-from.
    "bounds-from/binary-file": ([TR, "--bounds-from", F(binary_file)], 2,
                                r"garbage\.bin", r"not UTF-8"),
    "bounds-from/dir-without-results": ([TR, "--bounds-from",
                                         F(empty_dir)], 2, r"empty",
                                        r"without results\.json"),
    "bounds-from/missing": ([TR, "--bounds-from", "/nonexistent/r.json"], 2,
                            r"/nonexistent/r\.json",
                            r"No such file|no such file"),
    "bounds-from/plot-schedule-run": ([TR, "--bounds-from",
                                       F(plot_schedule_run)], 2,
                                      r"plots/results\.json",
                                      r"not an optax-clr results file"),
    "bounds-from/training-history": ([TR, "--bounds-from", F(results_file(
        "h.json", HISTORY))], 2, r"TrainHistory holds no LR bounds"),
    "bounds-from/range-test-for-fixed": ([TR, "--policy", "fixed",
                                          "--bounds-from", F(results_file(
                                              "r.json", RANGE))], 2,
                                         r"a fixed LR needs"),
    "bounds-from/deeply-nested": ([TR, "--bounds-from", F(results_file(
        "deep.json", "[" * 100000 + "]" * 100000))], 2, r"deep\.json",
        r"nested too deeply"),
    "bounds-from/eval-metrics-a-list": ([TR, "--bounds-from", F(
        results_file("em.json", {**RANGE, "eval_metrics": [1]}))], 2,
        r"em\.json", r"eval_metrics must be an object"),
    "bounds-from/ragged-lrs": ([TR, "--bounds-from", F(results_file(
        "rg.json", {**RANGE, "lrs": [[0.1], [0.2, 0.3]]}))], 2,
        r"rg\.json", r"rectangular"),
    "bounds-from/summary-with-string-bound": ([TR, "--bounds-from", F(
        results_file("s.json", {"type": "RunSummary", "command": "demo",
                                "parts": {}, "bounds": {
                                    "base_lr": "a", "max_lr": 0.1}}))], 2,
        r"s\.json", r"base_lr"),
    "bounds-from/with-max-lr": ([TR, "--bounds-from", "x", "--max-lr",
                                 "0.1"], 2, r"--bounds-from",
                                r"not both"),
    # plot-schedule.
    "plot-schedule/steps-zero": ([PS, "--steps", "0"], 2, r"--steps",
                                 r">= 1"),
    "plot-schedule/steps-2**40": ([PS, "--steps", str(2**40)], 2,
                                  r"--steps", r"int32"),
    "plot-schedule/step-size-float": ([PS, "--step-size", "2.5"], 2,
                                      r"--step-size", r"integer"),
    "plot-schedule/base-above-max": ([PS, "--base-lr", "1", "--max-lr",
                                      "0.1"], 2, r"--base-lr.*--max-lr",
                                     r"--max-lr=0\.1"),
    "plot-schedule/policy-fixed": ([PS, "--policy", "fixed"], 2,
                                   r"--policy", r"'fixed'"),
    "plot-schedule/gamma-two": ([PS, "--gamma", "2"], 2, r"--gamma",
                                r"<= 1"),
    "plot-schedule/div-factor-nan": ([PS, "--div-factor", "nan"], 2,
                                     r"--div-factor", r"finite"),
    # disciplined and demo.
    "disciplined/weight-decays-negative": (["disciplined", "--weight-decays",
                                            "0,-1"], 2, r"--weight-decays",
                                           r"-1"),
    "disciplined/weight-decays-words": (["disciplined", "--weight-decays",
                                         "a,b"], 2, r"--weight-decays",
                                        r"numbers"),
    "disciplined/weight-decays-nan": (["disciplined", "--weight-decays",
                                       "0,nan"], 2, r"--weight-decays",
                                      r"nan"),
    "disciplined/weight-decays-duplicate": (["disciplined",
                                             "--weight-decays", "0,0"], 2,
                                            r"--weight-decays", r"distinct"),
    "disciplined/momenta-one": (["disciplined", "--momenta", "1"], 2,
                                r"--momenta", r"1"),
    "disciplined/steps-one": (["disciplined", "--steps", "1"], 2,
                              r"--steps", r">= 2"),
    "disciplined/end-below-start": (["disciplined", "--start-lr", "1",
                                     "--end-lr", "0.1"], 2,
                                    r"--start-lr.*--end-lr", r"0\.1"),
    "demo/epochs-zero": (["demo", "--epochs", "0"], 2, r"--epochs", r">= 1"),
    "demo/width-string": (["demo", "--width", "wide"], 2, r"--width",
                          r"wide"),
}


def materialize(args, tmp_path):
  out = []
  for a in args:
    out.append(str(a(tmp_path)) if callable(a) else str(a))
  return out


@pytest.mark.parametrize("args, code, patterns",
                         [(c[0], c[1], c[2:]) for c in CASES.values()],
                         ids=CASES.keys())
def test_hostile_flag_is_one_line_naming_it(capsys, tmp_path, args, code,
                                            patterns):
  argv = materialize(args, tmp_path)
  if "--out" not in argv:
    argv += ["--out", str(tmp_path / "out")]
  got = cli.main(argv)
  captured = capsys.readouterr()
  err = captured.err
  assert "Traceback" not in err + captured.out
  lines = err.strip().splitlines()
  assert got == code, (got, err)
  assert len(lines) == 1, err
  line = lines[0]
  assert line.startswith("optax-clr: error: "), line
  for pattern in patterns:
    assert re.search(pattern, line), (pattern, line)
  assert not LIBRARY_NAMES.search(line.replace(str(tmp_path), "")), line
  if code == 2:  # refused before anything was written
    assert not (tmp_path / "out").exists()
  assert not (tmp_path / "pwned").exists()  # no pickle ran


def test_the_cli_matrix_covers_every_command():
  commands = {k.split("/")[0] for k in CASES}
  assert {"range-test", "train", "fit", "plot-schedule", "disciplined",
          "demo", "out", "data", "bounds-from"} <= commands
  assert len(CASES) >= 100


# ----------------------------------------------------------------------------
# The run directory over several runs.


def run_cli(capsys, *args):
  code = cli.main([str(a) for a in args])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def test_overwrite_removes_the_previous_runs_results(capsys, tmp_path):
  out = tmp_path / "run"
  out.mkdir()
  # A previous run of another command, and what a SIGKILL left behind.
  (out / "config.json").write_text('{"command": "train"}')
  (out / "results.json").write_text(json.dumps(HISTORY))
  (out / "training.png").write_bytes(b"old")
  (out / "checkpoint.msgpack").write_bytes(b"kept")
  (out / ".results.json.abc123.tmp").write_text("torn")
  code, _, err = run_cli(capsys, PS, "--steps", "10", "--policy",
                         "triangular", "--out", out, "--overwrite")
  assert code == 0, err
  names = sorted(p.name for p in out.iterdir())
  assert names == ["checkpoint.msgpack", "config.json", "environment.json",
                   "results.json", "schedule.csv", "schedule.png"]
  assert json.loads((out / "config.json").read_text())["command"] == PS
  assert "schedules" in json.loads((out / "results.json").read_text())


def test_a_directory_holding_only_a_stale_lock_and_temp_files_is_reused(
    capsys, tmp_path):
  out = tmp_path / "run"
  out.mkdir()
  (out / ".optax-clr.lock").write_text("999999999")  # no such process
  (out / ".config.json.x1.tmp").write_text("{")
  code, _, err = run_cli(capsys, PS, "--steps", "10", "--out", out)
  assert code == 0, err
  assert not (out / ".optax-clr.lock").exists()
  assert not list(out.glob("*.tmp"))
  json.loads((out / "config.json").read_text())


def test_debug_shows_the_traceback(capsys, monkeypatch, tmp_path):
  monkeypatch.setenv("OPTAX_CLR_DEBUG", "1")
  with pytest.raises(ValueError, match=r"garbage\.bin"):
    cli.main([TR, "--bounds-from", str(binary_file(tmp_path)), "--out",
              str(tmp_path / "o")])
