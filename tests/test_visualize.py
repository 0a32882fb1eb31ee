"""Pictures: grids, the translation sheet and PNG round trips."""

import numpy as np
import pytest
from PIL import Image

from aligngan_jax import visualize


def test_to_uint8_maps_the_network_range():
  np.testing.assert_array_equal(visualize.to_uint8([-1.0, 0.0, 1.0, 2.0, -3.0]),
                                [0, 128, 255, 255, 0])


def test_translation_grid_puts_each_image_in_its_cell(tmp_path):
  rng = np.random.default_rng(0)
  n, h, w = 3, 8, 6
  columns = [rng.uniform(-1, 1, (n, h, w, 3)).astype(np.float32) for _ in range(4)]
  picture = visualize.translation_grid(*columns)
  gap = 2
  assert picture.shape == (n * (h + gap) - gap, 4 * (w + gap) - gap, 3)
  for i in range(n):
    for j in range(4):
      cell = picture[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w]
      np.testing.assert_array_equal(cell, visualize.to_uint8(columns[j][i]))
  # The gaps are background (white).
  assert (picture[h:h + gap] == 255).all()
  path = visualize.save_png(str(tmp_path / 'sub' / 'grid.png'), picture)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), picture)


def test_grid_rejects_mismatched_images():
  with pytest.raises(ValueError, match='expected'):
    visualize.grid([[np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)]])
  with pytest.raises(ValueError, match='differ'):
    visualize.translation_grid(np.zeros((2, 4, 4, 3)), np.zeros((1, 4, 4, 3)),
                               np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 4, 3)))
