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
  return (jax.random.randint(k1, (n, 2), 0, 2 * pad + 1),
          jax.random.bernoulli(k2, 0.5, (n,)))


def imagenet_normalise(images):
  """[-1, 1] images -> ImageNet-normalised ((x / 255 - mean) / std of the
  0..255 levels)."""
  x = (images + 1.0) / 2.0
  return (x - jnp.asarray(IMAGENET_MEAN, x.dtype)) / jnp.asarray(IMAGENET_STD, x.dtype)
