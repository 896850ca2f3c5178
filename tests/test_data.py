"""Specification of optax_clr.data: the Dataset container and the loaders."""

import gzip
import pickle

import chex
import numpy as np
import pytest

from optax_clr import data

# --------------------------------------------------------------------------
# Helpers that write small files in each format.


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
  header = magic.to_bytes(4, "big") + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def _write(path, payload: bytes, gz: bool):
  path.write_bytes(gzip.compress(payload) if gz else payload)
  return path


def _mnist_arrays(n, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
  labels = rng.integers(0, 10, n, dtype=np.uint8)
  return images, labels


def _write_mnist(directory, prefix, images, labels, gz):
  suffix = ".gz" if gz else ""
  _write(directory / f"{prefix}-images-idx3-ubyte{suffix}",
         _idx_bytes(images, 2051), gz)
  _write(directory / f"{prefix}-labels-idx1-ubyte{suffix}",
         _idx_bytes(labels, 2049), gz)


def _cifar_batch(n, seed):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, 3072), dtype=np.uint8),
          [int(v) for v in rng.integers(0, 10, n)])


def _write_cifar_batch(path, batch, protocol=2):
  with open(path, "wb") as f:
    pickle.dump(batch, f, protocol=protocol)


def _write_cifar(directory, n=4):
  directory.mkdir(parents=True, exist_ok=True)
  batches = {}
  for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)]
                           + ["test_batch"]):
    x, y = _cifar_batch(n, seed=i)
    # Byte-string keys, as in the original Python 2 pickles.
    _write_cifar_batch(directory / name,
                       {b"batch_label": name.encode(), b"data": x,
                        b"labels": y})
    batches[name] = (x, y)
  return batches


def _toy(n=10, num_classes=3, shape=(4, 4, 1)):
  images = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones(
      shape, np.float32)
  return data.Dataset(images, np.arange(n) % num_classes, num_classes, "toy")


# --------------------------------------------------------------------------
# Dataset.


def test_dataset_converts_to_float32_images_and_int32_labels():
  ds = data.Dataset(np.zeros((3, 2, 2, 1), np.float64),
                    np.array([0, 1, 2], np.int64), 3, "z")
  chex.assert_type(ds.images, np.float32)
  chex.assert_type(ds.labels, np.int32)
  assert len(ds) == 3 and ds.image_shape == (2, 2, 1)


@pytest.mark.parametrize("images, labels, match", [
    (np.zeros((3, 2, 2)), np.zeros(3, int), "ndim 4"),
    (np.zeros((3, 2, 2, 1)), np.zeros((3, 1), int), "ndim 1"),
    (np.zeros((3, 2, 2, 1)), np.zeros(2, int), "3 images but 2 labels"),
    (np.zeros((0, 2, 2, 1)), np.zeros(0, int), "empty"),
    (np.zeros((3, 2, 2, 1)), np.zeros(3, np.float32), "integers"),
    (np.zeros((3, 2, 2, 1), np.uint8), np.zeros(3, int), "floating point"),
    (np.zeros((3, 2, 2, 1)), np.array([0, 1, 5]), r"\[0, 3\).*\[0, 5\]"),
])
def test_dataset_rejects_malformed_arrays(images, labels, match):
  with pytest.raises(ValueError, match=match):
    data.Dataset(images, labels, 3, "bad")


def test_split_sizes_disjoint_and_covering():
  ds = _toy(n=10)
  train, val = ds.split(0.2, seed=0)
  assert (len(train), len(val)) == (8, 2)
  ids = np.concatenate([train.images[:, 0, 0, 0], val.images[:, 0, 0, 0]])
  np.testing.assert_array_equal(np.sort(ids), np.arange(10))
  assert train.name == "toy[train]" and val.name == "toy[val]"
  assert train.num_classes == val.num_classes == 3


