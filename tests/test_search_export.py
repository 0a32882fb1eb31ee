"""Search (rank a folder of images) and export (features to .npz) on the
shared trained workdir, and every argument checked before any work."""

import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from aligngan_jax import config_checks
from aligngan_jax import export
from aligngan_jax import input_pipeline
from aligngan_jax import search
from aligngan_jax import trained
from aligngan_jax import visualize
from aligngan_jax.evaluation import driver
import run_files
import workdirs


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


def test_search_finds_the_copy_first_and_caches_the_gallery(tools_workdir, tmp_path, caplog):
  paths = _gallery(str(tmp_path / 'gallery'))
  # The query: person 4's pixels (a PNG in the gallery) saved as BMP. Same
  # modality, so the copy's features are the gallery image's.
  query = str(tmp_path / 'query.bmp')
  Image.open(paths[4]).save(query)
  first = search.search(
      tools_workdir, query, str(tmp_path / 'gallery'), top_k=4, gallery_modality='ir'
  )
  assert first['ranked'][0][0][0] == paths[4]
  assert first['ranked'][0][0][1] == pytest.approx(0.0, abs=1e-5)
  assert len(first['ranked'][0]) == 4 and not first['from_cache']
  assert 'broken.jpg' in caplog.text and 'Skipped 1 unreadable' in caplog.text
  sheet = np.asarray(Image.open(first['sheet']))
  assert (
      sheet.shape[1]
      == visualize.GAP
      + 5 * (visualize.TILE[1] + 2 * visualize.BORDER + visualize.GAP)
      + 2 * visualize.GAP
  )
  second = search.search(
      tools_workdir, query, str(tmp_path / 'gallery'), top_k=4, gallery_modality='ir'
  )
  assert second['from_cache'] and second['ranked'] == first['ranked']
  assert 'person4' in search.format_table(second)
  # The other modality's features are cached apart; so is a changed gallery.
  assert not search.search(tools_workdir, query, str(tmp_path / 'gallery'))['from_cache']
  os.remove(paths[0])
  assert not search.search(tools_workdir, query, str(tmp_path / 'gallery'), gallery_modality='ir')[
      'from_cache'
  ]


def test_search_and_export_errors_name_the_problem(tools_workdir, tmp_path):
  os.makedirs(tmp_path / 'empty')
  with pytest.raises(search.SearchError, match=r'empty holds no image files'):
    search.search(tools_workdir, str(tmp_path / 'q.jpg'), str(tmp_path / 'empty'))
  bare = tmp_path / 'bare'
  os.makedirs(bare)
  shutil.copy(os.path.join(tools_workdir, 'config.json'), bare / 'config.json')
  with pytest.raises(config_checks.ConfigError, match='holds no checkpoint'):
    export.export(str(bare), 'test', str(tmp_path / 'f.npz'))
  with pytest.raises(config_checks.ConfigError, match='no config.json'):
    trained.open_workdir(str(tmp_path / 'empty'))


def _restorable_only_in_name(folder) -> str:
  """A workdir that passes the cheap checks (config.json, a finished step
  folder) but holds no model: with `no_restore`, a tool that reaches the
  model before its argument checks fails the test."""
  os.makedirs(os.path.join(folder, 'checkpoints', '6'))
  with open(os.path.join(folder, 'config.json'), 'w') as f:
    json.dump({'image_size': 64, 'dataset': 'synthetic_vireid/tiny', 'model': {}}, f)
  return str(folder)


@pytest.fixture
def no_restore(monkeypatch):
  """Reading the dataset or restoring a model fails the test: the argument
  checks must come first."""

  def fail(*args, **kwargs):
    raise AssertionError('restored too early')

  for name in ('restore', 'open_workdir', 'num_classes'):
    monkeypatch.setattr(trained, name, fail)
  monkeypatch.setattr(input_pipeline, 'load_data', fail)


