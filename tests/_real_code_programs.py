"""Subprocess for tests/test_real_code.py: the five programs of
examples/real_code, run with the settings of the tests (:data:`SETTINGS`).

  python tests/_real_code_programs.py one OUT    # every call, one device
  python tests/_real_code_programs.py eight OUT  # 8 forced devices

``one`` runs each program's ``range_test``, ``parallel_range_test`` and
``train``; ``eight`` (with ``--xla_force_host_platform_device_count=8``
set here before jax is imported) each program's ``parallel_range_test``
and the MiniGPT tutorial's classic test on its 4x2 mesh. Results are
written as ``OUT/<program>/<call>.json`` (the library's own format) and
``OUT/<program>/trained.npz`` (the trained parameters, in
``jax.tree.leaves`` order).

Both run apart from the test process so that they share the two cores with
it and compile with ``--xla_backend_optimization_level=0`` (XLA:CPU then
compiles these tiny programs about twice as fast; they run for
milliseconds). Like the test module, they draw dropout with the
non-partitionable threefry, switched after the programs are imported.
"""

import os
import pathlib
import sys

REAL_CODE = pathlib.Path(__file__).resolve().parents[1] / "examples" / (
    "real_code")
XLA_FLAGS = "--xla_backend_optimization_level=0"
EIGHT = "--xla_force_host_platform_device_count=8"

# What the tests run: a few steps of each program, 4 LRs in the sweep.
SWEEP = dict(num_lrs=4, group_size=4)
SETTINGS = {
    "flax_mnist": dict(num_steps=10, sweep_steps=3, train_batches=3,
                       **SWEEP),
    "lm1b": dict(num_steps=10, sweep_steps=3, train_batches=3, **SWEEP),
    "nnx_minigpt": dict(num_steps=10, sweep_steps=3, train_batches=3,
                        **SWEEP),
    "optax_getting_started": dict(num_steps=20, sweep_steps=5, **SWEEP),
    "optax_gradient_accumulation": dict(num_steps=12, sweep_steps=6,
                                        **SWEEP),
}
CALLS = {"one": ("range_test", "parallel_range_test", "train"),
         "eight": ("parallel_range_test",)}


def env(mode: str) -> dict[str, str]:
  """The environment of a ``mode`` subprocess."""
  flags = XLA_FLAGS + (" " + EIGHT if mode == "eight" else "")
  return {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu",
          "OPTAX_CLR_CACHE_DIR": ""}


def calls_of(mode: str, name: str) -> tuple[str, ...]:
  if mode == "eight" and name == "nnx_minigpt":
    return ("range_test", "parallel_range_test")
  return CALLS[mode]


def write(out: pathlib.Path, results: dict) -> None:
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  out.mkdir(parents=True, exist_ok=True)
  for call in ("range_test", "parallel_range_test", "train"):
    if call in results:
      results[call].to_json(out / f"{call}.json")
  if "trained" in results:
    trained = results["trained"]
    if isinstance(trained, nnx.Module):
      trained = nnx.state(trained, nnx.Param)
    np.savez(out / "trained.npz", *[np.asarray(x)
                                    for x in jax.tree.leaves(trained)])


def main(mode: str, out: pathlib.Path) -> None:
  import jax  # pylint: disable=import-outside-toplevel
  assert len(jax.devices()) == (8 if mode == "eight" else 1), jax.devices()
  sys.path.insert(0, str(REAL_CODE))
  modules = {name: __import__(name) for name in SETTINGS}
  jax.config.update("jax_threefry_partitionable", False)
  for name, settings in SETTINGS.items():
    results = modules[name].run(calls=calls_of(mode, name), **settings)
    write(out / name, results)


if __name__ == "__main__":
  if sys.argv[1] not in CALLS:
    raise SystemExit(f"mode must be one of {sorted(CALLS)}")
  os.environ.update(env(sys.argv[1]))  # before jax is imported
  main(sys.argv[1], pathlib.Path(sys.argv[2]))
