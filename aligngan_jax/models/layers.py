"""Layers with PyTorch's exact semantics, shared by the AlignGAN networks.

Flax's own BatchNorm updates its running variance with the *biased* batch
variance; PyTorch uses the unbiased one. The official networks also need an
InstanceNorm that tracks running statistics (the generators), a transposed
convolution laid out like PyTorch's, and PyTorch's default bias init. All
inputs are NHWC.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Initializer = Callable[..., jax.Array]

# Every conv weight of the pixel module: N(0, 0.02) (weights_init_normal).
gan_conv_init = nn.initializers.normal(0.02)


def torch_bias_init(fan_in: int) -> Initializer:
  """PyTorch's default Conv/Linear bias init: U(+-1/sqrt(fan_in))."""
  bound = 1.0 / fan_in**0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def normal_around_one(stddev: float) -> Initializer:
  def init(key, shape, dtype=jnp.float32):
    return 1.0 + stddev * jax.random.normal(key, shape, dtype)

  return init


def uniform_unit(key, shape, dtype=jnp.float32):
  """U(0, 1): PyTorch 1.1's init of affine norm scales (spec §0)."""
  return jax.random.uniform(key, shape, dtype)


def _update(variable, new, momentum):
  variable.value = (1.0 - momentum) * variable.value + momentum * new


def _update_in_order(variable, per_group, momentum):
  """One running-average update per statistics group ([G, C]), group 0
  first: what G separate training calls in that order would do."""
  for value in per_group:
    _update(variable, value, momentum)


def interleave(xs):
  """Batches equal-sized arrays as one: row ``i * G + g`` is ``xs[g][i]``.

  The layout of a call with ``stat_groups=G`` norm layers: a row's group is
  its index modulo G, so a batch sharded along its first axis keeps every
  group's rows on the devices that held them (no data movement).
  """
  return jnp.stack(xs, axis=1).reshape((-1,) + xs[0].shape[1:])


def deinterleave(x, groups: int):
  """The inverse of `interleave`: a list of ``groups`` arrays."""
  x = x.reshape((-1, groups) + x.shape[1:])
  return [x[:, g] for g in range(groups)]


class BatchNorm(nn.Module):
  """``torch.nn.BatchNorm{1,2}d``: batch statistics over every axis but the
  last in training (biased variance to normalise, unbiased to update the
  running variance, ``momentum`` as PyTorch counts it); running statistics
  in eval. Variables: params ``scale``, ``bias``; batch_stats ``mean``,
  ``var`` (flax's names, so flax BatchNorm checkpoints interchange).

  ``stat_groups=G``: the batch is G `interleave`d batches, and training
  normalises each with its own statistics and updates the running ones
  once per group, group 0 first: exactly G separate calls, in one.
  """

  momentum: float = 0.1
  epsilon: float = 1e-5
  scale_init: Initializer = nn.initializers.ones
  dtype: Any = None
  stat_groups: int = 1
  # False: no bias parameter, a constant 0 (AGW's BNNeck, whose bias the
  # official code freezes at 0).
  use_bias: bool = True
  bias_init: Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x, *, train: bool):
    features = x.shape[-1]
    scale = self.param('scale', self.scale_init, (features,))
    bias = (
        self.param('bias', self.bias_init, (features,))
        if self.use_bias
        else jnp.zeros((features,), jnp.float32)
    )
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,))
    ra_var = self.variable('batch_stats', 'var', jnp.ones, (features,))
    groups = self.stat_groups if train else 1
    if groups == 1:
      y = self._normalise(x, train, scale, bias, ra_mean, ra_var)
    else:
      # [N / G, G, ..., C]: statistics over every axis but the group's and C's.
      y = self._normalise(
          x.reshape((-1, groups) + x.shape[1:]), train, scale, bias, ra_mean, ra_var, groups=groups
      ).reshape(x.shape)
    return y.astype(self.dtype or x.dtype)

  def _normalise(self, x, train, scale, bias, ra_mean, ra_var, *, groups=None):
    """``groups=None``: x in its own layout, statistics over every axis but
    the last. This is the arithmetic of the code before ``stat_groups``, op
    for op: the grouped 5-D view, used for one group too, made XLA fuse
    and round differently, and 150 iterations amplified those last-bit
    differences into a 7-point drop of the demo's Rank-1 (issue 25,
    docs/decisions.md). ``groups=G``: x is ``[N / G, G, ..., C]``."""
    features = x.shape[-1]
    axes = tuple(range(x.ndim - 1)) if groups is None else (0,) + tuple(range(2, x.ndim - 1))
    if train:
      x32 = x.astype(jnp.float32)
      mean = x32.mean(axes, keepdims=groups is not None)
      # Two passes, E[(x - E[x])^2], as PyTorch computes it: the one-pass
      # E[x^2] - E[x]^2 loses float32 digits as (mean/std)^2, and the
      # embedder's bottleneck sees mean/std near 11 (docs/decisions.md).
      var = jnp.square(x32 - mean).mean(axes, keepdims=groups is not None)
      if not self.is_initializing():
        n = x.size // (features * (groups or 1))
        if groups is None:
          _update(ra_mean, mean, self.momentum)
          _update(ra_var, var * n / max(n - 1, 1), self.momentum)
        else:
          per_group = lambda v: v.reshape(groups, features)
          _update_in_order(ra_mean, per_group(mean), self.momentum)
          _update_in_order(ra_var, per_group(var) * n / max(n - 1, 1), self.momentum)
    else:
      mean, var = ra_mean.value, ra_var.value
    return (x - mean) * (scale * jax.lax.rsqrt(var + self.epsilon)) + bias