def test_split_is_deterministic_and_seeded():
  ds = _toy(n=50)
  ids = lambda d: d.images[:, 0, 0, 0].tolist()
  a_train, a_val = ds.split(0.3, seed=1)
  b_train, b_val = ds.split(0.3, seed=1)
  _, c_val = ds.split(0.3, seed=2)
  assert ids(a_val) == ids(b_val) and ids(a_train) == ids(b_train)
  assert ids(a_val) != ids(c_val)


def test_split_keeps_at_least_one_example_on_each_side():
  train, val = _toy(n=3).split(0.01)
  assert (len(train), len(val)) == (2, 1)
  train, val = _toy(n=3).split(0.99)
  assert (len(train), len(val)) == (1, 2)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_fraction_outside_open_unit_interval(fraction):
  with pytest.raises(ValueError, match="val_fraction must be in"):
    _toy().split(fraction)


def test_batches_shapes_and_epoch_covers_every_example_once():
  ds = _toy(n=10)
  batches = list(ds.batches(5, epochs=1))
  assert len(batches) == 2 == ds.num_batches(5)
  for b in batches:
    chex.assert_shape(b["image"], (5, 4, 4, 1))
    chex.assert_shape(b["label"], (5,))
    chex.assert_type(b["label"], np.int32)
    # Images and labels stay paired: label = id % 3.
    np.testing.assert_array_equal(b["label"],
                                  b["image"][:, 0, 0, 0].astype(int) % 3)
  ids = np.concatenate([b["image"][:, 0, 0, 0] for b in batches])
  np.testing.assert_array_equal(np.sort(ids), np.arange(10))


def test_batches_same_seed_same_sequence_other_seed_other_sequence():
  ds = _toy(n=20)
  seq = lambda seed: [b["image"][:, 0, 0, 0].tolist()
                      for b in ds.batches(4, seed=seed, epochs=3)]
  assert seq(7) == seq(7)
  assert seq(7) != seq(8)


def test_batches_reshuffle_between_epochs():
  ds = _toy(n=20)
  it = ds.batches(20, seed=0)  # one batch per epoch
  first, second = next(it)["image"][:, 0, 0, 0], next(it)["image"][:, 0, 0, 0]
  np.testing.assert_array_equal(np.sort(first), np.sort(second))
  assert not np.array_equal(first, second)


def test_batches_infinite_by_default_and_drop_remainder():
  ds = _toy(n=10)
  it = ds.batches(3)
  assert len([next(it) for _ in range(25)]) == 25  # > 3 epochs of 3 batches
  assert ds.num_batches(3) == 3
  assert ds.num_batches(3, drop_remainder=False) == 4
  sizes = [len(b["label"])
           for b in ds.batches(3, epochs=2, drop_remainder=False)]
  assert sizes == [3, 3, 3, 1, 3, 3, 3, 1]


def test_batches_rejects_batch_larger_than_dataset_when_dropping():
  with pytest.raises(ValueError, match="batch_size must be <= the dataset "
                     "size 10"):
    _toy(n=10).batches(11)
  assert len(list(_toy(n=10).batches(11, epochs=1,
                                     drop_remainder=False))) == 1


def test_as_batch_is_the_whole_dataset():
  ds = _toy(n=7)
  batch = ds.as_batch()
  assert batch["image"] is ds.images and batch["label"] is ds.labels


# --------------------------------------------------------------------------
# Embedded digits.


def test_digits_shape_range_and_labels():
  ds = data.load_digits()
  chex.assert_shape(ds.images, (1797, 8, 8, 1))
  chex.assert_type(ds.images, np.float32)
  assert ds.images.min() == 0.0 and ds.images.max() == 1.0
  # 17 grey levels: k / 16.
  np.testing.assert_array_equal(np.unique(ds.images * 16), np.arange(17))
  np.testing.assert_array_equal(np.unique(ds.labels), np.arange(10))
  assert ds.num_classes == 10 and ds.name == "digits"


