"""Every public entry point rejects bad input early, by name, in one line.

One table across the library: schedules, momentum schedules, optimizer
helpers, the classic and parallel range tests, the data loaders (malformed
files written to ``tmp_path``), ``train`` and the CLI. Each case states the
exception type and a regex that names the offending argument. "Early" means
the error comes from our own validation: no frame of the traceback is inside
jax (nothing was traced or compiled on the way) and the innermost frame is in
``optax_clr``. CLI cases must exit non-zero with exactly one stderr line and
no traceback.
"""

import gzip
import json
import pathlib
import pickle
import re
import struct

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import optax_clr
from optax_clr import cli
from optax_clr import data as data_lib

import _toy

PKG = pathlib.Path(optax_clr.__file__).resolve().parent


params = _toy.classifier_params
loss_fn = _toy.classifier_loss
arrays = _toy.classifier_data


class Tiny(nnx.Module):

  def __init__(self, rngs):
    self.fc = nnx.Linear(64, 10, rngs=rngs)

  def __call__(self, x):
    return self.fc(x.reshape(x.shape[0], -1))


def tiny_model():
  return Tiny(nnx.Rngs(0))


def tiny_dataset(n=16):
  rng = np.random.default_rng(0)
  return optax_clr.Dataset(
      images=rng.random((n, 8, 8, 1), dtype=np.float32),
      labels=rng.integers(0, 10, size=n).astype(np.int32), num_classes=10)


def train(**overrides):
  kwargs = dict(optimizer=optax_clr.cyclic_sgd(0.1, 0.9), num_epochs=1,
                batch_size=4)
  kwargs.update(overrides)
  model = kwargs.pop("model", None) or tiny_model()
  data = kwargs.pop("train_data", None) or tiny_dataset()
  return optax_clr.train(model, optax_clr.cross_entropy_loss, data, **kwargs)


def rt(**overrides):
  kwargs = dict(num_steps=10, batch_size=8)
  kwargs.update(overrides)
  fn = kwargs.pop("loss_fn", loss_fn)
  return optax_clr.range_test(params(), fn, arrays(), **kwargs)


def prt(**overrides):
  kwargs = dict(num_lrs=2, num_steps=3, batch_size=8)
  kwargs.update(overrides)
  return optax_clr.parallel_range_test(params(), loss_fn, arrays(), **kwargs)


# ----------------------------------------------------------------------------
# Malformed files.


def write_idx(path, magic, dims, payload=b""):
  header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d)
                                               for d in dims)
  path.write_bytes(header + payload)


def mnist_dir(tmp, *, image_magic=2051, truncate=False, label_count=4):
  d = tmp / "mnist"
  d.mkdir()
  n = 4
  pixels = bytes(n * 28 * 28)
  write_idx(d / "train-images-idx3-ubyte", image_magic, (n, 28, 28),
            pixels[:-10] if truncate else pixels)
  write_idx(d / "train-labels-idx1-ubyte", 2049, (label_count,),
            bytes(label_count))
  return d


def npz_file(tmp, **arrays_):
  path = tmp / "data.npz"
  np.savez(path, **arrays_)
  return path


def cifar_dir(tmp, *, data_shape=(4, 3072)):
  d = tmp / "cifar"
  d.mkdir()
  batch = {b"data": np.zeros(data_shape, np.uint8), b"labels": [0] * 4}
  for i in range(1, 6):
    with open(d / f"data_batch_{i}", "wb") as f:
      pickle.dump(batch, f)
  return d


# ----------------------------------------------------------------------------
# The table: id -> (thunk of tmp_path, exception type, regex on the message).

