"""Image classification datasets held in host memory, and their batches.

A :class:`Dataset` holds NHWC float32 images in [0, 1] and int32 labels,
splits deterministically and yields seeded, reshuffled ``{"image",
"label"}`` batches (the format of ``optax_clr.models.cross_entropy_loss``).
Nothing is downloaded: the 8x8 digits ship with the package, and
:func:`load_mnist`, :func:`load_cifar10` and :func:`load_npz` read local
files. Malformed files raise ValueError naming the file and what was
expected; missing ones FileNotFoundError naming what was looked for.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.resources
import math
import os
import pathlib
import pickle
from collections.abc import Iterator, Sequence

import numpy as np

from optax_clr import _checks
from optax_clr.engine import _feed

PathLike = str | os.PathLike

SPLITS = ("train", "test")


def _require(ok: bool, where: str, problem: str) -> None:
  """Raises ``ValueError("<where>: <problem>")`` unless ``ok``."""
  if not ok:
    raise ValueError(f"{where}: {problem}")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Images and integer labels in host memory.

  Attributes:
    images: float32 ``[N, H, W, C]`` (NHWC), values in [0, 1] for the
      built-in loaders.
    labels: int32 ``[N]``, each in ``[0, num_classes)``.
    num_classes: number of classes.
    name: a label for reports and plots.
  """

  images: np.ndarray
  labels: np.ndarray
  num_classes: int
  name: str = "dataset"

  def __post_init__(self):
    images, labels = np.asarray(self.images), np.asarray(self.labels)
    where = f"Dataset {self.name!r}"
    _require(images.ndim == 4 and 0 not in images.shape[1:], where,
             "images must be [N, H, W, C] (ndim 4, no empty H, W or C), got "
             f"shape {images.shape}")
    _require(np.issubdtype(images.dtype, np.floating), where, "images must be"
             f" floating point (scaled to [0, 1]), got dtype {images.dtype}")
    _require(labels.ndim == 1, where,
             f"labels must be [N] (ndim 1), got shape {labels.shape}")
    _require(np.issubdtype(labels.dtype, np.integer), where,
             f"labels must be integers, got dtype {labels.dtype}")
    _require(len(images) == len(labels), where,
             f"{len(images)} images but {len(labels)} labels")
    if len(images) == 0:
      raise ValueError(f"{where} is empty")
    _checks.check_int("num_classes", self.num_classes, low=1)
    low, high = int(labels.min()), int(labels.max())
    _require(0 <= low and high < self.num_classes, where,
             f"labels must be in [0, {self.num_classes}), got values in "
             f"[{low}, {high}]")
    # astype(copy=False) keeps an already-float32 array (CIFAR-10 is 600 MB).
    object.__setattr__(self, "images", images.astype(np.float32, copy=False))
    object.__setattr__(self, "labels", labels.astype(np.int32, copy=False))
    object.__setattr__(self, "num_classes", int(self.num_classes))

  def __len__(self) -> int:
    return len(self.labels)

  def __repr__(self) -> str:
    return (f"Dataset(name={self.name!r}, images={self.images.shape} "
            f"{self.images.dtype}, num_classes={self.num_classes})")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """``(H, W, C)`` of one image."""
    return tuple(self.images.shape[1:])  # type: ignore[return-value]

  def split(self, val_fraction: float = 0.2,
            seed: int = 0) -> tuple[Dataset, Dataset]:
    """Splits into ``(train, val)`` by a seeded random permutation (not
    stratified): ``round(N * val_fraction)`` examples, at least one and not
    all, go to ``"<name>[val]"``, the rest to ``"<name>[train]"``.

    Args:
      val_fraction: fraction of examples for validation, in (0, 1).
      seed: seed of the permutation.
    """
    _checks.check_number("val_fraction", val_fraction, low=0.0, high=1.0,
                         low_inclusive=False, high_inclusive=False)
    _checks.check_int("seed", seed, low=0)
    n = len(self)
    if n < 2:
      raise ValueError(f"Dataset {self.name!r} has {n} example; cannot split")
    num_val = min(max(int(round(n * val_fraction)), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return tuple(  # type: ignore[return-value]
        Dataset(self.images[i], self.labels[i], self.num_classes,
                f"{self.name}[{part}]")
        for i, part in ((np.sort(order[num_val:]), "train"),
                        (np.sort(order[:num_val]), "val")))

  def num_batches(self, batch_size: int, *,
                  drop_remainder: bool = True) -> int:
    """Batches per epoch: ``N // batch_size`` (or the ceiling when the last,
    smaller batch is kept)."""
    _checks.check_int("batch_size", batch_size)
    if drop_remainder:
      return len(self) // batch_size
    return -(-len(self) // batch_size)

  def batches(self, batch_size: int, *, seed: int = 0,
              epochs: int | None = None,
              drop_remainder: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """Yields ``{"image": [B, H, W, C], "label": [B]}`` NumPy batches.

    Epoch ``e`` visits the examples in the permutation drawn from
    ``np.random.default_rng((seed, e))``, as every driver does.

    Args:
      batch_size: examples per batch.
      seed: seed of the shuffles.
      epochs: number of passes over the data; None repeats forever.
      drop_remainder: drop each epoch's last incomplete batch, so that every
        batch has one shape (no recompilation); then ``batch_size`` must be
        at most ``len(self)``.
    """
    _checks.check_int("batch_size", batch_size)
    _checks.check_int("seed", seed, low=0)
    if epochs is not None:
      _checks.check_int("epochs", epochs, low=0)
    per_epoch = self.num_batches(batch_size, drop_remainder=drop_remainder)
    if per_epoch == 0:
      raise ValueError(
          f"batch_size must be <= the dataset size {len(self)} when "
          f"drop_remainder=True, got {batch_size}")
    return self._batches(batch_size, seed, epochs, per_epoch)

  def _batches(self, batch_size, seed, epochs, per_epoch):
    # A separate generator so that argument errors are raised by batches()
    # itself, not at the first next().
    epoch = 0
    while epochs is None or epoch < epochs:
      order = _feed.epoch_order(seed, epoch, len(self))
      for b in range(per_epoch):
        index = order[b * batch_size:(b + 1) * batch_size]
        yield {"image": self.images[index], "label": self.labels[index]}
      epoch += 1

  def as_batch(self) -> dict[str, np.ndarray]:
    """The whole dataset as one ``{"image", "label"}`` batch (for
    validation)."""
    return {"image": self.images, "label": self.labels}


def load_digits() -> Dataset:
  """The embedded default: 1797 8x8 grey digits, labels 0..9.

  scikit-learn's copy (BSD-3-Clause) of the test set of the UCI "Optical
  Recognition of Handwritten Digits" data (optdigits; E. Alpaydin and
  C. Kaynak, 1998), written by ``tools/make_digits_npz.py``: 17 grey levels
  (0..16), divided by 16 here. Named ``"digits"``, shape ``[1797, 8, 8, 1]``.
  """
  resource = importlib.resources.files("optax_clr") / "_data" / "digits.npz"
  with resource.open("rb") as f, np.load(f, allow_pickle=False) as npz:
    x, y = npz["x"], npz["y"]
  return Dataset((x.astype(np.float32) / 16.0)[..., None], y.astype(np.int32),
                 10, "digits")


def _ten_classes(where: str, labels: np.ndarray) -> None:
  """MNIST's and CIFAR-10's labels are the digits 0..9."""
  if len(labels):
    low, high = int(labels.min()), int(labels.max())
    _require(low >= 0 and high <= 9, where,
             f"labels must be 0..9, got values in [{low}, {high}]")


_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


def _read_bytes(path: pathlib.Path) -> bytes:
  """Reads a file, gunzipping it when it starts with the gzip magic."""
  try:
    data = path.read_bytes()
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: no such file") from None
  except OSError as e:
    raise ValueError(f"{path}: cannot read ({e})") from e
  if data[:2] == b"\x1f\x8b":
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
      raise ValueError(f"{path}: corrupt gzip data ({e})") from e
  return data


def read_idx(path: PathLike, *, expected_magic: int) -> np.ndarray:
  """Reads an IDX file of unsigned bytes (the MNIST format).

  Layout: a big-endian int32 magic number ``0x0000 08 D`` (type code 0x08 =
  unsigned byte, ``D`` dimensions), ``D`` big-endian uint32 sizes, then the
  data in row-major order. Gzipped files are detected by content.

  Args:
    path: the file.
    expected_magic: 2051 for images ``[N, rows, cols]``, 2049 for labels
      ``[N]``.

  Returns:
    A uint8 array of the declared shape.
  """
  path = pathlib.Path(path)
  data, where = _read_bytes(path), path.name
  what = {_IDX_IMAGES_MAGIC: "images", _IDX_LABELS_MAGIC: "labels"}.get(
      expected_magic, "data")
  _require(len(data) >= 4, where, f"{len(data)} bytes is too short for an "
           f"IDX header (expected magic {expected_magic} ({what}))")
  magic = int.from_bytes(data[:4], "big")
  _require(magic == expected_magic, where,
           f"bad IDX magic {magic}, expected {expected_magic} ({what})")
  ndim = magic & 0xFF
  header = 4 + 4 * ndim
  _require(len(data) >= header, where, f"truncated IDX header ({len(data)} "
           f"bytes, expected {header} for {ndim} dimensions)")
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big")
                for i in range(ndim))
  size = math.prod(shape)  # exact: np.prod wraps at 2**63 (e.g. to 0)
  _require(len(data) - header == size, where,
           f"IDX header declares shape {shape} ({size} bytes of data) but "
           f"the file has {len(data) - header} bytes of data")
  return np.frombuffer(data, np.uint8, count=size, offset=header).reshape(
      shape)


def _find_file(directory: pathlib.Path, names: Sequence[str]) -> pathlib.Path:
  for name in names:
    for candidate in (directory / name, directory / (name + ".gz")):
      if candidate.is_file():
        return candidate
  tried = ", ".join(f"{n}[.gz]" for n in names)
  raise FileNotFoundError(f"{directory}: none of {tried} found")


def _directory(path: PathLike) -> pathlib.Path:
  directory = pathlib.Path(path).expanduser()
  if not directory.is_dir():
    raise FileNotFoundError(f"{directory}: not a directory")
  return directory


def load_mnist(directory_or_files: PathLike | tuple[PathLike, PathLike],
               split: str = "train", *, name: str = "mnist") -> Dataset:
  """Loads MNIST or Fashion-MNIST from local IDX files (gzipped or not).

  Args:
    directory_or_files: a directory holding
      ``{train,t10k}-images-idx3-ubyte[.gz]`` and
      ``{train,t10k}-labels-idx1-ubyte[.gz]`` (also accepted:
      ``train-images.idx3-ubyte``), or an ``(images_file, labels_file)`` pair.
    split: ``"train"`` (60000 images for MNIST) or ``"test"`` (``t10k``,
      10000); ignored when files are given.
    name: the dataset's name.

  Returns:
    Images ``[N, 28, 28, 1]`` float32 in [0, 1] (bytes / 255), labels 0..9.
  """
  _checks.check_choice("split", split, SPLITS)
  if isinstance(directory_or_files, (tuple, list)):
    if len(directory_or_files) != 2:
      raise ValueError(
          "directory_or_files must be a directory or an (images_file, "
          f"labels_file) pair, got {directory_or_files!r}")
    images_path, labels_path = (pathlib.Path(p).expanduser()
                                for p in directory_or_files)
  else:
    directory = _directory(directory_or_files)
    prefix = "train" if split == "train" else "t10k"
    images_path, labels_path = (
        _find_file(directory, (f"{prefix}-{kind}-idx{d}-ubyte",
                               f"{prefix}-{kind}.idx{d}-ubyte"))
        for kind, d in (("images", 3), ("labels", 1)))
  images = read_idx(images_path, expected_magic=_IDX_IMAGES_MAGIC)
  labels = read_idx(labels_path, expected_magic=_IDX_LABELS_MAGIC)
  if len(images) != len(labels):
    raise ValueError(
        f"{images_path.name} has {len(images)} images but {labels_path.name} "
        f"has {len(labels)} labels")
  _ten_classes(labels_path.name, labels)
  return Dataset((images.astype(np.float32) / 255.0)[..., None],
                 labels.astype(np.int32), 10, f"{name}[{split}]")


_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)),
                "test": ("test_batch",)}