class InstanceNorm(nn.Module):
  """``torch.nn.InstanceNorm2d(affine, track_running_stats)``.

  Training (or no running statistics): per-instance, per-channel statistics
  over H, W (biased variance). With ``track_running_stats`` a training call
  also updates the running mean and the running *unbiased* variance,
  averaged over the batch, with ``momentum`` (PyTorch's instance_norm); eval
  then normalises with the running statistics. PyTorch 1.1 initialised the
  affine scale U(0, 1) (the default here); ``scale_init=ones`` gives >= 1.2.
  ``stat_groups=G`` (see `BatchNorm`): one running-statistic update per
  `interleave`d group, group 0 first (normalisation is per instance anyway).
  ``test_instance_norm``: 'running' (official) normalises in eval mode with
  the running statistics; 'instance' (not official) normalises each instance
  with its own statistics, as training does, and leaves the running ones
  unread (they are still updated in training).
  """

  affine: bool = True
  track_running_stats: bool = True
  momentum: float = 0.1
  epsilon: float = 1e-5
  scale_init: Initializer = uniform_unit
  stat_groups: int = 1
  test_instance_norm: str = 'running'

  @nn.compact
  def __call__(self, x, *, train: bool):
    features = x.shape[-1]
    use_running = self.track_running_stats and not train and self.test_instance_norm == 'running'
    if self.track_running_stats:
      ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,))
      ra_var = self.variable('batch_stats', 'var', jnp.ones, (features,))
    out_dtype, x = x.dtype, x.astype(jnp.float32)  # statistics in float32
    if use_running:
      mean, var = ra_mean.value, ra_var.value
    else:
      mean = x.mean((1, 2), keepdims=True)
      var = jnp.square(x - mean).mean((1, 2), keepdims=True)
      if self.track_running_stats and train and not self.is_initializing():
        n = x.shape[1] * x.shape[2]
        unbiased = var * n / max(n - 1, 1)
        if self.stat_groups == 1:
          # The pre-stat_groups arithmetic, op for op (see BatchNorm).
          _update(ra_mean, mean.mean((0, 1, 2)), self.momentum)
          _update(ra_var, unbiased.mean((0, 1, 2)), self.momentum)
        else:
          per_group = lambda v: v.reshape(-1, self.stat_groups, features).mean(0)
          _update_in_order(ra_mean, per_group(mean), self.momentum)
          _update_in_order(ra_var, per_group(unbiased), self.momentum)
    y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
    if self.affine:
      y = y * self.param('scale', self.scale_init, (features,)) + self.param(
          'bias', nn.initializers.zeros, (features,)
      )
    return y.astype(out_dtype)