def test_search_checks_every_argument_before_restoring(tmp_path, no_restore, caplog):
  workdir = _restorable_only_in_name(tmp_path / 'run')
  gallery = str(tmp_path / 'gallery')
  _gallery(gallery, n=2)
  query = str(tmp_path / 'q.png')
  Image.new('RGB', (16, 32)).save(query)
  os.symlink(tmp_path / 'gone.jpg', tmp_path / 'dangling.jpg')
  os.makedirs(tmp_path / 'ghosts')
  os.symlink(tmp_path / 'gone.jpg', tmp_path / 'ghosts' / 'ghost.jpg')
  (tmp_path / 'notes.txt').write_text('not an image')
  se, ce = search.SearchError, config_checks.ConfigError
  cases = [
      ({'top_k': 0}, se, r'^--top_k=0 must be a positive integer'),
      ({'query_modality': 'nir'}, se, r"^--query_modality='nir' is not one of ir, rgb\.$"),
      ({'workdir': str(tmp_path / 'rnu')}, ce, r'^--workdir=\S*rnu does not exist'),
      ({'query': str(tmp_path / 'missing.jpg')}, se, r'^--query=\S*missing\.jpg does not exist\.$'),
      (
          {'query': str(tmp_path / 'dangling.jpg')},
          se,
          r'^--query=\S*dangling\.jpg is a dangling symlink \(to \S*gone\.jpg\)\.$',
      ),
      ({'query': str(tmp_path / 'notes.txt')}, se, r'^--query=\S*notes\.txt: no readable image'),
      ({'gallery': str(tmp_path / 'galery')}, se, r'^--gallery=\S*galery does not exist\.$'),
      ({'gallery': str(tmp_path / 'ghosts')}, se, r'^--gallery=\S*ghosts holds no image files'),
      (
          {'out': str(tmp_path / 'notes.txt' / 'sheet.png')},
          se,
          r'^--out=\S*sheet\.png: \S*notes\.txt is a file, not a folder\.$',
      ),
      ({'out': gallery}, se, r'^--out=\S*gallery: is a folder; name the file to write\.$'),
  ]
  for change, error, match in cases:
    args = {'workdir': workdir, 'query': query, 'gallery': gallery, 'top_k': 3} | change
    workdirs.raises_one_line(
        error,
        match,
        search.search,
        args.pop('workdir'),
        args.pop('query'),
        args.pop('gallery'),
        **args,
    )
  assert not os.path.exists(tmp_path / 'rnu')
  assert 'ghost.jpg: is a dangling symlink' in caplog.text
  assert 'Skipped 1 entry of --gallery=' in caplog.text


def test_export_checks_every_argument_before_reading_or_restoring(tmp_path, no_restore):
  workdir = _restorable_only_in_name(tmp_path / 'run')
  (tmp_path / 'notes.txt').write_text('')
  os.makedirs(tmp_path / 'taken.npz')
  ce = config_checks.ConfigError
  cases = [
      ({'workdir': str(tmp_path / 'rnu')}, r'^--workdir=\S*rnu does not exist'),
      ({'split': 'val'}, r"^--split='val' is not one of train, test\.$"),
      ({'manual_dir': str(tmp_path / 'nowhere')}, r'^--manual_dir=\S*nowhere is not a folder\.$'),
      (
          {'out': str(tmp_path / 'notes.txt' / 'f.npz')},
          r'^--out=\S*f\.npz: \S*notes\.txt is a file, not a folder\.$',
      ),
      ({'out': str(tmp_path / 'taken')}, r'^--out=\S*taken: is a folder'),
      # Fault 14: an existing folder, or a trailing slash, is not a file
      # name (was: <folder>.npz beside it, or a hidden <folder>/.npz).
      ({'out': str(tmp_path)}, r'^--out=\S*: is a folder; name the file to write\.$'),
      ({'out': str(tmp_path / 'later') + '/'}, r'^--out=\S*later/: is a folder'),
  ]
  for change, match in cases:
    args = {'workdir': workdir, 'split': 'test', 'out': str(tmp_path / 'f.npz')} | change
    workdirs.raises_one_line(
        ce, match, export.export, args.pop('workdir'), args.pop('split'), args.pop('out'), **args
    )
  assert not os.path.exists(tmp_path / 'rnu')
  assert not os.path.exists(f'{tmp_path}.npz') and not os.path.exists(tmp_path / 'later')
  # A missing --out folder is created before the dataset is read (so it
  # cannot fail after the extraction), and nothing is written into it yet.
  with pytest.raises(AssertionError, match='too early'):
    export.export(workdir, 'test', str(tmp_path / 'new' / 'features'))
  assert os.path.isdir(tmp_path / 'new') and not os.listdir(tmp_path / 'new')


