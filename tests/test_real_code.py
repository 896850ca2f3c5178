"""The five programs of examples/real_code (Flax's MNIST and lm1b examples,
the NNX MiniGPT tutorial on its mesh, optax's getting-started fit and its
gradient-accumulation example) range-tested with their model and loss code
as upstream wrote it: the losses the library records are upstream's, with
the keys the library passes, and ``train`` ends where upstream's own loops
end. One test per program, and one that compares every program's parallel
test (and MiniGPT's classic test on its 4x2 mesh) on 8 forced devices with
one device.

The programs run in two subprocesses started together (one device, and 8
forced devices; tests/_real_code_programs.py), so that they share the two
cores with this process, which runs upstream's own code for the references.
"""

import pathlib
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

import optax_clr as clr
from optax_clr.engine import _feed
from optax_clr.engine import _loss

import _real_code_programs
from _real_code_programs import SETTINGS

sys.path.insert(0, str(_real_code_programs.REAL_CODE))
import flax_mnist  # noqa: E402
import lm1b  # noqa: E402
import nnx_minigpt  # noqa: E402
import optax_getting_started  # noqa: E402
import optax_gradient_accumulation  # noqa: E402

RTOL = 2e-5  # float32, the same math compiled into another program


@pytest.fixture(scope="module", autouse=True)
def fast_dropout_compiles():
  """XLA:CPU compiles the partitionable threefry of dropout 2-3x slower
  (lm1b's step: 9 s against 4 s). The masks change, not what is compared:
  the subprocesses switch it too, after importing the programs, as this
  module did."""
  before = jax.config.jax_threefry_partitionable
  jax.config.update("jax_threefry_partitionable", False)
  yield
  jax.config.update("jax_threefry_partitionable", before)


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
  """Both subprocesses, started at once; ``programs(mode)`` waits for one
  and returns its output directory."""
  root = tmp_path_factory.mktemp("real_code")
  procs = {mode: subprocess.Popen(
      [sys.executable, _real_code_programs.__file__, mode, str(root / mode)],
      env=_real_code_programs.env(mode), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True) for mode in ("one", "eight")}

  outputs = {}

  def wait(mode):
    if mode not in outputs:
      outputs[mode] = procs[mode].communicate(timeout=900)[0]
    assert procs[mode].returncode == 0, outputs[mode][-4000:]
    return root / mode
  yield wait
  for mode, proc in procs.items():
    if mode not in outputs:  # not needed by the tests that ran
      proc.kill()
      proc.communicate()


def load(directory: pathlib.Path, name: str) -> dict:
  """A program's results (by call) and trained parameters (``"trained"``:
  the leaves in ``jax.tree.leaves`` order)."""
  out = {call: clr.load_results(directory / name / f"{call}.json")
         for call in ("range_test", "parallel_range_test", "train")
         if (directory / name / f"{call}.json").exists()}
  if (directory / name / "trained.npz").exists():
    with np.load(directory / name / "trained.npz") as npz:
      out["trained"] = [npz[f"arr_{i}"] for i in range(len(npz.files))]
  return out


@pytest.fixture(scope="module")
def runs(programs):
  """``runs(name)``: a program's one-device results."""
  return lambda name: load(programs("one"), name)


def step_key(copy, step, seed=0):
  return _loss.step_key(seed, copy, step)


UPSTREAM = {}


def upstream(name):
  """Registers the function that computes ``name``'s reference numbers
  with upstream's own code."""
  def register(fn):
    UPSTREAM[name] = fn
    return fn
  return register


@pytest.fixture(scope="module")
def references(programs):
  """Every program's reference numbers, computed here while the
  subprocesses run the programs."""
  return {name: fn() for name, fn in UPSTREAM.items()}


# --- Flax MNIST: NNX CNN, batch norm, dropout through `rngs` ----------------


