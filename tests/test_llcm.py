"""The LLCM builder on a small tree in its layout."""

import os

import numpy as np
import pytest

import dataset_fixtures
import datasets  # noqa: F401  (registers the builders)
from datasets.llcm import llcm

SPLITS = {'train': [7, 3], 'test': [12, 5, 40]}
CAMERAS = {'vis': [1, 3, 9], 'nir': [1, 2]}


def _load(manual_dir, data_dir):
  from aligngan_jax import input_pipeline

  builder = input_pipeline.get_builder('llcm', data_dir=str(data_dir), manual_dir=str(manual_dir))
  return (input_pipeline.load_split(builder, 'train'), input_pipeline.load_split(builder, 'test'))


def test_splits_ids_cameras_modalities_and_index_order(tmp_path):
  root = tmp_path / 'LLCM'
  written = dataset_fixtures.write_llcm_tree(str(root), splits=SPLITS, cameras=CAMERAS)
  train, test = _load(root, tmp_path / 'tfds')
  for split, records in (('train', train), ('test', test)):
    assert sorted(set(records.person_id)) == sorted(SPLITS[split])
    for m, name in ((0, 'vis'), (1, 'nir')):
      rows = records.modality == m
      assert sorted(records.path[rows]) == sorted(written[(split, name)])
      assert set(records.camera[rows]) == set(CAMERAS[name])
      for path, pid, cam in zip(records.path[rows], records.person_id[rows], records.camera[rows]):
        assert path.startswith(f'{name}/{pid:04d}/{pid:04d}_c{cam:02d}_')
    # index: ascending file-name order within (modality, camera, person);
    # the fixture's frame numbers run against the write order.
    for key in set(zip(records.modality, records.camera, records.person_id)):
      rows = (
          (records.modality == key[0]) & (records.camera == key[1]) & (records.person_id == key[2])
      )
      order = np.argsort(records.path[rows])
      np.testing.assert_array_equal(records.index[rows][order], np.arange(rows.sum()))
  # Labels by ascending person id over both modalities (the lists' own
  # labels are ignored); test is unlabelled.
  np.testing.assert_array_equal(train.label, np.searchsorted([3, 7], train.person_id))
  assert (test.label == -1).all()
  # The original JPEG bytes are stored unchanged.
  assert train.images[0] == (root / train.path[0]).read_bytes()


def test_errors_name_the_folder_list_or_file(tmp_path):
  with pytest.raises(llcm.LlcmError, match=r'(?s)missing or empty.*on request.*idx/'):
    _load(tmp_path / 'nowhere', tmp_path / 'tfds')
  root = tmp_path / 'LLCM'
  written = dataset_fixtures.write_llcm_tree(str(root), splits=SPLITS, cameras=CAMERAS)
  nir_list = root / 'idx' / 'test_nir.txt'
  original = nir_list.read_text()
  nir_list.unlink()
  with pytest.raises(llcm.LlcmError, match=rf'{nir_list} is missing'):
    _load(root, tmp_path / 'tfds')
  nir_list.write_text(original + 'nir/0005/badly_named.jpg 1\n')
  with pytest.raises(llcm.LlcmError, match=r'names nir/0005/badly_named.jpg, whose file name'):
    _load(root, tmp_path / 'tfds')
  nir_list.write_text(original + 'nir/0005/only_a_path.jpg\n')
  with pytest.raises(llcm.LlcmError, match=r'line \d+ is .*expected "relative/path label"'):
    _load(root, tmp_path / 'tfds')
  nir_list.write_text(original)
  first = written[('train', 'vis')][0]
  (root / first).write_bytes(b'not a jpeg')
  with pytest.raises(Exception, match=rf'image {root / first} cannot be decoded'):
    _load(root, tmp_path / 'tfds')
  os.remove(root / first)
  with pytest.raises(Exception, match=rf'image {root / first} is missing'):
    _load(root, tmp_path / 'tfds')
  # Nothing half-built was left for a later run to trust.
  assert not list((tmp_path / 'tfds').glob('llcm/*/dataset_info.json'))


def test_empty_list_listed_apple_double_or_hidden_only_folder_is_named(tmp_path):
  only_hidden = tmp_path / 'only_hidden'
  only_hidden.mkdir()
  (only_hidden / '.DS_Store').write_bytes(b'Bud1')
  with pytest.raises(llcm.LlcmError, match=rf'manual_dir {only_hidden} is missing or empty'):
    _load(only_hidden, tmp_path / 'tfds')
  root = tmp_path / 'LLCM'
  dataset_fixtures.write_llcm_tree(str(root), splits=SPLITS, cameras=CAMERAS)
  vis_list = root / 'idx' / 'test_vis.txt'
  original = vis_list.read_text()
  vis_list.write_text('')
  with pytest.raises(llcm.LlcmError, match=rf'index list {vis_list} lists no images'):
    _load(root, tmp_path / 'tfds')
  name = 'vis/0005/._0005_c01_s101_f900_vis.jpg'
  (root / name).write_bytes(b'\x00\x05\x16\x07')
  vis_list.write_text(f'{name} 1\n' + original)
  with pytest.raises(
      llcm.LlcmError, match=rf'{vis_list} line 1 names {name}, a hidden or macOS AppleDouble'
  ):
    _load(root, tmp_path / 'tfds')
  assert not list((tmp_path / 'tfds').glob('llcm/*/dataset_info.json'))
