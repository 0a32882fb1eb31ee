"""The session's one trained AlignGAN run (conftest.py: main.py on the
demo config at :tiny) and everything that reads it: the smoke run itself,
bit-identical resume, config.mode=eval, and what people look at
(mode=visualize sheets, search, export). One file, so that pytest-xdist
(--dist loadfile) trains it once; tests that write use a copy."""

import json
import logging
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from aligngan_jax import config_checks
from aligngan_jax import export
from aligngan_jax import input_pipeline
from aligngan_jax import search
from aligngan_jax import sheets
from aligngan_jax import train_lib
from aligngan_jax import train_loop
from aligngan_jax import trained
from aligngan_jax import visualize
from aligngan_jax.evaluation import driver
from aligngan_jax.evaluation import engine
import golden
import run_files


def test_smoke_run_trains_the_demo_aligngan_with_the_compilation_cache(aligngan_run):
  # The demo's default trainer is the full model: three stages, translation
  # grids, an evaluation, every checkpoint (checkpoint_every_steps=1).
  workdir, stderr = aligngan_run
  for stage in (1, 2, 3):
    assert f'Stage {stage}:' in stderr
  assert 'step 6/6' in stderr and 'Traceback' not in stderr
  assert sorted(os.listdir(os.path.join(workdir, 'images'))) == [
      'translation_000002.png', 'translation_000004.png', 'translation_000006.png']
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints')), key=int) == [
      str(i) for i in range(1, 7)]
  assert os.path.exists(os.path.join(workdir, 'config.json'))
  # The persistent compilation cache is on, in the folder the flag names.
  cache = os.environ['JAX_COMPILATION_CACHE_DIR']
  assert f'Persistent compilation cache: {cache}' in stderr and os.listdir(cache)
  result = run_files.latest_eval(workdir)
  assert result['step'] == 6 and result['protocol'] == 'sysu'
  scored = [r for r in result['results'].values() if 'skipped' not in r]
  assert scored and all(len(r['cmc']) == 20 and 0 <= r['mAP']['mean'] <= 1
                        for r in scored)


def test_the_shared_run_computes_its_golden_numbers(aligngan_run):
  # Losses at all six iterations and the final metrics, against the numbers
  # recorded in tests/golden/aligngan_tiny.json (tests/golden.py): a change that
  # moves what AlignGAN learns must update them and say why.
  golden.check('aligngan_tiny', aligngan_run[0])


def test_golden_differences_flag_moved_missing_and_extra_numbers():
  want = {'losses': {'train/G/loss': {'1': 2.0, '2': 1.5}},
          'metrics': {'sysu all single': {'rank1': 0.25}}}
  # Within the tolerance: float noise of another machine (tests/golden.py).
  same = {'losses': {'train/G/loss': {'1': 2.0 * (1 + 1e-4), '2': 1.5}},
          'metrics': {'sysu all single': {'rank1': 0.25 + 0.01}}}
  assert golden.differences(want, same) == []
  moved = {'losses': {'train/G/loss': {'1': 2.0 * (1 + 1e-2), '3': 1.0}},
           'metrics': {'sysu all single': {'rank1': 0.25 + 1 / 6}}}
  found = golden.differences(want, moved)
  assert len(found) == 4, found
  assert found[0].startswith('losses train/G/loss 1: golden 2.0, now 2.02')
  assert 'train/G/loss 2: only in the golden file' in found[1]
  assert 'train/G/loss 3: only in the fresh run' in found[2]
  assert found[3].startswith('metrics sysu all single rank1:')


def test_eval_mode_reads_the_newest_checkpoint(copy_run, caplog):
  config = trained.load_config(copy_run)
  config.mode = 'eval'
  with caplog.at_level(logging.INFO):
    train_lib.evaluate_checkpoint(config, copy_run)
  # The protocol table, naming the variant.
  for phrase in ('SYSU-MM01', 'all-search single-shot', 'indoor-search multi-shot',
                 'identity-level CMC', "AGW's random.seed(trial)"):
    assert phrase in caplog.text
  assert run_files.latest_eval(copy_run)['step'] == 6


def _final_state(config, workdir):
  """The newest checkpoint of ``workdir`` on the host."""
  return jax.device_get(trained.restore(config, workdir, trained.num_classes(workdir)).state)