@upstream("flax_mnist")
def mnist_reference():
  settings = SETTINGS["flax_mnist"]
  config = flax_mnist.Config()
  train_ds, _ = flax_mnist.get_datasets(config, settings["num_steps"])

  initial = flax_mnist.CNN(rngs=nnx.Rngs(0))
  initial.train()
  first = nnx.jit(lambda m, key: flax_mnist.loss_fn(  # step 0, copy's key
      m, train_ds[0], nnx.Rngs(key))[0])
  # Upstream's train_step, given the rngs the library passes.
  model = flax_mnist.CNN(rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.sgd(config.learning_rate,
                                             config.momentum), wrt=nnx.Param)
  metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(),
                            loss=nnx.metrics.Average('loss'))
  model.train()
  losses = []
  for t, batch in enumerate(train_ds[:settings["train_batches"]]):
    flax_mnist.train_step(model, optimizer, metrics, batch,
                          nnx.Rngs(step_key(0, t)))
    losses.append(float(metrics.compute()["loss"]))
    metrics.reset()
  return {"first": [float(first(initial, step_key(k, 0))) for k in range(4)],
          "train": losses}


def test_flax_mnist_losses_are_upstreams_with_the_librarys_rngs(
    runs, references):
  ref = references["flax_mnist"]
  out = runs("flax_mnist")
  rt, sweep, history = (out["range_test"], out["parallel_range_test"],
                        out["train"])
  assert rt.losses[0] == pytest.approx(ref["first"][0], rel=RTOL)
  np.testing.assert_allclose(sweep.losses[:, 0], ref["first"], rtol=RTOL)
  assert len(set(np.round(ref["first"], 6))) == 4  # each copy its dropout
  assert set(rt.eval_metrics) == {"loss"} and rt.eval_steps[0] == 4
  # train() is upstream's train_step loop.
  assert len(history) == SETTINGS["flax_mnist"]["train_batches"]
  np.testing.assert_allclose(history.losses, ref["train"], rtol=1e-4)


# --- Flax lm1b: Linen params, packed batches, dropout_rng, summed metrics ---


@upstream("lm1b")
def lm1b_reference():
  settings = SETTINGS["lm1b"]
  batches = lm1b.packed_batches(settings["num_steps"], 0)
  state, learning_rate_fn = lm1b.init_params()
  params = state.params
  # The library's key of step t, copy k is upstream's fold_in(dropout_rngs,
  # t) with dropout_rngs = fold_in(key(seed), k): upstream's loop on its
  # state (AdamW on the warmup-rsqrt schedule), mean losses.
  dropout_rngs = jax.random.fold_in(jax.random.key(0), 0)
  step = jax.jit(lm1b.train_step, static_argnums=(2, 3, 4))
  losses = []
  for batch in batches[:settings["train_batches"]]:
    state, metrics = step(state, batch, lm1b.train_config, learning_rate_fn,
                          0.0, dropout_rngs)
    losses.append(float(metrics["loss"] / metrics["denominator"]))
  loss = jax.jit(lambda key: lm1b.loss_fn(params, batches[0], key)[0])
  return {"train": losses,
          "first": [float(loss(step_key(k, 0))) for k in range(4)],
          "again": float(loss(step_key(0, 1)))}  # batch 0, step 1's key


def test_lm1b_records_the_mean_loss_and_evaluates_with_eval_step(
    runs, references):
  ref = references["lm1b"]
  out = runs("lm1b")
  rt, sweep, history = (out["range_test"], out["parallel_range_test"],
                        out["train"])
  np.testing.assert_allclose(history.losses, ref["train"], rtol=1e-4)
  assert rt.losses[0] == pytest.approx(ref["train"][0], rel=RTOL)
  assert ref["first"][0] == pytest.approx(ref["train"][0], rel=RTOL)
  # Fresh dropout every step: batch 0 with step 1's key is another loss.
  assert abs(ref["again"] - ref["train"][0]) > 1e-4
  # The mean over tokens, about log(vocab): not the summed metric.
  assert abs(rt.losses[0] - np.log(lm1b.config.vocab_size)) < 0.5
  # Each copy of the sweep draws its own masks.
  np.testing.assert_allclose(sweep.losses[:, 0], ref["first"], rtol=RTOL)
  assert len(set(np.round(ref["first"], 6))) == 4
  # Evaluation is upstream's eval_step: its "loss" is the sum over tokens,
  # about denominator * log(vocab) before training, and stays its own.
  ev = rt.eval_metrics
  assert (ev["denominator"] > 50).all()
  mean = ev["loss"][0] / ev["denominator"][0]
  assert abs(mean - np.log(lm1b.config.vocab_size)) < 0.5
  assert ev["loss"][0] > 20 * rt.losses[0]


