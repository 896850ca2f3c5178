"""Faults: Ctrl-C (SIGINT) and SIGKILL in the middle of a run.

A run that is interrupted keeps what it computed: the library returns every
finished chunk with ``stop_reason="interrupted"`` and the CLI writes its
results, exiting 130. A run that is killed leaves no torn file: every file
present is complete and loads, temporary files (``.NAME.*.tmp``) are
recognisable and ignored, and the next run in the same ``--out`` takes over
the stale lock.

Default suite: SIGINT sent from inside the process at chosen points (after
chunk k, during setup, twice), so the number of steps kept is exact, and a
process killed in the middle of a file write. Slow (``-m slow``): CLI
processes interrupted and killed at seeded random points.
"""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import optax_clr as S
from optax_clr import cli
from optax_clr import drivers
from optax_clr.drivers import _checkpoint
from optax_clr.engine import _loop

import _toy

CHUNK = 25
TINY = ["--width", "4", "--batch-size", "32", "--no-progress"]
TEMP = re.compile(r"^\..+\.tmp$")


@pytest.fixture(autouse=True)
def _no_caches(monkeypatch):
  monkeypatch.setenv("OPTAX_CLR_CACHE_DIR", "")
  monkeypatch.delenv("OPTAX_CLR_DEBUG", raising=False)


def sigint():
  os.kill(os.getpid(), signal.SIGINT)


params = _toy.classifier_params
loss_fn = _toy.classifier_loss


def arrays(n=64):
  return _toy.classifier_data(n)


def interrupt_after(steps):
  """A progress callback that presses Ctrl-C once ``steps`` are done."""
  def progress(done, total, metrics):
    if done == steps:
      sigint()
  return progress


# ----------------------------------------------------------------------------
# The library keeps every finished chunk.


def test_ctrl_c_after_two_chunks_keeps_exactly_those_steps():
  result = S.range_test(params(), loss_fn, arrays(), batch_size=8,
                        start_lr=1e-3, end_lr=1.0, num_steps=200,
                        steps_per_chunk=CHUNK, diverge_threshold=None,
                        progress=interrupt_after(2 * CHUNK))
  assert result.stop_reason == "interrupted"
  assert result.num_steps == 2 * CHUNK
  assert np.isfinite(result.losses).all()
  full = S.drivers.ramp_lrs(1e-3, 1.0, 200).astype(np.float32)
  np.testing.assert_array_equal(result.lrs, full[:2 * CHUNK])


def test_ctrl_c_in_a_sweep_keeps_every_lr_for_the_steps_run():
  result = S.parallel_range_test(
      params(), loss_fn, arrays(), lrs=[0.01, 0.1, 1.0], num_steps=100,
      batch_size=8, steps_per_chunk=CHUNK, diverge_threshold=None,
      progress=interrupt_after(CHUNK))
  assert result.stop_reason == "interrupted"
  assert result.losses.shape == (3, CHUNK)
  assert np.isfinite(result.losses).all()
  assert not result.diverged.any()


def test_ctrl_c_between_epochs_keeps_the_finished_epochs(tmp_path):
  def progress(epoch, total, metrics):
    if epoch == 2:
      sigint()
  _, history = S.train(params(), loss_fn, arrays(), optimizer=S.cyclic_sgd(
      0.1, 0.9), num_epochs=50, batch_size=8, val_data=arrays(16),
                       checkpoint_dir=tmp_path, progress=progress,
                       warn=False)  # random labels: it cannot learn
  assert history.stop_reason == "interrupted"
  assert len(history) == 2 * 8  # two epochs of 64 / 8 steps
  assert len(history.eval_steps) == 2
  assert drivers.epochs_done(tmp_path) == 2  # the checkpoint is whole


def test_a_second_ctrl_c_stops_at_once():
  def progress(done, total, metrics):
    if done == CHUNK:
      sigint()
      sigint()  # the second one raises in here: the loop ends now
  result = S.range_test(params(), loss_fn, arrays(), batch_size=8,
                        num_steps=200, start_lr=1e-3, end_lr=1.0,
                        steps_per_chunk=CHUNK, diverge_threshold=None,
                        progress=progress)
  assert result.stop_reason == "interrupted"
  assert result.num_steps == CHUNK


