"""The feature generator's trunk: torchvision ResNet v1.5 without pool/fc.

Spec: ../shared/docs/aligngan_reference.md §1.4. NHWC in, NHWC feature map
out (layer4 after ReLU, not pooled). Submodule names follow torchvision's
(``conv1``, ``bn1``, ``layer1_0`` ...) so PyTorch weights map one-to-one.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aligngan_jax.models import layers

# torchvision's init for ResNet convs: kaiming_normal(fan_out, relu).
CONV_INIT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


ENCODER_INPUT_SIZE = (384, 192)  # official (height, width); config.encoder_input_size


def prepare_encoder_input(
    images: jax.Array, size: tuple[int, int] = ENCODER_INPUT_SIZE
) -> jax.Array:
  """Maps generator-space images to the encoder's input (§1.4).

  Args:
    images: [N, H, W, 3] in [-1, 1] (the 128x128 pixel-module space).
    size: (height, width) the encoder sees; official (384, 192).

  Returns:
    [N, *size, 3]: bilinearly resampled (half-pixel centres, no antialias,
    as PyTorch's ``F.interpolate(align_corners=False)``), mapped to [0, 1]
    and normalised with the ImageNet mean and std.
  """
  n, _, _, c = images.shape
  x = jax.image.resize(images, (n, *size, c), 'bilinear', antialias=False)
  x = (x + 1.0) / 2.0
  mean = jnp.asarray(IMAGENET_MEAN, x.dtype)
  std = jnp.asarray(IMAGENET_STD, x.dtype)
  return (x - mean) / std


class Block(nn.Module):
  """Basic (ResNet-18/34) or bottleneck (ResNet-50+) residual block."""

  features: int
  strides: int
  bottleneck: bool
  conv: Any
  batch_norm: Any
  train: bool

  @nn.compact
  def __call__(self, x):
    def norm(name):
      return functools.partial(self.batch_norm(name=name), train=self.train)

    residual = x
    if self.bottleneck:
      y = nn.relu(norm(name='bn1')(self.conv(self.features, (1, 1), name='conv1')(x)))
      # v1.5: the stride sits in the 3x3 conv.
      y = self.conv(self.features, (3, 3), self.strides, padding=((1, 1), (1, 1)), name='conv2')(y)
      y = nn.relu(norm(name='bn2')(y))
      y = self.conv(self.features * 4, (1, 1), name='conv3')(y)
      y = norm(name='bn3')(y)
      out_features = self.features * 4
    else:
      y = self.conv(self.features, (3, 3), self.strides, padding=((1, 1), (1, 1)), name='conv1')(x)
      y = nn.relu(norm(name='bn1')(y))
      y = self.conv(self.features, (3, 3), padding=((1, 1), (1, 1)), name='conv2')(y)
      y = norm(name='bn2')(y)
      out_features = self.features
    if self.strides != 1 or x.shape[-1] != out_features:
      residual = self.conv(out_features, (1, 1), self.strides, name='downsample_conv')(x)
      residual = norm(name='downsample_bn')(residual)
    return nn.relu(y + residual)


# 10: one block per stage, the tiny test models' trunk (configs/default.py
# 'tiny'): every path of ResNet-18 at about 20 % less compile time.
STAGES = {
    10: (1, 1, 1, 1),
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
}
DEPTHS = tuple(STAGES)

# ResNetEncoder.remat -> what a residual block keeps for its backward pass:
# 'none' everything; 'convs' the convolution outputs (BatchNorm and ReLU are
# recomputed from them: elementwise work, no extra convolution); 'blocks'
# only the block input (the block's forward runs twice).
REMAT_POLICIES = {
    'none': None,
    'convs': jax.checkpoint_policies.dots_saveable,
    'blocks': jax.checkpoint_policies.nothing_saveable,
}


class ResNetEncoder(nn.Module):
  """ResNet trunk: conv1, bn1, relu, maxpool, layer1..layer4.

  Attributes:
    depth: 10 (tiny test models), 18, 34 (basic blocks), 50 or 101
      (bottlenecks). Official: 50.
    width: channels of the stem and layer1; 64 is torchvision's. Small
      widths make tiny test models.
    last_stride: stride of layer4; AlignGAN sets it to 1 (official 24x12
      output for a 384x192 input).
    dtype: computation dtype; parameters stay float32.
    stat_groups: G > 1 runs G `layers.interleave`d batches as one training
      call: each is normalised with its own batch statistics and the
      running statistics end as after G calls in group order.
    remat: a key of `REMAT_POLICIES`: what the blocks keep for the backward
      pass (memory against recomputation; the results are the same).
  """

  depth: int = 50
  width: int = 64
  last_stride: int = 1
  dtype: Any = jnp.float32
  stat_groups: int = 1
  remat: str = 'none'

  @property
  def out_features(self) -> int:
    return self.width * 8 * (4 if self.depth >= 50 else 1)

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.depth not in STAGES:
      raise ValueError(f'ResNetEncoder.depth must be one of {DEPTHS}, got {self.depth}.')
    conv = functools.partial(
        nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=CONV_INIT, padding='VALID'
    )
    # PyTorch BN: momentum 0.1, eps 1e-5, batch statistics in training and
    # the unbiased variance in the running average.
    batch_norm = functools.partial(layers.BatchNorm, dtype=self.dtype, stat_groups=self.stat_groups)
    x = x.astype(self.dtype)
    x = conv(self.width, (7, 7), (2, 2), padding=((3, 3), (3, 3)), name='conv1')(x)
    x = nn.relu(batch_norm(name='bn1')(x, train=train))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    bottleneck = self.depth >= 50
    block_class = Block
    if REMAT_POLICIES[self.remat] is not None:
      block_class = nn.remat(Block, policy=REMAT_POLICIES[self.remat])
    for stage, num_blocks in enumerate(STAGES[self.depth]):
      stage_stride = 1 if stage == 0 else (self.last_stride if stage == 3 else 2)
      for block in range(num_blocks):
        x = block_class(
            features=self.width * 2**stage,
            strides=stage_stride if block == 0 else 1,
            bottleneck=bottleneck,
            conv=conv,
            batch_norm=batch_norm,
            train=train,
            name=f'layer{stage + 1}_{block}',
        )(x)
    return x
