"""What people look at: mode=visualize sheets, search and export, on a
copy of the session's trained AlignGAN workdir (conftest.py)."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from aligngan_jax import config_checks
from aligngan_jax import export
from aligngan_jax import search
from aligngan_jax import sheets
from aligngan_jax import trained
from aligngan_jax import visualize
from aligngan_jax.evaluation import driver
from aligngan_jax.evaluation import engine


@pytest.fixture(scope='module')
def workdir(aligngan_run, tmp_path_factory):
  """A copy of the session's trained AlignGAN workdir (the tools write
  sheets and caches into it)."""
  path = str(tmp_path_factory.mktemp('tools') / 'run')
  shutil.copytree(aligngan_run[0], path)
  return path


def test_visualize_writes_retrieval_translation_and_cmc_sheets(workdir, tiny_records):
  config = trained.load_config(workdir)
  paths = sheets.write_sheets(config, workdir)
  assert set(paths) == {'retrieval_sysu_all_single', 'translation', 'cmc'}
  vis = config.visualize
  retrieval = np.asarray(Image.open(paths['retrieval_sysu_all_single']))
  row_h = visualize.TILE[0] + 2 * visualize.BORDER + visualize.CAPTION + visualize.GAP
  assert retrieval.shape[0] == visualize.GAP + (vis.queries + vis.worst) * row_h
  translation = np.asarray(Image.open(paths['translation']))
  assert translation.shape[1] == 4 * (config.image_size + 2) - 2
  assert np.asarray(Image.open(paths['cmc'])).shape == (360, 560, 3)

  # The sheet's borders against the identities, rebuilt with the same rows.
  test = tiny_records[1]
  opened = trained.open_workdir(workdir)
  feats = driver.features_by_modality(opened.extract, test, config, opened.mesh)
  split = engine.splits(test, driver.eval_settings(config))['sysu all single'][0]
  rows = sheets.retrieval_rows(feats, test, split, queries=vis.queries, worst=vis.worst,
                               top_k=vis.top_k, seed=config.seed)
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
      [False] * vis.queries + [True] * vis.worst)


def _gallery(folder, n=7):
  """Distinct generated people in three formats, plus a broken file."""
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(folder, 'sub'), exist_ok=True)
  paths = []
  for i in range(n):
    pixels = rng.integers(0, 256, (40 + 7 * i, 20 + 3 * i, 3), dtype=np.uint8)
    ext = ('jpg', 'png', 'bmp')[i % 3]
    path = os.path.join(folder, 'sub' if i % 2 else '', f'person{i}.{ext}')
    Image.fromarray(pixels).save(path)
    paths.append(path)
  with open(os.path.join(folder, 'broken.jpg'), 'wb') as f:
    f.write(b'not an image')
  return paths


def test_search_finds_the_copy_first_and_caches_the_gallery(workdir, tmp_path, caplog):
  paths = _gallery(str(tmp_path / 'gallery'))
  # The query: person 4's pixels (a PNG in the gallery) saved as BMP. Same
  # modality, so the copy's features are the gallery image's.
  query = str(tmp_path / 'query.bmp')
  Image.open(paths[4]).save(query)
  first = search.search(workdir, query, str(tmp_path / 'gallery'), top_k=4,
                        gallery_modality='ir')
  assert first['ranked'][0][0][0] == paths[4]
  assert first['ranked'][0][0][1] == pytest.approx(0.0, abs=1e-5)
  assert len(first['ranked'][0]) == 4 and not first['from_cache']
  assert 'broken.jpg' in caplog.text and 'Skipped 1 unreadable' in caplog.text
  sheet = np.asarray(Image.open(first['sheet']))
  assert sheet.shape[1] == visualize.GAP + 5 * (visualize.TILE[1] + 2 * visualize.BORDER
                                                + visualize.GAP) + 2 * visualize.GAP
  second = search.search(workdir, query, str(tmp_path / 'gallery'), top_k=4,
                         gallery_modality='ir')
  assert second['from_cache'] and second['ranked'] == first['ranked']
  assert 'person4' in search.format_table(second)
  # The other modality's features are cached apart; so is a changed gallery.
  assert not search.search(workdir, query, str(tmp_path / 'gallery'))['from_cache']
  os.remove(paths[0])
  assert not search.search(workdir, query, str(tmp_path / 'gallery'),
                           gallery_modality='ir')['from_cache']


def test_search_and_export_errors_name_the_problem(workdir, tmp_path):
  os.makedirs(tmp_path / 'empty')
  with pytest.raises(search.SearchError, match=r'empty holds no image files'):
    search.search(workdir, str(tmp_path / 'q.jpg'), str(tmp_path / 'empty'))
  bare = tmp_path / 'bare'
  os.makedirs(bare)
  shutil.copy(os.path.join(workdir, 'config.json'), bare / 'config.json')
  with pytest.raises(config_checks.ConfigError, match='holds no checkpoint'):
    export.export(str(bare), 'test', str(tmp_path / 'f.npz'))
  with pytest.raises(config_checks.ConfigError, match='no config.json'):
    trained.open_workdir(str(tmp_path / 'empty'))


def test_export_round_trips(workdir, tiny_records, tmp_path):
  out = export.export(workdir, 'test', str(tmp_path / 'features.npz'))
  test = tiny_records[1]
  with np.load(out) as stored:
    for key in ('person_id', 'label', 'camera', 'modality', 'index', 'path'):
      np.testing.assert_array_equal(stored[key], getattr(test, key))
    opened = trained.open_workdir(workdir)
    want = driver.features_by_modality(opened.extract, test, opened.config, opened.mesh)
    np.testing.assert_allclose(stored['features'], want, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(stored['features'], axis=1), 1, atol=1e-5)
    assert int(stored['step']) == opened.step == 6
