"""The sweep and the data-parallel classic test over two processes.

Two local processes with 4 forced CPU host devices each join
``jax.distributed.initialize`` (coordinator on a free localhost port, gloo
CPU collectives) and run the same LR sweep, hyperparameter grid (in two
rounds) and data-parallel range test over the 8 global devices as one
process with 8 forced devices, and a multi-seed range test
(tests/_multiprocess_worker.py).

What "the same" means:

* the sweeps and the multi-seed test are bitwise identical: each copy runs on one device, the
  program and its vmap groups are the same (process 0 measures the group
  size and broadcasts it; the reference runs with that size), and no
  value crosses a device;
* the data-parallel range test agrees to float32 rounding (relative error
  < 1e-6): the gradient mean over 8 devices is an all-reduce, summed in a
  different order by gloo across processes than inside one process.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "_multiprocess_worker.py")
TIMEOUT_S = 180  # a fail-safe: the whole module takes ~25-45 s on 2 cores


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _tail(text: str, n: int = 3000) -> str:
  # jax's distributed runtime logs a line per connection (I0.../W0...).
  lines = [ln for ln in text.splitlines() if not ln.startswith(("I0", "W0"))]
  return "\n".join(lines)[-n:]


def _run(argvs: list[list[str]], logdir: str) -> list[dict]:
  """Runs the workers together (one per argv; output to files, so that no
  pipe fills up); a failure of one stops the others."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "OPTAX_CLR_CACHE_DIR": ""}
  env.pop("XLA_FLAGS", None)
  logs, procs = [], []
  for i, argv in enumerate(argvs):
    out = open(os.path.join(logdir, f"{i}.out"), "w+", encoding="utf-8")
    err = open(os.path.join(logdir, f"{i}.err"), "w+", encoding="utf-8")
    logs.append((out, err))
    procs.append(subprocess.Popen([sys.executable, WORKER, *argv],
                                  stdout=out, stderr=err, env=env))
  deadline = time.monotonic() + TIMEOUT_S
  failed = None
  while any(p.poll() is None for p in procs):
    bad = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
    if bad or time.monotonic() > deadline:
      failed = f"process {bad[0]} failed" if bad else (
          f"timed out after {TIMEOUT_S} s")
      break
    time.sleep(0.2)
  for p in procs:
    if p.poll() is None:
      p.kill()
    p.wait()
  texts = []
  for out, err in logs:
    out.seek(0), err.seek(0)
    texts.append((out.read(), err.read()))
    out.close(), err.close()
  if failed is None and any(p.returncode for p in procs):
    failed = "a process failed"
  if failed:
    detail = "\n".join(
        f"--- process {i} (rc {p.returncode}) stdout:\n{_tail(o)}\n"
        f"--- stderr:\n{_tail(e)}" for i, (p, (o, e)) in enumerate(
            zip(procs, texts)))
    pytest.fail(f"{failed}:\n{detail}")
  return [json.loads(o.strip().splitlines()[-1]) for o, _ in texts]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  dirs = [str(tmp_path_factory.mktemp(n)) for n in ("p0", "p1", "one")]
  logs = [str(tmp_path_factory.mktemp(n)) for n in ("logs2", "logs1")]
  port = str(_free_port())
  # argv: processes, process id, port, devices per process, outdir, group
  p0, p1 = _run([["2", "0", port, "4", dirs[0], "auto"],
                 ["2", "1", port, "4", dirs[1], "auto"]], logs[0])
  group = str(p0["sweep"]["group_size"])
  (one,) = _run([["1", "0", "0", "8", dirs[2], group]], logs[1])
  return {"p0": p0, "p1": p1, "one": one, "dirs": dirs}


def _floats(values: list[str]) -> np.ndarray:
  return np.array([float(v) for v in values])


def test_two_processes_see_8_global_devices(runs):
  assert [runs[p]["process"] for p in ("p0", "p1")] == [0, 1]
  assert runs["p0"]["processes"] == 2 and runs["one"]["processes"] == 1
  assert runs["p0"]["sweep"]["devices"] == 8
  assert runs["p0"]["data_parallel"]["mesh"] == {"data": 8}


def test_every_process_gets_the_whole_result(runs):
  p0, p1 = dict(runs["p0"]), dict(runs["p1"])
  p0.pop("process"), p1.pop("process")
  assert p0 == p1
  assert len(p0["sweep"]["losses"]) == 27 * 9  # all copies, all steps


def test_processes_run_the_same_layout_without_measuring(runs):
  # 4 copies per device: one process would measure a vmapped group; across
  # processes a different choice would compile another program (and hang
  # or fail), so every process keeps the copies one after another.
  assert runs["p0"]["sweep"]["group_size"] == runs["p1"]["sweep"][
      "group_size"] == 1


def test_sweep_over_processes_is_bitwise_one_process(runs):
  multi, one = runs["p0"]["sweep"], runs["one"]["sweep"]
  assert multi == one
  diverged = _floats(one["diverged"])
  assert 0 < diverged.sum() < 27  # the largest LRs diverge, not all


def test_grid_in_two_rounds_is_bitwise_one_process(runs):
  multi, one = runs["p0"]["grid"], runs["one"]["grid"]
  assert multi["rounds"] == one["rounds"] == 2
  assert multi == one


def test_data_parallel_range_test_equals_one_process_to_float32(runs):
  multi, one = runs["p0"]["data_parallel"], runs["one"]["data_parallel"]
  assert multi["stop"] == one["stop"] == "completed"
  for name in ("losses", "val"):
    a, b = _floats(multi[name]), _floats(one[name])
    assert a.shape == b.shape and a.size > 0
    assert np.max(np.abs(a - b) / np.abs(b)) < 1e-6, name


def test_multi_seed_over_processes_is_bitwise_one_process(runs):
  multi, one = runs["p0"]["multi_seed"], runs["one"]["multi_seed"]
  assert multi["devices"] == 8
  assert multi == one


def test_processes_agree_on_the_smallest_memory_cap(runs):
  # process 0 fits 15 copies, process 1 fits 10; a process that knows no
  # cap does not lift another's.
  for p in ("p0", "p1"):
    assert runs[p]["memory_agreement"] == [10, 7, None]


def test_only_process_0_writes_the_result_file(runs):
  p0_dir, p1_dir, _ = runs["dirs"]
  assert os.listdir(p1_dir) == []
  with open(os.path.join(p0_dir, "sweep.json"), encoding="utf-8") as f:
    saved = json.load(f)
  assert len(saved["lrs"]) == 27
