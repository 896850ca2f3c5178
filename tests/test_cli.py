"""The `optax-clr` command line, end to end on tiny settings.

Every command runs in-process through ``cli.main(argv)`` (the console
script's entry point), so jax is imported and compiled code is cached once
for the whole file; one test runs the real ``python -m optax_clr`` process.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from optax_clr import cli


def run_cli(capsys, *args):
  """Runs the CLI in-process; returns (exit code, stdout, stderr)."""
  code = cli.main([str(a) for a in args])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert lines[0].startswith("optax-clr: error: "), err
  assert "Traceback" not in err
  for fragment in fragments:
    assert fragment in lines[0], (fragment, lines[0])


# ----------------------------------------------------------------------------
# Help and argument errors (no training: these answer before jax runs).


@pytest.mark.parametrize("command", ["range-test", "train", "plot-schedule",
                                     "demo"])
def test_every_command_has_help_with_defaults(capsys, command):
  code, out, err = run_cli(capsys, command, "--help")
  assert code == 0, err
  assert out.startswith(f"Usage: optax-clr {command} [OPTIONS]")
  assert "--out" in out
  assert "[default: " in out


def test_no_command_prints_the_command_list(capsys):
  code, out, _ = run_cli(capsys)
  assert code == 0
  for command in ("range-test", "train", "plot-schedule", "demo"):
    assert command in out


BAD_USAGE = [
    (["train", "--policy", "foo", "--base-lr", "0.01", "--max-lr", "0.1"],
     ["--policy", "'foo' is not one of"]),
    (["train", "--base-lr", "-1", "--max-lr", "0.1"],
     ["--base-lr must be > 0, got -1"]),
    (["train", "--base-lr", "0.5", "--max-lr", "0.1"],
     ["--base-lr must be < --max-lr", "0.5", "0.1"]),
    (["train", "--max-lr", "nan", "--base-lr", "0.1"],
     ["--max-lr must be a finite number, got nan"]),
    (["train", "--policy", "triangular"], ["needs --max-lr"]),
    (["train", "--policy", "fixed"], ["--policy fixed needs --lr"]),
    (["train", "--base-lr", "0.01", "--max-lr", "0.1", "--bounds-from",
      "x.json"], ["either --bounds-from or --base-lr/--max-lr"]),
    (["train", "--base-lr", "0.01", "--max-lr", "0.1", "--base-momentum",
      "0.95"], ["--base-momentum must be <= --max-momentum"]),
    (["train", "--base-lr", "0.01", "--max-lr", "0.1", "--max-momentum",
      "1.0"], ["--max-momentum must be < 1, got 1.0"]),
    (["train", "--base-lr", "0.01", "--max-lr", "0.1", "--epochs", "2.5"],
     ["--epochs must be an integer, got 2.5"]),
    (["train", "--base-lr", "0.01", "--max-lr", "0.1", "--nesterov",
      "--optimizer", "adam"], ["--nesterov needs --optimizer sgd"]),
    (["train", "--no-such-option"], ["No such option"]),
    (["range-test", "--steps", "0"], ["--steps must be >= 1, got 0"]),
    (["range-test", "--start-lr", "1", "--end-lr", "0.1"],
     ["--start-lr must be < --end-lr"]),
    (["range-test", "--parallel", "1"], ["--parallel must be 0"]),
    (["range-test", "--parallel", "4", "--min-lr", "1", "--max-lr", "0.1"],
     ["--min-lr must be < --max-lr"]),
    (["range-test", "--model", "vgg"], ["--model", "'vgg' is not one of"]),
    (["range-test", "--smoothing", "0"], ["--smoothing must be > 0"]),
    (["plot-schedule", "--policy", "cosine"], ["--policy"]),
    (["plot-schedule", "--base-lr", "1", "--max-lr", "0.5"],
     ["--base-lr must be < --max-lr"]),
    (["plot-schedule", "--gamma", "1.5"], ["--gamma must be <= 1, got 1.5"]),
    (["demo", "--epochs", "0"], ["--epochs must be >= 1, got 0"]),
    (["no-such-command"], ["No such command 'no-such-command'"]),
]


@pytest.mark.parametrize("args, fragments", BAD_USAGE,
                         ids=[" ".join(a) for a, _ in BAD_USAGE])
def test_bad_usage_is_one_line_and_exit_2(capsys, tmp_path, args, fragments):
  out_dir = tmp_path / "out"
  code, _, err = run_cli(capsys, *args, *(
      ["--out", out_dir] if args[0] in ("train", "range-test") else []))
  assert code == 2
  assert_one_line_error(err, *fragments)
  assert not out_dir.exists()  # rejected before anything is written


def test_missing_results_file_is_one_line_and_exit_1(capsys, tmp_path):
  missing = tmp_path / "nope.json"
  code, _, err = run_cli(capsys, "train", "--bounds-from", missing, "--out",
                         tmp_path / "out")
  assert code == 1
  assert_one_line_error(err, str(missing), "No such file")


@pytest.mark.parametrize("content, fragment", [
    ("not json at all", "invalid JSON"),
    ('{"lrs": [1, 2]}', "not a range-test results file"),
    ('[1, 2, 3]', "not a range-test results file"),
    ('{"type": "RangeTestResult", "lrs": [0.1, 0.2]}',
     "missing field 'losses'"),
    ('{"type": "RangeTestResult", "lrs": [0.2, 0.1], "losses": [1, 2], '
     '"smoothed_losses": [1, 2], "stop_reason": "completed"}',
     "strictly increasing"),
])
def test_malformed_results_file_is_one_line_and_exit_1(capsys, tmp_path,
                                                       content, fragment):
  bad = tmp_path / "results.json"
  bad.write_text(content)
  code, _, err = run_cli(capsys, "train", "--bounds-from", bad, "--out",
                         tmp_path / "out")
  assert code == 1
  assert_one_line_error(err, str(bad), fragment)


@pytest.mark.parametrize("spec, fragment", [
    ("mnist:/no/such/dir", "/no/such/dir"),
    ("npz:/no/such/file.npz", "/no/such/file.npz"),
    ("imagenet:/data", "unknown dataset spec"),
])
def test_bad_dataset_is_one_line_and_exit_1(capsys, tmp_path, spec,
                                            fragment):
  code, _, err = run_cli(capsys, "range-test", "--data", spec, "--out",
                         tmp_path / "out", "--steps", "5")
  assert code == 1
  assert_one_line_error(err, fragment)


def test_malformed_npz_names_the_file(capsys, tmp_path):
  bad = tmp_path / "data.npz"
  np.savez(bad, images=np.zeros((4, 8, 8, 1)), labels=np.zeros(4))
  code, _, err = run_cli(capsys, "range-test", "--data", f"npz:{bad}",
                         "--out", tmp_path / "out", "--steps", "5")
  assert code == 1
  assert_one_line_error(err, "data.npz")


def test_batch_larger_than_the_training_set_is_a_usage_error(capsys,
                                                             tmp_path):
  code, _, err = run_cli(capsys, "range-test", "--batch-size", "5000",
                         "--out", tmp_path / "out")
  assert code == 2
  assert_one_line_error(err, "--batch-size must be <= the 1438 training "
                        "examples, got 5000")


def test_console_script_process_prints_one_line_without_traceback(tmp_path):
  root = str(pathlib.Path(__file__).resolve().parents[1])
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join(
                 [root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  proc = subprocess.run(
      [sys.executable, "-m", "optax_clr", "train", "--base-lr", "-1",
       "--max-lr", "0.1"], capture_output=True, text=True, env=env,
      cwd=tmp_path, timeout=120)
  assert proc.returncode == 2
  assert proc.stderr == "optax-clr: error: --base-lr must be > 0, got -1\n"
  assert proc.stdout == ""
