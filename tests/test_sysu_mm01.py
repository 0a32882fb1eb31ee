"""The SYSU-MM01 builder on a small tree in the official layout."""

import logging
import os
import shutil

import numpy as np
import pytest

import dataset_fixtures
import datasets  # noqa: F401  (registers the builders)
from datasets.sysu_mm01 import sysu_mm01


def _tree(root):
  images = {}
  train, val, test = [3, 7], [5], [2, 9]
  for pid in train + val + test:
    for cam in (1, 2, 3, 4, 5, 6):
      if cam == 2 and pid in (5, 9):
        continue  # not every person in every camera
      # Non-contiguous names, written out of order: index follows the name.
      images[(cam, pid)] = ['0010.jpg', '0002.jpg', '0005.jpg'][: 1 + (pid + cam) % 3]
  written = dataset_fixtures.write_sysu_tree(
      root, train_ids=train, val_ids=val, test_ids=test, images=images
  )
  return written, sorted(train + val), test


def _build(manual_dir, data_dir):
  import tensorflow_datasets as tfds

  from aligngan_jax import input_pipeline

  builder = input_pipeline.get_builder(
      'sysu_mm01', data_dir=str(data_dir), manual_dir=str(manual_dir)
  )
  assert isinstance(builder, tfds.core.DatasetBuilder)
  return (input_pipeline.load_split(builder, 'train'), input_pipeline.load_split(builder, 'test'))


def _check_records(train, test, written, train_ids, test_ids):
  """Every written image once, ``index`` its position among the folder's
  images in name order, labels by ascending id over ``train_ids``."""
  for records, ids in ((train, train_ids), (test, test_ids)):
    want = {(c, p): names for (c, p), names in written.items() if p in ids}
    assert len(records) == sum(len(n) for n in want.values())
    assert set(records.person_id) == set(ids)
    for cam, pid, index, path in zip(
        records.camera, records.person_id, records.index, records.path
    ):
      assert path == f'cam{cam}/{pid:04d}/{want[(cam, pid)][index]}'
    np.testing.assert_array_equal(records.modality, np.isin(records.camera, (3, 6)))
  # Train + val ids, re-indexed by ascending id; test unlabelled.
  np.testing.assert_array_equal(train.label, np.searchsorted(train_ids, train.person_id))
  assert (test.label == -1).all()


# The start of a macOS AppleDouble file (magic 0x00051607): metadata, not JPEG.
APPLE_DOUBLE = b'\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ' + bytes(64)


def test_builds_splits_labels_cameras_and_folder_order(tmp_path):
  written, train_ids, test_ids = _tree(str(tmp_path / 'SYSU-MM01'))
  train, test = _build(tmp_path / 'SYSU-MM01', tmp_path / 'tfds')
  _check_records(train, test, written, train_ids, test_ids)
  # The stored bytes are the files' own.
  first = train.path[0]
  with open(tmp_path / 'SYSU-MM01' / first, 'rb') as f:
    assert train.images[0] == f.read()


