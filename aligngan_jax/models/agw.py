"""AGW's network (``embed_net`` of mangye16/Cross-Modal-Re-ID-baseline, also
CAJ's): a two-stream ResNet with modality-specific stems and a shared trunk,
non-local blocks, GeM pooling and a BNNeck (../shared/docs/baselines_reference.md §1).

  model = AGWNet(num_classes=395)                       # non_local=True, gem=True
  out = model.apply(variables, rgb=x1, ir=x2, train=False)
  out['pool']    # [N, C] pooled, before the BNNeck, not normalised
  out['bn']      # [N, C] after the BNNeck
  out['logits']  # [N, num_classes]

Inputs are NHWC float32, ImageNet-normalised. Either may be None; with both,
[stem_visible(rgb); stem_thermal(ir)] run through the shared part as one
batch (the official ``modal=0``), so every shared BatchNorm sees both
modalities at once. ``non_local=False, gem=False`` is the official ``base``
variant (no non-local blocks, mean pooling).

Names follow the official modules (``visible_stem.conv1`` is
``visible_module.visible.conv1``; ``trunk.layer2_3`` is
``base_resnet.base.layer2.3``; ``trunk.nl2_0`` is ``NL_2.0``), so a
converter maps them one to one. Depth and width scale as `ResNetEncoder`'s.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from aligngan_jax.models import layers
from aligngan_jax.models import resnet

# PyTorch's default Conv2d / Linear weight init: kaiming_uniform(a=sqrt(5)).
_torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')
GEM_P = 3.0  # a constant in the official code, not learnt
GEM_EPS = 1e-12  # added after the mean


def non_local_positions(num_blocks: int, last: int) -> tuple[int, ...]:
  """The blocks of a stage after which a non-local block runs: the last
  ``last`` of its ``num_blocks`` (official: the last 2 of layer2's 4, the
  last 3 of layer3's 6), at any depth."""
  return tuple(range(max(0, num_blocks - last), num_blocks))


NON_LOCAL_LAST = {2: 2, 3: 3}  # stage -> how many of its last blocks (layer1, 4: none)


def gem(x):
  """Generalized-mean pooling of [N, H, W, C] (post-ReLU) maps as the official
  code computes it: (mean(x^3) + 1e-12)^(1/3), p fixed, no clamp."""
  return jnp.power(jnp.mean(jnp.power(x, GEM_P), axis=(1, 2)) + GEM_EPS, 1.0 / GEM_P)


class NonLocal(nn.Module):
  """The official non-local block, with its rank-1 embedding
  (``inter_channels = reduc_ratio // reduc_ratio = 1``): theta, phi, g are
  1x1 convs C -> 1 with bias; f_ij = theta_i phi_j / N (no softmax);
  y_i = sum_j f_ij g_j; z = x + BN(W y), W a 1x1 conv 1 -> C with bias and
  BN's scale and bias starting at 0 (a fresh block is the identity)."""

  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    n, h, w, c = x.shape
    conv = functools.partial(
        layers.conv, kernel_init=_torch_default_init, use_bias=True, dtype=self.dtype
    )
    positions = h * w
    theta = conv(1, 1, in_features=c, name='theta')(x).reshape(n, positions)
    phi = conv(1, 1, in_features=c, name='phi')(x).reshape(n, positions)
    g = conv(1, 1, in_features=c, name='g')(x).reshape(n, positions)
    f = theta[:, :, None] * phi[:, None, :] / positions  # [n, N, N]
    y = jnp.einsum('nij,nj->ni', f, g).reshape(n, h, w, 1)
    wy = conv(c, 1, in_features=1, name='W_conv')(y.astype(x.dtype))
    wy = layers.BatchNorm(scale_init=nn.initializers.zeros, dtype=self.dtype, name='W_bn')(
        wy, train=train
    )
    return x + wy


class _Stem(nn.Module):
  """conv1 -> bn1 -> relu -> maxpool of one modality."""

  width: int
  dtype: Any

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.Conv(
        self.width,
        (7, 7),
        (2, 2),
        padding=((3, 3), (3, 3)),
        use_bias=False,
        dtype=self.dtype,
        kernel_init=resnet.CONV_INIT,
        name='conv1',
    )(x.astype(self.dtype))
    x = nn.relu(layers.BatchNorm(dtype=self.dtype, name='bn1')(x, train=train))
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class _Trunk(nn.Module):
  """layer1..layer4 (shared), with the non-local blocks."""

  depth: int
  width: int
  last_stride: int
  non_local: bool
  dtype: Any

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = functools.partial(
        nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=resnet.CONV_INIT, padding='VALID'
    )
    batch_norm = functools.partial(layers.BatchNorm, dtype=self.dtype)
    for stage, num_blocks in enumerate(resnet.STAGES[self.depth]):
      stride = 1 if stage == 0 else (self.last_stride if stage == 3 else 2)
      after = (
          non_local_positions(num_blocks, NON_LOCAL_LAST[stage + 1])
          if self.non_local and stage + 1 in NON_LOCAL_LAST
          else ()
      )
      for block in range(num_blocks):
        x = resnet.Block(
            features=self.width * 2**stage,
            strides=stride if block == 0 else 1,
            bottleneck=self.depth >= 50,
            conv=conv,
            batch_norm=batch_norm,
            train=train,
            name=f'layer{stage + 1}_{block}',
        )(x)
        if block in after:
          x = NonLocal(dtype=self.dtype, name=f'nl{stage + 1}_{after.index(block)}')(x, train=train)
    return x


class AGWNet(nn.Module):
  """See the module docstring. ``depth``/``width``/``last_stride`` as in
  `ResNetEncoder` (official 50 / 64 / 1)."""

  num_classes: int
  non_local: bool = True
  gem: bool = True
  depth: int = 50
  width: int = 64
  last_stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, rgb=None, ir=None, *, train: bool):
    if rgb is None and ir is None:
      raise ValueError('AGWNet needs rgb, ir or both.')
    parts = []
    if rgb is not None:
      parts.append(_Stem(self.width, self.dtype, name='visible_stem')(rgb, train=train))
    if ir is not None:
      parts.append(_Stem(self.width, self.dtype, name='thermal_stem')(ir, train=train))
    x = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0)
    x = _Trunk(self.depth, self.width, self.last_stride, self.non_local, self.dtype, name='trunk')(
        x, train=train
    )
    x = x.astype(jnp.float32)
    pool = gem(x) if self.gem else jnp.mean(x, axis=(1, 2))
    bn = layers.BatchNorm(
        scale_init=layers.normal_around_one(0.01), use_bias=False, name='bottleneck'
    )(pool, train=train)
    logits = nn.Dense(
        self.num_classes,
        use_bias=False,
        kernel_init=nn.initializers.normal(0.001),
        name='classifier',
    )(bn)
    return {'pool': pool, 'bn': bn, 'logits': logits}


def architecture(variables: dict) -> dict:
  """The `AGWNet` fields that built ``variables`` ({'params', ...}):
  num_classes, non_local, gem (the official variants: GeM with the
  non-local blocks), depth and width."""
  params = variables['params']
  trunk = params['trunk']
  blocks = tuple(len({k for k in trunk if k.startswith(f'layer{i}_')}) for i in range(1, 5))
  bottleneck = 'conv3' in trunk['layer1_0']
  depth = next(
      d for d, stages in resnet.STAGES.items() if stages == blocks and (d >= 50) == bottleneck
  )
  non_local = 'nl2_0' in trunk
  return dict(
      num_classes=int(params['classifier']['kernel'].shape[1]),
      non_local=non_local,
      gem=non_local,
      depth=depth,
      width=int(params['visible_stem']['conv1']['kernel'].shape[-1]),
  )
