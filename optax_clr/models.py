"""Small Flax NNX image classifiers (NHWC float32 ``[B, H, W, C]`` ->
logits ``[B, num_classes]``), written for K copies trained at once by
``jax.vmap`` over their params: convolutions are :class:`Im2ColConv`, and
there is no BatchNorm, dropout or stored RNG stream, so ``nnx.split(model)``
yields only ``nnx.Param`` leaves and a copy's forward pass is a pure function
of its params.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from flax.nnx.nn import dtypes as nnx_dtypes

from optax_clr import _checks

Array = jax.Array
PaddingLike = str | int | Sequence[tuple[int, int]]

# Same defaults as nnx.Conv / nnx.Linear: for a kernel flattened to
# [kh*kw*in, out], lecun_normal's fan_in is kh*kw*in, exactly as for the
# [kh, kw, in, out] kernel of nnx.Conv, so the two initial distributions agree.
default_kernel_init = nnx.initializers.lecun_normal()
default_bias_init = nnx.initializers.zeros_init()


def _pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
  """Broadcasts an int to a pair and checks both entries are >= 1."""
  if isinstance(value, int) and not isinstance(value, bool):
    value = (value, value)
  value = tuple(value)
  if len(value) != 2:
    raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
  for v in value:
    _checks.check_int(name, v, low=1)
  return value  # type: ignore[return-value]


def _canonical_padding(padding: PaddingLike) -> str | tuple[tuple[int, int],
                                                            tuple[int, int]]:
  """"SAME"/"VALID", a symmetric int, or ((top, bottom), (left, right))."""
  if isinstance(padding, str):
    return _checks.check_choice("padding", padding.upper(), ("SAME", "VALID"))
  if isinstance(padding, int) and not isinstance(padding, bool):
    _checks.check_int("padding", padding, low=0)
    return ((padding, padding), (padding, padding))
  try:
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)  # type: ignore
  except (TypeError, ValueError):
    pads = ()
  if len(pads) != 2 or any(p < 0 for pair in pads for p in pair):
    raise ValueError(
        "padding must be 'SAME', 'VALID', an int >= 0 or "
        f"((top, bottom), (left, right)) of ints >= 0, got {padding!r}")
  return pads  # type: ignore[return-value]


class Im2ColConv(nnx.Module):
  """2-D convolution as shifted slices plus a single matmul (NHWC).

  For a padded input ``x`` and kernel ``k`` of shape ``[kh*kw*in, out]``,

    patches[b, h, w] = concat_{i<kh, j<kw} x[b, h*sh + i, w*sw + j, :]
    y[b, h, w, :] = patches[b, h, w] @ k (+ bias)

  which is the cross-correlation of ``lax.conv_general_dilated`` (and
  ``nnx.Conv``); ``conv_kernel.reshape(kh * kw * in, out)`` of an ``nnx.Conv``
  kernel ``[kh, kw, in, out]`` is the equivalent kernel here.

  Why: under ``jax.vmap`` over the weights a ``lax.conv`` becomes a grouped
  convolution that XLA:CPU runs about 5x slower than the same work done copy
  by copy, while a vmapped matmul is a batched matmul that runs as fast
  (measured with 32 and 64 copies on 2 CPU cores; see
  ``shared/reference/clr-facts.md``). The price is the ``kh*kw``-times
  larger patches array.

  Args:
    in_features: input channels (last axis of the input).
    out_features: output channels.
    kernel_size: ``(kh, kw)`` or one int for both.
    strides: ``(sh, sw)`` or one int for both; strided slices, so a stride-2
      layer computes only the outputs it keeps.
    padding: ``"SAME"`` (XLA's rule: output ``ceil(H / sh)``, extra padding
      at the bottom/right), ``"VALID"``, an int padded on every side, or
      ``((top, bottom), (left, right))``.
    use_bias, dtype, param_dtype, precision, kernel_init, bias_init, rngs: as
      in ``nnx.Conv`` (``precision`` is passed to ``jnp.dot``).

  Attributes:
    kernel: ``nnx.Param`` of shape ``[kh * kw * in_features, out_features]``.
    bias: ``nnx.Param`` of shape ``[out_features]`` or None.
  """

  def __init__(
      self,
      in_features: int,
      out_features: int,
      kernel_size: int | Sequence[int] = (3, 3),
      *,
      strides: int | Sequence[int] = 1,
      padding: PaddingLike = "SAME",
      use_bias: bool = True,
      dtype: Any = None,
      param_dtype: Any = jnp.float32,
      precision: jax.lax.PrecisionLike = None,
      kernel_init: nnx.Initializer = default_kernel_init,
      bias_init: nnx.Initializer = default_bias_init,
      rngs: nnx.Rngs,
  ):
    _checks.check_int("in_features", in_features)
    _checks.check_int("out_features", out_features)
    self.in_features = in_features
    self.out_features = out_features
    self.kernel_size = _pair("kernel_size", kernel_size)
    self.strides = _pair("strides", strides)
    self.padding = _canonical_padding(padding)
    self.use_bias = use_bias
    self.dtype = dtype
    self.precision = precision
    kh, kw = self.kernel_size
    self.kernel = nnx.Param(kernel_init(
        rngs.params(), (kh * kw * in_features, out_features), param_dtype))
    self.bias = (nnx.Param(bias_init(rngs.params(), (out_features,),
                                     param_dtype)) if use_bias else None)

  def __call__(self, x: Array) -> Array:
    """``[B, H, W, in_features]`` -> ``[B, H', W', out_features]``, with
    ``H' = ceil(H / sh)`` for "SAME", ``(H + pads - kh) // sh + 1`` else."""
    if x.ndim != 4 or x.shape[-1] != self.in_features:
      raise ValueError(
          f"Im2ColConv expects NHWC input [B, H, W, {self.in_features}], got "
          f"shape {x.shape}")
    kernel = self.kernel[...]
    bias = self.bias[...] if self.bias is not None else None
    x, kernel, bias = nnx_dtypes.promote_dtype(
        (x, kernel, bias), dtype=self.dtype)
    kh, kw = self.kernel_size
    sh, sw = self.strides
    (pt, pb), (pl, pr) = (jax.lax.padtype_to_pads(
        x.shape[1:3], self.kernel_size, self.strides, self.padding)
                          if isinstance(self.padding, str) else self.padding)
    if pt or pb or pl or pr:
      x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    batch, height, width, channels = x.shape
    out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
    if out_h < 1 or out_w < 1:
      raise ValueError(
          f"Im2ColConv: padded input {height}x{width} is smaller than the "
          f"kernel {kh}x{kw}")
    # Slice order (i, then j, then the input channel) is the row-major order
    # of an nnx.Conv kernel [kh, kw, in, out].
    slices = [
        jax.lax.slice(
            x, (0, i, j, 0),
            (batch, i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1,
             channels),
            (1, sh, sw, 1))
        for i in range(kh) for j in range(kw)
    ]
    patches = slices[0] if len(slices) == 1 else jnp.concatenate(slices, -1)
    y = jnp.dot(patches, kernel, precision=self.precision)
    return y if bias is None else y + bias


