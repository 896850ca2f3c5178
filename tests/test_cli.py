"""The `optax-clr` command line, end to end on tiny settings.

Every command runs in-process through ``cli.main(argv)`` (the console
script's entry point), so jax is imported and compiled code is cached once
for the whole file; one test runs the real ``python -m optax_clr`` process.
"""

import json
import os
import pathlib
import runpy
import subprocess
import sys
import time

import numpy as np
import pytest

from optax_clr import cli

from _devices import forced_devices


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


@pytest.mark.parametrize("command", ["range-test", "train", "fit",
                                     "plot-schedule", "disciplined", "demo"])
def test_every_command_has_help_with_defaults(capsys, command):
  code, out, err = run_cli(capsys, command, "--help")
  assert code == 0, err
  assert out.startswith(f"Usage: optax-clr {command} [OPTIONS]")
  assert "--out" in out
  assert "[default: " in out


def test_no_command_prints_the_command_list(capsys):
  code, out, _ = run_cli(capsys)
  assert code == 0
  for command in ("range-test", "train", "fit", "plot-schedule",
                  "disciplined", "demo"):
    assert command in out


BAD_USAGE = [
    (["train", "--policy", "foo", "--base-lr", "0.01", "--max-lr", "0.1"],
     ["--policy", "'foo' is not one of"]),
    (["train", "--base-lr", "-1", "--max-lr", "0.1"],
     ["--base-lr must be > 0, got -1"]),
    (["train", "--base-lr", "0.5", "--max-lr", "0.1"],
     ["--base-lr must be <= --max-lr", "0.5", "0.1"]),
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
     ["--base-lr must be <= --max-lr"]),
    (["plot-schedule", "--gamma", "1.5"], ["--gamma must be <= 1, got 1.5"]),
    (["demo", "--epochs", "0"], ["--epochs must be >= 1, got 0"]),
    (["no-such-command"], ["No such command 'no-such-command'"]),
    # Options the chosen mode would silently ignore are refused.
    (["range-test", "--parallel", "4", "--start-lr", "1e-5"],
     ["--start-lr: only for the classic test"]),
    (["range-test", "--min-lr", "0.1"], ["--min-lr: only with --parallel"]),
    (["train", "--base-lr", "0.01", "--max-lr", "0.1", "--gamma", "0.9"],
     ["--gamma: not used by --policy triangular"]),
    (["train", "--policy", "fixed", "--lr", "0.1", "--max-lr", "1"],
     ["--max-lr: not used by --policy fixed"]),
    (["train", "--base-lr", "0.01", "--max-lr", "0.1", "--lr", "0.05"],
     ["--lr: not used by --policy triangular"]),
    (["train", "--policy", "one-cycle", "--max-lr", "1", "--step-size", "2"],
     ["--step-size: not used by --policy one-cycle"]),
    (["train", "--base-lr", "0.01", "--max-lr", "0.1", "--three-phase"],
     ["--three-phase: not used by --policy triangular"]),
    (["train", "--policy", "one-cycle", "--max-lr", "1", "--base-lr", "0.1",
      "--div-factor", "5"], ["give --base-lr or --div-factor"]),
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


def test_missing_results_file_is_one_line_and_exit_2(capsys, tmp_path):
  missing = tmp_path / "nope.json"
  code, _, err = run_cli(capsys, "train", "--bounds-from", missing, "--out",
                         tmp_path / "out")
  assert code == 2
  assert not (tmp_path / "out").exists()
  assert_one_line_error(err, str(missing), "No such file")


@pytest.mark.parametrize("content, fragment", [
    ("not json at all", "invalid JSON"),
    ('{"lrs": [1, 2]}', "not an optax-clr results file"),
    ('[1, 2, 3]', "not an optax-clr results file"),
    ('{"type": "RangeTestResult", "lrs": [0.1, 0.2]}',
     "missing the field 'losses'"),
    ('{"type": "RangeTestResult", "lrs": [0.2, 0.1], "losses": [1, 2], '
     '"smoothed_losses": [1, 2], "stop_reason": "completed"}',
     "strictly increasing"),
])
def test_malformed_results_file_is_one_line_and_exit_2(capsys, tmp_path,
                                                       content, fragment):
  bad = tmp_path / "results.json"
  bad.write_text(content)
  code, _, err = run_cli(capsys, "train", "--bounds-from", bad, "--out",
                         tmp_path / "out")
  assert code == 2
  assert_one_line_error(err, str(bad), fragment)


