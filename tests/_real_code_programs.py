"""Subprocess for tests/test_real_code.py: the eleven programs of
examples/real_code, run with the settings of the tests (:data:`SETTINGS`).

  python tests/_real_code_programs.py one OUT    # every call, one device
  python tests/_real_code_programs.py eight OUT  # 8 forced devices

``one`` runs each program's ``range_test``, ``parallel_range_test`` and
``train``, and upstream's own loops of the new programs
(tests/_real_code_upstream.py, in the same process and with the same XLA
flags: ``OUT/upstream.pkl``); ``eight`` (with ``--xla_force_host_platform_device_count=8``
set here before jax is imported) each program's ``parallel_range_test``,
the MiniGPT tutorial's classic test on its 4x2 mesh, ``train`` of the
pmap-style ImageNet ResNet (``data_axis='batch'``) next to upstream's own
``jax.pmap`` loop on the 8 devices (``OUT/imagenet/upstream.npz``), and
every driver on the two programs with declared state
(:func:`state_drivers`: copies split over the devices, each batch over
them for the ResNet). Results
are written as ``OUT/<program>/<call>.json`` (the library's own format),
``OUT/<program>/trained.npz`` (the trained parameters: the array leaves in
``jax.tree.leaves`` order) and, for a model with declared state,
``OUT/<program>/state.npz``.

Both run apart from the test process so that they share the two cores with
it and compile with ``--xla_backend_optimization_level=0`` (XLA:CPU then
compiles these tiny programs about twice as fast; they run for
milliseconds). Like the test module, they draw dropout with the
non-partitionable threefry, switched after the programs are imported.
"""

import os
import pathlib
import sys

from _devices import forced_devices

REAL_CODE = pathlib.Path(__file__).resolve().parents[1] / "examples" / (
    "real_code")
XLA_FLAGS = "--xla_backend_optimization_level=0"
EIGHT = forced_devices(8)

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
    "equinox_mnist": dict(num_steps=6, sweep_steps=3, train_batches=3,
                          **SWEEP),
    "equinox_stateful": dict(num_steps=6, sweep_steps=3, **SWEEP),
    "imagenet": dict(num_steps=6, sweep_steps=3, steps_per_epoch=3,
                     **SWEEP),
    "optax_reduce_on_plateau": dict(num_steps=6, sweep_steps=3,
                                    train_batches=30, **SWEEP),
    "optax_lookahead": dict(num_steps=6, sweep_steps=3, train_batches=5,
                            **SWEEP),
    "vae": dict(num_steps=6, sweep_steps=3, train_batches=3, **SWEEP),
}
CALLS = {"one": ("range_test", "parallel_range_test", "train"),
         "eight": ("parallel_range_test",)}

# The state checks (mode eight): every driver on the two programs with
# declared state, for STATE_STEPS steps at LRs so small that the parameters
# stay put: what their evaluations see is the state each driver carried.
STATE_PROGRAMS = ("equinox_stateful", "imagenet")
STATE_DRIVERS = ("range_test", "multi_seed_range_test",
                 "parallel_range_test", "sweep", "fit", "train")
STATE_STEPS = 4
TINY_LRS = (1e-8, 2e-8)


def env(mode: str) -> dict[str, str]:
  """The environment of a ``mode`` subprocess."""
  flags = XLA_FLAGS + (" " + EIGHT if mode == "eight" else "")
  return {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu",
          "OPTAX_CLR_CACHE_DIR": ""}


def calls_of(mode: str, name: str) -> tuple[str, ...]:
  if mode == "eight" and name == "nnx_minigpt":
    return ("range_test", "parallel_range_test")
  if mode == "eight" and name == "imagenet":
    return ("parallel_range_test", "train")
  return CALLS[mode]


def arrays(tree) -> list:
  """The array leaves of ``tree`` (an Equinox module's functions are
  leaves too), as NumPy arrays in ``jax.tree.leaves`` order."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  return [np.asarray(x) for x in jax.tree.leaves(tree)
          if isinstance(x, (jax.Array, np.ndarray, np.generic))]


def write(out: pathlib.Path, results: dict) -> None:
  import numpy as np  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from optax_clr.engine import _model  # pylint: disable=import-outside-toplevel
  out.mkdir(parents=True, exist_ok=True)
  for call in ("range_test", "parallel_range_test", "train"):
    if call in results:
      results[call].to_json(out / f"{call}.json")
  if "trained" in results:
    trained = results["trained"]
    if isinstance(trained, _model.WithState):
      np.savez(out / "state.npz", *arrays(trained.state))
      trained = trained.model
    if isinstance(trained, nnx.Module):
      trained = nnx.state(trained, nnx.Param)
    np.savez(out / "trained.npz", *arrays(trained))


def imagenet_upstream(module, out: pathlib.Path) -> None:
  """Upstream's own ``jax.pmap`` loop over the devices (``p_train_step``,
  then ``p_eval_step`` after each epoch) on the program's batches: the
  trained params and batch statistics, and the evaluations."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  settings = SETTINGS["imagenet"]
  steps = settings["steps_per_epoch"]
  _, state, learning_rate_fn = module.init(steps)
  p_train_step, p_eval_step = module.pmapped(learning_rate_fn)
  train_ds, eval_ds = module.datasets(max(settings["num_steps"], steps))
  evals = []
  for _ in range(int(module.config.num_epochs)):
    for batch in train_ds[:steps]:
      state, _ = p_train_step(state, module.prepare(batch))
    metrics = p_eval_step(state, module.prepare(eval_ds[0]))
    evals.append([float(metrics["loss"][0]), float(metrics["accuracy"][0])])
  out.mkdir(parents=True, exist_ok=True)
  np.savez(out / "upstream.npz", evals=np.asarray(evals),
           **{f"params_{i}": x for i, x in enumerate(arrays(state.params))},
           **{f"stats_{i}": x
              for i, x in enumerate(arrays(state.batch_stats))})


