"""Subprocess for tests/test_multiprocess.py: one process of a multi-process
run (or the single-process reference), on forced CPU host devices.

Usage::

  python _multiprocess_worker.py NUM_PROCESSES PROCESS_ID PORT DEVICES OUTDIR \
      GROUP_SIZE

``NUM_PROCESSES`` > 1 joins ``jax.distributed.initialize`` at
``localhost:PORT`` (CPU collectives: gloo); ``DEVICES`` host devices per
process are forced with ``XLA_FLAGS`` before jax is imported. Runs an LR
sweep (copies vmapped in groups of ``GROUP_SIZE``; ``auto`` measures
nothing over several processes, which must all run the same programs), a hyperparameter grid with ``max_parallel`` (two rounds), a
data-parallel classic range test and a multi-seed range test over the
global devices; prints one JSON
line with every result in full; writes the sweep's JSON to ``OUTDIR``
(only process 0 should write it).
"""

import json
import os
import sys

NUM_PROCESSES, PROCESS_ID, PORT, DEVICES = map(int, sys.argv[1:5])
OUTDIR = sys.argv[5]
GROUP_SIZE = sys.argv[6] if sys.argv[6] == "auto" else int(sys.argv[6])
sys.path.insert(0, os.path.dirname(__file__))
from _devices import forced_devices  # noqa: E402

os.environ["XLA_FLAGS"] = forced_devices(DEVICES)
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["OPTAX_CLR_CACHE_DIR"] = ""

import jax  # noqa: E402

if NUM_PROCESSES > 1:
  # gloo is jax 0.10's default CPU collectives implementation; set it
  # explicitly so that a changed default cannot silently disable them.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"localhost:{PORT}",
                             num_processes=NUM_PROCESSES,
                             process_id=PROCESS_ID,
                             initialization_timeout=60)

import numpy as np  # noqa: E402
import optax  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import _toy  # noqa: E402
import optax_clr as clr  # noqa: E402
from optax_clr.engine import _memory  # noqa: E402

QUIET = dict(progress=False)


def lists(tree):
  """JSON-able copy: NaN/inf as strings so that the comparison sees them."""
  def one(x):
    a = np.asarray(x, np.float64)
    return [repr(float(v)) for v in a.ravel()] if a.size else []
  return {k: one(v) for k, v in tree.items()}


def lr_sweep():
  # K = 27 over 8 devices: padded to 32, 4 copies per device (enough for
  # group_size="auto" to measure); the largest LRs diverge.
  result = clr.parallel_range_test(
      _toy.make_params(), _toy.regression_loss, _toy.make_data(),
      lrs=np.geomspace(1e-3, 3.0, 27), num_steps=9, batch_size=8,
      steps_per_chunk=4, val_data=_toy.make_data(seed=1),
      group_size=GROUP_SIZE, **QUIET)
  result.to_json(os.path.join(OUTDIR, "sweep.json"))
  return {"devices": result.config["devices"],
          "group_size": result.config["group_size"],
          "rounds": result.config["rounds"],
          **lists({"losses": result.losses,
                   "val": result.eval_metrics["loss"],
                   "diverged": result.diverged})}


def grid_sweep():
  # 12 configurations, at most 8 resident: two rounds of one copy per
  # device.
  result = clr.sweep(
      _toy.make_params(), _toy.regression_loss, _toy.make_data(),
      hyperparams={"learning_rate": [1e-3, 1e-2, 0.1],
                   "weight_decay": [0.0, 0.1, 1.0, 3.0]},
      optimizer=optax.adamw, num_steps=6, batch_size=8, max_parallel=8,
      val_data=_toy.make_data(seed=1), **QUIET)
  return {"rounds": result.config["rounds"],
          **lists({"losses": result.losses,
                   "val": result.eval_metrics["loss"]})}


def data_parallel():
  result = clr.range_test(
      _toy.make_params(), _toy.regression_loss, _toy.make_data(),
      batch_size=16, num_steps=10, start_lr=1e-3, end_lr=0.3,
      val_data=_toy.make_data(seed=1), eval_every=5, data_axis="data",
      **QUIET)
  return {"mesh": result.config["mesh"], "stop": result.stop_reason,
          **lists({"losses": result.losses,
                   "val": result.eval_metrics["loss"]})}


def multi_seed():
  # 3 seeds over 8 devices (padded), each its own data order: the per-seed
  # batches are sharded over the copies, across the processes.
  result = clr.multi_seed_range_test(
      _toy.make_params(), _toy.regression_loss, _toy.make_data(),
      seeds=[0, 4, 9], batch_size=8, num_steps=12, start_lr=1e-3,
      end_lr=1.0, **QUIET)
  return {"devices": result.config["devices"],
          **lists({"losses": result.losses})}


def memory_agreement():
  """The copies per round every process uses: the smallest that fits on
  any process (None: no process knows its memory)."""
  me = jax.process_index()
  return [_memory.agree_min(10 + 5 * (1 - me)),
          _memory.agree_min(None if me == 0 else 7),
          _memory.agree_min(None)]


if __name__ == "__main__":
  assert jax.process_count() == NUM_PROCESSES, jax.process_count()
  assert jax.device_count() == NUM_PROCESSES * DEVICES, jax.devices()
  report = {"process": jax.process_index(),
            "processes": jax.process_count(),
            "sweep": lr_sweep(), "grid": grid_sweep(),
            "data_parallel": data_parallel(), "multi_seed": multi_seed()}
  if NUM_PROCESSES > 1:
    report["memory_agreement"] = memory_agreement()
  print(json.dumps(report))
  sys.stdout.flush()