S = optax_clr
CASES = {
    # Schedules.
    "triangular-negative-base": (
        lambda t: S.triangular_schedule(-0.1, 1.0, 10), ValueError,
        r"base_value"),
    "triangular-base-above-max": (
        lambda t: S.triangular_schedule(0.5, 0.1, 10), ValueError,
        r"base_value.*max_value|max_value.*base_value"),
    "triangular-zero-step-size": (
        lambda t: S.triangular_schedule(0.01, 0.1, 0), ValueError,
        r"step_size_up"),
    "triangular2-nan-max": (
        lambda t: S.triangular2_schedule(0.01, float("nan"), 10), ValueError,
        r"max_value"),
    "cyclic-unknown-mode": (
        lambda t: S.cyclic_schedule(0.01, 0.1, 10, mode="cosine"),
        ValueError, r"mode"),
    "cyclic-scale-fn-not-callable": (
        lambda t: S.cyclic_schedule(0.01, 0.1, 10, scale_fn=0.5), TypeError,
        r"scale_fn"),
    "cyclic-unknown-waveform": (
        lambda t: S.cyclic_schedule(0.01, 0.1, 10, waveform="square"),
        ValueError, r"waveform"),
    "exp-range-gamma-above-one": (
        lambda t: S.exp_range_schedule(0.01, 0.1, 10, gamma=1.5), ValueError,
        r"gamma"),
    "one-cycle-one-step": (
        lambda t: S.one_cycle_schedule(1.0, 1), ValueError, r"total_steps"),
    "one-cycle-pct-start-above-one": (
        lambda t: S.one_cycle_schedule(1.0, 100, pct_start=1.5), ValueError,
        r"pct_start"),
    "one-cycle-unknown-anneal": (
        lambda t: S.one_cycle_schedule(1.0, 100, anneal_strategy="quad"),
        ValueError, r"anneal_strategy"),
    "one-cycle-string-max": (
        lambda t: S.one_cycle_schedule("1.0", 100), TypeError, r"max_value"),
    # Momentum schedules.
    "momentum-base-above-max": (
        lambda t: S.cyclic_momentum_schedule(0.95, 0.85, 10), ValueError,
        r"base_momentum"),
    "momentum-max-above-one": (
        lambda t: S.cyclic_momentum_schedule(0.8, 1.5, 10), ValueError,
        r"max_momentum"),
    "one-cycle-momentum-zero-steps": (
        lambda t: S.one_cycle_momentum_schedule(0), ValueError,
        r"total_steps"),
    # Optimizer helpers.
    "sgd-negative-lr": (
        lambda t: S.cyclic_sgd(-0.1), ValueError, r"learning_rate"),
    "sgd-string-lr": (
        lambda t: S.cyclic_sgd("0.1"), TypeError, r"learning_rate"),
    "sgd-momentum-above-one": (
        lambda t: S.cyclic_sgd(0.1, 1.5), ValueError, r"momentum"),
    "sgd-nesterov-without-momentum": (
        lambda t: S.cyclic_sgd(0.1, nesterov=True), ValueError,
        r"nesterov"),
    "adam-b2-one": (
        lambda t: S.cyclic_adam(0.1, b2=1.0), ValueError, r"b2"),
    "adamw-negative-weight-decay": (
        lambda t: S.cyclic_adamw(0.1, weight_decay=-1.0), ValueError,
        r"weight_decay"),
    "cyclic-optimizer-factory-not-callable": (
        lambda t: S.cyclic_optimizer("sgd", learning_rate=0.1), TypeError,
        r"factory"),
    "set-hyperparams-unknown-name": (
        lambda t: S.set_hyperparams(
            S.cyclic_sgd(0.1, 0.9).init(params()), beta=0.5), ValueError,
        r"beta"),
    # Classic range test.
    "range-test-zero-start-lr": (
        lambda t: rt(start_lr=0.0), ValueError, r"start_lr"),
    "range-test-end-below-start": (
        lambda t: rt(start_lr=1.0, end_lr=0.1), ValueError,
        r"end_lr|start_lr"),
    "range-test-one-step": (
        lambda t: rt(num_steps=1), ValueError, r"num_steps"),
    "range-test-unknown-ramp": (
        lambda t: rt(ramp="cos"), ValueError, r"ramp"),
    "range-test-zero-smoothing": (
        lambda t: rt(smoothing=0.0), ValueError, r"smoothing"),
    "range-test-threshold-one": (
        lambda t: rt(diverge_threshold=1.0), ValueError,
        r"diverge_threshold"),
    "range-test-eval-every-without-val": (
        lambda t: rt(eval_every=5), ValueError, r"eval_every|val_data"),
    "range-test-array-data-without-batch-size": (
        lambda t: rt(batch_size=None), ValueError, r"batch_size"),
    "range-test-zero-accumulation": (
        lambda t: rt(accumulation_steps=0), ValueError,
        r"accumulation_steps"),
    "range-test-loss-not-callable": (
        lambda t: rt(loss_fn="mse"), TypeError, r"loss_fn"),
    # Parallel sweep.
    "sweep-zero-lrs": (
        lambda t: prt(num_lrs=0), ValueError, r"num_lrs"),
    "sweep-min-above-max": (
        lambda t: prt(min_lr=1.0, max_lr=0.1), ValueError,
        r"min_lr|max_lr"),
    "sweep-negative-lr-in-list": (
        lambda t: prt(lrs=[0.1, -1.0]), ValueError, r"lrs"),
    "sweep-unknown-init": (
        lambda t: prt(init="random"), ValueError, r"init"),
    "sweep-independent-without-model-init": (
        lambda t: prt(init="independent"), ValueError, r"model_init"),
    "sweep-zero-group-size": (
        lambda t: prt(group_size=0), ValueError, r"group_size"),
    "sweep-zero-window": (
        lambda t: prt(window=0), ValueError, r"window"),
    "sweep-zero-steps": (
        lambda t: prt(num_steps=0), ValueError, r"num_steps"),
    # Data loaders and datasets.
    "npz-missing-file": (
        lambda t: S.load_npz(t / "nope.npz"), FileNotFoundError,
        r"nope\.npz"),
    "npz-wrong-keys": (
        lambda t: S.load_npz(npz_file(t, a=np.zeros((4, 8, 8)),
                                      b=np.zeros(4))), ValueError,
        r"data\.npz"),
    "npz-label-count-mismatch": (
        lambda t: S.load_npz(npz_file(t, x=np.zeros((4, 8, 8), np.uint8),
                                      y=np.zeros(3, np.int64))), ValueError,
        r"data\.npz"),
    "npz-negative-label": (
        lambda t: S.load_npz(npz_file(t, x=np.zeros((4, 8, 8), np.uint8),
                                      y=np.array([0, 1, -1, 2]))),
        ValueError, r"data\.npz"),
    "mnist-missing-dir": (
        lambda t: S.load_mnist(t / "none"), FileNotFoundError, r"none"),
    "mnist-bad-magic": (
        lambda t: S.load_mnist(mnist_dir(t, image_magic=1234)), ValueError,
        r"train-images-idx3-ubyte"),
    "mnist-truncated-images": (
        lambda t: S.load_mnist(mnist_dir(t, truncate=True)), ValueError,
        r"train-images-idx3-ubyte"),
    "mnist-label-count-mismatch": (
        lambda t: S.load_mnist(mnist_dir(t, label_count=3)), ValueError,
        r"label"),
    "mnist-unknown-split": (
        lambda t: S.load_mnist(mnist_dir(t), "valid"), ValueError, r"split"),
    "cifar-empty-dir": (
        lambda t: S.load_cifar10(t), FileNotFoundError, r"data_batch"),
    "cifar-wrong-row-length": (
        lambda t: S.load_cifar10(cifar_dir(t, data_shape=(4, 100))),
        ValueError, r"data_batch_1"),
    "dataset-spec-digits-with-path": (
        lambda t: S.load_dataset("digits:/tmp"), ValueError, r"digits"),
    "dataset-spec-missing-path": (
        lambda t: S.load_dataset("npz:"), ValueError, r"missing path"),
    "dataset-spec-unknown": (
        lambda t: S.load_dataset("imagenet:/x"), ValueError,
        r"unknown dataset spec"),
    "dataset-images-3d": (
        lambda t: S.Dataset(np.zeros((4, 8, 8), np.float32),
                            np.zeros(4, np.int32), 10), ValueError,
        r"images"),
    "dataset-label-out-of-range": (
        lambda t: S.Dataset(np.zeros((4, 8, 8, 1), np.float32),
                            np.array([0, 1, 2, 10], np.int32), 10),
        ValueError, r"labels"),
    "dataset-split-fraction-one": (
        lambda t: tiny_dataset().split(1.0), ValueError, r"val_fraction"),
    "make-model-unknown": (
        lambda t: S.make_model("vgg", num_classes=10, in_channels=1),
        ValueError, r"name"),
    # train().
    "train-zero-epochs": (
        lambda t: train(num_epochs=0), ValueError, r"num_epochs"),
    "train-batch-larger-than-data": (
        lambda t: train(batch_size=17), ValueError, r"batch_size"),
    "train-optimizer-factory-instead-of-transformation": (
        lambda t: train(optimizer=optax.sgd), TypeError, r"optimizer"),
    "train-model-of-strings": (  # strings are static leaves: nothing to train
        lambda t: train(model={"w": "weights"}), ValueError,
        r"model has no floating-point parameters"),
    "train-empty-list-data": (
        lambda t: train(train_data=iter([])), ValueError,
        r"train_data is empty"),
    "train-unknown-execution": (
        lambda t: train(execution="while"), ValueError, r"execution"),
    "train-zero-checkpoint-every": (
        lambda t: train(checkpoint_every=0), ValueError,
        r"checkpoint_every"),
    "train-negative-seed": (
        lambda t: train(seed=-1), ValueError, r"seed"),
    "train-run-config-not-jsonable": (
        lambda t: train(run_config={"f": object()}), TypeError,
        r"run_config"),
}