def avg_pool_2x2(x: Array) -> Array:
  """2x2 average pooling with stride 2 on NHWC; an odd last row/column is
  dropped (7x7 -> 3x3), as in ``nnx.avg_pool(x, (2, 2), (2, 2))``.

  A crop and a reshape-mean rather than ``reduce_window``: plain reshapes and
  reductions stay cheap under ``vmap``.
  """
  batch, height, width, channels = x.shape
  if height < 2 or width < 2:
    raise ValueError(f"avg_pool_2x2 needs H, W >= 2, got shape {x.shape}")
  h2, w2 = height // 2, width // 2
  x = x[:, :2 * h2, :2 * w2, :]
  return x.reshape(batch, h2, 2, w2, 2, channels).mean(axis=(2, 4))


class CNN(nnx.Module):
  """The small default classifier.

  conv3x3(width) -> relu -> conv3x3(2 width) -> relu -> 2x2 avg pool ->
  conv3x3(2 width) -> relu -> global max pool -> dense(num_classes).

  For any input of at least 2x2 pixels, grey or colour; ``width=16`` has
  about 15k parameters. Global max pooling, not average: on the 8x8 digits
  (batch 64, SGD momentum 0.9, lr 0.1) the average-pooled net sat near chance
  for the first epoch (loss 2.25, max-pooled 0.64; 0.70 vs 0.09 after three),
  and at lr 0.3 the max-pooled one diverges: a clear rise-and-fall for the
  LR range test on the default data.

  Args:
    num_classes: number of output logits.
    in_channels: input channels (1 for grey, 3 for colour).
    width: channels of the first convolution; the others have ``2 width``.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  def __init__(self, num_classes: int = 10, in_channels: int = 1,
               width: int = 16, *, rngs: nnx.Rngs):
    _checks.check_int("num_classes", num_classes, low=2)
    _checks.check_int("in_channels", in_channels)
    _checks.check_int("width", width)
    self.conv1 = Im2ColConv(in_channels, width, rngs=rngs)
    self.conv2 = Im2ColConv(width, 2 * width, rngs=rngs)
    self.conv3 = Im2ColConv(2 * width, 2 * width, rngs=rngs)
    self.head = nnx.Linear(2 * width, num_classes, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    """Returns logits ``[B, num_classes]`` for images ``x`` ``[B, H, W, C]``."""
    x = jax.nn.relu(self.conv1(x))
    x = avg_pool_2x2(jax.nn.relu(self.conv2(x)))
    x = jax.nn.relu(self.conv3(x))
    return self.head(x.max(axis=(1, 2)))


def _group_norm(num_features: int, *, zero_scale: bool = False,
                rngs: nnx.Rngs) -> nnx.GroupNorm:
  # Up to 8 groups, always a divisor of num_features (1 group = LayerNorm over
  # H, W, C for an odd width).
  return nnx.GroupNorm(
      num_features, num_groups=math.gcd(num_features, 8),
      scale_init=(nnx.initializers.zeros_init() if zero_scale
                  else nnx.initializers.ones_init()),
      rngs=rngs)


class ResidualBlock(nnx.Module):
  """Two 3x3 convolutions with GroupNorm and an identity or 1x1 shortcut.

  y = relu(shortcut(x) + gn2(conv2(relu(gn1(conv1(x))))))

  ``conv1`` carries the stride; the shortcut is a strided 1x1 convolution
  plus GroupNorm when the stride or the channel count changes. ``gn2``'s scale
  starts at zero (Goyal et al., 2017, "Accurate, Large Minibatch SGD"), so each
  block starts as the identity and a deep stack trains stably without
  BatchNorm — which also keeps the early loss of an LR range test smooth.
  """

  def __init__(self, in_features: int, out_features: int, strides: int = 1,
               *, rngs: nnx.Rngs):
    conv = functools.partial(Im2ColConv, use_bias=False, rngs=rngs)
    self.conv1 = conv(in_features, out_features, strides=strides)
    self.norm1 = _group_norm(out_features, rngs=rngs)
    self.conv2 = conv(out_features, out_features)
    self.norm2 = _group_norm(out_features, zero_scale=True, rngs=rngs)
    if strides != 1 or in_features != out_features:
      self.shortcut = conv(in_features, out_features, (1, 1), strides=strides)
      self.shortcut_norm = _group_norm(out_features, rngs=rngs)
    else:
      self.shortcut = self.shortcut_norm = None

  def __call__(self, x: Array) -> Array:
    y = jax.nn.relu(self.norm1(self.conv1(x)))
    y = self.norm2(self.conv2(y))
    if self.shortcut is not None:
      x = self.shortcut_norm(self.shortcut(x))
    return jax.nn.relu(x + y)


class ResNet(nnx.Module):
  """A CIFAR-style residual network (He et al., 2016, section 4.2).

  stem conv3x3(width) + GroupNorm + relu, then three stages of
  ``blocks_per_stage`` :class:`ResidualBlock` with ``width, 2 width, 4 width``
  channels (stages 2 and 3 start with stride 2), global average pool, dense:
  ``6n + 2`` weight layers for ``blocks_per_stage=n`` (n=3: ResNet-20).
  GroupNorm, not BatchNorm: per-example statistics, so no running state in
  the vmapped copies, and the same function in training and evaluation.

  Args:
    num_classes, in_channels: logits out, image channels in.
    width: channels of the stem and the first stage.
    blocks_per_stage: residual blocks in each of the three stages.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  def __init__(self, num_classes: int = 10, in_channels: int = 3,
               width: int = 16, blocks_per_stage: int = 1, *,
               rngs: nnx.Rngs):
    _checks.check_int("num_classes", num_classes, low=2)
    _checks.check_int("in_channels", in_channels)
    _checks.check_int("width", width)
    _checks.check_int("blocks_per_stage", blocks_per_stage)
    self.stem = Im2ColConv(in_channels, width, use_bias=False, rngs=rngs)
    self.stem_norm = _group_norm(width, rngs=rngs)
    blocks = []
    features = width
    for stage, stage_width in enumerate((width, 2 * width, 4 * width)):
      for b in range(blocks_per_stage):
        strides = 2 if stage > 0 and b == 0 else 1
        blocks.append(ResidualBlock(features, stage_width, strides,
                                    rngs=rngs))
        features = stage_width
    self.blocks = nnx.List(blocks)
    self.head = nnx.Linear(features, num_classes, rngs=rngs)

  def __call__(self, x: Array) -> Array:
    """Returns logits ``[B, num_classes]`` for images ``x`` ``[B, H, W, C]``."""
    x = jax.nn.relu(self.stem_norm(self.stem(x)))
    for block in self.blocks:
      x = block(x)
    return self.head(x.mean(axis=(1, 2)))