class _CifarUnpickler(pickle.Unpickler):
  """Unpickles only dicts, lists, strings and NumPy arrays.

  The CIFAR-10 batches are pickles; a plain ``pickle.load`` of a file from
  the internet can run arbitrary code, so only the globals a NumPy array
  needs are allowed.
  """

  _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")
             } | {(f"numpy.{core}.{module}", name)  # NumPy 1 and 2 names
                  for core in ("core", "_core")
                  for module, name in (("multiarray", "_reconstruct"),
                                       ("multiarray", "scalar"),
                                       ("numeric", "_frombuffer"))}

  def find_class(self, module, name):
    if (module, name) in self._ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def _load_cifar_batch(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
  try:
    with path.open("rb") as f:
      batch = _CifarUnpickler(f, encoding="bytes").load()
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: no such file") from None
  except Exception as e:  # pickle raises many types on garbage input
    raise ValueError(
        f"{path.name}: not a CIFAR-10 python pickle batch ({type(e).__name__}:"
        f" {e})") from e
  where = path.name
  _require(isinstance(batch, dict), where, "expected a dict with 'data' and "
           f"'labels', got {type(batch).__name__}")
  # Python 2 pickles loaded with encoding="bytes" have bytes keys.
  data, labels = (batch.get(key.encode(), batch.get(key))
                  for key in ("data", "labels"))
  for key, value in (("data", data), ("labels", labels)):
    _require(value is not None, where, f"missing key '{key}'")
  data, labels = np.asarray(data), np.asarray(labels)
  _require(data.dtype == np.uint8 and data.ndim == 2
           and data.shape[1] == 3072, where, "'data' must be uint8 [N, 3072] "
           f"(3x32x32 per row), got {data.dtype} {data.shape}")
  _require(labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer),
           where, "'labels' must be a list of N ints, got "
           f"{labels.dtype} {labels.shape}")
  _require(len(data) == len(labels), where,
           f"{len(data)} images but {len(labels)} labels")
  _ten_classes(where, labels)
  return data, labels