# --- NNX MiniGPT on its mesh: explicit sharding, module-held dropout rngs ---


@upstream("nnx_minigpt")
def minigpt_reference():
  settings = SETTINGS["nnx_minigpt"]
  text_dl = nnx_minigpt.text_batches(settings["num_steps"], 0)
  with jax.set_mesh(jax.make_mesh((1, 1), ("batch", "model"))):
    model = nnx_minigpt.create_model(rngs=nnx.Rngs(0))
    # The library folds seed 0 and copy 0 into the module's dropout key.
    keys = nnx.state(model, nnx.RngKey)
    nnx.update(model, jax.tree.map(
        lambda k: jax.random.fold_in(jax.random.fold_in(k, 0), 0), keys))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    metrics = nnx.MultiMetric(loss=nnx.metrics.Average("loss"))
    losses = []
    for input_batch, target_batch in text_dl[:settings["train_batches"]]:
      nnx_minigpt.train_step(  # as the tutorial's loop calls it
          model, optimizer, metrics,
          jax.device_put((input_batch, target_batch), P("batch", None)))
      losses.append(float(metrics.compute()["loss"]))
      metrics.reset()
    spec = jax.typeof(model.output_layer.kernel[...]).sharding.spec
  return {"train": losses, "kernel_spec": spec}


def test_minigpt_runs_on_its_mesh_and_trains_as_upstreams_train_step(
    runs, references):
  ref = references["nnx_minigpt"]
  out = runs("nnx_minigpt")
  rt, sweep, history = (out["range_test"], out["parallel_range_test"],
                        out["train"])
  assert ref["kernel_spec"] == P(None, "model")
  assert rt.config["mesh"] == {"batch": 1, "model": 1}
  assert sweep.config["mesh"] == {"batch": 1, "model": 1}
  # train() on the mesh is upstream's train_step loop.
  np.testing.assert_allclose(history.losses, ref["train"], rtol=1e-4)
  assert rt.losses[0] == pytest.approx(ref["train"][0], rel=RTOL)
  assert np.isfinite(rt.losses).all() and rt.num_steps == 10
  # The sweep's copies side by side on the mesh, each its own dropout.
  assert sweep.losses[0, 0] == pytest.approx(ref["train"][0], rel=RTOL)
  assert len(set(np.round(sweep.losses[:, 0], 6))) == 4
  assert np.isfinite(sweep.losses[:3]).all()


# --- optax getting started: a params dict, loss(params, batch, labels) ------


@upstream("optax_getting_started")
def getting_started_reference():
  m = optax_getting_started
  params, _ = m.fit(m.initial_params, m.optimizer)  # upstream, 60 steps
  data = (m.TRAINING_DATA.reshape(-1, 8), m.LABELS.reshape(-1, 2))
  return {"first": float(m.loss(m.initial_params, m.TRAINING_DATA[0],
                                m.LABELS[0])),
          "fit": params, "fit_loss": float(m.loss(params, *data))}


def test_getting_started_train_ends_where_upstreams_fit_ends(
    runs, references):
  ref = references["optax_getting_started"]
  m = optax_getting_started
  out = runs("optax_getting_started")
  rt, sweep, history = (out["range_test"], out["parallel_range_test"],
                        out["train"])
  assert rt.losses[0] == pytest.approx(ref["first"], rel=1e-6)
  np.testing.assert_allclose(sweep.losses[:, 0], ref["first"], rtol=1e-6)
  assert len(history) == m.NUM_TRAIN_STEPS
  # 60 clipped Adam steps, the warmup reaching LR 1 at step 50, magnify
  # float32 rounding (the losses agree to 1e-5 over the first 40 steps).
  trained = dict(zip(sorted(ref["fit"]), out["trained"]))  # leaves' order
  for name in ("hidden", "output"):
    np.testing.assert_allclose(trained[name], ref["fit"][name],
                               rtol=2e-3, atol=2e-4)
  data = (m.TRAINING_DATA.reshape(-1, 8), m.LABELS.reshape(-1, 2))
  assert float(m.loss(trained, *data)) == pytest.approx(ref["fit_loss"],
                                                        rel=2e-2)
  assert history.losses[-10:].mean() < 0.5 * history.losses[:10].mean()