def _assert_stage_diagnostics(workdir, log_text):
  """An evaluation with diagnostics at the end of every stage: console
  table, eval/stages.json, eval/step_N.json and TensorBoard."""
  with open(os.path.join(workdir, 'eval', 'stages.json')) as f:
    rows = json.load(f)
  assert [(r['stage'], r['step']) for r in rows] == [(0, 0), (1, 2), (2, 4), (3, 6)]
  for row in rows:
    d = row['diagnostics']
    # (e): the tiny synthetic world holds the RGB test images' infrared twins.
    assert set(d) == {'fake_ir_to_ir', 'ir_to_ir', 'cosine', 'translation'}
    e = d['translation']
    assert e['num_images'] == 16 and 0 < e['l1'] < 1 and -1 <= e['ssim'] <= 1
    # The references do not depend on the generator.
    assert (e['luminance_l1'], e['linear_l1']) == (
        rows[0]['diagnostics']['translation']['luminance_l1'],
        rows[0]['diagnostics']['translation']['linear_l1'])
    for measure in ('fake_ir_to_ir', 'ir_to_ir'):
      assert 0.0 <= d[measure]['rank1'] <= 1.0
      assert 0.0 < d[measure]['chance_rank1'] < 1.0
    assert -1.0 <= d['cosine']['different_mean'] <= 1.0
    assert 0.0 <= row['protocol']['rank1'] <= 1.0
  with open(os.path.join(workdir, 'eval', 'step_4.json')) as f:
    step4 = json.load(f)
  assert step4['stage'] == 2 and step4['diagnostics'] == rows[2]['diagnostics']
  tags = run_files.tensorboard_tags(workdir)
  assert {'diagnostics/fake_ir_to_ir/rank1', 'diagnostics/ir_to_ir/mAP',
          'diagnostics/cosine/gap', 'diagnostics/translation/l1',
          'diagnostics/translation/luminance_ssim'} <= tags
  # The tag scheme both trainers share.
  assert {'train/feature/loss', 'train/G/loss', 'train/stage', 'train/steps_per_sec',
          'lr/encoder', 'lr/G_rgb2ir', 'translation'} <= tags
  assert log_text.count('Per-stage diagnostics') == 4
  assert '(e) L1 G/luma/lin' in log_text


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(aligngan_run, tmp_path):
  # The straight run is the session's shared one (main.py, conftest.py).
  straight, stderr = aligngan_run
  config = trained.load_config(straight)
  _assert_stage_diagnostics(straight, stderr)
  # A run that crashed after iteration 3 (inside stage 2) has exactly the
  # straight run's first three checkpoints (saving is deterministic; a crash
  # cannot change what was already written): copy them rather than train
  # them again.
  broken = str(tmp_path / 'broken')
  os.makedirs(os.path.join(broken, 'checkpoints'))
  for step in ('1', '2', '3'):
    shutil.copytree(os.path.join(straight, 'checkpoints', step),
                    os.path.join(broken, 'checkpoints', step))
  result = train_loop.train_and_evaluate(config, broken)
  assert 'sysu all single' in result['results']
  # Translation grids at the end of each stage: 5 columns of 64 px tiles
  # (real RGB | fake IR | true IR | real IR | reconstructed RGB).
  from PIL import Image
  for step in (2, 4, 6):
    png = Image.open(os.path.join(straight, 'images', f'translation_{step:06d}.png'))
    assert png.size[0] == 5 * 66 - 2 and (png.size[1] + 2) % 66 == 0
  a, b = _final_state(config, straight), _final_state(config, broken)
  assert int(a.step) == int(b.step) == 6
  for x, y in zip(jax.tree.leaves((a.params, a.batch_stats, a.opt_state)),
                  jax.tree.leaves((b.params, b.batch_stats, b.opt_state))):
    np.testing.assert_array_equal(x, y)


@pytest.fixture(scope='module')
def tools_workdir(aligngan_run, tmp_path_factory):
  """A copy of the session's trained AlignGAN workdir (the tools write
  sheets and caches into it)."""
  path = str(tmp_path_factory.mktemp('tools') / 'run')
  shutil.copytree(aligngan_run[0], path)
  return path


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
  feats = driver.features_by_modality(opened.extract, test, config, opened.mesh,
                                      image_size=opened.load_size)
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