@pytest.mark.parametrize("make, error, pattern", CASES.values(),
                         ids=CASES.keys())
def test_bad_input_is_rejected_early_by_name(tmp_path, make, error, pattern):
  with pytest.raises(error, match=pattern) as excinfo:
    make(tmp_path)
  # Raised by our own checks, not by jax (or numpy) on the way to a compile.
  frames = [pathlib.Path(str(entry.path)) for entry in excinfo.traceback]
  jax_frames = [f for f in frames if "jax" in f.parts or "flax" in f.parts]
  assert not jax_frames, jax_frames
  assert PKG in frames[-1].resolve().parents, frames[-1]
  # One line: the message reads as a single CLI error line.
  assert "\n" not in str(excinfo.value).strip()


def test_the_table_is_large_enough():
  assert len(CASES) >= 30
  assert len(CLI_CASES) >= 6


# ----------------------------------------------------------------------------
# The same through the CLI: exit code, one line on stderr, no traceback.

CLI_CASES = {
    "train-val-fraction-above-one": (
        ["train", "--val-fraction", "1.5", "--base-lr", "0.01", "--max-lr",
         "0.1"], r"--val-fraction"),
    "train-zero-width": (
        ["train", "--width", "0", "--base-lr", "0.01", "--max-lr", "0.1"],
        r"--width"),
    "train-zero-checkpoint-every": (
        ["train", "--checkpoint-every", "0", "--base-lr", "0.01", "--max-lr",
         "0.1"], r"--checkpoint-every"),
    "train-negative-seed": (
        ["train", "--seed", "-1", "--base-lr", "0.01", "--max-lr", "0.1"],
        r"--seed"),
    "range-test-digits-with-path": (
        ["range-test", "--data", "digits:/tmp", "--steps", "5"], r"digits"),
    "range-test-zero-batch-size": (
        ["range-test", "--batch-size", "0"], r"--batch-size"),
    "range-test-unknown-optimizer": (
        ["range-test", "--optimizer", "lamb"], r"--optimizer"),
    "range-test-momentum-one": (
        ["range-test", "--momentum", "1"], r"--momentum"),
    "plot-schedule-zero-steps": (
        ["plot-schedule", "--steps", "0"], r"--steps"),
}


