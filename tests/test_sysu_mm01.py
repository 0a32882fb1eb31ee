"""The SYSU-MM01 builder on a small tree in the official layout."""

import os
import shutil

import numpy as np
import pytest

import datasets  # noqa: F401  (registers the builders)
from datasets.sysu_mm01 import sysu_mm01
import dataset_fixtures


def _tree(root):
  images = {}
  train, val, test = [3, 7], [5], [2, 9]
  for pid in train + val + test:
    for cam in (1, 2, 3, 4, 5, 6):
      if cam == 2 and pid in (5, 9):
        continue                               # not every person in every camera
      # Non-contiguous names, written out of order: index follows the name.
      images[(cam, pid)] = ['0010.jpg', '0002.jpg', '0005.jpg'][:1 + (pid + cam) % 3]
  written = dataset_fixtures.write_sysu_tree(root, train_ids=train, val_ids=val,
                                             test_ids=test, images=images)
  return written, sorted(train + val), test


def _build(manual_dir, data_dir):
  import tensorflow_datasets as tfds
  from aligngan_jax import input_pipeline
  builder = input_pipeline.get_builder('sysu_mm01', data_dir=str(data_dir),
                                       manual_dir=str(manual_dir))
  assert isinstance(builder, tfds.core.DatasetBuilder)
  return (input_pipeline.load_split(builder, 'train'),
          input_pipeline.load_split(builder, 'test'))


def test_builds_splits_labels_cameras_and_folder_order(tmp_path):
  written, train_ids, test_ids = _tree(str(tmp_path / 'SYSU-MM01'))
  train, test = _build(tmp_path / 'SYSU-MM01', tmp_path / 'tfds')
  for records, ids in ((train, train_ids), (test, test_ids)):
    want = {(c, p): names for (c, p), names in written.items() if p in ids}
    assert len(records) == sum(len(n) for n in want.values())
    assert set(records.person_id) == set(ids)
    for cam, pid, index, path in zip(records.camera, records.person_id,
                                     records.index, records.path):
      assert path == f'cam{cam}/{pid:04d}/{want[(cam, pid)][index]}'
    np.testing.assert_array_equal(records.modality, np.isin(records.camera, (3, 6)))
  # Train + val ids, re-indexed by ascending id; test unlabelled.
  np.testing.assert_array_equal(train.label, np.searchsorted(train_ids, train.person_id))
  assert (test.label == -1).all()
  # The stored bytes are the files' own.
  first = train.path[0]
  with open(tmp_path / 'SYSU-MM01' / first, 'rb') as f:
    assert train.images[0] == f.read()


def test_missing_or_empty_manual_dir_says_where_the_data_comes_from(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  for folder in (tmp_path / 'nowhere', empty):
    with pytest.raises(sysu_mm01.SysuMm01Error,
                       match=rf'(?s){folder}.*missing or empty.*on request.*exp/train_id.txt'):
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


@pytest.mark.parametrize('config_name, source', [
    ('sysu', 'github.com/wuancong/SYSU-MM01'), ('regdb', 'Dongguk University'),
    ('llcm', 'github.com/ZYK100/LLCM')])
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
  run = run_files.run_main('--config=configs/sysu.py:tiny', f'--workdir={tmp_path / "run"}',
                           f'--config.data_dir={tmp_path / "tfds"}',
                           f'--config.manual_dir={tmp_path / "nowhere"}')
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
  official = trainers.trainer_for(sysu.get_config())
  assert official.name == 'aligngan'
  assert [s.iterations for s in official.stages] == [5_000, 10_000, 10_100]
  manual = tmp_path / 'SYSU-MM01'
  train, val, test = [11, 12, 13, 14], [15], [21, 22, 23]
  images = {(cam, pid): ['0001.jpg', '0002.jpg']
            for pid in train + val + test for cam in (1, 2, 3, 4, 5, 6)}
  dataset_fixtures.write_sysu_tree(str(manual), train_ids=train, val_ids=val,
                                   test_ids=test, images=images)
  config = sysu.get_config('tiny')
  config.data_dir, config.manual_dir = str(tmp_path / 'tfds'), str(manual)
  config.trainer, config.ide.num_train_steps = 'ide', 2
  config.eval.num_trials, config.eval.stage_end = 2, False
  workdir = str(tmp_path / 'run')
  result = train_lib.train_and_evaluate(config, workdir)
  assert run_files.latest_eval(workdir)['step'] == 2
  assert result['results']['sysu all single']['num_query'] == 3 * 2 * 2   # 3 ids x cams 3, 6 x 2