def load_cifar10(directory: PathLike, split: str = "train") -> Dataset:
  """Loads CIFAR-10 from the python pickle batches.

  Args:
    directory: the ``cifar-10-batches-py`` directory, or a directory that
      contains it.
    split: ``"train"`` (``data_batch_1`` .. ``data_batch_5``, 50000 images) or
      ``"test"`` (``test_batch``, 10000).

  Returns:
    Images ``[N, 32, 32, 3]`` float32 in [0, 1] (bytes / 255), labels 0..9.
  """
  _checks.check_choice("split", split, SPLITS)
  directory = pathlib.Path(directory).expanduser()
  if (directory / _CIFAR_DIR).is_dir():
    directory = directory / _CIFAR_DIR
  directory = _directory(directory)
  missing = [n for n in _CIFAR_FILES[split] if not (directory / n).is_file()]
  if missing:
    raise FileNotFoundError(
        f"{directory}: missing CIFAR-10 batch file(s) {', '.join(missing)}")
  data, labels = (np.concatenate(part) for part in zip(
      *(_load_cifar_batch(directory / n) for n in _CIFAR_FILES[split])))
  # Each row is the red, green, then blue 32x32 plane: [N, C, H, W] -> NHWC.
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(
      np.float32)
  images /= 255.0  # in place: no second 600 MB array
  return Dataset(images, labels.astype(np.int32), 10, f"cifar10[{split}]")