def test_digits_equal_scikit_learn_copy():
  sklearn_datasets = pytest.importorskip("sklearn.datasets")
  ref = sklearn_datasets.load_digits()
  ds = data.load_digits()
  np.testing.assert_array_equal(ds.images[..., 0] * 16, ref.images)
  np.testing.assert_array_equal(ds.labels, ref.target)


# --------------------------------------------------------------------------
# MNIST IDX.


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_round_trip_gzipped_and_plain(tmp_path, gz):
  images, labels = _mnist_arrays(5)
  _write_mnist(tmp_path, "train", images, labels, gz)
  ds = data.load_mnist(tmp_path)
  chex.assert_shape(ds.images, (5, 28, 28, 1))
  np.testing.assert_allclose(ds.images[..., 0], images / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(ds.labels, labels)
  assert ds.num_classes == 10 and ds.name == "mnist[train]"


def test_mnist_test_split_reads_t10k_files(tmp_path):
  train, train_labels = _mnist_arrays(4, seed=0)
  test, test_labels = _mnist_arrays(3, seed=1)
  _write_mnist(tmp_path, "train", train, train_labels, gz=True)
  _write_mnist(tmp_path, "t10k", test, test_labels, gz=False)
  ds = data.load_mnist(tmp_path, split="test")
  assert len(ds) == 3
  np.testing.assert_array_equal(ds.labels, test_labels)


def test_mnist_from_explicit_file_pair(tmp_path):
  images, labels = _mnist_arrays(2)
  x = _write(tmp_path / "imgs.idx", _idx_bytes(images, 2051), gz=False)
  y = _write(tmp_path / "lbls.idx.gz", _idx_bytes(labels, 2049), gz=True)
  ds = data.load_mnist((x, y))
  np.testing.assert_array_equal(ds.labels, labels)


def test_mnist_bad_magic_names_file_and_expected_magic(tmp_path):
  images, labels = _mnist_arrays(2)
  _write_mnist(tmp_path, "train", images, labels, gz=True)
  # Labels written where images are expected.
  _write(tmp_path / "train-images-idx3-ubyte.gz", _idx_bytes(labels, 2049),
         gz=True)
  with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: bad IDX "
                     r"magic 2049, expected 2051 \(images\)"):
    data.load_mnist(tmp_path)


def test_mnist_truncated_data_is_reported(tmp_path):
  images, labels = _mnist_arrays(3)
  _write_mnist(tmp_path, "train", images, labels, gz=False)
  path = tmp_path / "train-images-idx3-ubyte"
  path.write_bytes(path.read_bytes()[:-10])
  with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: IDX header "
                     r"declares shape \(3, 28, 28\)"):
    data.load_mnist(tmp_path)


def test_mnist_count_mismatch_names_both_files(tmp_path):
  images, _ = _mnist_arrays(3)
  _, labels = _mnist_arrays(2)
  _write_mnist(tmp_path, "train", images, labels, gz=False)
  with pytest.raises(ValueError, match="train-images-idx3-ubyte has 3 images "
                     "but train-labels-idx1-ubyte has 2 labels"):
    data.load_mnist(tmp_path)


def test_mnist_corrupt_gzip_and_missing_file(tmp_path):
  images, labels = _mnist_arrays(2)
  _write_mnist(tmp_path, "train", images, labels, gz=True)
  path = tmp_path / "train-labels-idx1-ubyte.gz"
  path.write_bytes(path.read_bytes()[:12])
  with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz: corrupt "
                     "gzip"):
    data.load_mnist(tmp_path)
  with pytest.raises(FileNotFoundError,
                     match=r"t10k-images-idx3-ubyte\[\.gz\]"):
    data.load_mnist(tmp_path, split="test")


def test_mnist_rejects_unknown_split(tmp_path):
  with pytest.raises(ValueError, match="split must be one of 'train', "
                     "'test'; got 'val'"):
    data.load_mnist(tmp_path, split="val")