def malformed_mnist_case(tmp_path):
  return ["range-test", "--data",
          f"mnist:{mnist_dir(tmp_path, truncate=True)}", "--steps", "5"]


@pytest.mark.parametrize("args, pattern",
                         [*CLI_CASES.values(), (None, r"train-images")],
                         ids=[*CLI_CASES.keys(), "range-test-truncated-mnist"])
def test_cli_bad_input_is_one_line_without_traceback(capsys, monkeypatch,
                                                     tmp_path, args, pattern):
  monkeypatch.setenv("OPTAX_CLR_CACHE_DIR", "")  # keep jax's config global
  if args is None:
    args = malformed_mnist_case(tmp_path)
  out_dir = tmp_path / "out"
  code = cli.main([*args, "--out", str(out_dir)])
  err = capsys.readouterr().err
  assert code != 0
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert "Traceback" not in err
  assert lines[0].startswith("optax-clr: error: "), err
  assert re.search(pattern, lines[0]), lines[0]
  if code == 2:  # a usage error is found before anything is written
    assert not out_dir.exists()


def test_gzipped_mnist_with_bad_magic_names_the_file(tmp_path):
  d = tmp_path / "mnist"
  d.mkdir()
  header = struct.pack(">IIII", 9999, 1, 28, 28)
  with gzip.open(d / "train-images-idx3-ubyte.gz", "wb") as f:
    f.write(header + bytes(28 * 28))
  write_idx(d / "train-labels-idx1-ubyte", 2049, (1,), bytes(1))
  with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz"):
    data_lib.load_mnist(d)