def test_outside_a_run_ctrl_c_is_a_keyboard_interrupt_again():
  S.range_test(params(), loss_fn, arrays(), batch_size=8, num_steps=10,
               progress=interrupt_after(10))  # pressed as the run ends
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  with pytest.raises(KeyboardInterrupt):
    sigint()
    time.sleep(1)


# ----------------------------------------------------------------------------
# The CLI writes what it computed and exits 130 (in-process, exact points).


def run_cli(capsys, *args):
  code = cli.main([str(a) for a in args])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def interrupt_at_chunk(monkeypatch, k):
  """Ctrl-C as the k-th chunk's outputs reach the host (1-based)."""
  calls = []
  collect = _loop.Population.collect

  def patched(self, pending, num_valid):
    calls.append(1)
    if len(calls) == k:
      sigint()
    return collect(self, pending, num_valid)
  monkeypatch.setattr(_loop.Population, "collect", patched)


def assert_complete(out):
  """Every file of the run directory is whole and loads."""
  names = {p.name for p in out.iterdir()}
  assert ".optax-clr.lock" not in names  # released
  for path in out.iterdir():
    assert not TEMP.match(path.name), path
    if path.suffix == ".json":
      json.loads(path.read_text())
    if path.suffix == ".png":
      assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  config = json.loads((out / "config.json").read_text())
  assert "wall_time_s" in config  # written by finish(), after the results
  return S.load_results(out)


def one_error(err):
  lines = err.strip().splitlines()
  assert lines[-1].startswith("optax-clr: error: interrupted"), err
  assert "Traceback" not in err
  assert len([l for l in lines if l.startswith("optax-clr: error")]) == 1
  return lines[-1]


def test_cli_range_test_interrupted_after_two_chunks(capsys, monkeypatch,
                                                     tmp_path):
  interrupt_at_chunk(monkeypatch, 2)
  out = tmp_path / "rt"
  code, _, err = run_cli(capsys, "range-test", *TINY, "--steps", "400",
                         "--out", out)
  assert code == 130
  one_error(err)
  result = assert_complete(out)
  assert result.stop_reason == "interrupted"
  assert result.num_steps == 2 * CHUNK


@pytest.mark.slow  # a second CLI compile; the random-point tests cover it
def test_cli_sweep_interrupted_after_one_chunk(capsys, monkeypatch,
                                               tmp_path):
  interrupt_at_chunk(monkeypatch, 1)
  out = tmp_path / "sweep"
  code, _, err = run_cli(capsys, "range-test", *TINY, "--parallel", "2",
                         "--steps", "200", "--out", out)
  assert code == 130, err
  one_error(err)
  result = assert_complete(out)
  assert result.stop_reason == "interrupted"
  assert result.losses.shape == (2, CHUNK)


def test_cli_train_interrupted_in_epoch_two(capsys, monkeypatch, tmp_path):
  interrupt_at_chunk(monkeypatch, 1)  # a chunk is an epoch of 44 steps
  out, ckpt = tmp_path / "train", tmp_path / "ckpt"
  code, _, err = run_cli(capsys, "train", *TINY, "--base-lr", "0.01",
                         "--max-lr", "0.1", "--step-size", "1", "--epochs",
                         "20", "--checkpoint-dir", ckpt, "--out", out)
  assert code == 130, err
  one_error(err)
  history = assert_complete(out)
  assert history.stop_reason == "interrupted"
  assert len(history) == 44 and len(history.eval_steps) == 1
  assert drivers.epochs_done(ckpt) == 1


@pytest.mark.parametrize("command", [
    ["--steps", "100"], ["--parallel", "2", "--steps", "100"]],
    ids=["range-test", "sweep"])
def test_cli_interrupted_before_the_first_step_writes_an_empty_result(
    capsys, monkeypatch, tmp_path, command):
  from optax_clr.cli import _common  # pylint: disable=import-outside-toplevel
  build = _common.build_model

  def pressed_while_building(*args, **kwargs):
    sigint()
    return build(*args, **kwargs)
  monkeypatch.setattr(_common, "build_model", pressed_while_building)
  out = tmp_path / "rt"
  code, _, err = run_cli(capsys, "range-test", *TINY, *command, "--out", out)
  assert code == 130, err
  one_error(err)
  result = assert_complete(out)
  assert result.stop_reason == "interrupted"
  assert result.losses.shape[-1] == 0  # no step, and no step invented


