"""The procedural dataset: SYSU-like structure, determinism, modality gap."""

import numpy as np

from datasets.synthetic_vireid import render


def test_render_is_deterministic_and_modality_specific():
  ident = render.make_identity(0, 7)
  rgb_cam = render.make_camera(0, 1, base_height=64)
  ir_cam = render.make_camera(0, 3, base_height=64)
  a = render.render(ident, rgb_cam, seed=0, person_id=7, index=2)
  b = render.render(ident, rgb_cam, seed=0, person_id=7, index=2)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, render.render(ident, rgb_cam, seed=0, person_id=7, index=3))
  ir = render.render(ident, ir_cam, seed=0, person_id=7, index=2)
  assert ir.dtype == np.uint8 and ir.shape[2] == 3
  np.testing.assert_array_equal(ir[..., 0], ir[..., 1])   # grey, like SYSU IR
  assert np.abs(a[..., 0].astype(int) - a[..., 2]).mean() > 1  # RGB is coloured


def test_emissivity_is_independent_of_colour():
  ids = [render.make_identity(0, i) for i in range(1, 400)]
  brightness = np.array([x.upper_rgb.mean() for x in ids])
  emissivity = np.array([x.upper_ir for x in ids])
  assert abs(np.corrcoef(brightness, emissivity)[0, 1]) < 0.15


def test_identity_and_camera_structure():
  train, test = render.split_identities(0, 30, 10)
  assert len(train) == 30 and len(test) == 10 and not set(train) & set(test)
  counts = [render.camera_counts(0, int(p), max_images=4) for p in np.concatenate([train, test])]
  for c in counts:
    assert any(c[k] for k in render.RGB_CAMERAS) and any(c[k] for k in render.IR_CAMERAS)
  assert any(0 in c.values() for c in counts)   # not everyone in every camera
  sizes = {render.render(render.make_identity(0, 1), render.make_camera(0, c, base_height=64),
                         seed=0, person_id=1, index=i).shape[:2]
           for c in render.CAMERAS for i in range(2)}
  assert len(sizes) > 3                         # varying image sizes


def test_tfds_splits_follow_sysu_structure(tiny_records):
  train, test = tiny_records
  for split in (train, test):
    rgb = split.modality == 0
    assert set(split.camera[rgb]) <= {1, 2, 4, 5}
    assert set(split.camera[~rgb]) <= {3, 6}
    # index = position within its (camera, id) folder: 0..n-1, matching the path.
    for cam, pid in set(zip(split.camera, split.person_id)):
      sel = (split.camera == cam) & (split.person_id == pid)
      np.testing.assert_array_equal(np.sort(split.index[sel]), np.arange(sel.sum()))
    for path, cam, pid, idx in zip(split.path, split.camera, split.person_id, split.index):
      assert path == f'cam{cam}/{pid:04d}/{idx + 1:04d}.jpg'
  assert not set(train.person_id) & set(test.person_id)
  # Training labels re-index the sorted train ids; test labels are -1.
  ids = np.unique(train.person_id)
  np.testing.assert_array_equal(train.label, np.searchsorted(ids, train.person_id))
  assert (test.label == -1).all()
  for pid in ids:
    assert {0, 1} <= set(train.modality[train.person_id == pid])
