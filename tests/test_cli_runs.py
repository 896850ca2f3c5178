"""The command line's run directories, exit codes, machine-readable output
and the commands added on top of the range test (seeds, fit and train
--auto-bounds, the disciplined recipe), end to end on tiny settings."""

import json
import os
import pathlib
import re
import signal
import stat
import subprocess
import sys

import numpy as np
import pytest

from optax_clr import cli

TINY = ["--width", "4", "--batch-size", "32", "--no-progress"]


@pytest.fixture(autouse=True)
def _no_caches(monkeypatch):
  monkeypatch.setenv("OPTAX_CLR_CACHE_DIR", "")


def run_cli(capsys, *args):
  code = cli.main([str(a) for a in args])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def one_line(err):
  lines = err.strip().splitlines()
  assert lines and lines[-1].startswith("optax-clr: error: "), err
  assert "Traceback" not in err
  return lines[-1]


# --- the run directory ---------------------------------------------------------


@pytest.mark.parametrize("out, fragment", [
    ("", "--out must name a directory, got an empty string"),
    (".", "is the current directory"),
])
def test_an_empty_or_unsafe_out_is_refused(capsys, tmp_path, monkeypatch,
                                           out, fragment):
  monkeypatch.chdir(tmp_path)
  code, _, err = run_cli(capsys, "plot-schedule", "--steps", "10", "--out",
                         out)
  assert code == 2 and fragment in one_line(err)
  assert list(tmp_path.iterdir()) == []


def test_an_out_holding_a_run_needs_overwrite(capsys, tmp_path):
  out = tmp_path / "run"
  args = ["plot-schedule", "--steps", "10", "--out", out]
  assert run_cli(capsys, *args)[0] == 0
  code, _, err = run_cli(capsys, *args)
  assert code == 2 and "already holds a run" in one_line(err)
  assert run_cli(capsys, *args, "--overwrite")[0] == 0