@pytest.mark.parametrize("spec, fragment", [
    ("digit", "unknown dataset spec"),
    ("mnist:/no/such/dir", "/no/such/dir"),
    ("npz:/no/such/file.npz", "/no/such/file.npz"),
    ("imagenet:/data", "unknown dataset spec"),
])
def test_bad_dataset_is_one_line_and_exit_2(capsys, tmp_path, spec,
                                            fragment):
  code, _, err = run_cli(capsys, "range-test", "--data", spec, "--out",
                         tmp_path / "out", "--steps", "5")
  assert code == 2
  assert not (tmp_path / "out").exists()
  assert_one_line_error(err, fragment)


def test_malformed_npz_names_the_file(capsys, tmp_path):
  bad = tmp_path / "data.npz"
  np.savez(bad, images=np.zeros((4, 8, 8, 1)), labels=np.zeros(4))
  code, _, err = run_cli(capsys, "range-test", "--data", f"npz:{bad}",
                         "--out", tmp_path / "out", "--steps", "5")
  assert code == 2
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


# ----------------------------------------------------------------------------
# Commands end to end, on tiny settings (width 4, a few steps).

TINY = ["--width", "4", "--batch-size", "32", "--no-progress"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _no_compilation_cache(monkeypatch):
  # The persistent cache would change jax's global config for every later
  # test in this process; the CLI's own use of it is tested in a subprocess.
  monkeypatch.setenv("OPTAX_CLR_CACHE_DIR", "")


def read_json(path: pathlib.Path):
  return json.loads(path.read_text())


def csv_rows(path: pathlib.Path) -> list[list[str]]:
  return [line.split(",") for line in path.read_text().splitlines()]


def assert_png(path: pathlib.Path) -> None:
  data = path.read_bytes()
  assert data[:8] == PNG_MAGIC, path
  assert len(data) > 5000, (path, len(data))  # axes, curves, labels


def assert_run_files(out: pathlib.Path, command: str, **options) -> dict:
  config = read_json(out / "config.json")
  assert config["command"] == command
  for key, value in options.items():
    assert config["options"][key] == value, key
  assert config["wall_time_s"] > 0
  env = read_json(out / "environment.json")
  for key in ("python", "jax", "optax", "flax", "backend", "device_count",
              "device_kind", "platform", "cpu_count"):
    assert env[key] is not None, key
  assert env["backend"] == "cpu"
  return config


def test_range_test_classic_prints_suggestions_and_writes_results(
    capsys, tmp_path):
  out = tmp_path / "rt"
  # 120 steps over 5 decades: the resolution the loss rule needs for bounds.
  code, stdout, err = run_cli(capsys, "range-test", *TINY, "--steps", "120",
                              "--start-lr", "1e-4", "--end-lr", "10",
                              "--eval-every", "30", "--out", out)
  assert code == 0, err
  assert_run_files(out, "range-test", steps=120, start_lr=1e-4,
                   eval_every=30)
  result = read_json(out / "results.json")
  assert result["type"] == "RangeTestResult"
  n = len(result["lrs"])
  assert 2 <= n <= 120
  assert result["lrs"][0] == pytest.approx(1e-4, rel=1e-5)
  assert len(result["eval_steps"]) >= 1  # --eval-every reached the library
  rows = csv_rows(out / "results.csv")
  assert rows[0][:4] == ["step", "lr", "loss", "smoothed_loss"]
  assert len(rows) - 1 >= n
  assert_png(out / "range_test.png")
  for method in ("steepest", "minimum/10", "valley", "accuracy_base",
                 "CLR bounds"):
    assert method in stdout
  assert f"stopped: {result['stop_reason']} after {n} steps" in stdout


def test_range_test_parallel_sweeps_k_lrs(capsys, tmp_path):
  out = tmp_path / "sweep"
  # 30 steps: long enough for some LR to train (8 steps leave every run
  # stalled, which the sweep reports with exit 1).
  code, stdout, err = run_cli(capsys, "range-test", *TINY, "--parallel", "4",
                              "--min-lr", "1e-3", "--max-lr", "1",
                              "--steps", "30", "--out", out)
  assert code == 0, err
  assert_run_files(out, "range-test", parallel=4)
  result = read_json(out / "results.json")
  assert result["type"] == "ParallelSweepResult"
  np.testing.assert_allclose(result["lrs"], np.geomspace(1e-3, 1, 4),
                             rtol=1e-5)
  assert np.asarray(result["losses"]).shape == (4, 30)
  rows = csv_rows(out / "results.csv")
  assert rows[0][:4] == ["lr", "status", "final_loss", "mean_loss"]
  assert len(rows) == 1 + 4
  assert_png(out / "range_test.png")
  assert "best fixed LR:" in stdout


def write_npz(path: pathlib.Path, n: int = 96, size: int = 12,
              classes: int = 3) -> None:
  rng = np.random.default_rng(0)
  np.savez(path, x=rng.random((n, size, size, 3)).astype(np.float32),
           y=rng.integers(0, classes, n))


@pytest.mark.parametrize("model", [
    "cnn", pytest.param("resnet", marks=pytest.mark.slow)])
def test_range_test_on_colour_images_from_an_npz_file(capsys, tmp_path,
                                                      model):
  write_npz(tmp_path / "colour.npz")
  out = tmp_path / "rt"
  code, stdout, err = run_cli(
      capsys, "range-test", "--data", f"npz:{tmp_path / 'colour.npz'}",
      "--model", model, "--width", "4", "--batch-size", "16", "--steps", "6",
      "--no-progress", "--out", out)
  assert code == 1, err  # 6 steps give no bounds: exit 1, the run written
  assert "(12, 12, 3), 77 train / 19 val" in stdout
  assert f"model: {model}" in stdout
  assert len(read_json(out / "results.json")["lrs"]) == 6


def write_range_test_result(path: pathlib.Path):
  """A synthetic range test whose loss rule gives known CLR bounds."""
  from optax_clr import results
  lrs = np.geomspace(1e-4, 1.0, 100)  # 25 per decade: resolution enough
  x = np.log10(lrs)
  loss = 2.3 - 1.5 / (1 + np.exp(-4 * (x + 2))) + 3 * np.maximum(x + 0.5, 0)
  result = results.RangeTestResult(lrs=lrs, losses=loss,
                                   smoothed_losses=loss,
                                   stop_reason="completed")
  result.to_json(path)
  return result.suggest()


def test_train_takes_clr_bounds_from_a_results_file(capsys, tmp_path):
  bounds = tmp_path / "results.json"
  suggested = write_range_test_result(bounds)
  assert 0 < suggested.base_lr < suggested.max_lr
  out = tmp_path / "train"
  code, stdout, err = run_cli(
      capsys, "train", *TINY, "--policy", "triangular2", "--bounds-from",
      bounds, "--epochs", "2", "--step-size", "0.5", "--out", out)
  assert code == 0, err
  config = assert_run_files(out, "train", policy="triangular2", epochs=2)
  resolved = config["resolved"]
  assert resolved["base_lr"] == pytest.approx(suggested.base_lr)
  assert resolved["max_lr"] == pytest.approx(suggested.max_lr)
  per_epoch = 1438 // 32
  assert resolved["steps_per_epoch"] == per_epoch
  assert resolved["step_size_up"] == round(0.5 * per_epoch)
  history = read_json(out / "results.json")
  assert len(history["steps"]) == 2 * per_epoch
  assert history["eval_steps"] == [per_epoch, 2 * per_epoch]
  assert len(history["eval_metrics"]["accuracy"]) == 2
  lr = np.asarray(history["lrs"])
  assert lr.min() == pytest.approx(suggested.base_lr, rel=1e-5)
  assert lr.max() <= suggested.max_lr * (1 + 1e-6)
  momentum = np.asarray(history["momenta"])
  assert momentum.max() == pytest.approx(0.9) and momentum.min() < 0.9
  assert len(csv_rows(out / "results.csv")) == 1 + 2 * per_epoch
  assert_png(out / "schedule.png")
  assert_png(out / "training.png")
  assert "epoch 1/2" in stdout and "epoch 2/2" in stdout
  assert "val_accuracy" in stdout
  assert "final val accuracy" in stdout


@pytest.mark.parametrize("extra, expected", [
    (["--policy", "one-cycle", "--max-lr", "0.5"],
     {"policy": "one-cycle", "max_lr": 0.5, "initial_lr": 0.02,
      "base_momentum": 0.85, "max_momentum": 0.95}),
    (["--policy", "fixed", "--lr", "0.05", "--momentum", "0.8"],
     {"policy": "fixed", "lr": 0.05, "momentum": 0.8}),
    (["--policy", "fixed", "--lr", "0.05", "--momentum", "0.8",
      "--optimizer", "adam"],
     {"policy": "fixed", "lr": 0.05, "momentum": 0.8}),  # b1 = 0.8
])
def test_train_one_cycle_and_fixed(capsys, tmp_path, extra, expected):
  out = tmp_path / "train"
  code, _, err = run_cli(capsys, "train", *TINY, "--epochs", "1", *extra,
                         "--out", out)
  assert code == 0, err
  resolved = assert_run_files(out, "train")["resolved"]
  for key, value in expected.items():
    assert resolved[key] == pytest.approx(value), key
  history = read_json(out / "results.json")
  if expected["policy"] == "fixed":
    np.testing.assert_allclose(history["lrs"], 0.05, rtol=1e-6)
    np.testing.assert_allclose(history["momenta"], 0.8, rtol=1e-6)
  else:  # PyTorch OneCycleLR: step 0 at max / 25, momentum at its max
    assert history["lrs"][0] == pytest.approx(0.02, rel=1e-5)
    assert history["momenta"][0] == pytest.approx(0.95, rel=1e-6)
    assert max(history["lrs"]) <= 0.5 * (1 + 1e-6)


def test_train_checkpoints_and_resumes(capsys, tmp_path):
  ckpt = tmp_path / "ckpt"
  common = [*TINY, "--policy", "triangular", "--base-lr", "0.01",
            "--max-lr", "0.1", "--step-size", "1", "--checkpoint-dir", ckpt]
  code, _, err = run_cli(capsys, "train", *common, "--epochs", "1", "--out",
                         tmp_path / "first")
  assert code == 0, err
  assert any(ckpt.iterdir())
  code, _, err = run_cli(capsys, "train", *common, "--epochs", "2", "--out",
                         tmp_path / "second")
  assert code == 0, err
  first = read_json(tmp_path / "first" / "results.json")
  second = read_json(tmp_path / "second" / "results.json")
  assert second["eval_steps"] == [44, 88]
  assert second["losses"][:44] == first["losses"]  # epoch 1 restored
  # A different schedule may not continue this checkpoint.
  code, _, err = run_cli(capsys, "train", *common[:-2], "--max-lr", "0.2",
                         "--checkpoint-dir", ckpt, "--epochs", "4", "--out",
                         tmp_path / "third")
  assert code == 1
  assert_one_line_error(err, "different run")


def test_plot_schedule_draws_several_policies(capsys, tmp_path):
  out = tmp_path / "plot"
  code, stdout, err = run_cli(
      capsys, "plot-schedule", "--policy", "triangular", "--policy",
      "triangular2", "--policy", "exp_range", "--policy", "one-cycle",
      "--steps", "400", "--step-size", "50", "--base-lr", "0.001",
      "--max-lr", "0.006", "--waveform", "cosine", "--out", out)
  assert code == 0, err
  assert_run_files(out, "plot-schedule", steps=400, step_size=50)
  rows = csv_rows(out / "schedule.csv")
  header = rows[0]
  assert header[0] == "step" and len(rows) == 1 + 400
  col = {name: i for i, name in enumerate(header)}
  at = lambda name, step: float(rows[1 + step][col[name]])  # noqa: E731
  tri, tri2 = "lr[triangular (cosine)]", "lr[triangular2 (cosine)]"
  assert at(tri, 0) == pytest.approx(0.001)
  assert at(tri, 50) == pytest.approx(0.006)     # peak after one step size
  assert at(tri, 25) == pytest.approx(0.0035)    # cosine: half way at 1/2
  assert at(tri2, 150) == pytest.approx(0.0035)  # 2nd cycle: half amplitude
  assert at("momentum[triangular (cosine)]", 50) == pytest.approx(0.8)
  assert at("lr[one-cycle]", 0) == pytest.approx(0.006 / 25)
  assert at("momentum[one-cycle]", 0) == pytest.approx(0.95)
  assert_png(out / "schedule.png")
  summary = read_json(out / "results.json")["summary"]
  assert set(summary) == {"triangular (cosine)", "triangular2 (cosine)",
                          "exp_range (cosine)", "one-cycle"}
  assert "one-cycle" in stdout


def test_demo_quick_compares_clr_with_the_best_fixed_lr(capsys, tmp_path):
  out = tmp_path / "demo"
  code, stdout, err = run_cli(capsys, "demo", "--quick", "--no-progress",
                              "--out", out)
  assert code == 0, err
  assert_run_files(out, "demo", quick=True)
  for name in ("range_test.json", "range_test.csv", "sweep.json",
               "sweep.csv", "history_clr.json", "history_fixed.json",
               "comparison.csv", "results.json"):
    assert (out / name).stat().st_size > 0, name
  for name in ("range_test.png", "sweep.png", "schedule.png",
               "training.png"):
    assert_png(out / name)
  results = read_json(out / "results.json")
  assert results["type"] == "RunSummary"
  assert results["parts"]["range_test"] == "range_test.json"
  summary = results["summary"]
  base, top = summary["range_test"]["base_lr"], summary["range_test"]["max_lr"]
  assert results["bounds"]["base_lr"] == base
  assert 0 < base < top
  assert summary["sweep"]["best_lr"] in summary["sweep"]["lrs"]
  assert set(summary["runs"]) == {"CLR triangular2",
                                  f"fixed LR {summary['sweep']['best_lr']:.2e}"}
  rows = csv_rows(out / "comparison.csv")
  assert rows[0] == ["run", "iterations_to_target", "final_val_accuracy",
                     "best_val_accuracy", "wall_time_s"]
  assert len(rows) == 3
  fixed = rows[2]
  assert fixed[1] != ""  # the fixed run reaches its own best by definition
  for step in ("[1/4]", "[2/4]", "[3/4]", "[4/4]", "iterations to target"):
    assert step in stdout


@pytest.mark.slow
def test_full_demo_runs(capsys, tmp_path):
  code, stdout, err = run_cli(capsys, "demo", "--no-progress", "--out",
                              tmp_path / "demo")
  assert code == 0, err
  assert "demo wall time" in stdout


def test_progress_bar_shows_the_callback_metrics(capsys):
  from optax_clr import _progress
  bar = _progress.Bar("sweep", total=10)
  bar(4, 10, {"loss": 1.2345, "lr": np.float32(0.01)})
  bar.close()
  err = capsys.readouterr().err
  assert "4/10" in err
  assert "loss=1.23" in err and "lr=0.01" in err


def test_progress_bar_redraws_while_no_chunk_finishes(capsys):
  from optax_clr import _progress
  bar = _progress.Bar("sweep", total=10)
  bar(1, 10)
  capsys.readouterr()
  time.sleep(3 * _progress.REFRESH_SECONDS + 0.2)
  redraws = capsys.readouterr().err.count("1/10")
  bar.close()
  assert redraws >= 2  # at least once a second, without a new count


def test_progress_is_off_without_a_terminal_or_with_no_progress(monkeypatch):
  class Tty:
    def isatty(self):
      return True
  monkeypatch.setattr(sys, "stderr", Tty())
  assert cli.progress_enabled(False)
  assert not cli.progress_enabled(True)
  with open(os.devnull, "w") as devnull:
    monkeypatch.setattr(sys, "stderr", devnull)
    assert not cli.progress_enabled(False)


def test_compilation_cache_fills_in_a_real_process(tmp_path):
  root = str(pathlib.Path(__file__).resolve().parents[1])
  cache = tmp_path / "cache"
  env = dict(os.environ, JAX_PLATFORMS="cpu", OPTAX_CLR_CACHE_DIR=str(cache),
             PYTHONPATH=os.pathsep.join(
                 [root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  proc = subprocess.run(
      [sys.executable, "-m", "optax_clr", "plot-schedule", "--steps", "20",
       "--step-size", "5", "--policy", "triangular", "--no-momentum",
       "--out", str(tmp_path / "out")], capture_output=True, text=True,
      env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert (tmp_path / "out" / "schedule.png").exists()
  assert any(cache.iterdir())
  # OPTAX_CLR_CACHE_DIR holds compiled programs (xla/) and autotuning.
  assert read_json(tmp_path / "out" / "config.json")[
      "compilation_cache"] == str(cache / "xla")


# ----------------------------------------------------------------------------
# Examples (quick variants; the full runs are slow, and --update-docs, which
# rewrites the committed docs/img figures, is never run by the tests).

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args):
  namespace = runpy.run_path(str(EXAMPLES / f"{name}.py"),
                             run_name=f"example_{name}")
  return namespace["main"]([str(a) for a in args])


def example_env() -> dict:
  root = str(EXAMPLES.parent)
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join(
                 [root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  env.pop("XLA_FLAGS", None)
  return env


def test_schedules_gallery_example_draws_every_policy(capsys, tmp_path):
  paths = run_example("schedules_gallery", "--quick", "--out", tmp_path)
  assert paths == [tmp_path / "schedules.png"]
  assert_png(tmp_path / "schedules.png")
  gallery = runpy.run_path(str(EXAMPLES / "schedules_gallery.py"),
                           run_name="x")["gallery"](50, 400)
  assert {"triangular", "triangular2", "exp_range", "exp_range, decay_bounds",
          "triangular, cosine", "triangular, welch", "one-cycle",
          "one-cycle, three phases"} <= set(gallery)


def test_train_loop_example_logs_the_scheduled_lr_and_momentum(capsys,
                                                               tmp_path):
  from optax_clr import TrainHistory
  history = run_example("train_loop", "--quick", "--out", tmp_path)
  per_epoch = 1438 // 64
  assert history.lrs.shape == (2 * per_epoch,)
  # triangular2 with a one-epoch step size: base at 0, peak after an epoch.
  assert history.lrs[0] == pytest.approx(0.05)
  assert history.lrs[per_epoch] == pytest.approx(0.2)
  assert history.momenta[per_epoch] == pytest.approx(0.8)
  assert list(history.eval_steps) == [per_epoch, 2 * per_epoch]
  assert "val_acc" in capsys.readouterr().out
  assert TrainHistory.from_json(tmp_path / "history.json") == history
  assert_png(tmp_path / "history.png")


def test_range_test_example_plots_the_curve(capsys, tmp_path):
  result = run_example("range_test", "--quick", "--out", tmp_path)
  assert result.num_steps <= 60 and len(result.eval_steps) >= 1
  assert_png(tmp_path / "range_test.png")
  out = capsys.readouterr().out
  # The suggestions' table, with the CLR bounds (or "none") and the rule.
  assert str(result.suggest()) in out and "CLR bounds" in out
  assert (tmp_path / "range_test.json").exists()


def test_adapt_existing_training_example_needs_no_model_changes(capsys,
                                                                tmp_path):
  # A dict batch with two inputs, a regression loss, a generator of batches,
  # accumulation and bf16, in both range tests.
  result, sweep = run_example("adapt_existing_training", "--quick", "--out",
                              tmp_path)
  assert 2 <= result.num_steps <= 20
  assert result.config["accumulation_steps"] == 4
  assert "mae" in result.eval_metrics
  assert sweep.lrs.shape == (8,) and "mae" in sweep.eval_metrics
  assert np.isfinite(sweep.mean_loss[~sweep.diverged]).all()
  out = capsys.readouterr().out
  assert out.startswith("classic:") and "parallel on" in out
  best = sweep.suggest().best
  assert best.lr is None or f"best fixed LR {best.lr:.3g}" in out
  for name in ("range_test.json", "range_test.png", "sweep.json",
               "sweep.png"):
    assert (tmp_path / name).exists(), name


@pytest.mark.slow  # ~10 s of compilation; the demo test covers the same path
def test_clr_vs_fixed_example_trains_three_runs(capsys, tmp_path):
  histories = run_example("clr_vs_fixed", "--quick", "--out", tmp_path)
  assert len(histories) == 3
  for history, _ in histories.values():
    assert len(history.eval_steps) == 3
  assert_png(tmp_path / "clr_vs_fixed.png")
  assert_png(tmp_path / "range_test.png")


@pytest.mark.slow  # ~2 min on 2 cores: 18 short training runs
def test_clr_evidence_example_chooses_by_library_rules(capsys, tmp_path):
  report = run_example("clr_evidence", "--quick", "--out", tmp_path)
  for opt in ("sgd", "adam"):
    chosen = report["choices"][opt]
    assert 0 < chosen["base_lr"] < chosen["max_lr"]
    assert chosen["fixed_lr"] in chosen["sweep"]["lrs"]
  assert set(report["runs"]) == {
      "sgd/fixed", "sgd/triangular2", "sgd/one-cycle", "sgd/schedule-free",
      "adam/fixed", "adam/triangular2", "adam/one-cycle",
      "adam/schedule-free", "adam/prodigy"}
  assert {r["verdict"] for r in report["summary"]} <= {
      "better", "worse", "same", "-"}
  for suffix in ("json", "csv", "md"):
    assert (tmp_path / f"clr_evidence.{suffix}").stat().st_size > 0
  assert_png(tmp_path / "clr_evidence.png")


@pytest.mark.slow  # ~30 s: three compiled sweeps and two training runs
def test_disciplined_example_runs_smiths_recipe(capsys, tmp_path):
  recipe, grid, sizes, histories = run_example("disciplined", "--quick",
                                               "--out", tmp_path)
  assert recipe.weight_decay in (0.0, 1e-3)
  assert 0 < recipe.base_lr < recipe.max_lr
  assert (recipe.base_momentum, recipe.max_momentum) == (0.85, 0.95)
  assert grid.num_configs == 3 * 2  # 3 LRs x 2 weight decays
  assert grid.grid("learning_rate", "weight_decay")[1].shape == (3, 2)
  assert list(sizes.batch_sizes) == [32, 64]
  assert len(histories) == 2
  for name in ("weight_decay.png", "grid.png", "batch_sizes.png"):
    assert_png(tmp_path / name)


@pytest.mark.slow  # ~30 s to 4 min: the full recipe, as the README quotes it
def test_readme_quotes_what_the_disciplined_example_reproduces(capsys,
                                                               tmp_path):
  recipe, grid, sizes, histories = run_example("disciplined", "--out",
                                               tmp_path)
  text = " ".join((EXAMPLES.parent / "README.md").read_text().split())
  start = text.index("`python examples/disciplined.py` runs the whole recipe")
  claim = text[start:text.index("![", start)]
  best, size = grid.best(), sizes.best()
  (_, h1), (_, h2) = histories.items()
  sci = lambda x: "{}e{}".format(*map(int, f"{x:.0e}".split("e")))  # noqa
  for quoted in (f"weight decay {sci(recipe.weight_decay)}",
                 f"momentum {recipe.max_momentum:g}",
                 f"bounds {recipe.base_lr:.3g}–{recipe.max_lr:.3g}",
                 f"LR {best['learning_rate']:.2g} with weight decay "
                 f"{sci(best['weight_decay'])}",
                 f"batch size {size['batch_size']:g}",
                 f"One-cycle to {recipe.max_lr:.2g} reached "
                 f"{np.nanmax(h1.eval_metrics['accuracy']):.4f}",
                 f"status `{h1.status}`",
                 f"fixed LR {np.nanmax(h2.eval_metrics['accuracy']):.4f}"):
    assert quoted in claim, (quoted, claim)
  # The CLI command does the first step only, and the README says so.
  assert "`optax-clr disciplined` runs its first step only" in claim


def _evidence_report(fixed, other, val_size=400):
  run = lambda accs: [{"seed": s, "eval_steps": [10, 20],  # noqa: E731
                       "val_accuracy": [a / 2, a]}
                      for s, a in enumerate(accs)]
  return {"val_size": val_size,
          "runs": {"sgd/fixed": run(fixed), "sgd/triangular2": run(other)}}


@pytest.fixture(scope="module")
def evidence():
  return runpy.run_path(str(EXAMPLES / "clr_evidence.py"))


@pytest.mark.parametrize("other, verdict", [
    ((0.95, 0.96, 0.97), "better"),    # +0.05, far above the margin
    ((0.902, 0.908, 0.921), "same"),   # within one validation example
    ((0.85, 0.86, 0.87), "worse"),
    ((0.99, 0.80, 0.95), "same"),      # mean +0.013, but noisy over seeds
])
def test_clr_evidence_verdicts_are_paired_by_seed_with_a_margin(
    evidence, other, verdict):
  rows = evidence["summarize"](_evidence_report((0.90, 0.91, 0.92), other))
  row = next(r for r in rows if r["policy"] == "triangular2")
  assert row["verdict"] == verdict
  assert row["margin"] >= 1 / 400


def test_parallel_sweep_example_uses_8_forced_devices(tmp_path):
  proc = subprocess.run(
      [sys.executable, str(EXAMPLES / "parallel_sweep.py"), "--quick",
       "--out", str(tmp_path)], capture_output=True, text=True,
      env={**example_env(), "XLA_FLAGS": forced_devices(8)}, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("8 devices")
  assert "8 LRs x 10 steps on 8 devices" in proc.stdout
  assert "best fixed LR" in proc.stdout  # the suggestions' table
  assert_png(tmp_path / "parallel_sweep.png")


def git_status() -> str | None:
  """``git status`` of the checkout, or None outside a git checkout."""
  try:
    proc = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=EXAMPLES.parent, capture_output=True, text=True, timeout=60)
  except (OSError, subprocess.SubprocessError):
    return None
  return proc.stdout if proc.returncode == 0 else None


@pytest.mark.parametrize("name", [
    "schedules_gallery", "train_loop", "range_test", "parallel_sweep",
    "adapt_existing_training",
    pytest.param("clr_vs_fixed", marks=pytest.mark.slow),
    pytest.param("clr_evidence", marks=pytest.mark.slow),
    pytest.param("disciplined", marks=pytest.mark.slow)])
def test_examples_write_only_under_runs_by_default(capsys, tmp_path,
                                                   monkeypatch, name):
  before = git_status()
  if before is None:
    pytest.skip("not a git checkout")
  monkeypatch.chdir(tmp_path)
  run_example(name, "--quick")  # no --out: runs/examples/<name>/ here
  out_dir = pathlib.Path("runs", "examples", name)
  written = [p.relative_to(tmp_path) for p in tmp_path.rglob("*")
             if p.is_file()]
  assert written, "the example wrote nothing"
  assert all(p.parent == out_dir for p in written), written
  assert f"wrote {out_dir}" in capsys.readouterr().out
  # Nothing in the checkout (docs/img in particular) changed.
  assert git_status() == before


@pytest.mark.slow
@pytest.mark.parametrize("name", ["schedules_gallery", "train_loop",
                                  "range_test", "parallel_sweep",
                                  "clr_vs_fixed"])
def test_full_examples_run(tmp_path, name):
  proc = subprocess.run(
      [sys.executable, str(EXAMPLES / f"{name}.py"), "--out",
       str(tmp_path / "out")], capture_output=True, text=True,
      env=example_env(), cwd=tmp_path, timeout=900)
  assert proc.returncode == 0, proc.stderr
  assert any((tmp_path / "out").iterdir())
  assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_bounds_from_a_sweep_give_its_best_fixed_lr(tmp_path):
  from optax_clr import results
  lrs = np.array([0.01, 0.1, 1.0])
  sweep = results.ParallelSweepResult(
      lrs=lrs, losses=np.ones((3, 4)), final_loss=np.array([1.0, 0.5, 9.0]),
      mean_loss=np.array([1.0, 0.5, 9.0]),
      diverged=np.array([False, False, True]),
      diverged_at=np.array([-1, -1, 2]),
      eval_metrics={"accuracy": np.array([0.7, 0.9, 0.95])})
  sweep.to_json(tmp_path / "sweep.json")
  # The diverged LR's accuracy does not count.
  _, _, lr, source = cli.resolve_bounds("fixed", None, None, None,
                                        str(tmp_path / "sweep.json"))
  assert lr == 0.1
  assert "best fixed LR" in source


def test_one_cycle_takes_only_max_lr_from_a_range_test(tmp_path):
  suggested = write_range_test_result(tmp_path / "rt.json")
  base, top, _, _ = cli.resolve_bounds("one-cycle", None, None, None,
                                       str(tmp_path / "rt.json"))
  assert base is None and top == pytest.approx(suggested.max_lr)


def test_bad_data_spec_leaves_no_output_directory(tmp_path):
  out = tmp_path / "never"
  code = cli.main(["range-test", "--data", "digits:/nonexistent",
                   "--out", str(out), "--no-progress"])
  assert code == 2
  assert not out.exists()


def test_range_test_command_defaults_are_the_librarys():
  import inspect
  import optax_clr
  from optax_clr.cli import range_test as command
  flags = {p.name: p.default for p in command.range_test_cmd.params}
  classic = inspect.signature(optax_clr.range_test).parameters
  sweep = inspect.signature(optax_clr.parallel_range_test).parameters
  for name in ("start_lr", "end_lr", "ramp", "smoothing",
               "diverge_threshold"):
    assert flags[name] == classic[name].default, name
  for name in ("min_lr", "max_lr"):
    assert flags[name] == sweep[name].default, name
  assert flags["diverge_threshold"] == sweep["diverge_threshold"].default
