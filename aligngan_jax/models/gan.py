"""The pixel module's networks (spec §1.1-§1.3), NHWC.

* ``Generator``: 128x128x3 -> 128x128x3, c7s1-64, two stride-2 downs, four
  residual blocks at 256 channels, two transposed-conv ups, c7s1-3, tanh.
  InstanceNorms are affine and track running statistics (``batch_stats``):
  the official model translates test images in eval mode with them.
* ``PatchDiscriminator``: 4x4 stride-2 convs 3->64->...->1024 (InstanceNorm,
  no affine, from the second), LeakyReLU(0.2), a 3x3 conv to one channel:
  [N, 4, 4, 1] for 128x128 inputs.
* ``JointDiscriminator``: AlignGAN's conditional discriminator on an IR
  image and the encoder's raw layer-4 map: three image convs to 16x16x256,
  a 1x1 conv of the feature map to 64 channels resized bilinearly (no
  antialias, as ``F.interpolate``) to 16x16, concatenated, two more convs
  and the 3x3 output conv: [N, 4, 4, 1].

Submodule names follow the official ``nn.Sequential`` indices
(``model_0`` = ``model.0``), so checkpoints map one to one (``convert``).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aligngan_jax.models import layers

# config.model.gan_norm_scale_init -> the generators' InstanceNorm scale init.
NORM_SCALE_INITS = {
    'uniform': layers.uniform_unit,  # PyTorch 1.1 (official)
    'ones': nn.initializers.ones,
}  # PyTorch >= 1.2


def _lrelu(x):
  return nn.leaky_relu(x, negative_slope=0.2)


class _ResidualBlock(nn.Module):
  features: int
  norm_scale_init: layers.Initializer
  dtype: Any = jnp.float32
  stat_groups: int = 1
  test_instance_norm: str = 'running'

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm = lambda name: layers.InstanceNorm(
        scale_init=self.norm_scale_init,
        stat_groups=self.stat_groups,
        test_instance_norm=self.test_instance_norm,
        name=name,
    )
    conv = lambda name: layers.conv(
        self.features,
        3,
        1,
        1,
        use_bias=False,
        in_features=self.features,
        dtype=self.dtype,
        name=name,
    )
    y = nn.relu(norm('model_1')(conv('model_0')(x), train=train))
    return norm('model_4')(conv('model_3')(y), train=train) + x


class Generator(nn.Module):
  """Generator(conv_dim=64, layer_num=4) of the official code.

  ``norm_scale_init``: PyTorch 1.1 initialised affine InstanceNorm scales
  U(0, 1) (the official runs; default); ``nn.initializers.ones`` gives
  PyTorch >= 1.2 (``config.model.gan_norm_scale_init='ones'``).
  ``dtype``: computation dtype of the convolutions (parameters, norm
  statistics and the float32 output stay float32).
  ``stat_groups``: G > 1 runs G `layers.interleave`d batches as one call
  whose running statistics end as after G calls in group order.
  ``test_instance_norm`` (``config.gan.test_instance_norm``): 'running'
  (official) normalises in eval mode with the running statistics, which
  average the translation, cycle and identity calls' inputs of both
  modalities; 'instance' (not official) with each image's own statistics,
  as in training.
  """

  conv_dim: int = 64
  num_residual: int = 4
  norm_scale_init: layers.Initializer = layers.uniform_unit
  dtype: Any = jnp.float32
  stat_groups: int = 1
  test_instance_norm: str = 'running'

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm = lambda name: layers.InstanceNorm(
        scale_init=self.norm_scale_init,
        stat_groups=self.stat_groups,
        test_instance_norm=self.test_instance_norm,
        name=name,
    )
    conv = functools.partial(layers.conv, use_bias=False, dtype=self.dtype)
    dim = self.conv_dim
    x = conv(dim, 7, 1, 3, in_features=x.shape[-1], name='model_0')(x)
    x = nn.relu(norm('model_1')(x, train=train))
    index = 3
    for _ in range(2):
      x = conv(dim * 2, 4, 2, 1, in_features=dim, name=f'model_{index}')(x)
      x = nn.relu(norm(f'model_{index + 1}')(x, train=train))
      dim, index = dim * 2, index + 3
    for _ in range(self.num_residual):
      x = _ResidualBlock(
          dim,
          self.norm_scale_init,
          self.dtype,
          self.stat_groups,
          self.test_instance_norm,
          name=f'model_{index}',
      )(x, train=train)
      index += 1
    for _ in range(2):
      x = layers.ConvTranspose(dim // 2, dtype=self.dtype, name=f'model_{index}')(x)
      x = nn.relu(norm(f'model_{index + 1}')(x, train=train))
      dim, index = dim // 2, index + 3
    x = conv(3, 7, 1, 3, in_features=dim, name=f'model_{index}')(x)
    return jnp.tanh(x.astype(jnp.float32))


def _down(features, in_features, name, dtype):
  return layers.conv(
      features, 4, 2, 1, use_bias=True, in_features=in_features, dtype=dtype, name=name
  )


def _norm(x):
  return layers.InstanceNorm(affine=False, track_running_stats=False)(x, train=True)


class PatchDiscriminator(nn.Module):
  """Discriminator(image_size, conv_dim=64, layer_num=4): PatchGAN.

  ``train`` is accepted for a uniform API; nothing in it depends on the mode
  (its InstanceNorms keep no statistics). ``dtype``: computation dtype of
  the convolutions; the output is float32.
  """

  conv_dim: int = 64
  num_layers: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = True):
    del train
    dim = self.conv_dim
    x = _lrelu(_down(dim, x.shape[-1], 'model_0', self.dtype)(x))
    index = 2
    for _ in range(self.num_layers):
      x = _lrelu(_norm(_down(dim * 2, dim, f'model_{index}', self.dtype)(x)))
      dim, index = dim * 2, index + 3
    return layers.conv(
        1, 3, 1, 1, use_bias=False, in_features=dim, dtype=self.dtype, name='conv_src'
    )(x).astype(jnp.float32)


class JointDiscriminator(nn.Module):
  """ConditionalDiscriminator(conv_dim=64): the joint (image, feature) D.

  ``__call__(image, feature_map, *, train)``: image [N, 128, 128, 3] in
  [-1, 1], feature_map the encoder's layer-4 output [N, h, w, 2048]
  (24x12 for the official 384x192 input). Returns [N, 4, 4, 1] float32.
  """

  conv_dim: int = 64
  feature_grid: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, image, feature_map, *, train: bool = True):
    del train
    dim, down = self.conv_dim, functools.partial(_down, dtype=self.dtype)
    x = _lrelu(down(dim, image.shape[-1], 'image_convs_0')(image))
    x = _lrelu(_norm(down(dim * 2, dim, 'image_convs_2')(x)))
    x = _lrelu(_norm(down(dim * 4, dim * 2, 'image_convs_5')(x)))
    f = layers.conv(
        dim,
        1,
        use_bias=True,
        in_features=feature_map.shape[-1],
        dtype=self.dtype,
        name='feature_convs_0',
    )(feature_map)
    f = _lrelu(f)
    n, _, _, c = f.shape
    f = jax.image.resize(
        f, (n, self.feature_grid, self.feature_grid, c), 'bilinear', antialias=False
    )
    x = jnp.concatenate([x, f.astype(x.dtype)], axis=-1)
    x = _lrelu(_norm(down(dim * 8, dim * 4 + dim, 'dis_convs_0')(x)))
    x = _lrelu(_norm(down(dim * 16, dim * 8, 'dis_convs_3')(x)))
    return layers.conv(
        1, 3, 1, 1, use_bias=False, in_features=dim * 16, dtype=self.dtype, name='conv_src'
    )(x).astype(jnp.float32)