# --------------------------------------------------------------------------
# CIFAR-10 pickles.


def test_cifar10_round_trip_to_nhwc(tmp_path):
  batches = _write_cifar(tmp_path / "cifar-10-batches-py")
  ds = data.load_cifar10(tmp_path)  # the parent directory is accepted
  chex.assert_shape(ds.images, (20, 32, 32, 3))
  x0, y0 = batches["data_batch_1"]
  # Row layout: 1024 red, 1024 green, 1024 blue values, each 32x32 row-major.
  np.testing.assert_allclose(ds.images[0, 0, 1, 0], x0[0, 1] / 255.0)
  np.testing.assert_allclose(ds.images[0, 2, 3, 1],
                             x0[0, 1024 + 2 * 32 + 3] / 255.0)
  np.testing.assert_allclose(ds.images[0, 31, 31, 2], x0[0, 3071] / 255.0)
  expected = np.concatenate([batches[f"data_batch_{i}"][1]
                             for i in range(1, 6)])
  np.testing.assert_array_equal(ds.labels, expected)
  assert ds.name == "cifar10[train]"


def test_cifar10_test_split_and_newer_pickle_protocol(tmp_path):
  directory = tmp_path / "cifar-10-batches-py"
  _write_cifar(directory)
  x, y = _cifar_batch(3, seed=9)
  _write_cifar_batch(directory / "test_batch", {"data": x, "labels": y},
                     protocol=5)  # str keys, protocol 5 buffers
  ds = data.load_cifar10(directory, split="test")
  np.testing.assert_array_equal(ds.labels, y)
  np.testing.assert_allclose(ds.images.transpose(0, 3, 1, 2).reshape(3, -1),
                             x / 255.0)


@pytest.mark.parametrize("batch, match", [
    ({b"labels": [0]}, "data_batch_3: missing key 'data'"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},
     r"'data' must be uint8 \[N, 3072\]"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},
     "data_batch_3: 2 images but 1 labels"),
    ([1, 2], "expected a dict"),
])
def test_cifar10_malformed_batch_names_file(tmp_path, batch, match):
  _write_cifar(tmp_path)
  _write_cifar_batch(tmp_path / "data_batch_3", batch)
  with pytest.raises(ValueError, match=match):
    data.load_cifar10(tmp_path)


def test_cifar10_refuses_pickles_that_import_other_code(tmp_path):
  _write_cifar(tmp_path)
  # A pickle that would call os.getcwd() when loaded by plain pickle.load.
  (tmp_path / "data_batch_2").write_bytes(b"cos\ngetcwd\n(tR.")
  with pytest.raises(ValueError, match="data_batch_2: not a CIFAR-10 python "
                     "pickle batch.*os.getcwd is not allowed"):
    data.load_cifar10(tmp_path)


def test_cifar10_missing_batch_files(tmp_path):
  _write_cifar(tmp_path)
  (tmp_path / "data_batch_4").unlink()
  with pytest.raises(FileNotFoundError, match="data_batch_4"):
    data.load_cifar10(tmp_path)


# --------------------------------------------------------------------------
# .npz.


def test_npz_uint8_grey_is_scaled_and_gets_a_channel(tmp_path):
  x = np.array([[[0, 255], [51, 102]]] * 3, np.uint8)
  np.savez(tmp_path / "grey.npz", x=x, y=np.array([0, 2, 1]))
  ds = data.load_npz(tmp_path / "grey.npz")
  chex.assert_shape(ds.images, (3, 2, 2, 1))
  np.testing.assert_allclose(ds.images[0, :, :, 0], [[0, 1], [0.2, 0.4]],
                             rtol=1e-6)
  assert ds.num_classes == 3 and ds.name == "grey"


def test_npz_float_colour_is_kept_and_num_classes_key_is_read(tmp_path):
  x = np.random.default_rng(0).normal(size=(4, 3, 3, 3))
  np.savez(tmp_path / "c.npz", x=x, y=np.array([0, 1, 0, 1]), num_classes=5)
  ds = data.load_npz(tmp_path / "c.npz")
  np.testing.assert_allclose(ds.images, x.astype(np.float32))
  assert ds.num_classes == 5


