"""The command line's run directories, exit codes, machine-readable output
and the commands added on top of the range test (seeds, auto bounds, the
disciplined recipe), end to end on tiny settings."""

import json
import os

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
  # At LR 1e6 the CNN either turns NaN or dies at chance: both are failures.
  assert history["status"] in ("diverged", "stalled")
  assert f"training {history['status']}" in line
  assert "--allow-failure" in line
  if history["status"] == "diverged":
    assert history["stop_reason"] == "nonfinite"
  code, _, err = run_cli(capsys, "train", *TINY, "--policy", "fixed",
                         "--lr", "1e6", "--epochs", "1", "--out",
                         tmp_path / "t2", "--allow-failure")
  assert code == 0 and "warning: training " in err


def test_classic_steps_below_two_name_the_flag(capsys, tmp_path):
  code, _, err = run_cli(capsys, "range-test", "--steps", "1", "--out",
                         tmp_path / "x")
  assert code == 2
  assert "--steps must be >= 2 for the classic test" in one_line(err)


def test_library_errors_name_flags(capsys, tmp_path):
  code, _, err = run_cli(capsys, "train", *TINY, "--policy", "one-cycle",
                         "--max-lr", "1e30", "--div-factor", "1e-10",
                         "--epochs", "1", "--out", tmp_path / "x")
  assert code == 1
  line = one_line(err)
  assert "--div-factor" in line and "div_factor" not in line


# --- commands ------------------------------------------------------------------


def test_range_test_over_seeds_reports_medians(capsys, tmp_path):
  out = tmp_path / "seeds"
  code, stdout, err = run_cli(capsys, "range-test", *TINY, "--seeds", "3",
                              "--steps", "40", "--start-lr", "1e-3",
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
  assert run_cli(capsys, "range-test", *TINY, "--steps", "60", "--start-lr",
                 "1e-3", "--out", rt)[0] == 0
  code, stdout, err = run_cli(capsys, "train", *TINY, "--bounds-from", rt,
                              "--epochs", "1", "--allow-failure", "--out",
                              tmp_path / "t")
  assert code == 0, err
  assert f"bounds from {rt}" in stdout


def test_auto_bounds_confirms_candidates_before_training(capsys, tmp_path):
  out = tmp_path / "auto"
  code, stdout, err = run_cli(capsys, "train", *TINY, "--auto-bounds",
                              "--epochs", "2", "--step-size", "1",
                              "--allow-failure", "--out", out)
  assert code == 0, err
  assert "chosen:" in stdout and "<- chosen" in stdout
  confirmation = json.loads((out / "confirmation.json").read_text())
  assert sum(r["chosen"] for r in confirmation["table"]) == 1
  assert (out / "range_test.json").exists()
  assert json.loads((out / "results.json").read_text())["type"] == (
      "TrainHistory")


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
  assert result["type"] == "WeightDecayRangeTestResult"
  code, _, err = run_cli(capsys, "disciplined", "--weight-decays", "0,-1",
                         "--out", tmp_path / "bad")
  assert code == 2
  assert "--weight-decays must be numbers >= 0, got -1" in one_line(err)
  assert not os.path.exists(tmp_path / "bad")