def conv(
    features: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    *,
    use_bias: bool,
    in_features: int,
    name: str,
    kernel_init: Initializer = gan_conv_init,
    dtype: Any = None,
) -> nn.Conv:
  """``torch.nn.Conv2d`` with zero padding and PyTorch's default bias init;
  ``dtype`` is the computation dtype (parameters stay float32)."""
  return nn.Conv(
      features,
      (kernel, kernel),
      (stride, stride),
      padding=((padding, padding), (padding, padding)),
      use_bias=use_bias,
      kernel_init=kernel_init,
      bias_init=torch_bias_init(in_features * kernel * kernel),
      dtype=dtype,
      name=name,
  )


class ConvTranspose(nn.Module):
  """``torch.nn.ConvTranspose2d(in, out, k, stride, padding, bias=False)``.

  ``kernel`` is [k, k, in, out] (PyTorch's [in, out, k, k] transposed).
  When k - 2 * padding == stride (the generator's k=4, s=2, p=1) the op runs
  as its sub-pixel form: one stride-1 convolution whose s*s*out channels are
  the s x s output phases, then depth-to-space. That is exactly the
  transposed convolution (the same products, none with inserted zeros), 4x
  fewer FLOPs, and much faster to differentiate on CPU than the
  input-dilated convolution used otherwise.
  """

  features: int
  kernel_size: int = 4
  strides: int = 2
  padding: int = 1
  kernel_init: Initializer = gan_conv_init
  dtype: Any = None  # computation dtype; the kernel stays float32

  @nn.compact
  def __call__(self, x):
    k, s, p = self.kernel_size, self.strides, self.padding
    kernel = self.param('kernel', self.kernel_init, (k, k, x.shape[-1], self.features))
    if self.dtype is not None:
      x = x.astype(self.dtype)
    if k - 2 * p == s:
      return _sub_pixel_conv_transpose(x, kernel.astype(x.dtype), s, p)
    pad = k - 1 - p
    return jax.lax.conv_general_dilated(
        x,
        kernel[::-1, ::-1].astype(x.dtype),
        window_strides=(1, 1),
        padding=((pad, pad), (pad, pad)),
        lhs_dilation=(s, s),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    )


def _phase_taps(k: int, s: int, p: int):
  """Kernel index of window tap j for output phase a ([window, s]; -1: no
  tap) and the input padding (low, high), per spatial axis.

  Output o = s * i + a receives input m through kernel index
  s * (i - m) + a + p, so phase a reads inputs m = i - d for the offsets d
  with that index in [0, k); window tap j stands for d = low - j.
  """
  offsets = [d for a in range(s) for d in range(-k, k + 1) if 0 <= s * d + a + p < k]
  low, high = max(offsets), -min(offsets)
  taps = np.full((low + high + 1, s), -1)
  for j in range(low + high + 1):
    for a in range(s):
      index = s * (low - j) + a + p
      if 0 <= index < k:
        taps[j, a] = index
  return taps, (low, high)


def _sub_pixel_conv_transpose(x, kernel, s: int, p: int):
  k, _, c_in, c_out = kernel.shape
  taps, padding = _phase_taps(k, s, p)
  window = len(taps)
  valid = (taps >= 0).astype(np.float32)
  index = np.maximum(taps, 0)
  # [window, window, c_in, s, s, c_out]: tap (jh, jw) of phase (ah, aw).
  w = kernel[index[:, None, :, None], index[None, :, None, :]]  # [j,j,a,a,in,out]
  w = (
      w
      * jnp.asarray(valid[:, None, :, None] * valid[None, :, None, :], kernel.dtype)[
          ..., None, None
      ]
  )
  w = jnp.transpose(w, (0, 1, 4, 2, 3, 5)).reshape(window, window, c_in, s * s * c_out)
  y = jax.lax.conv_general_dilated(
      x,
      w,
      window_strides=(1, 1),
      padding=(padding, padding),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )
  n, h, wd, _ = y.shape
  y = y.reshape(n, h, wd, s, s, c_out).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(n, h * s, wd * s, c_out)
