"""Pictures: grids, the translation sheet and PNG round trips."""

import numpy as np
from PIL import Image
import pytest

from aligngan_jax import sheets
from aligngan_jax import trained
from aligngan_jax import visualize
from aligngan_jax.evaluation import driver
from aligngan_jax.evaluation import engine


def test_to_uint8_maps_the_network_range():
  np.testing.assert_array_equal(
      visualize.to_uint8([-1.0, 0.0, 1.0, 2.0, -3.0]), [0, 128, 255, 255, 0]
  )


def test_translation_grid_puts_each_image_in_its_cell(tmp_path):
  rng = np.random.default_rng(0)
  n, h, w = 3, 8, 6
  columns = [rng.uniform(-1, 1, (n, h, w, 3)).astype(np.float32) for _ in range(4)]
  picture = visualize.translation_grid(*columns)
  gap = 2
  assert picture.shape == (n * (h + gap) - gap, 4 * (w + gap) - gap, 3)
  for i in range(n):
    for j in range(4):
      cell = picture[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w]
      np.testing.assert_array_equal(cell, visualize.to_uint8(columns[j][i]))
  # The gaps are background (white).
  assert (picture[h : h + gap] == 255).all()
  path = visualize.save_png(str(tmp_path / 'sub' / 'grid.png'), picture)
  np.testing.assert_array_equal(np.asarray(Image.open(path)), picture)


def test_translation_grid_with_the_true_ir_puts_it_third():
  rng = np.random.default_rng(1)
  real_rgb, fake_ir, real_ir, rec, true_ir = (
      rng.uniform(-1, 1, (2, 8, 6, 3)).astype(np.float32) for _ in range(5)
  )
  picture = visualize.translation_grid(real_rgb, fake_ir, real_ir, rec, true_ir)
  assert picture.shape[1] == 5 * (6 + 2) - 2
  assert visualize.TRANSLATION_COLUMNS_WITH_TRUTH[2] == 'true IR'
  for j, column in enumerate((real_rgb, fake_ir, true_ir, real_ir, rec)):
    np.testing.assert_array_equal(picture[:8, j * 8 : j * 8 + 6], visualize.to_uint8(column[0]))


def test_grid_rejects_mismatched_images():
  with pytest.raises(ValueError, match='expected'):
    visualize.grid([[np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)]])
  with pytest.raises(ValueError, match='differ'):
    visualize.translation_grid(
        np.zeros((2, 4, 4, 3)),
        np.zeros((1, 4, 4, 3)),
        np.zeros((2, 4, 4, 3)),
        np.zeros((2, 4, 4, 3)),
    )


def _tile(value, h=visualize.TILE[0], w=visualize.TILE[1]):
  return np.full((h, w, 3), value, np.uint8)


def test_retrieval_sheet_borders_say_right_or_wrong_and_mark_the_first_match(tmp_path):
  correct = [[True, False, False], [False, False, True]]
  rows = [
      visualize.RetrievalRow(
          query=_tile(10 * r),
          caption=(f'query id {r}', 'cam 3'),
          hits=tuple(
              visualize.Hit(_tile(100 + 10 * c), rank=c + 1, distance=0.1 * c, camera=4, correct=ok)
              for c, ok in enumerate(row)
          ),
          # Row 0's first true match is in its top 3; row 1's is below: rank 7.
          first_match=None if r == 0 else visualize.Hit(_tile(200), 7, 0.9, 5, True),
      )
      for r, row in enumerate(correct)
  ]
  image, boxes = visualize.retrieval_sheet(rows)
  frame_h = visualize.TILE[0] + 2 * visualize.BORDER
  frame_w = visualize.TILE[1] + 2 * visualize.BORDER
  gap = visualize.GAP
  assert image.shape == (
      gap + 2 * (frame_h + visualize.CAPTION + gap),
      gap + 5 * (frame_w + gap) + 2 * gap,
      3,
  )
  path = visualize.save_png(str(tmp_path / 'sheet.png'), image)
  pixels = np.asarray(Image.open(path))  # read back from the file

  def border(r, c):
    x0, y0, _, _ = boxes[(r, c)]
    return tuple(pixels[y0 + 1, x0 + 1])

  def inside(r, c):
    x0, y0, _, _ = boxes[(r, c)]
    return tuple(pixels[y0 + visualize.BORDER + 5, x0 + visualize.BORDER + 5])

  for r, row in enumerate(correct):
    assert border(r, 0) == visualize.BLUE
    assert inside(r, 0) == (10 * r,) * 3
    for c, ok in enumerate(row, start=1):
      assert border(r, c) == (visualize.GREEN if ok else visualize.RED)
      assert inside(r, c) == (100 + 10 * (c - 1),) * 3
  assert (1, 4) in boxes and (0, 4) not in boxes
  assert border(1, 4) == visualize.GREEN and inside(1, 4) == (200,) * 3
  # The appended match sits after a wider gap than the hits between them.
  assert boxes[(1, 4)][0] - boxes[(1, 3)][2] > boxes[(1, 3)][0] - boxes[(1, 2)][2]
  # Unknown identities (search): grey.
  grey, _ = visualize.retrieval_sheet(
      [
          visualize.RetrievalRow(
              _tile(0), ('q', ''), (visualize.Hit(_tile(50), 1, 0.0, None, name='a.jpg'),)
          )
      ]
  )
  assert tuple(grey[visualize.GAP + 1, boxes[(0, 1)][0] + 1]) == visualize.GREY