def test_missing_or_empty_manual_dir_says_where_the_data_comes_from(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  # What a Mac leaves in a folder it only looked at is still an empty folder.
  only_hidden = tmp_path / 'only_hidden'
  only_hidden.mkdir()
  (only_hidden / '.DS_Store').write_bytes(b'Bud1')
  (only_hidden / '._SYSU-MM01').write_bytes(APPLE_DOUBLE)
  for folder in (tmp_path / 'nowhere', empty, only_hidden):
    with pytest.raises(
        sysu_mm01.SysuMm01Error,
        match=rf'(?s){folder}.*missing or empty.*on request.*exp/train_id.txt',
    ):
      _build(folder, tmp_path / 'tfds')


def test_missing_split_file_or_camera_folder_is_named(tmp_path):
  root = tmp_path / 'SYSU-MM01'
  _tree(str(root))
  os.remove(root / 'exp' / 'test_id.txt')
  with pytest.raises(sysu_mm01.SysuMm01Error, match=rf'{root}/exp/test_id.txt is missing'):
    _build(root, tmp_path / 'tfds')
  shutil.rmtree(root)
  _tree(str(root))
  shutil.rmtree(root / 'cam4')
  with pytest.raises(sysu_mm01.SysuMm01Error, match=rf'camera folder {root}/cam4 is missing'):
    _build(root, tmp_path / 'tfds')


def test_corrupt_image_is_named_and_nothing_half_built_is_kept(tmp_path):
  import tensorflow_datasets as tfds

  root = tmp_path / 'SYSU-MM01'
  written, _, _ = _tree(str(root))
  (cam, pid), names = next(iter(written.items()))
  bad = root / f'cam{cam}' / f'{pid:04d}' / names[0]
  bad.write_bytes(b'not a jpeg')
  with pytest.raises(Exception, match=rf'image {bad} cannot be decoded'):
    _build(root, tmp_path / 'tfds')
  assert not tfds.builder('sysu_mm01', data_dir=str(tmp_path / 'tfds')).is_prepared()
  # Fixed, the next build succeeds.
  dataset_fixtures.write_jpeg(str(bad), seed=1)
  train, test = _build(root, tmp_path / 'tfds')
  assert len(train) and len(test)


def test_hidden_and_apple_double_files_are_skipped_and_counted(tmp_path, caplog):
  # A tree copied from a Mac: '._<name>.jpg' beside images (they sort first,
  # so counted they would shift every index) and a '.DS_Store'.
  root = tmp_path / 'SYSU-MM01'
  written, train_ids, test_ids = _tree(str(root))
  train_extra = [
      root / 'cam1' / '0003' / '._0002.jpg',
      root / 'cam3' / '0007' / '._0010.jpg',
      root / 'cam6' / '0005' / '.DS_Store',
  ]
  test_extra = [root / 'cam4' / '0009' / '._0002.jpg']
  for path in train_extra + test_extra:
    path.write_bytes(APPLE_DOUBLE)
  with caplog.at_level(logging.INFO):
    train, test = _build(root, tmp_path / 'tfds')
  _check_records(train, test, written, train_ids, test_ids)
  assert not [p for p in np.concatenate([train.path, test.path]) if '/.' in p]
  assert (
      f'SYSU-MM01 train split: skipped 3 hidden or macOS AppleDouble (._*) '
      f'files, which are not images, e.g. {train_extra[0]}'
  ) in caplog.text
  assert 'SYSU-MM01 test split: skipped 1 hidden or macOS AppleDouble (._*) files' in caplog.text


def test_listed_ids_without_images_are_named_and_train_labels_stay_contiguous(tmp_path, caplog):
  root = tmp_path / 'SYSU-MM01'
  images = {(cam, pid): ['0001.jpg'] for pid in (3, 5, 7, 2, 9) for cam in (1, 3)}
  # 4 (train), 8 and 12 (test) are listed but have no image in any camera;
  # 8 has a folder holding only an AppleDouble file.
  written = dataset_fixtures.write_sysu_tree(
      str(root), train_ids=[3, 4, 7], val_ids=[5], test_ids=[2, 8, 9, 12], images=images
  )
  (root / 'cam1' / '0008').mkdir()
  (root / 'cam1' / '0008' / '._0001.jpg').write_bytes(APPLE_DOUBLE)
  with caplog.at_level(logging.INFO):
    train, test = _build(root, tmp_path / 'tfds')
  assert (
      f'SYSU-MM01 train split: 1 listed id has no images: 0004 (no folder '
      f'{root}/cam<1..6>/<id>/ holds a .jpg); left out of the split, and the '
      'labels 0..2 run over the 3 ids that have images.'
  ) in caplog.text
  assert 'SYSU-MM01 test split: 2 listed ids have no images: 0008, 0012' in caplog.text
  # Labels over the ids with images (a classifier of 3 classes, all trained).
  _check_records(train, test, written, [3, 5, 7], [2, 9])
  assert sorted(set(train.label)) == [0, 1, 2]


def test_a_split_without_any_image_stops_the_build_naming_the_folder(tmp_path):
  import tensorflow_datasets as tfds

  root = tmp_path / 'SYSU-MM01'
  images = {(cam, pid): ['0001.jpg'] for pid in (3, 5) for cam in (1, 3)}
  dataset_fixtures.write_sysu_tree(
      str(root), train_ids=[3], val_ids=[5], test_ids=[2, 9], images=images
  )
  (root / 'cam3' / '0002').mkdir()
  (root / 'cam3' / '0002' / '._0001.jpg').write_bytes(APPLE_DOUBLE)
  with pytest.raises(
      sysu_mm01.SysuMm01Error,
      match=rf'SYSU-MM01 test split: no images under {root}/cam1..cam6/<id>/ '
      rf'for the 2 ids listed in {root}/exp/test_id.txt',
  ):
    _build(root, tmp_path / 'tfds')
  assert not tfds.builder('sysu_mm01', data_dir=str(tmp_path / 'tfds')).is_prepared()


def test_a_killed_builds_folder_is_removed_on_the_next_build(tmp_path, caplog):
  # TFDS removes its temporary build folder when a build raises, but not when
  # the process is killed, nor later: the next build does.
  from tensorflow_datasets.core.utils import file_utils

  root, data_dir = tmp_path / 'SYSU-MM01', tmp_path / 'tfds'
  _tree(str(root))
  version_dir = data_dir / 'sysu_mm01' / '1.0.0'

  def killed_build():
    # The installed TFDS's own name for it (incomplete.<6 chars>_1.0.0).
    stale = file_utils._get_incomplete_dir(str(version_dir)).rstrip('/')
    os.makedirs(stale)
    with open(os.path.join(stale, 'sysu_mm01-train.tfrecord-00000-of-00001'), 'wb') as f:
      f.write(b'half written')
    return stale

  stale = [killed_build(), str(data_dir / 'sysu_mm01' / '1.0.0.incompleteQ7ZK2M')]  # older TFDS
  os.makedirs(stale[1])
  kept = data_dir / 'sysu_mm01' / 'notes'
  kept.mkdir()
  assert os.path.basename(stale[0]).startswith('incomplete.')
  with caplog.at_level(logging.INFO):
    train, test = _build(root, data_dir)
  for path in stale:
    assert not os.path.exists(path)
    assert (
        f'Removed {path}, the temporary folder of a TFDS build that did not finish' in caplog.text
    )
  assert kept.is_dir()
  # Once built: a stale folder goes, the finished version folder stays.
  stale = killed_build()
  caplog.clear()
  with caplog.at_level(logging.INFO):
    again, _ = _build(root, data_dir)
  assert not os.path.exists(stale) and f'Removed {stale}' in caplog.text
  assert (version_dir / 'dataset_info.json').is_file()
  np.testing.assert_array_equal(again.path, train.path)


@pytest.mark.parametrize(
    'config_name, source',
    [
        ('sysu', 'github.com/wuancong/SYSU-MM01'),
        ('regdb', 'Dongguk University'),
        ('llcm', 'github.com/ZYK100/LLCM'),
    ],
)
def test_a_missing_download_is_named_before_any_work(tmp_path, config_name, source):
  # Each real-dataset config reaches its builder, whose error names the
  # folder and where the data comes from.
  import importlib

  from aligngan_jax import train_lib
  from datasets import common

  config = importlib.import_module(f'configs.{config_name}').get_config('tiny')
  config.data_dir, config.manual_dir = str(tmp_path / 'tfds'), str(tmp_path / 'nowhere')
  with pytest.raises(common.DatasetError) as error:
    train_lib.train_and_evaluate(config, str(tmp_path / 'run'))
  assert f'manual_dir {tmp_path / "nowhere"} is missing or empty' in str(error.value)
  assert source in str(error.value)


def test_main_reports_a_missing_download_in_one_line(tmp_path):
  # The process: the builder's error as main.py's last line, no traceback.
  import run_files

  run = run_files.run_main(
      '--config=configs/sysu.py:tiny',
      f'--workdir={tmp_path / "run"}',
      f'--config.data_dir={tmp_path / "tfds"}',
      f'--config.manual_dir={tmp_path / "nowhere"}',
  )
  assert run.returncode != 0 and 'Traceback' not in run.stderr
  tail = '\n'.join(run.stderr.strip().splitlines()[-12:])
  assert f'error: SYSU-MM01: manual_dir {tmp_path / "nowhere"} is missing or empty' in tail
  assert 'github.com/wuancong/SYSU-MM01' in tail


def test_sysu_config_trains_and_evaluates_on_a_sysu_tree(tmp_path):
  # configs/sysu.py end to end on a tree in the official layout: the TFDS
  # build on first use, training, the SYSU protocol. Its own run (not the
  # session's shared one): the SYSU-MM01 builder's data. It trains the IDE
  # trainer: the data path is the same for both trainers, the AlignGAN
  # stages run in the shared run (conftest.py), and their compilation would
  # triple this test's time; the config's own trainer is checked below.
  from aligngan_jax import train_lib
  from aligngan_jax import trainers
  from configs import sysu
  import run_files

  official = trainers.trainer_for(sysu.get_config(), trainers.DataInfo(395))
  assert official.name == 'aligngan'
  assert [s.iterations for s in official.schedule] == [5_000, 10_000, 10_100]
  manual = tmp_path / 'SYSU-MM01'
  train, val, test = [11, 12, 13, 14], [15], [21, 22, 23]
  images = {
      (cam, pid): ['0001.jpg', '0002.jpg']
      for pid in train + val + test
      for cam in (1, 2, 3, 4, 5, 6)
  }
  dataset_fixtures.write_sysu_tree(
      str(manual), train_ids=train, val_ids=val, test_ids=test, images=images
  )
  config = sysu.get_config('tiny')
  config.data_dir, config.manual_dir = str(tmp_path / 'tfds'), str(manual)
  config.trainer, config.ide.num_train_steps = 'ide', 2
  config.eval.num_trials, config.eval.stage_end = 2, False
  workdir = str(tmp_path / 'run')
  result = train_lib.train_and_evaluate(config, workdir)
  assert run_files.latest_eval(workdir)['step'] == 2
  assert result['results']['sysu all single']['num_query'] == 3 * 2 * 2  # 3 ids x cams 3, 6 x 2
  # A real tree has no infrared twins: no (e) in the per-stage table.
  from aligngan_jax import input_pipeline

  assert input_pipeline.load_paired_ir(config, *input_pipeline.load_data(config)) is None
  # configs/sysu.py:agw,tiny on the same tree and build: the AGW trainer end
  # to end (official sampler epoch, 5 train + val ids: int(max(40, 20) / 4) + 1
  # = 11 steps), both
  # test features scored.
  agw = sysu.get_config('agw,tiny')
  assert sysu.get_config('agw').agw.epochs == 81
  agw.data_dir, agw.manual_dir = config.data_dir, config.manual_dir
  agw.eval.num_trials, agw.eval.stage_end = 2, False
  agw_dir = str(tmp_path / 'agw')
  result = train_lib.train_and_evaluate(agw, agw_dir)
  latest = run_files.latest_eval(agw_dir)
  assert latest['step'] == 11 and set(latest['features']) == {'pool'}
  assert result['results']['sysu all single']['num_query'] == 3 * 2 * 2