# --- optax gradient accumulation: MultiSteps inside an nnx.Optimizer --------


@upstream("optax_gradient_accumulation")
def gradient_accumulation_reference():
  m = optax_gradient_accumulation
  # The notebook's reference: one step on the whole batch, no accumulation.
  # Its fit() jits the step with jax.jit, whose in-place NNX updates flax
  # 0.12 drops (fit leaves the model as it was, and the notebook's check
  # passes whatever the optimizer does); its step runs under nnx.jit here.
  model_single_batch = m.MLP(nnx.Rngs(0))
  initial = jax.tree.map(np.asarray, nnx.state(model_single_batch,
                                               nnx.Param))
  order = _feed.epoch_order(0, 0, 9)[:3]  # the range test's first batch
  first = float(m.loss_fn(model_single_batch, dict(
      image=m.EXAMPLES[order], label=m.LABELS[order])))
  opt_single_batch = nnx.Optimizer(model_single_batch, m.optimizer,
                                   wrt=nnx.Param)
  nnx.jit(m.build_train_step().__wrapped__)(
      model_single_batch, opt_single_batch,
      dict(image=m.EXAMPLES, label=m.LABELS))
  return {
      "single": jax.tree.leaves(nnx.state(model_single_batch, nnx.Param)),
      "initial": jax.tree.leaves(initial), "first": first}


def test_gradient_accumulation_train_matches_the_notebooks_check(
    runs, references):
  ref = references["optax_gradient_accumulation"]
  out = runs("optax_gradient_accumulation")
  rt, sweep, history = (out["range_test"], out["parallel_range_test"],
                        out["train"])
  assert len(history) == 3
  for x, y in zip(out["trained"], ref["single"]):
    np.testing.assert_allclose(x, y, atol=1e-7)
  assert max(float(np.abs(x - y).max()) for x, y in zip(
      out["trained"], ref["initial"])) > 1e-6  # it did train
  # Range tests: MultiSteps applies nothing before the third micro-batch,
  # so the first three losses are the initial model's, at every LR.
  assert rt.losses[0] == pytest.approx(ref["first"], rel=RTOL)
  np.testing.assert_allclose(sweep.losses[:, :3],
                             np.broadcast_to(sweep.losses[:1, :3], (4, 3)),
                             rtol=1e-6)
  assert np.ptp(sweep.losses[:, 3]) > 1e-3  # the first update differs


# --- 8 forced devices against one -------------------------------------------


def test_on_8_devices_every_program_gives_the_one_device_numbers(
    runs, programs):
  eight = programs("eight")
  for name in SETTINGS:
    one = runs(name)["parallel_range_test"]
    many = load(eight, name)["parallel_range_test"]
    # Copies split over the 8 devices (MiniGPT: side by side on its mesh).
    assert many.config["mesh"] == ({"batch": 4, "model": 2} if name ==
                                   "nnx_minigpt" else {"copies": 8}), name
    trained = np.isin(one.status, ("trained", "stalled"))
    assert trained.sum() >= 2 and list(many.status) == list(one.status)
    # Measured: at most 4.4e-6 (MiniGPT's 4x2 layout sums in another
    # order), 1.3e-7 for the others.
    np.testing.assert_allclose(many.losses[trained], one.losses[trained],
                               rtol=2e-5, err_msg=name)
  one = runs("nnx_minigpt")["range_test"]
  many = load(eight, "nnx_minigpt")["range_test"]
  assert many.config["mesh"] == {"batch": 4, "model": 2}
  assert many.num_steps == one.num_steps == 10
  np.testing.assert_allclose(many.losses, one.losses, rtol=2e-5)