def test_export_program_prints_one_error_line(tmp_path):
  # Once as a program: main() turns the error into one line and status 1.
  workdir = _restorable_only_in_name(tmp_path / 'run')
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write('{"image_size": 6')  # Truncated: was a JSONDecodeError traceback.
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', JAX_PLATFORMS='cpu')
  run = subprocess.run(
      [
          sys.executable,
          '-m',
          'aligngan_jax.export',
          f'--workdir={workdir}',
          f'--out={tmp_path / "f.npz"}',
      ],
      cwd=run_files.ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert run.returncode != 0 and 'Traceback' not in run.stderr
  errors = [line for line in run.stderr.splitlines() if 'error:' in line]
  assert len(errors) == 1 and errors[0].startswith('error: '), run.stderr
  assert 'config.json is truncated or not valid JSON' in errors[0]
  assert not os.path.exists(tmp_path / 'f.npz')


def test_search_skips_dangling_symlinks_and_unreadable_caches(tools_workdir, tmp_path, caplog):
  gallery = str(tmp_path / 'gallery')
  paths = _gallery(gallery, n=4)
  os.symlink(tmp_path / 'moved.jpg', os.path.join(gallery, 'sub', 'ghost.jpg'))
  queries = tmp_path / 'queries'
  os.makedirs(queries)
  Image.open(paths[1]).save(queries / 'q.png')
  os.symlink(tmp_path / 'gone.png', queries / 'lost.png')
  out = str(tmp_path / 'new' / 'sheets' / 'q.png')  # A missing folder is created.
  cache = os.path.join(tools_workdir, 'search_cache')
  before = set(os.listdir(cache)) if os.path.isdir(cache) else set()
  with caplog.at_level(logging.WARNING):
    first = search.search(
        tools_workdir, str(queries), gallery, top_k=10, gallery_modality='ir', out=out
    )
  assert first['queries'] == [str(queries / 'q.png')] and first['sheet'] == out
  assert sorted(p for p, _ in first['ranked'][0]) == sorted(paths)
  assert first['ranked'][0][0][0] == paths[1] and os.path.isfile(out)
  assert 'ghost.jpg: is a dangling symlink' in caplog.text
  assert 'lost.png: is a dangling symlink' in caplog.text
  assert 'Skipped 1 entry of --gallery=' in caplog.text
  # A cache file cut short (a full disk, a killed copy) is extracted again.
  (new,) = set(os.listdir(cache)) - before
  with open(os.path.join(cache, new), 'r+b') as f:
    f.truncate(100)
  second = search.search(
      tools_workdir, str(queries), gallery, top_k=10, gallery_modality='ir', out=out
  )
  assert not second['from_cache'] and second['ranked'] == first['ranked']
  assert 'Ignoring the unreadable gallery cache' in caplog.text


def test_export_round_trips(tools_workdir, tiny_records, tmp_path):
  out = export.export(tools_workdir, 'test', str(tmp_path / 'features.npz'))
  test = tiny_records[1]
  with np.load(out) as stored:
    for key in ('person_id', 'label', 'camera', 'modality', 'index', 'path'):
      np.testing.assert_array_equal(stored[key], getattr(test, key))
    opened = trained.open_workdir(tools_workdir)
    want = driver.features_by_modality(
        opened.extract, test, opened.config, opened.mesh, image_size=opened.load_size
    )
    np.testing.assert_allclose(stored['features'], want, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(stored['features'], axis=1), 1, atol=1e-5)
    assert int(stored['step']) == opened.step == 6
