"""Translation error against the true infrared image: diagnostic (e).

Where a dataset holds the infrared twin of every RGB test image (the
synthetic builder's ``test_paired_ir`` split: same person, pose, background
and camera geometry, imaged in infrared), the generator's fake IR can be
compared with the truth, something no real dataset allows. Two numbers, in
[0, 1] pixel units at the training ``image_size``:

* ``l1``: mean absolute difference over pixels and channels (the truth's
  three channels are equal, so a fake IR whose channels differ pays for
  it);
* ``ssim``: mean structural similarity of the channel-mean grey images
  (Wang et al. 2004: 11 x 11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
  data range 1, the map's valid part; as scikit-image's
  ``structural_similarity(gaussian_weights=True,
  use_sample_covariance=False, data_range=1)``).

Beside them, two references that need no training of the generator: the
RGB image's luminance (ITU-R 601 luma, what a greyscale camera would
record) and the best per-channel linear map (IR = w_r R + w_g G + w_b B +
b, least squares over every pixel of the training pairs). A generator that
learned the mapping beats both. No TensorFlow.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

LUMA = (0.299, 0.587, 0.114)
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def _unit(images):
  """[-1, 1] images as float32 in [0, 1]."""
  return (jnp.asarray(images, jnp.float32) + 1.0) / 2.0


def l1(images, truth) -> jax.Array:
  """Per image: mean |images - truth| in [0, 1] units ([n, H, W, C] in [-1, 1])."""
  return jnp.abs(_unit(images) - _unit(truth)).mean(axis=(1, 2, 3))


def _gaussian_window() -> np.ndarray:
  x = np.arange(SSIM_WINDOW) - (SSIM_WINDOW - 1) / 2
  g = np.exp(-(x**2) / (2 * SSIM_SIGMA**2))
  g /= g.sum()
  return np.outer(g, g)


def _filter(x):
  """The window's weighted mean at every valid position of [n, H, W]."""
  kernel = jnp.asarray(_gaussian_window(), jnp.float32)[:, :, None, None]
  return jax.lax.conv_general_dilated(
      x[..., None],
      kernel,
      (1, 1),
      'VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      precision=jax.lax.Precision.HIGHEST,
  )[..., 0]


def ssim(images, truth) -> jax.Array:
  """Per image: the mean SSIM of the channel-mean grey images (module
  docstring); [n, H, W, C] in [-1, 1], H and W at least the window."""
  if min(images.shape[1:3]) < SSIM_WINDOW:
    raise ValueError(
        f'ssim: images of {images.shape[1:3]} pixels are smaller '
        f'than the {SSIM_WINDOW}-pixel window.'
    )
  x, y = _unit(images).mean(-1), _unit(truth).mean(-1)
  mx, my = _filter(x), _filter(y)
  vx = _filter(x * x) - mx * mx
  vy = _filter(y * y) - my * my
  cov = _filter(x * y) - mx * my
  c1, c2 = SSIM_K1**2, SSIM_K2**2
  value = (2 * mx * my + c1) * (2 * cov + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
  return value.mean(axis=(1, 2))


def luminance(rgb) -> np.ndarray:
  """ITU-R 601 luma of [-1, 1] RGB images, as three equal channels."""
  luma = np.asarray(rgb, np.float32) @ np.asarray(LUMA, np.float32)
  return np.repeat(luma[..., None], 3, axis=-1)


def fit_linear_map(rgb, ir) -> np.ndarray:
  """(w_r, w_g, w_b, b) minimising the squared error of w . RGB + b against
  the channel-mean IR over every pixel of the pairs ([-1, 1] images).
  Normal equations in float64, so memory stays O(1) in the pixel count."""
  gram, moment = np.zeros((4, 4)), np.zeros(4)
  for x, y in zip(np.asarray(rgb), np.asarray(ir)):
    a = np.concatenate([x.reshape(-1, 3), np.ones((x.shape[0] * x.shape[1], 1))], 1)
    a = a.astype(np.float64)
    gram += a.T @ a
    moment += a.T @ y.reshape(-1, 3).mean(-1).astype(np.float64)
  return np.linalg.solve(gram, moment)


def apply_linear_map(rgb, weights) -> np.ndarray:
  """``fit_linear_map``'s map on [-1, 1] RGB images, as three equal channels."""
  grey = np.asarray(rgb, np.float64) @ weights[:3] + weights[3]
  return np.repeat(np.clip(grey, -1, 1)[..., None], 3, axis=-1).astype(np.float32)


def scores(images, truth) -> dict[str, float]:
  """{'l1', 'ssim'}: the means over the images."""
  return {'l1': float(l1(images, truth).mean()), 'ssim': float(ssim(images, truth).mean())}


@dataclasses.dataclass(frozen=True)
class Truth:
  """The test RGB images, their infrared twins, and the references' scores."""

  rgb: np.ndarray  # [n, S, S, 3] in [-1, 1]
  true_ir: np.ndarray  # [n, S, S, 3] in [-1, 1]
  references: dict  # {'luminance': scores, 'linear': scores}

  @classmethod
  def from_pairs(cls, train_rgb, train_ir, test_rgb, test_ir) -> 'Truth':
    weights = fit_linear_map(train_rgb, train_ir)
    return cls(
        np.asarray(test_rgb),
        np.asarray(test_ir),
        {
            'luminance': scores(luminance(test_rgb), test_ir),
            'linear': scores(apply_linear_map(test_rgb, weights), test_ir),
        },
    )

  def measure(
      self, translate: Callable[[np.ndarray], np.ndarray], batch_size: int
  ) -> dict[str, float]:
    """Diagnostic (e) of ``translate`` (RGB batch -> fake IR, eval mode):
    its L1 and SSIM and the references', over every test RGB image. Every
    batch has ``batch_size`` images (the last one padded), so a jitted
    ``translate`` compiles once."""
    fakes = []
    for start in range(0, len(self.rgb), batch_size):
      batch = self.rgb[start : start + batch_size]
      pad = batch_size - len(batch)
      if pad:
        batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
      fakes.append(np.asarray(translate(batch))[: batch_size - pad])
    out = scores(np.concatenate(fakes), self.true_ir)
    for name, reference in self.references.items():
      out.update({f'{name}_{k}': v for k, v in reference.items()})
    out['num_images'] = len(self.rgb)
    return out