def load_npz(path: PathLike, *, name: str | None = None) -> Dataset:
  """Loads images and labels from an ``.npz`` file.

  Args:
    path: a file with ``x``: ``[N, H, W]`` (grey) or ``[N, H, W, C]`` images,
      uint8 (divided by 255) or floating point (kept as is, cast to float32);
      ``y``: ``[N]`` non-negative integer labels; optionally ``num_classes``,
      a scalar (default ``max(y) + 1``).
    name: the dataset's name (default: the file's stem).

  Returns:
    The :class:`Dataset`.
  """
  path = pathlib.Path(path).expanduser()
  where = path.name
  if path.is_dir():
    raise ValueError(f"{path}: a directory, not an .npz file")
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such file")
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {k: npz[k] for k in npz.files}
  except Exception as e:  # np.load raises several types on garbage input
    raise ValueError(f"{where}: not a readable .npz of numeric arrays "
                     f"({type(e).__name__}: {e})") from e
  for key in ("x", "y"):
    _require(key in arrays, where, f"missing key '{key}' (found "
             f"{sorted(arrays)}; expected 'x' images [N, H, W] or "
             "[N, H, W, C] and 'y' labels [N])")
  x, y = arrays["x"], arrays["y"]
  x = x[..., None] if x.ndim == 3 else x
  _require(x.ndim == 4, where,
           f"'x' must be [N, H, W] or [N, H, W, C], got shape {x.shape}")
  if x.dtype == np.uint8:
    x = x.astype(np.float32) / 255.0
  elif np.issubdtype(x.dtype, np.floating):
    with np.errstate(over="ignore"):
      x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
      i = tuple(int(j) for j in np.argwhere(~np.isfinite(x))[0])
      raise ValueError(f"{where}: 'x' must be finite (in float32), got "
                       f"{x[i]} at index {i}")
  else:
    raise ValueError(
        f"{where}: 'x' must be uint8 or floating point, got {x.dtype}")
  _require(y.ndim == 1 and np.issubdtype(y.dtype, np.integer), where,
           f"'y' must be integer labels [N], got {y.dtype} {y.shape}")
  _require(len(x) == len(y), where,
           f"{len(x)} images in 'x' but {len(y)} labels in 'y'")
  _require(len(y) > 0, where, "no examples")
  _require(y.min() >= 0, where, f"'y' has negative label {int(y.min())}")
  # Labels are int32, and so are the classes.
  _require(int(y.max()) < _checks.INT32_MAX, where, f"'y' has label "
           f"{int(y.max())}, beyond the int32 labels (< {_checks.INT32_MAX})")
  num_classes = int(y.max()) + 1
  if "num_classes" in arrays:
    given = arrays["num_classes"]
    _require(given.shape == () and np.issubdtype(given.dtype, np.integer),
             where, "'num_classes' must be an integer scalar, got "
             f"{given.dtype} {given.shape}")
    _require(1 <= int(given) <= _checks.INT32_MAX, where, "'num_classes' "
             f"must be in [1, {_checks.INT32_MAX}], got {int(given)}")
    _require(y.max() < int(given), where, f"'y' has label {int(y.max())} >= "
             f"num_classes {int(given)}")
    num_classes = int(given)
  return Dataset(x, y.astype(np.int32), num_classes,
                 name if name is not None else path.stem)