# ----------------------------------------------------------------------------
# Faults: a NaN/inf loss at any step. The poison is data (0, NaN or inf added
# to the loss), so one compiled program serves every case and the clean run.

STEPS, CHUNK = 20, 5
# first step, last of a chunk, first of the next (boundary), middle, last
POISON_STEPS = [0, CHUNK - 1, CHUNK, 12, STEPS - 1]


def poisoned_loss(p, batch):
  loss = loss_fn(p, batch)
  # Only the copies whose (constant, gradient-free) tag is above the batch's
  # threshold are poisoned; plain params have no tag and are always poisoned.
  hit = p["tag"] > batch["threshold"] if "tag" in p else True
  return loss + jnp.where(hit, batch["poison"], 0.0), {}


def poisoned_batches(step, value, threshold=0.0):
  data = arrays(STEPS * 8)
  return [{"x": data["x"][i * 8:(i + 1) * 8],
           "y": data["y"][i * 8:(i + 1) * 8],
           "poison": np.float32(value if i == step else 0.0),
           "threshold": np.float32(threshold)} for i in range(STEPS)]


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("step", POISON_STEPS)
def test_nonfinite_loss_at_any_step_ends_the_range_test_cleanly(step, value):
  run = lambda batches: optax_clr.range_test(  # noqa: E731
      params(), poisoned_loss, batches, start_lr=1e-3, end_lr=1.0,
      num_steps=STEPS, steps_per_chunk=CHUNK, diverge_threshold=None)
  clean = run(poisoned_batches(step, 0.0))
  result = run(poisoned_batches(step, value))
  assert clean.stop_reason == "completed" and clean.num_steps == STEPS
  assert result.stop_reason == "nonfinite"
  assert result.num_steps == step + 1  # the bad step is the last one kept
  assert not np.isfinite(result.losses[step])
  # Everything before it is exactly the clean run.
  np.testing.assert_array_equal(result.lrs, clean.lrs[:step + 1])
  np.testing.assert_array_equal(result.losses[:step], clean.losses[:step])
  np.testing.assert_array_equal(result.smoothed_losses[:step],
                                clean.smoothed_losses[:step])
  if step > 0:  # a suggestion can still be asked for without crashing
    result.suggest()