def test_cmc_plot_draws_each_curve_where_its_values_are():
  curves = {
      'all-search single-shot': np.linspace(0.2, 0.9, 20),
      'indoor-search single-shot': np.linspace(0.5, 1.0, 20),
  }
  image, to_pixel = visualize.cmc_plot(curves, title='test', size=(300, 400))
  assert image.shape == (300, 400, 3)
  for colour, curve in zip(visualize.CURVE_COLOURS, curves.values()):
    for rank in (1, 10, 20):
      x, y = to_pixel(rank, curve[rank - 1])
      assert tuple(image[y, x]) == colour
  # Higher CMC is higher on the image.
  assert to_pixel(1, 0.9)[1] < to_pixel(1, 0.2)[1]


def test_visualize_writes_retrieval_translation_and_cmc_sheets(tools_workdir, tiny_records):
  config = trained.load_config(tools_workdir)
  paths = sheets.write_sheets(config, tools_workdir)
  assert set(paths) == {'retrieval_sysu_all_single', 'translation', 'cmc'}
  vis = config.visualize
  retrieval = np.asarray(Image.open(paths['retrieval_sysu_all_single']))
  row_h = visualize.TILE[0] + 2 * visualize.BORDER + visualize.CAPTION + visualize.GAP
  assert retrieval.shape[0] == visualize.GAP + (vis.queries + vis.worst) * row_h
  translation = np.asarray(Image.open(paths['translation']))
  # With the true IR column: the tiny world has infrared twins.
  assert translation.shape[1] == 5 * (config.image_size + 2) - 2
  assert np.asarray(Image.open(paths['cmc'])).shape == (360, 560, 3)

  # The sheet's borders against the identities, rebuilt with the same rows.
  test = tiny_records[1]
  opened = trained.open_workdir(tools_workdir)
  feats = driver.features_by_modality(
      opened.extract, test, config, opened.mesh, image_size=opened.load_size
  )
  split = engine.splits(test, driver.eval_settings(config))['sysu all single'][0]
  rows = sheets.retrieval_rows(
      feats, test, split, queries=vis.queries, worst=vis.worst, top_k=vis.top_k, seed=config.seed
  )
  image, boxes = visualize.retrieval_sheet(rows)
  np.testing.assert_array_equal(image, retrieval)
  q_ids = {int(row.caption[0].split()[-1]) for row in rows}
  assert len(rows) == vis.queries + vis.worst and q_ids
  distance = 1 - feats[split.query] @ feats[split.gallery].T
  for r, row in enumerate(rows):
    query_id = int(row.caption[0].split()[-1])
    for c, hit in enumerate(row.hits, start=1):
      x0, y0, _, _ = boxes[(r, c)]
      same = hit.correct
      assert tuple(image[y0 + 1, x0 + 1]) == (visualize.GREEN if same else visualize.RED)
      # The flag is the identity's: find the gallery image by its distance.
      matches = np.isclose(distance, hit.distance, atol=1e-5)
      gallery_ids = test.person_id[split.gallery][np.nonzero(matches)[1]]
      assert same == (query_id in gallery_ids) or len(set(gallery_ids)) > 1
    if row.first_match is not None:
      assert row.first_match.rank > vis.top_k and not any(h.correct for h in row.hits)
  # The worst rows are the queries whose first true match ranks lowest.
  assert [row.caption[1].startswith('worst') for row in rows] == (
      [False] * vis.queries + [True] * vis.worst
  )