def state_setup(module, name: str) -> dict:
  """``model``, ``loss_fn``, ``train_data``, ``val_data``, ``optimizer``
  (the range tests' factory) and the options of a program with declared
  state, as its ``run`` passes them."""
  import functools  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  import optax_clr as clr  # pylint: disable=import-outside-toplevel
  if name == "equinox_stateful":
    m = module
    return dict(model=clr.with_state(m.model, m.state),
                loss_fn=m.compute_loss,
                train_data=[(m.xs, m.ys)] * STATE_STEPS,
                val_data=(m.test_xs, m.test_ys), optimizer=optax.adam,
                options={})
  m = module
  _, state, _ = m.init(SETTINGS["imagenet"]["steps_per_epoch"])
  train_ds, eval_ds = m.datasets(STATE_STEPS)
  return dict(model=clr.with_state(state.params, state), loss_fn=m.loss_fn,
              train_data=train_ds, val_data=eval_ds,
              optimizer=functools.partial(optax.sgd,
                                          momentum=m.config.momentum,
                                          nesterov=True),
              options=dict(eval_fn=m.eval_fn, data_axis="batch"))


def state_drivers(modules: dict, out: pathlib.Path) -> None:
  """Every driver (:data:`STATE_DRIVERS`) on each program with declared
  state, at :data:`TINY_LRS`: ``OUT/state/<program>/<driver>.json`` (fit:
  its history), and the state ``fit`` and ``train`` returned
  (``<driver>_state.npz``)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import optax_clr as clr  # pylint: disable=import-outside-toplevel
  lo, hi = TINY_LRS
  n = STATE_STEPS
  for name in STATE_PROGRAMS:
    setup = state_setup(modules[name], name)
    args = (setup["model"], setup["loss_fn"], setup["train_data"])
    common = dict(val_data=setup["val_data"], progress=False,
                  **setup["options"])
    ramp = dict(optimizer=setup["optimizer"], start_lr=lo, end_lr=hi,
                num_steps=n, eval_every=n, diverge_threshold=None, **common)
    results = {
        "range_test": clr.range_test(*args, **ramp),
        "multi_seed_range_test": clr.multi_seed_range_test(
            *args, num_seeds=2, **ramp),
        "parallel_range_test": clr.parallel_range_test(
            *args, optimizer=setup["optimizer"], lrs=TINY_LRS,
            num_steps=n, **common),
        "sweep": clr.sweep(
            *args, optimizer=setup["optimizer"],
            hyperparams={"learning_rate": list(TINY_LRS)}, num_steps=n,
            **common),
    }
    fit = clr.fit(*args, optimizer=setup["optimizer"], num_steps=n,
                  cycles=1, candidates=[clr.Candidate("fixed", lr, lr)
                                        for lr in TINY_LRS], **common)
    trained, results["train"] = clr.train(
        *args, optimizer=setup["optimizer"](lo), num_epochs=1, warn=False,
        **common)
    results["fit"] = fit.history
    where = out / "state" / name
    where.mkdir(parents=True, exist_ok=True)
    for driver, result in results.items():
      result.to_json(where / f"{driver}.json")
    for driver, model in (("fit", fit.model), ("train", trained)):
      np.savez(where / f"{driver}_state.npz", *arrays(model.state))


def main(mode: str, out: pathlib.Path) -> None:
  import jax  # pylint: disable=import-outside-toplevel
  assert len(jax.devices()) == (8 if mode == "eight" else 1), jax.devices()
  sys.path.insert(0, str(REAL_CODE))
  modules = {name: __import__(name) for name in SETTINGS}
  jax.config.update("jax_threefry_partitionable", False)
  for name, settings in SETTINGS.items():
    results = modules[name].run(calls=calls_of(mode, name), **settings)
    write(out / name, results)
  if mode == "eight":
    imagenet_upstream(modules["imagenet"], out / "imagenet")
    state_drivers(modules, out)
  else:
    import pickle  # pylint: disable=import-outside-toplevel
    import _real_code_upstream  # pylint: disable=import-outside-toplevel
    with open(out / "upstream.pkl", "wb") as f:
      pickle.dump(_real_code_upstream.compute(), f)


if __name__ == "__main__":
  if sys.argv[1] not in CALLS:
    raise SystemExit(f"mode must be one of {sorted(CALLS)}")
  os.environ.update(env(sys.argv[1]))  # before jax is imported
  main(sys.argv[1], pathlib.Path(sys.argv[2]))