def test_a_non_empty_directory_that_is_no_run_is_refused(capsys, tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  code, _, err = run_cli(capsys, "plot-schedule", "--out", tmp_path)
  assert code == 2 and "holds no optax-clr run" in one_line(err)
  assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_directory_in_use_by_another_run_is_refused(capsys, tmp_path):
  out = tmp_path / "run"
  out.mkdir()
  (out / ".optax-clr.lock").write_text("1")  # pid 1 is alive
  code, _, err = run_cli(capsys, "plot-schedule", "--out", out)
  assert code == 2 and "in use by another optax-clr run (pid 1)" in (
      one_line(err))


def test_a_stale_lock_is_taken_over_and_released(capsys, tmp_path):
  out = tmp_path / "run"
  out.mkdir()
  (out / ".optax-clr.lock").write_text("999999999")  # no such process
  assert run_cli(capsys, "plot-schedule", "--steps", "10", "--out",
                 out)[0] == 0
  assert not (out / ".optax-clr.lock").exists()


def test_json_prints_one_object_and_sends_the_text_to_stderr(capsys,
                                                             tmp_path):
  code, out, err = run_cli(capsys, "plot-schedule", "--steps", "10",
                           "--policy", "triangular", "--out", tmp_path / "p",
                           "--json")
  assert code == 0
  data = json.loads(out)
  assert data["command"] == "plot-schedule"
  assert "schedule.png" in data["files"]
  assert "triangular" in data["summary"]
  assert "lr in [" in err


# --- exit codes -----------------------------------------------------------------


def test_training_that_diverges_exits_1_with_its_results_written(capsys,
                                                                 tmp_path):
  out = tmp_path / "t"
  code, _, err = run_cli(capsys, "train", *TINY, "--policy", "fixed",
                         "--lr", "1e6", "--epochs", "2", "--out", out)
  assert code == 1
  line = one_line(err)
  history = json.loads((out / "results.json").read_text())
  # At LR 1e6 the CNN turns NaN, blows up or dies at chance: all failures.
  assert history["status"] in ("nonfinite", "diverged", "stalled")
  assert f"training {history['status']}" in line
  assert "--allow-failure" in line
  if history["status"] == "nonfinite":
    assert history["stop_reason"] == "nonfinite"
  code, _, err = run_cli(capsys, "train", *TINY, "--policy", "fixed",
                         "--lr", "1e6", "--epochs", "1", "--out",
                         tmp_path / "t2", "--allow-failure")
  assert code == 0 and "warning: training " in err


def test_classic_steps_below_two_name_the_flag(capsys, tmp_path):
  code, _, err = run_cli(capsys, "range-test", "--steps", "1", "--out",
                         tmp_path / "x")
  assert code == 2
  assert "--steps must be an integer >= 2, got 1" in one_line(err)


def test_library_errors_name_flags(capsys, tmp_path):
  # The library checks the schedule before anything runs: a usage error.
  code, _, err = run_cli(capsys, "train", *TINY, "--policy", "one-cycle",
                         "--max-lr", "1e30", "--div-factor", "1e-10",
                         "--epochs", "1", "--out", tmp_path / "x")
  assert code == 2
  line = one_line(err)
  assert "--div-factor" in line and "div_factor" not in line
  assert not (tmp_path / "x").exists()


# --- commands ------------------------------------------------------------------


def test_range_test_over_seeds_reports_medians(capsys, tmp_path):
  out = tmp_path / "seeds"
  code, stdout, err = run_cli(capsys, "range-test", *TINY, "--seeds", "3",
                              "--steps", "100", "--start-lr", "1e-3",
                              "--out", out)
  assert code == 0, err
  result = json.loads((out / "results.json").read_text())
  assert result["type"] == "MultiSeedRangeTestResult"
  assert result["seeds"] == [0, 1, 2]
  assert "median [min .. max, spread] over 3 seeds" in stdout


def test_train_warns_in_cli_terms_and_saves_the_model(capsys, tmp_path):
  out = tmp_path / "t"
  code, stdout, err = run_cli(
      capsys, "train", *TINY, "--base-lr", "0.01", "--max-lr", "0.1",
      "--step-size", "0.01", "--epochs", "1", "--allow-failure", "--out",
      out)
  assert code == 0, err
  assert "--step-size 0.01 epochs is 1 iteration(s)" in err
  assert (out / "checkpoint.msgpack").exists()
  code, _, err = run_cli(
      capsys, "train", *TINY, "--base-lr", "0.01", "--max-lr", "0.1",
      "--step-size", "4", "--epochs", "1", "--allow-failure",
      "--no-save-model", "--out", tmp_path / "t2")
  assert "0.12 cycles in 1 epochs" in err
  assert not (tmp_path / "t2" / "checkpoint.msgpack").exists()


def test_resuming_says_where_it_resumed_from(capsys, tmp_path):
  ckpt = tmp_path / "ckpt"
  common = [*TINY, "--base-lr", "0.01", "--max-lr", "0.1", "--step-size",
            "1", "--checkpoint-dir", ckpt, "--allow-failure"]
  assert run_cli(capsys, "train", *common, "--epochs", "1", "--out",
                 tmp_path / "a")[0] == 0
  code, stdout, _ = run_cli(capsys, "train", *common, "--epochs", "2",
                            "--out", tmp_path / "b")
  assert code == 0
  assert f"resumed from epoch 1 of 2 (checkpoint {ckpt}" in stdout


def test_adamw_with_weight_decay(capsys, tmp_path):
  out = tmp_path / "t"
  code, _, err = run_cli(capsys, "train", *TINY, "--optimizer", "adamw",
                         "--weight-decay", "1e-3", "--base-lr", "1e-3",
                         "--max-lr", "1e-2", "--epochs", "1",
                         "--allow-failure", "--out", out)
  assert code == 0, err
  config = json.loads((out / "config.json").read_text())
  assert config["options"]["optimizer"] == "adamw"
  assert config["options"]["weight_decay"] == 1e-3


def test_bounds_from_a_run_directory(capsys, tmp_path):
  rt = tmp_path / "rt"
  assert run_cli(capsys, "range-test", *TINY, "--steps", "100", "--start-lr",
                 "1e-3", "--out", rt)[0] == 0
  code, stdout, err = run_cli(capsys, "train", *TINY, "--bounds-from", rt,
                              "--epochs", "1", "--allow-failure", "--out",
                              tmp_path / "t")
  assert code == 0, err
  assert f"bounds from {rt}" in stdout


def test_disciplined_command(capsys, tmp_path):
  out = tmp_path / "d"
  code, stdout, err = run_cli(capsys, "disciplined", "--width", "8",
                              "--no-progress", "--weight-decays", "0,1e-3",
                              "--steps", "100", "--start-lr", "1e-3",
                              "--out", out)
  assert code == 0, err
  assert "choice: weight_decay=" in stdout
  assert (out / "weight_decay.png").stat().st_size > 5000
  result = json.loads((out / "results.json").read_text())
  # The first step of Smith's recipe only (no grid, no batch sizes), and
  # the README says so.
  assert result["type"] == "WeightDecayRangeTestResult"
  assert sorted(p.name for p in out.iterdir() if p.suffix == ".json") == [
      "config.json", "environment.json", "results.json"]
  readme = " ".join(README.read_text().split())
  assert "`optax-clr disciplined` runs its first step only" in readme
  code, _, err = run_cli(capsys, "disciplined", "--weight-decays", "0,-1",
                         "--out", tmp_path / "bad")
  assert code == 2
  assert "--weight-decays[1] must be in [0, inf), got -1" in one_line(err)
  assert not os.path.exists(tmp_path / "bad")


# --- fit, and train --auto-bounds (the same run) ---------------------------------


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
  """``fit`` and ``train --auto-bounds`` with the same flags: name ->
  (exit code, stdout, stderr, run directory)."""
  import contextlib
  import io
  runs = {}
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("OPTAX_CLR_CACHE_DIR", "")
    for name, command in (("fit", "fit"), ("auto", "train --auto-bounds")):
      out = tmp_path_factory.mktemp(name) / "run"
      stdout, stderr = io.StringIO(), io.StringIO()
      with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(
          stderr):
        code = cli.main([*command.split(), *TINY, "--epochs", "2", "--out",
                         str(out)])
      runs[name] = (code, stdout.getvalue(), stderr.getvalue(), out)
  return runs


def read(out, name):
  return json.loads((out / name).read_text())


def test_fit_prints_the_evidence_and_writes_the_survivor_as_a_training_run(
    fitted):
  code, stdout, err, out = fitted["fit"]
  assert code == 0, err
  assert "<- survivor" in stdout and "cost:" in stdout
  table = read(out, "fit.json")["table"]
  assert len(table) == 12 and sum(r["survivor"] for r in table) == 1
  history = read(out, "results.json")
  assert history["type"] == "TrainHistory"
  assert len(history["losses"]) == 2 * (1438 // 32)  # the budget, trained once
  assert read(out, "range_test.json")["type"] == "RangeTestResult"
  for name in ("results.csv", "schedule.png", "training.png",
               "checkpoint.msgpack"):
    assert (out / name).stat().st_size > 0, name
  survivor = next(r for r in table if r["survivor"])
  assert read(out, "config.json")["resolved"]["policy"] == survivor["policy"]


def test_train_auto_bounds_is_the_fit_run(fitted):
  (code_a, _, err_a, a), (code_b, _, err_b, b) = fitted["fit"], fitted["auto"]
  assert code_a == code_b == 0, (err_a, err_b)
  assert read(a, "fit.json")["table"] == read(b, "fit.json")["table"]
  assert read(a, "results.json")["losses"] == read(b, "results.json")[
      "losses"]
  assert sorted(p.name for p in a.iterdir()) == sorted(
      p.name for p in b.iterdir())


def test_fit_schedule_ends_at_a_cycle_end(fitted):
  _, _, err, out = fitted["fit"]
  resolved = read(out, "config.json")["resolved"]
  n, cycles, length = (resolved["num_steps"], resolved["cycles"],
                       resolved["cycle_steps"])
  assert n == 2 * (1438 // 32) and cycles * length <= n
  lrs = np.asarray(read(out, "results.json")["lrs"])
  # The survivor's LR ends its last cycle at that cycle's lowest value.
  assert lrs[-1] == pytest.approx(lrs[(cycles - 1) * length:].min())
  assert "mid-cycle" not in err


# --- exit codes: README's "Nothing lost, nothing crashes" ----------------------

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_and_help_document_the_same_exit_codes(capsys):
  text = README.read_text()
  start = text.index("**Nothing lost, nothing crashes.**")
  paragraph = text[start:text.index("\n\n", start)]
  documented = {int(x) for x in re.findall(r"(?:exit|status) (\d+)",
                                           paragraph)}
  assert documented == {1, 2, 130}
  code, out, _ = run_cli(capsys, "--help")
  assert code == 0
  for fragment in ("1 failed", "2 usage error", "130 interrupted"):
    assert fragment in " ".join(out.split())


@pytest.mark.parametrize("args, fragment", [
    (["range-test", "--data", "digit"], "unknown dataset spec"),
    (["range-test", "--data", "mnist:/nonexistent"], "/nonexistent"),
    (["train", "--bounds-from", "runs/nonexistent"], "runs/nonexistent"),
    (["fit", "--epochs", "two"], "--epochs must be an integer"),
])
def test_a_bad_flag_file_or_value_exits_2_before_writing(
    capsys, tmp_path, monkeypatch, args, fragment):
  monkeypatch.chdir(tmp_path)
  code, _, err = run_cli(capsys, *args, "--out", tmp_path / "out")
  assert code == 2 and fragment in one_line(err)
  assert list(tmp_path.iterdir()) == []


def test_a_range_test_too_short_to_answer_names_steps_and_exits_1(capsys,
                                                                  tmp_path):
  out = tmp_path / "rt"
  code, stdout, err = run_cli(capsys, "range-test", *TINY, "--steps", "5",
                              "--out", out)
  assert code == 1
  line = one_line(err)
  assert "--steps 5 is too short" in line and str(out) in line
  assert "CLR bounds: none" in stdout
  assert read(out, "results.json")["type"] == "RangeTestResult"


def test_ctrl_c_exits_130_after_writing_what_was_computed(capsys, tmp_path,
                                                          monkeypatch):
  from optax_clr import _progress
  report = _progress.Bar.__call__

  def pressed_after_epoch_one(self, done, *args):
    report(self, done, *args)
    if done == 1:  # the epochs bar (library bars stay off: --no-progress)
      signal.raise_signal(signal.SIGINT)  # the first Ctrl-C: stop at a chunk
  monkeypatch.setattr(_progress.Bar, "__call__", pressed_after_epoch_one)
  out = tmp_path / "t"
  code, _, err = run_cli(capsys, "train", *TINY, "--base-lr", "0.01",
                         "--max-lr", "0.1", "--step-size", "1", "--epochs",
                         "4", "--out", out)
  assert code == 130
  assert one_line(err).startswith("optax-clr: error: interrupted")
  history = read(out, "results.json")
  assert history["stop_reason"] == "interrupted"
  assert history["eval_steps"] == [1438 // 32]  # epoch 1, whole
  assert not (out / ".optax-clr.lock").exists()


# --- what a run writes and says --------------------------------------------------

CLR = ["--base-lr", "0.01", "--max-lr", "0.1"]


def test_the_wrote_line_lists_every_file_with_the_model(capsys, tmp_path):
  out = tmp_path / "t"
  code, stdout, err = run_cli(capsys, "train", *TINY, *CLR, "--step-size",
                              "0.5", "--epochs", "1", "--out", out)
  assert code == 0, err
  wrote = next(l for l in stdout.splitlines() if l.startswith("wrote "))
  assert "checkpoint.msgpack" in wrote
  assert sorted(wrote.split(": ", 1)[1].split(", ")) == sorted(
      p.name for p in out.iterdir())


def test_every_file_a_run_writes_gets_the_umask_mode(capsys, tmp_path):
  out = tmp_path / "t"
  old = os.umask(0o022)
  try:
    code, _, err = run_cli(capsys, "train", *TINY, *CLR, "--step-size",
                           "0.5", "--epochs", "1", "--out", out)
  finally:
    os.umask(old)
  assert code == 0, err
  modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode))
           for p in out.iterdir()}
  assert "checkpoint.msgpack" in modes and "results.json" in modes
  assert set(modes.values()) == {oct(0o644)}, modes


def test_bounds_from_a_diverged_range_test_names_the_file_once(capsys,
                                                               tmp_path):
  from optax_clr import results
  run = tmp_path / "rt"
  run.mkdir()
  losses = [2.3, 2.3, 40.0, float("nan")]  # blew up at once: no bounds
  results.RangeTestResult(
      lrs=[1e-3, 1e-2, 1e-1, 1.0], losses=losses, smoothed_losses=losses,
      stop_reason="nonfinite").to_json(run / "results.json")
  code, _, err = run_cli(capsys, "train", "--bounds-from", run, "--out",
                         tmp_path / "t")
  assert code == 2
  line = one_line(err)
  assert str(run / "results.json") in line
  assert line.count("no CLR bounds") == 1


@pytest.mark.parametrize("epochs", [3, 4])
def test_train_warns_when_its_schedule_ends_mid_cycle(capsys, tmp_path,
                                                      epochs):
  # --step-size 1: a cycle is 2 epochs; 3 epochs end in the middle of one.
  code, _, err = run_cli(capsys, "train", *TINY, *CLR, "--step-size", "1",
                         "--epochs", epochs, "--allow-failure",
                         "--no-save-model", "--out", tmp_path / "t")
  assert code == 0, err
  if epochs == 3:
    assert ("--epochs 3 ends mid-cycle: 1.5 cycles in 3 epochs" in err
            and "--epochs 2 or 4 would end at a cycle end" in err)
  else:
    assert "mid-cycle" not in err


# --- help answers at once --------------------------------------------------------

IMPORTS_OF_HELP = """
import sys
import optax_clr
before = set(sys.modules)
from optax_clr import cli
assert cli.main(["--help"]) == 0 and cli.main(["train", "--bogus"]) == 2
new = set(sys.modules) - before
print(" ".join(sorted(m for m in new if m.split(".")[0] not in (
    "optax_clr", "click") and m.split(".")[0] not in sys.stdlib_module_names)))
print(" ".join(m for m in ("jax", "flax", "optax", "matplotlib")
               if m in sys.modules))
"""


def _imports_of_help():
  root = str(pathlib.Path(__file__).resolve().parents[1])
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  proc = subprocess.run([sys.executable, "-c", IMPORTS_OF_HELP],
                        capture_output=True, text=True, env=env, timeout=120)
  assert proc.returncode == 0, proc.stderr
  return proc.stdout.split("\n")[-3:-1]  # after the help text


def test_help_and_usage_errors_import_nothing_beyond_the_package():
  added, _ = _imports_of_help()
  assert added == ""  # the CLI itself: click and the standard library


def test_help_does_not_import_jax():
  _, heavy = _imports_of_help()
  assert heavy == ""