DATASET_SPECS = ("digits", "mnist:DIR", "fashion-mnist:DIR", "cifar10:DIR",
                 "npz:PATH")


def load_dataset(spec: str) -> Dataset:
  """Loads a dataset from a command-line spec.

  Specs:
    ``digits`` — the embedded 8x8 digits (split it with
    :meth:`Dataset.split`);
    ``mnist:DIR``, ``fashion-mnist:DIR`` — IDX files in DIR;
    ``cifar10:DIR`` — the pickle batches in DIR (or DIR/cifar-10-batches-py);
    ``npz:PATH`` — an ``.npz`` file (see :func:`load_npz`).

  ``mnist``, ``fashion-mnist`` and ``cifar10`` take an optional ``:train``
  (default) or ``:test`` suffix, e.g. ``mnist:~/data/mnist:test``. The path
  may itself contain colons; only a final ``:train``/``:test`` is read as the
  split.
  """
  if not isinstance(spec, str):
    raise TypeError(f"spec must be a string, got {type(spec).__name__}")
  kind, _, rest = spec.partition(":")
  kind = kind.strip().lower()
  valid = f"valid specs: {', '.join(DATASET_SPECS)}"
  if kind == "digits":
    _require(not rest, f"dataset spec {spec!r}",
             f"'digits' takes no path or split ({valid})")
    return load_digits()
  if kind not in ("mnist", "fashion-mnist", "cifar10", "npz"):
    raise ValueError(f"unknown dataset spec {spec!r}; {valid}")
  split = "train"
  if kind != "npz":
    head, sep, tail = rest.rpartition(":")
    if sep and tail in SPLITS:
      rest, split = head, tail
  _require(bool(rest), f"dataset spec {spec!r}",
           f"missing path after '{kind}:' ({valid})")
  if kind == "npz":
    return load_npz(rest)
  if kind == "cifar10":
    return load_cifar10(rest, split)
  return load_mnist(rest, split, name=kind)