def test_cli_says_when_a_run_interrupted_then_failed(capsys, monkeypatch,
                                                    tmp_path):
  # An error the library did not report itself may have kept the results
  # from being written: exit 1 and the error, not "results written".
  from optax_clr.cli import _common  # pylint: disable=import-outside-toplevel

  def pressed_then_broken(*args, **kwargs):
    sigint()
    raise RuntimeError("the model could not be built")
  monkeypatch.setattr(_common, "build_model", pressed_then_broken)
  code, _, err = run_cli(capsys, "range-test", *TINY, "--steps", "100",
                         "--out", tmp_path / "rt")
  assert code == 1, err
  assert err.strip().splitlines()[-1].startswith(
      "optax-clr: error: interrupted, then failed: RuntimeError: the model "
      "could not be built")
  assert not (tmp_path / "rt" / "results.json").exists()


def test_cli_ctrl_c_after_the_work_still_exits_130(capsys, monkeypatch,
                                                   tmp_path):
  from optax_clr import plotting  # pylint: disable=import-outside-toplevel
  plot = plotting.plot_schedules

  def pressed_while_plotting(*args, **kwargs):
    sigint()
    return plot(*args, **kwargs)
  monkeypatch.setattr(plotting, "plot_schedules", pressed_while_plotting)
  out = tmp_path / "ps"
  code, _, err = run_cli(capsys, "plot-schedule", "--steps", "10", "--out",
                         out)
  assert code == 130
  one_error(err)
  assert (out / "schedule.png").exists()
  assert "wall_time_s" in json.loads((out / "config.json").read_text())


# ----------------------------------------------------------------------------
# Killed in the middle of a write: the old file stays whole.

