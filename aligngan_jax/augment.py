"""Training-image augmentations as pure functions of explicit draws (jnp),
so a test can inject the draws of another implementation.

The AGW / CAJ recipe (baselines_reference.md §3): zero padding in pixel
space, a random crop back to the input size, then a horizontal flip, then
ImageNet normalisation. Images here are in [-1, 1], so pixel value 0 is -1.
"""

import jax
import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pad_crop_flip(images, offsets, flips, *, pad: int = 10, fill: float = -1.0):
  """[N, H, W, C] images padded by ``pad`` with ``fill`` on each side, cropped
  back to H x W at ``offsets`` [N, 2] (row, column, each in 0..2 pad), then
  flipped left-right where ``flips`` [N] is True (crop first, as torchvision's
  RandomCrop before RandomHorizontalFlip)."""
  n, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=fill)

  def one(image, offset, flip):
    crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))
    return jnp.where(flip, crop[:, ::-1], crop)

  return jax.vmap(one)(padded, offsets, flips)


def draw_pad_crop_flip(key, n: int, pad: int = 10):
  """(offsets [n, 2] uniform over 0..2 pad, flips [n] with probability 0.5)."""
  k1, k2 = jax.random.split(key)
  return (jax.random.randint(k1, (n, 2), 0, 2 * pad + 1), jax.random.bernoulli(k2, 0.5, (n,)))


def imagenet_normalise(images):
  """[-1, 1] images -> ImageNet-normalised ((x / 255 - mean) / std of the
  0..255 levels)."""
  x = (images + 1.0) / 2.0
  return (x - jnp.asarray(IMAGENET_MEAN, x.dtype)) / jnp.asarray(IMAGENET_STD, x.dtype)


# --- CAJ's channel augmentations (ICCV21_CAJ/ChannelAug.py), on normalised images ---

ERASE_FILL = (0.4914, 0.4822, 0.4465)  # CIFAR means, written into normalised space
GREY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def replicate_channel(images, channel):
  """Every image's three channels take the values of its ``channel`` [N]
  (0 R, 1 G, 2 B)."""
  picked = jnp.take_along_axis(images, channel[:, None, None, None], axis=-1)
  return jnp.broadcast_to(picked, images.shape)


def channel_exchange(images, channel):
  """``ChannelExchange(gray=2)``: replicate channel k, k uniform over {R, G,
  B} (the grey branch is unreachable with gray=2)."""
  return replicate_channel(images, channel)


def draw_channel_exchange(key, n: int):
  """The channel `channel_exchange` replicates: [n] uniform over {0, 1, 2}."""
  return jax.random.randint(key, (n,), 0, 3)


def draw_adaptive_grey(key, n: int):
  """(choice [n] uniform over 0..3, keep [n] with probability 0.5): the
  draws of `channel_adaptive_grey`."""
  k_choice, k_keep = jax.random.split(key)
  return jax.random.randint(k_choice, (n,), 0, 4), jax.random.uniform(k_keep, (n,)) > 0.5


def channel_adaptive_grey(images, choice, keep):
  """``ChannelAdapGray(0.5)``: ``choice`` [N] in 0..3; below 3 replicate that
  channel; at 3 the grey 0.2989 R + 0.5870 G + 0.1140 B of the normalised
  values on all channels, unless ``keep`` [N] (u > 0.5: unchanged)."""
  grey = sum(w * images[..., c] for c, w in enumerate(GREY_WEIGHTS))[..., None]
  grey = jnp.broadcast_to(grey, images.shape)
  replicated = replicate_channel(images, jnp.minimum(choice, 2))
  out = jnp.where((choice < 3)[:, None, None, None], replicated, grey)
  return jnp.where(((choice == 3) & keep)[:, None, None, None], images, out)


def erase_rectangles(images, apply, top, left, height, width):
  """``ChannelRandomErasing``'s effect: where ``apply`` [N], rows top..top+h
  and columns left..left+w of channel c set to ERASE_FILL[c]."""
  n, h, w, _ = images.shape
  rows = jnp.arange(h)[None, :, None]
  cols = jnp.arange(w)[None, None, :]
  inside = (
      (rows >= top[:, None, None])
      & (rows < (top + height)[:, None, None])
      & (cols >= left[:, None, None])
      & (cols < (left + width)[:, None, None])
      & apply[:, None, None]
  )
  fill = jnp.asarray(ERASE_FILL, images.dtype)
  return jnp.where(inside[..., None], fill, images)


def draw_erasing(
    key,
    n: int,
    size: tuple[int, int],
    *,
    p: float = 0.5,
    sl: float = 0.02,
    sh: float = 0.4,
    r1: float = 0.3,
    attempts: int = 100,
):
  """The official draws of ``ChannelRandomErasing`` for ``n`` images of
  ``size`` (H, W): applied with probability ``p``; up to 100 attempts of a
  target area U(sl, sh) H W and aspect U(r1, 1 / r1), h = round(sqrt(area
  aspect)), w = round(sqrt(area / aspect)) (half to even); the first with
  w < W and h < H gets top U{0..H-h} and left U{0..W-w}; none fits: no
  erasing. Returns (apply, top, left, height, width), each [n]."""
  big_h, big_w = size
  k_apply, k_area, k_aspect, k_top, k_left = jax.random.split(key, 5)
  apply = jax.random.uniform(k_apply, (n,)) <= p
  area = jax.random.uniform(k_area, (n, attempts), minval=sl, maxval=sh) * big_h * big_w
  aspect = jax.random.uniform(k_aspect, (n, attempts), minval=r1, maxval=1.0 / r1)
  height = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
  width = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
  fits = (width < big_w) & (height < big_h)
  first = jnp.argmax(fits, axis=1)
  height = jnp.take_along_axis(height, first[:, None], 1)[:, 0]
  width = jnp.take_along_axis(width, first[:, None], 1)[:, 0]
  apply = apply & jnp.any(fits, axis=1)
  top = jnp.floor(jax.random.uniform(k_top, (n,)) * (big_h - height + 1)).astype(jnp.int32)
  left = jnp.floor(jax.random.uniform(k_left, (n,)) * (big_w - width + 1)).astype(jnp.int32)
  return apply, top, left, height, width