@pytest.mark.parametrize("arrays, match", [
    ({"x": np.zeros((2, 2, 2), np.uint8)}, "c.npz: missing key 'y'"),
    ({"y": np.zeros(2, int)}, "c.npz: missing key 'x'"),
    ({"x": np.zeros((2, 2), np.uint8), "y": np.zeros(2, int)},
     r"'x' must be \[N, H, W\] or \[N, H, W, C\], got shape \(2, 2\)"),
    ({"x": np.zeros((2, 2, 2), np.int32), "y": np.zeros(2, int)},
     "'x' must be uint8 or floating point, got int32"),
    ({"x": np.zeros((2, 2, 2)), "y": np.zeros(2)}, "'y' must be integer"),
    ({"x": np.zeros((2, 2, 2)), "y": np.zeros(3, int)},
     "2 images in 'x' but 3 labels in 'y'"),
    ({"x": np.zeros((2, 2, 2)), "y": np.array([0, -1])}, "negative label -1"),
    ({"x": np.zeros((2, 2, 2)), "y": np.array([0, 4]),
      "num_classes": np.array(3)}, "label 4 >= num_classes 3"),
])
def test_npz_malformed_names_file_and_problem(tmp_path, arrays, match):
  np.savez(tmp_path / "c.npz", **arrays)
  with pytest.raises(ValueError, match=match):
    data.load_npz(tmp_path / "c.npz")


def test_npz_not_an_archive_and_missing_file(tmp_path):
  (tmp_path / "junk.npz").write_bytes(b"not a zip file")
  with pytest.raises(ValueError, match="junk.npz: not a readable .npz"):
    data.load_npz(tmp_path / "junk.npz")
  with pytest.raises(FileNotFoundError, match="nothere.npz"):
    data.load_npz(tmp_path / "nothere.npz")


# --------------------------------------------------------------------------
# load_dataset specs.


def test_load_dataset_digits():
  ds = data.load_dataset("digits")
  assert ds.name == "digits" and len(ds) == 1797


def test_load_dataset_dispatches_each_kind(tmp_path):
  images, labels = _mnist_arrays(3)
  _write_mnist(tmp_path, "train", images, labels, gz=True)
  _write_mnist(tmp_path, "t10k", images[:2], labels[:2], gz=True)
  assert data.load_dataset(f"mnist:{tmp_path}").name == "mnist[train]"
  ds = data.load_dataset(f"fashion-mnist:{tmp_path}:test")
  assert ds.name == "fashion-mnist[test]" and len(ds) == 2
  _write_cifar(tmp_path / "c")
  assert len(data.load_dataset(f"cifar10:{tmp_path / 'c'}:test")) == 4
  np.savez(tmp_path / "d.npz", x=np.zeros((2, 3, 3), np.uint8), y=[0, 1])
  assert len(data.load_dataset(f"npz:{tmp_path / 'd.npz'}")) == 2


def test_load_dataset_path_with_colon(tmp_path):
  directory = tmp_path / "a:b"
  directory.mkdir()
  images, labels = _mnist_arrays(2)
  _write_mnist(directory, "t10k", images, labels, gz=False)
  assert len(data.load_dataset(f"mnist:{directory}:test")) == 2


@pytest.mark.parametrize("spec, match", [
    ("imagenet:/x", "unknown dataset spec 'imagenet:/x'; valid specs: "
     "digits, mnist:DIR"),
    ("mnist", "missing path after 'mnist:'"),
    ("cifar10::test", "missing path"),
    ("digits:test", "'digits' takes no path or split"),
])
def test_load_dataset_rejects_bad_specs(spec, match):
  with pytest.raises(ValueError, match=match):
    data.load_dataset(spec)
