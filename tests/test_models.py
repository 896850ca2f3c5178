"""Specification of optax_clr.models: the im2col convolution and the models."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from optax_clr import models

TOL = dict(rtol=1e-5, atol=1e-5)


def _normal(*shape, seed=0):
  # NumPy inputs: eager jax.random would compile a kernel for every shape.
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@jax.jit(static_argnums=(2, 3))
def _lax_conv(x, kernel_hwio, strides, padding):
  return jax.lax.conv_general_dilated(
      x, kernel_hwio, strides, padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST)


def _apply(module, x):
  """module(x), compiled once instead of dispatched op by op."""
  graphdef, state = nnx.split(module)
  return jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x)


def _hwio(conv: models.Im2ColConv):
  kh, kw = conv.kernel_size
  return conv.kernel[...].reshape(kh, kw, conv.in_features,
                                  conv.out_features)


def _stack_copies(cls, seeds, **kwargs):
  """The graphdef and the Param states of len(seeds) models, stacked."""
  states = []
  for seed in seeds:
    graphdef, state = nnx.split(cls(**kwargs, rngs=nnx.Rngs(seed)))
    states.append(state)
  return graphdef, states, jax.tree.map(lambda *a: jnp.stack(a), *states)


# --------------------------------------------------------------------------
# Im2ColConv.


@pytest.mark.parametrize("kernel_size, strides, padding, hw", [
    ((3, 3), 1, "SAME", (8, 8)),
    ((3, 3), 2, "SAME", (7, 9)),      # odd sizes: XLA pads bottom/right more
    ((5, 3), (2, 1), "VALID", (9, 8)),
    ((1, 1), 2, "SAME", (7, 7)),      # the ResNet projection shortcut
    ((3, 3), 1, ((1, 2), (0, 1)), (6, 5)),
    ((2, 2), 1, 1, (5, 5)),
])
def test_im2col_conv_equals_lax_conv(kernel_size, strides, padding, hw):
  conv = models.Im2ColConv(3, 4, kernel_size, strides=strides,
                           padding=padding, rngs=nnx.Rngs(0))
  x = _normal(2, *hw, 3)
  lax_padding = (((padding, padding),) * 2 if isinstance(padding, int)
                 else padding)
  expected = _lax_conv(x, _hwio(conv), conv.strides, lax_padding)
  expected = expected + conv.bias[...]
  actual = _apply(conv, x)
  chex.assert_equal_shape([actual, expected])
  np.testing.assert_allclose(actual, expected, **TOL)


def test_im2col_conv_equals_nnx_conv_with_reshaped_kernel():
  ref = nnx.Conv(3, 5, (3, 3), strides=2, padding="SAME", rngs=nnx.Rngs(0))
  ref.bias[...] = jnp.arange(5.0)
  conv = models.Im2ColConv(3, 5, (3, 3), strides=2, rngs=nnx.Rngs(1))
  conv.kernel[...] = ref.kernel[...].reshape(27, 5)
  conv.bias[...] = ref.bias[...]
  x = _normal(4, 11, 10, 3)
  np.testing.assert_allclose(_apply(conv, x), _apply(ref, x), **TOL)


def test_im2col_conv_under_vmap_over_stacked_weights_equals_lax_conv():
  k = 4
  conv = models.Im2ColConv(2, 3, rngs=nnx.Rngs(0))
  graphdef, _ = nnx.split(conv)
  kernels = _normal(k, 9 * 2, 3, seed=0)
  biases = _normal(k, 3, seed=1)
  x = _normal(5, 6, 6, 2, seed=2)

  def apply(kernel, bias):
    conv = nnx.merge(graphdef, nnx.State({"kernel": nnx.Param(kernel),
                                          "bias": nnx.Param(bias)}))
    return conv(x)

  actual = jax.jit(jax.vmap(apply))(kernels, biases)
  chex.assert_shape(actual, (k, 5, 6, 6, 3))
  for i in range(k):
    expected = _lax_conv(x, kernels[i].reshape(3, 3, 2, 3), (1, 1), "SAME")
    np.testing.assert_allclose(actual[i], expected + biases[i], **TOL)


def test_im2col_conv_param_shapes_and_no_bias():
  conv = models.Im2ColConv(3, 8, (3, 5), use_bias=False, rngs=nnx.Rngs(0))
  chex.assert_shape(conv.kernel[...], (3 * 5 * 3, 8))
  assert conv.bias is None
  # lecun_normal over fan_in = kh*kw*in, as nnx.Conv: std = 1/sqrt(45).
  big = models.Im2ColConv(64, 256, (3, 3), rngs=nnx.Rngs(0))
  np.testing.assert_allclose(np.std(big.kernel[...]), 1 / np.sqrt(576),
                             rtol=0.05)


def test_im2col_conv_rejects_wrong_channels_and_bad_arguments():
  conv = models.Im2ColConv(3, 4, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"\[B, H, W, 3\], got shape "
                     r"\(1, 8, 8, 1\)"):
    conv(jnp.zeros((1, 8, 8, 1)))
  with pytest.raises(ValueError, match="kernel_size must be an integer >= 1, "
                     "got 0"):
    models.Im2ColConv(3, 4, (0, 3), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="padding must be one of 'SAME', "
                     "'VALID'; got 'FULL'"):
    models.Im2ColConv(3, 4, padding="full", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="padding must be"):
    models.Im2ColConv(3, 4, padding=((1, 1),), rngs=nnx.Rngs(0))
  valid = models.Im2ColConv(1, 1, (5, 5), padding="VALID", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="padded input 4x4 is smaller than the "
                     "kernel 5x5"):
    valid(jnp.zeros((1, 4, 4, 1)))


def test_avg_pool_2x2_crops_odd_sizes_like_nnx_avg_pool():
  x = jnp.arange(2 * 7 * 5 * 3, dtype=jnp.float32).reshape(2, 7, 5, 3)
  pooled = models.avg_pool_2x2(x)
  chex.assert_shape(pooled, (2, 3, 2, 3))
  np.testing.assert_allclose(pooled, nnx.avg_pool(x, (2, 2), (2, 2)))
  # Top-left window of channel 0: mean of x[0, 0:2, 0:2, 0].
  assert pooled[0, 0, 0, 0] == np.mean([0, 3, 15, 18])


# --------------------------------------------------------------------------
# CNN and ResNet.


@pytest.mark.parametrize("cls", [models.CNN, models.ResNet])
@pytest.mark.parametrize("hwc", [(8, 8, 1), (28, 28, 1), (32, 32, 3),
                                 (7, 7, 3)])
def test_models_map_nhwc_images_to_logits(cls, hwc):
  # Abstract model and shape inference: traces the initialisation and the
  # whole forward pass without compiling or running them.
  model = nnx.eval_shape(lambda: cls(num_classes=7, in_channels=hwc[-1],
                                     width=4, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(model)
  x = jax.ShapeDtypeStruct((2, *hwc), jnp.float32)
  logits = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x)
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32


def test_cnn_width_sets_channels():
  model = nnx.eval_shape(lambda: models.CNN(10, 1, width=8,
                                            rngs=nnx.Rngs(0)))
  assert model.conv1.kernel.shape == (9 * 1, 8)
  assert model.conv2.kernel.shape == (9 * 8, 16)
  assert model.conv3.kernel.shape == (9 * 16, 16)
  assert model.head.kernel.shape == (16, 10)


def test_resnet_structure_stages_and_projections():
  model = nnx.eval_shape(lambda: models.ResNet(
      10, 3, width=4, blocks_per_stage=2, rngs=nnx.Rngs(0)))
  assert len(model.blocks) == 6
  strides = [b.conv1.strides for b in model.blocks]
  assert strides == [(1, 1), (1, 1), (2, 2), (1, 1), (2, 2), (1, 1)]
  widths = [b.conv2.out_features for b in model.blocks]
  assert widths == [4, 4, 8, 8, 16, 16]
  # A projection exactly where the shape changes (stem width == width).
  assert [b.shortcut is not None for b in model.blocks] == [
      False, False, True, False, True, False]
  # 6n + 2 weight layers: stem, 2 per block, head (projections not counted).
  assert 1 + 2 * len(model.blocks) + 1 == 6 * 2 + 2


def test_residual_block_starts_as_identity():
  # The second GroupNorm's scale starts at zero, so the residual branch
  # contributes nothing at initialisation: block(x) = relu(x).
  block = models.ResidualBlock(4, 4, rngs=nnx.Rngs(0))
  x = _normal(2, 5, 5, 4)
  np.testing.assert_allclose(_apply(block, x), np.maximum(x, 0), **TOL)


def test_split_state_holds_only_params():
  for cls in (models.CNN, models.ResNet):
    model = nnx.eval_shape(lambda cls=cls: cls(rngs=nnx.Rngs(0)))
    _, params, rest = nnx.split(model, nnx.Param, ...)
    assert jax.tree.leaves(rest) == []
    assert len(jax.tree.leaves(params)) > 0


@pytest.mark.parametrize("cls, kwargs, hwc", [
    (models.CNN, dict(num_classes=10, in_channels=1, width=4), (8, 8, 1)),
    (models.ResNet, dict(num_classes=10, in_channels=3, width=4),
     (32, 32, 3)),
])
def test_vmap_over_stacked_copies_equals_separate_forwards(cls, kwargs, hwc):
  graphdef, states, stacked = _stack_copies(cls, [0, 1, 2], **kwargs)
  x = np.random.default_rng(3).random((4, *hwc), np.float32)

  def forward(state):
    return nnx.merge(graphdef, state)(x)

  batched = jax.jit(jax.vmap(forward))(stacked)
  chex.assert_shape(batched, (3, 4, 10))
  separate = [jax.jit(forward)(s) for s in states]
  for i in range(3):
    np.testing.assert_allclose(batched[i], separate[i], **TOL)
  chex.assert_tree_all_finite(batched)
  # The copies really differ (different seeds), and so do the examples.
  assert not np.allclose(separate[0], separate[1])
  assert not np.allclose(separate[0][0], separate[0][1])


def test_vmapped_sgd_step_equals_separate_steps():
  graphdef, states, stacked = _stack_copies(
      models.CNN, [0, 1], num_classes=10, in_channels=1, width=4)
  rng = np.random.default_rng(0)
  batch = {"image": jnp.asarray(rng.random((8, 8, 8, 1), np.float32)),
           "label": jnp.asarray(rng.integers(0, 10, 8), jnp.int32)}
  lrs = jnp.array([0.1, 0.5])

  def step(state, lr):
    grads, _ = jax.grad(
        lambda s: models.cross_entropy_loss(nnx.merge(graphdef, s), batch),
        has_aux=True)(state)
    return jax.tree.map(lambda p, g: p - lr * g, state, grads)

  batched = jax.jit(jax.vmap(step))(stacked, lrs)
  for i in range(2):
    expected = jax.jit(step)(states[i], lrs[i])
    jax.tree.map(
        lambda a, b, i=i: np.testing.assert_allclose(a[i], b, **TOL),
        batched, expected)


# --------------------------------------------------------------------------
# make_model and cross_entropy_loss.


def test_make_model_builds_by_name_with_default_width_and_seed():
  cnn = models.make_model("cnn", num_classes=10, in_channels=1)
  assert isinstance(cnn, models.CNN) and cnn.conv1.out_features == 16
  resnet = models.make_model("resnet", num_classes=10, in_channels=3, width=4)
  assert isinstance(resnet, models.ResNet) and resnet.stem.out_features == 4
  same = models.make_model("cnn", num_classes=10, in_channels=1, seed=0)
  other = models.make_model("cnn", num_classes=10, in_channels=1, seed=1)
  np.testing.assert_array_equal(cnn.conv1.kernel[...], same.conv1.kernel[...])
  assert not np.allclose(cnn.conv1.kernel[...], other.conv1.kernel[...])


def test_make_model_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match="name must be one of 'cnn', 'resnet'; "
                     "got 'vgg'"):
    models.make_model("vgg", num_classes=10, in_channels=1)


def test_models_reject_invalid_sizes():
  with pytest.raises(ValueError, match="num_classes must be an integer >= 2, "
                     "got 1"):
    models.CNN(num_classes=1, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="blocks_per_stage must be an integer "
                     ">= 1, got 0"):
    models.ResNet(blocks_per_stage=0, rngs=nnx.Rngs(0))
  with pytest.raises(TypeError, match="width"):
    models.make_model("cnn", num_classes=10, in_channels=1, width=2.5)


class _FixedLogits(nnx.Module):

  def __init__(self, logits):
    self.logits = logits

  def __call__(self, x):
    del x
    return self.logits


def test_cross_entropy_loss_value_and_accuracy():
  model = _FixedLogits(jnp.array([[2.0, 0.0], [0.0, 0.0], [0.0, 3.0]]))
  batch = {"image": jnp.zeros((3, 1, 1, 1)),
           "label": jnp.array([0, 1, 0], jnp.int32)}
  loss, aux = models.cross_entropy_loss(model, batch)
  # -log softmax: log(1 + e^-2), log 2, log(1 + e^3).
  expected = np.mean([np.log1p(np.exp(-2.0)), np.log(2.0),
                      np.log1p(np.exp(3.0))])
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  # argmax ties go to index 0: predictions [0, 0, 1] -> 1 of 3 right.
  np.testing.assert_allclose(aux["accuracy"], 1 / 3, rtol=1e-6)
  assert set(aux) == {"accuracy"}


def test_cnn_learns_digits_with_sgd():
  from optax_clr import data  # pylint: disable=g-import-not-at-top
  ds = data.load_digits()
  model = models.make_model("cnn", num_classes=10, in_channels=1)
  optimizer = nnx.Optimizer(model, optax.sgd(0.1, momentum=0.9),
                            wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer, batch):
    grad_fn = nnx.value_and_grad(models.cross_entropy_loss, has_aux=True)
    (loss, _), grads = grad_fn(model, batch)
    optimizer.update(model, grads)
    return loss

  evaluate = nnx.jit(models.cross_entropy_loss)
  full = ds.as_batch()
  loss_before, _ = evaluate(model, full)
  for batch in ds.batches(64, epochs=2):
    train_step(model, optimizer, batch)
  loss_after, aux = evaluate(model, full)
  # ln(10) = 2.30 at chance; 56 steps of momentum SGD get well below it
  # (measured with seeds 0, 1, 2: loss 0.13, 0.33, 0.44).
  assert loss_before > 2.0
  assert loss_after < 1.0 and aux["accuracy"] > 0.7


def test_cross_entropy_loss_names_the_keys_it_expects_and_the_batch_has():
  model = models.make_model("cnn", num_classes=10, in_channels=1, seed=0)
  with pytest.raises(KeyError, match=r"keys 'image' and 'label'.*the batch "
                     r"has \['x', 'y'\]"):
    models.cross_entropy_loss(model, {"x": np.zeros((2, 8, 8, 1)),
                                      "y": np.zeros(2)})