def test_search_finds_the_copy_first_and_caches_the_gallery(tools_workdir, tmp_path, caplog):
  paths = _gallery(str(tmp_path / 'gallery'))
  # The query: person 4's pixels (a PNG in the gallery) saved as BMP. Same
  # modality, so the copy's features are the gallery image's.
  query = str(tmp_path / 'query.bmp')
  Image.open(paths[4]).save(query)
  first = search.search(tools_workdir, query, str(tmp_path / 'gallery'), top_k=4,
                        gallery_modality='ir')
  assert first['ranked'][0][0][0] == paths[4]
  assert first['ranked'][0][0][1] == pytest.approx(0.0, abs=1e-5)
  assert len(first['ranked'][0]) == 4 and not first['from_cache']
  assert 'broken.jpg' in caplog.text and 'Skipped 1 unreadable' in caplog.text
  sheet = np.asarray(Image.open(first['sheet']))
  assert sheet.shape[1] == visualize.GAP + 5 * (visualize.TILE[1] + 2 * visualize.BORDER
                                                + visualize.GAP) + 2 * visualize.GAP
  second = search.search(tools_workdir, query, str(tmp_path / 'gallery'), top_k=4,
                         gallery_modality='ir')
  assert second['from_cache'] and second['ranked'] == first['ranked']
  assert 'person4' in search.format_table(second)
  # The other modality's features are cached apart; so is a changed gallery.
  assert not search.search(tools_workdir, query, str(tmp_path / 'gallery'))['from_cache']
  os.remove(paths[0])
  assert not search.search(tools_workdir, query, str(tmp_path / 'gallery'),
                           gallery_modality='ir')['from_cache']


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


def _raises_one_line(error, match, call, *args, **kwargs):
  with pytest.raises(error, match=match) as raised:
    call(*args, **kwargs)
  assert '\n' not in str(raised.value)


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
      ({'query': str(tmp_path / 'dangling.jpg')}, se,
       r'^--query=\S*dangling\.jpg is a dangling symlink \(to \S*gone\.jpg\)\.$'),
      ({'query': str(tmp_path / 'notes.txt')}, se, r'^--query=\S*notes\.txt: no readable image'),
      ({'gallery': str(tmp_path / 'galery')}, se, r'^--gallery=\S*galery does not exist\.$'),
      ({'gallery': str(tmp_path / 'ghosts')}, se, r'^--gallery=\S*ghosts holds no image files'),
      ({'out': str(tmp_path / 'notes.txt' / 'sheet.png')}, se,
       r'^--out=\S*sheet\.png: \S*notes\.txt is a file, not a folder\.$'),
      ({'out': gallery}, se, r'^--out=\S*gallery: is a folder; name the file to write\.$'),
  ]
  for change, error, match in cases:
    args = {'workdir': workdir, 'query': query, 'gallery': gallery, 'top_k': 3} | change
    _raises_one_line(error, match, search.search, args.pop('workdir'), args.pop('query'),
                     args.pop('gallery'), **args)
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
      ({'out': str(tmp_path / 'notes.txt' / 'f.npz')},
       r'^--out=\S*f\.npz: \S*notes\.txt is a file, not a folder\.$'),
      ({'out': str(tmp_path / 'taken')}, r'^--out=\S*taken: is a folder'),
      # Fault 14: an existing folder, or a trailing slash, is not a file
      # name (was: <folder>.npz beside it, or a hidden <folder>/.npz).
      ({'out': str(tmp_path)}, r'^--out=\S*: is a folder; name the file to write\.$'),
      ({'out': str(tmp_path / 'later') + '/'}, r'^--out=\S*later/: is a folder'),
  ]
  for change, match in cases:
    args = {'workdir': workdir, 'split': 'test', 'out': str(tmp_path / 'f.npz')} | change
    _raises_one_line(ce, match, export.export, args.pop('workdir'), args.pop('split'),
                     args.pop('out'), **args)
  assert not os.path.exists(tmp_path / 'rnu')
  assert not os.path.exists(f'{tmp_path}.npz') and not os.path.exists(tmp_path / 'later')
  # A missing --out folder is created before the dataset is read (so it
  # cannot fail after the extraction), and nothing is written into it yet.
  with pytest.raises(AssertionError, match='too early'):
    export.export(workdir, 'test', str(tmp_path / 'new' / 'features'))
  assert os.path.isdir(tmp_path / 'new') and not os.listdir(tmp_path / 'new')


