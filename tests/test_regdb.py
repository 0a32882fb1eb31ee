"""The RegDB builder (one config per trial) on a small tree in its layout."""

import logging
import os

import numpy as np
from PIL import Image
import pytest

import dataset_fixtures
import datasets  # noqa: F401  (registers the builders)
from datasets.regdb import regdb

SPLITS = {1: {'train': [4, 1], 'test': [7, 9, 2]}, 2: {'train': [7, 2], 'test': [1, 4, 9]}}


def _load(manual_dir, data_dir, trial):
  from aligngan_jax import input_pipeline

  builder = input_pipeline.get_builder(
      f'regdb/trial{trial}', data_dir=str(data_dir), manual_dir=str(manual_dir)
  )
  return (input_pipeline.load_split(builder, 'train'), input_pipeline.load_split(builder, 'test'))


def test_each_trial_builds_its_own_split(tmp_path):
  root = tmp_path / 'RegDB'
  written = dataset_fixtures.write_regdb_tree(str(root), splits=SPLITS)
  for trial in (1, 2):
    train, test = _load(root, tmp_path / 'tfds', trial)
    for split, records in (('train', train), ('test', test)):
      ids = sorted(SPLITS[trial][split])
      assert sorted(set(records.person_id)) == ids
      for modality, (mod, cam) in regdb.MODALITIES.items():
        lines = written[(trial, split, modality)]
        rows = records.modality == (0 if mod == 'rgb' else 1)
        assert sorted(records.path[rows]) == sorted(p for p, _ in lines)
        assert (records.camera[rows] == cam).all()
      # index: ascending path order within (modality, person).
      for m in (0, 1):
        for pid in ids:
          rows = (records.modality == m) & (records.person_id == pid)
          order = np.argsort(records.path[rows])
          np.testing.assert_array_equal(records.index[rows][order], np.arange(rows.sum()))
    np.testing.assert_array_equal(
        train.label, np.searchsorted(sorted(SPLITS[trial]['train']), train.person_id)
    )
    assert (test.label == -1).all()
  # Lossless: the stored PNG decodes to the BMP's pixels.
  import io

  stored = np.asarray(Image.open(io.BytesIO(train.images[0])))
  np.testing.assert_array_equal(stored, np.asarray(Image.open(root / train.path[0])))


def test_errors_name_the_folder_list_or_image(tmp_path):
  with pytest.raises(regdb.RegdbError, match=r'(?s)missing or empty.*on request.*idx/'):
    _load(tmp_path / 'nowhere', tmp_path / 'tfds', 1)
  root = tmp_path / 'RegDB'
  written = dataset_fixtures.write_regdb_tree(str(root), splits=SPLITS)
  os.remove(root / 'idx' / 'test_thermal_2.txt')
  with pytest.raises(regdb.RegdbError, match=rf'{root}/idx/test_thermal_2.txt is missing'):
    _load(root, tmp_path / 'tfds', 2)
  first = written[(1, 'train', 'visible')][0][0]
  (root / first).write_bytes(b'not an image')
  with pytest.raises(Exception, match=rf'image {root / first} cannot be decoded'):
    _load(root, tmp_path / 'tfds', 1)
  os.remove(root / first)
  with pytest.raises(
      Exception, match=rf'image {root / first} \(named in the index lists\) is missing'
  ):
    _load(root, tmp_path / 'tfds', 1)


def test_empty_list_listed_apple_double_or_hidden_only_folder_is_named(tmp_path):
  import tensorflow_datasets as tfds

  only_hidden = tmp_path / 'only_hidden'
  only_hidden.mkdir()
  (only_hidden / '._RegDB').write_bytes(b'\x00\x05\x16\x07')
  with pytest.raises(regdb.RegdbError, match=rf'manual_dir {only_hidden} is missing or empty'):
    _load(only_hidden, tmp_path / 'tfds', 1)
  root = tmp_path / 'RegDB'
  dataset_fixtures.write_regdb_tree(str(root), splits=SPLITS)
  thermal = root / 'idx' / 'train_thermal_1.txt'
  original = thermal.read_text()
  thermal.write_text('\n')
  with pytest.raises(regdb.RegdbError, match=rf'index list {thermal} lists no images'):
    _load(root, tmp_path / 'tfds', 1)
  (root / 'Thermal' / '4' / '._T_4_0.bmp').write_bytes(b'\x00\x05\x16\x07')
  thermal.write_text(original + 'Thermal/4/._T_4_0.bmp 4\n')
  line = len(original.splitlines()) + 1
  with pytest.raises(
      regdb.RegdbError,
      match=rf'{thermal} line {line} names Thermal/4/._T_4_0.bmp, a hidden or macOS AppleDouble',
  ):
    _load(root, tmp_path / 'tfds', 1)
  assert not tfds.builder('regdb/trial1', data_dir=str(tmp_path / 'tfds')).is_prepared()


def test_a_killed_build_of_a_trial_is_removed_when_that_trial_builds(tmp_path, caplog):
  from tensorflow_datasets.core.utils import file_utils

  root, data_dir = tmp_path / 'RegDB', tmp_path / 'tfds'
  dataset_fixtures.write_regdb_tree(str(root), splits=SPLITS)
  # The installed TFDS's own names (incomplete.<6 chars>_1.0.0), per trial.
  stale = {
      t: file_utils._get_incomplete_dir(str(data_dir / 'regdb' / f'trial{t}' / '1.0.0')).rstrip('/')
      for t in (1, 2)
  }
  for path in stale.values():
    os.makedirs(path)
  with caplog.at_level(logging.INFO):
    train, _ = _load(root, data_dir, 1)
  assert len(train)
  assert not os.path.exists(stale[1]) and f'Removed {stale[1]}' in caplog.text
  assert os.path.isdir(stale[2])  # Another trial's folder: left to its own build.
  assert (data_dir / 'regdb' / 'trial1' / '1.0.0' / 'dataset_info.json').is_file()
