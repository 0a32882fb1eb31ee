"""Pictures of what the model does (numpy + Pillow; no TensorFlow).

``translation_grid`` lays out, one row per person, real RGB | generated IR |
real IR of the same identity | RGB reconstructed from the generated IR: the
pixel alignment at a glance. ``save_png`` writes any such uint8 picture.
"""

import os

import numpy as np

TRANSLATION_COLUMNS = ('real RGB', 'fake IR', 'real IR', 'reconstructed RGB')


def to_uint8(images) -> np.ndarray:
  """[..., H, W, 3] in [-1, 1] (the networks' range) -> uint8 [0, 255]."""
  images = np.asarray(images, np.float32)
  return np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def grid(rows: list[list[np.ndarray]], *, gap: int = 2, background: int = 255
         ) -> np.ndarray:
  """Tiles equally sized uint8 [H, W, 3] images, ``gap`` pixels apart."""
  if not rows or not rows[0]:
    raise ValueError('grid: no images to lay out.')
  h, w, c = rows[0][0].shape
  n_cols = max(len(r) for r in rows)
  out = np.full((len(rows) * (h + gap) - gap, n_cols * (w + gap) - gap, c),
                background, np.uint8)
  for i, row in enumerate(rows):
    for j, image in enumerate(row):
      if image.shape != (h, w, c):
        raise ValueError(f'grid: image ({i}, {j}) is {image.shape}, expected '
                         f'{(h, w, c)}.')
      out[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = image
  return out


def translation_grid(real_rgb, fake_ir, real_ir, reconstructed_rgb) -> np.ndarray:
  """One row per person: the four [N, H, W, 3] arrays in [-1, 1], side by side
  in ``TRANSLATION_COLUMNS`` order. Returns uint8 [H', W', 3]."""
  columns = [to_uint8(x) for x in (real_rgb, fake_ir, real_ir, reconstructed_rgb)]
  n = len(columns[0])
  if any(len(c) != n for c in columns):
    raise ValueError(f'translation_grid: column lengths {[len(c) for c in columns]} '
                     'differ.')
  return grid([[c[i] for c in columns] for i in range(n)])


def save_png(path: str, image: np.ndarray) -> str:
  """Writes a uint8 [H, W, 3] image as PNG (parent folders created)."""
  from PIL import Image
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(np.asarray(image, np.uint8)).save(path, format='PNG')
  return path