def test_workdir_errors_are_one_line_and_create_nothing(tmp_path):
  ce = config_checks.ConfigError
  mistyped = str(tmp_path / 'rnu')
  for call in (trained.require_trained_workdir, trained.open_workdir):
    _raises_one_line(ce, r'^--workdir=\S*rnu does not exist: pass the folder given to '
                     r'main\.py --workdir\.$', call, mistyped)
  assert not os.path.exists(mistyped)
  run = tmp_path / 'run'
  os.makedirs(run)
  _raises_one_line(ce, r'^--workdir=\S*run has no config\.json', trained.require_trained_workdir,
                   str(run))
  (run / 'config.json').write_text('{"image_size": 64, "dataset": "d", "model": {}}')
  for call in (trained.require_trained_workdir, trained.num_classes):
    _raises_one_line(ce, r'^--workdir=\S*run holds no checkpoint', call, str(run))
  assert not os.path.exists(run / 'checkpoints')
  # An interrupted save is not a checkpoint.
  os.makedirs(run / 'checkpoints' / '3.orbax-checkpoint-tmp-1700000000')
  _raises_one_line(ce, 'holds no checkpoint', trained.require_trained_workdir, str(run))
  assert trained.load_config(str(run)).image_size == 64
  (run / 'config.json').write_text('{"image_size": 6')
  _raises_one_line(ce, r'^\S*config\.json is truncated or not valid JSON \(.* at line 1 '
                   r'column \d+\); copy it from a backup', trained.load_config, str(run))
  (run / 'config.json').write_text('[64]')
  _raises_one_line(ce, r'config\.json holds a JSON list, not the config object',
                   trained.load_config, str(run))
  (run / 'config.json').write_text('{"hello": 1}')   # someone else's config.json
  _raises_one_line(ce, r'config\.json is not a run config \(it lacks dataset, model or '
                   r'image_size\)', trained.load_config, str(run))


def test_export_program_prints_one_error_line(tmp_path):
  # Once as a program: main() turns the error into one line and status 1.
  workdir = _restorable_only_in_name(tmp_path / 'run')
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write('{"image_size": 6')  # Truncated: was a JSONDecodeError traceback.
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', JAX_PLATFORMS='cpu')
  run = subprocess.run([sys.executable, '-m', 'aligngan_jax.export', f'--workdir={workdir}',
                        f'--out={tmp_path / "f.npz"}'], cwd=run_files.ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert run.returncode != 0 and 'Traceback' not in run.stderr
  errors = [line for line in run.stderr.splitlines() if 'error:' in line]
  assert len(errors) == 1 and errors[0].startswith('error: '), run.stderr
  assert 'config.json is truncated or not valid JSON' in errors[0]
  assert not os.path.exists(tmp_path / 'f.npz')


def test_search_skips_dangling_symlinks_and_unreadable_caches(tools_workdir, tmp_path,
                                                              caplog):
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
    first = search.search(tools_workdir, str(queries), gallery, top_k=10,
                          gallery_modality='ir', out=out)
  assert first['queries'] == [str(queries / 'q.png')] and first['sheet'] == out
  assert sorted(p for p, _ in first['ranked'][0]) == sorted(paths)
  assert first['ranked'][0][0][0] == paths[1] and os.path.isfile(out)
  assert 'ghost.jpg: is a dangling symlink' in caplog.text
  assert 'lost.png: is a dangling symlink' in caplog.text
  assert 'Skipped 1 entry of --gallery=' in caplog.text
  # A cache file cut short (a full disk, a killed copy) is extracted again.
  new, = set(os.listdir(cache)) - before
  with open(os.path.join(cache, new), 'r+b') as f:
    f.truncate(100)
  second = search.search(tools_workdir, str(queries), gallery, top_k=10,
                         gallery_modality='ir', out=out)
  assert not second['from_cache'] and second['ranked'] == first['ranked']
  assert 'Ignoring the unreadable gallery cache' in caplog.text


def test_export_round_trips(tools_workdir, tiny_records, tmp_path):
  out = export.export(tools_workdir, 'test', str(tmp_path / 'features.npz'))
  test = tiny_records[1]
  with np.load(out) as stored:
    for key in ('person_id', 'label', 'camera', 'modality', 'index', 'path'):
      np.testing.assert_array_equal(stored[key], getattr(test, key))
    opened = trained.open_workdir(tools_workdir)
    want = driver.features_by_modality(opened.extract, test, opened.config, opened.mesh,
                                       image_size=opened.load_size)
    np.testing.assert_allclose(stored['features'], want, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(stored['features'], axis=1), 1, atol=1e-5)
    assert int(stored['step']) == opened.step == 6