MODELS = {"cnn": CNN, "resnet": ResNet}


def make_model(name: str, *, num_classes: int, in_channels: int,
               width: int | None = None, seed: int = 0) -> nnx.Module:
  """Builds ``"cnn"`` (:class:`CNN`) or ``"resnet"`` (:class:`ResNet`, one
  block per stage) for the command line, initialised from ``seed``; ``width``
  None is the models' default (16).
  """
  _checks.check_choice("name", name, tuple(MODELS))
  _checks.check_int("seed", seed, low=0)
  width = 16 if width is None else width
  _checks.check_int("num_classes", num_classes, low=1)
  _checks.check_int("in_channels", in_channels, low=1)
  _checks.check_int("width", width, low=1)
  return _build(name, num_classes, in_channels, width, jax.random.key(seed))


@functools.partial(nnx.jit, static_argnums=(0, 1, 2, 3))
def _build(name: str, num_classes: int, in_channels: int, width: int,
           key: jax.Array) -> nnx.Module:
  # One compiled initialiser instead of one small compilation per weight
  # shape (~1 s on a CPU), which the CLI's compilation cache keeps; same
  # values as an eager construction.
  return MODELS[name](num_classes=num_classes, in_channels=in_channels,
                      width=width, rngs=nnx.Rngs(params=key))


def cross_entropy_loss(
    model: nnx.Module, batch: dict[str, Array]
) -> tuple[Array, dict[str, Array]]:
  """Mean softmax cross-entropy and accuracy: the range tests' default loss.

  loss = mean_b [logsumexp(logits_b) - logits_b[label_b]]

  Args:
    model: maps images ``[B, H, W, C]`` to logits ``[B, num_classes]``.
    batch: ``{"image": [B, H, W, C] float32, "label": [B] int}``.

  Returns:
    ``(loss, {"accuracy": accuracy})``, both float32 scalars.
  """
  if not isinstance(batch, Mapping) or not {"image", "label"} <= set(batch):
    have = (sorted(map(str, batch)) if isinstance(batch, Mapping)
            else type(batch).__name__)
    raise KeyError(
        f"cross_entropy_loss expects a dict batch with keys 'image' and "
        f"'label' (a Dataset's batches, or dataset.as_batch()); the batch has "
        f"{have}. Write a loss for your own batch layout: loss_fn(model, "
        "batch) -> loss or (loss, metrics)")
  logits = model(batch["image"])
  labels = batch["label"]
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  accuracy = (jnp.argmax(logits, axis=-1) == labels).mean()
  return loss, {"accuracy": accuracy}