KILLED_WRITER = """
import os, signal, sys
from optax_clr import _serialize
path = sys.argv[1]
_serialize.write_text(path, '{"version": 1}')
with _serialize.atomic_open(path) as f:
  f.write('{"version": 2, "half": ')
  f.flush()
  os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_write_killed_halfway_leaves_the_old_file_and_a_named_temp(
    tmp_path):
  path = tmp_path / "results.json"
  proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)],
                        capture_output=True, timeout=300, check=False)
  assert proc.returncode == -signal.SIGKILL, proc.stderr
  assert json.loads(path.read_text()) == {"version": 1}
  temps = [p.name for p in tmp_path.iterdir() if p.name != "results.json"]
  assert len(temps) == 1 and TEMP.match(temps[0]), temps
  assert temps[0].startswith(".results.json.")


# ----------------------------------------------------------------------------
# CLI processes signalled at seeded random points (slow).

COMMANDS = {
    "range-test": ["range-test", *TINY, "--steps", "100000", "--start-lr",
                   "1e-6", "--end-lr", "1e-5"],
    "sweep": ["range-test", *TINY, "--parallel", "2", "--steps", "100000"],
    "train": ["train", *TINY, "--base-lr", "0.01", "--max-lr", "0.05",
              "--step-size", "1", "--epochs", "10000", "--checkpoint-dir",
              "CKPT"],
}
POINTS = [(name, seed) for name in COMMANDS for seed in (0, 1, 2)]


def start(name, out, ckpt):
  argv = [a if a != "CKPT" else str(ckpt) for a in COMMANDS[name]]
  env = dict(os.environ, OPTAX_CLR_CACHE_DIR="", JAX_PLATFORMS="cpu")
  env.pop("OPTAX_CLR_DEBUG", None)
  proc = subprocess.Popen(
      [sys.executable, "-m", "optax_clr", *argv, "--out", str(out)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
  lines = queue.Queue()
  threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout],
                   daemon=True).start()
  # The first line ("data: ...") is printed inside the command, after the
  # run directory is made and the data loaded.
  assert lines.get(timeout=300).startswith("data: ")
  return proc


def check_disk(out, ckpt, typed=True):
  """Every file present is whole: JSON parses, results and checkpoints load;
  temporary files are named as such. Returns the results, if any (with
  ``typed``: the run's results.json is a typed result)."""
  for path in out.iterdir():
    if TEMP.match(path.name) or path.name == ".optax-clr.lock":
      continue
    if path.suffix == ".json":
      json.loads(path.read_text())
    elif path.suffix == ".csv":
      assert path.read_text().endswith("\n")
    elif path.suffix == ".png":
      assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  if ckpt.exists() and (ckpt / drivers.CHECKPOINT_NAME).exists():
    _checkpoint.read(ckpt / drivers.CHECKPOINT_NAME)
  if typed and (out / "results.json").exists():
    return S.load_results(out)
  return None


@pytest.mark.slow
@pytest.mark.parametrize("name, seed", POINTS,
                         ids=[f"{n}-{s}" for n, s in POINTS])
def test_sigint_at_a_random_point_writes_complete_results(tmp_path, name,
                                                          seed):
  out, ckpt = tmp_path / "out", tmp_path / "ckpt"
  proc = start(name, out, ckpt)
  time.sleep(np.random.default_rng(seed).uniform(0.0, 8.0))
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 130, err
  assert "Traceback" not in err
  assert err.strip().splitlines()[-1].startswith(
      "optax-clr: error: interrupted"), err
  result = check_disk(out, ckpt)
  assert result is not None and result.stop_reason == "interrupted"
  assert not (out / ".optax-clr.lock").exists()
  steps = (result.losses.shape[-1] if name == "sweep" else len(result)
           if name == "train" else result.num_steps)
  chunk = 44 if name == "train" else CHUNK
  assert steps % chunk == 0  # whole chunks, nothing torn
  if name == "train" and steps:
    assert drivers.epochs_done(ckpt) == steps // 44


@pytest.mark.slow
@pytest.mark.parametrize("name, seed", POINTS,
                         ids=[f"{n}-{s}" for n, s in POINTS])
def test_sigkill_at_a_random_point_leaves_no_torn_file(tmp_path, capsys,
                                                       name, seed):
  out, ckpt = tmp_path / "out", tmp_path / "ckpt"
  proc = start(name, out, ckpt)
  time.sleep(np.random.default_rng(100 + seed).uniform(0.0, 8.0))
  proc.kill()
  proc.communicate(timeout=300)
  assert proc.returncode == -signal.SIGKILL
  check_disk(out, ckpt)
  assert (out / ".optax-clr.lock").read_text() == str(proc.pid)  # stale
  # The next run in the same directory takes the lock over.
  code = cli.main(["plot-schedule", "--steps", "10", "--overwrite", "--out",
                   str(out)])
  assert code == 0, capsys.readouterr().err
  assert not (out / ".optax-clr.lock").exists()
  assert not [p for p in out.iterdir() if TEMP.match(p.name)]
  check_disk(out, ckpt, typed=False)  # now plot-schedule's files


def test_cli_auto_bounds_interrupted_in_its_range_test(capsys, monkeypatch,
                                                       tmp_path):
  # Ctrl-C during the first of fit's two stages (range test, candidates):
  # the candidates stop before their first step.
  interrupt_at_chunk(monkeypatch, 1)
  out = tmp_path / "auto"
  code, _, err = run_cli(capsys, "train", *TINY, "--auto-bounds", "--epochs",
                         "2", "--out", out)
  assert code == 130, err
  assert "Traceback" not in err
  assert len([l for l in err.splitlines() if "error:" in l]) == 1, err
  for path in out.iterdir():
    if path.suffix == ".json":
      json.loads(path.read_text())
  assert S.load_results(out / "range_test.json").stop_reason == (
      "interrupted")


@pytest.mark.slow  # the demo's range test, compiled
def test_cli_demo_interrupted_in_its_range_test_keeps_it(capsys, monkeypatch,
                                                        tmp_path):
  interrupt_at_chunk(monkeypatch, 1)
  out = tmp_path / "demo"
  code, _, err = run_cli(capsys, "demo", "--quick", "--no-progress", "--out",
                         out)
  assert code == 130, err
  assert "Traceback" not in err
  rt = S.load_results(out / "range_test.json")
  assert rt.stop_reason == "interrupted" and rt.num_steps == CHUNK