K = 4


def tagged_init(key):
  return {**params(), "tag": jax.random.uniform(key)}


def sweep_tags(seed=0):
  keys = jax.random.split(jax.random.key(seed), K)
  return np.array([float(jax.random.uniform(k)) for k in keys])


@pytest.mark.parametrize("step", POISON_STEPS)
def test_nonfinite_loss_marks_only_that_lr_diverged_in_a_sweep(step):
  tags = sweep_tags()
  victim = int(np.argmax(tags))
  threshold = float(np.sort(tags)[-2])  # only the largest tag is above it
  val = {**arrays(16), "poison": np.float32(0.0),
         "threshold": np.float32(threshold)}
  run = lambda batches: optax_clr.parallel_range_test(  # noqa: E731
      tagged_init(jax.random.key(0)), poisoned_loss, batches,
      lrs=[0.01, 0.03, 0.1, 0.3], num_steps=STEPS, steps_per_chunk=CHUNK,
      init="independent", model_init=tagged_init, diverge_threshold=None,
      val_data=val, seed=0)
  clean = run(poisoned_batches(step, 0.0, threshold))
  result = run(poisoned_batches(step, np.nan, threshold))
  assert not clean.diverged.any()
  expected = np.arange(K) == victim
  np.testing.assert_array_equal(result.diverged, expected)
  np.testing.assert_array_equal(result.diverged_at,
                                np.where(expected, step, -1))
  assert np.isnan(result.losses[victim, step:]).all()
  np.testing.assert_array_equal(result.losses[victim, :step],
                                clean.losses[victim, :step])
  assert np.isnan(result.eval_metrics["loss"][victim])
  # Every other LR keeps its whole result, bit for bit.
  others = ~expected
  np.testing.assert_array_equal(result.losses[others], clean.losses[others])
  np.testing.assert_array_equal(result.final_loss[others],
                                clean.final_loss[others])
  np.testing.assert_array_equal(result.mean_loss[others],
                                clean.mean_loss[others])
  np.testing.assert_array_equal(result.eval_metrics["loss"][others],
                                clean.eval_metrics["loss"][others])


# ----------------------------------------------------------------------------
# Resume through the CLI: interrupted after epoch 1, resumed to epoch 2, it
# must equal the uninterrupted run bit for bit.


@pytest.mark.slow  # three CLI training runs, each compiled anew
def test_cli_train_resumed_from_a_checkpoint_equals_an_uninterrupted_run(
    capsys, monkeypatch, tmp_path):
  monkeypatch.setenv("OPTAX_CLR_CACHE_DIR", "")
  common = ["train", "--width", "2", "--batch-size", "64", "--no-progress",
            "--policy", "triangular2", "--base-lr", "0.01", "--max-lr", "0.1",
            "--step-size", "1"]
  ckpt = tmp_path / "ckpt"
  runs = [
      [*common, "--epochs", "2", "--out", tmp_path / "whole"],
      [*common, "--epochs", "1", "--checkpoint-dir", ckpt, "--out",
       tmp_path / "part1"],
      [*common, "--epochs", "2", "--checkpoint-dir", ckpt, "--out",
       tmp_path / "part2"],
  ]
  for args in runs:
    code = cli.main([str(a) for a in args])
    assert code == 0, capsys.readouterr().err
  whole = json.loads((tmp_path / "whole" / "results.json").read_text())
  resumed = json.loads((tmp_path / "part2" / "results.json").read_text())
  assert len(resumed["losses"]) == 2 * 22  # 1438 // 64 steps per epoch
  for key in ("steps", "losses", "lrs", "momenta", "eval_steps",
              "eval_metrics"):
    assert resumed[key] == whole[key], key
