"""The procedural dataset: SYSU-like structure, determinism, modality gap."""

import dataclasses
import io

import numpy as np
from PIL import Image
import pytest

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
  np.testing.assert_array_equal(ir[..., 0], ir[..., 1])  # grey, like SYSU IR
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
  assert any(0 in c.values() for c in counts)  # not everyone in every camera
  sizes = {
      render.render(
          render.make_identity(0, 1),
          render.make_camera(0, c, base_height=64),
          seed=0,
          person_id=1,
          index=i,
      ).shape[:2]
      for c in render.CAMERAS
      for i in range(2)
  }
  assert len(sizes) > 3  # varying image sizes


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


def test_a_seed_gives_the_same_people_and_rgb_images_in_every_world():
  worlds = {
      a: list(render.examples(0, [1, 2, 3], image_height=40, max_images=2, ir_from_colour=a))
      for a in (0.0, 0.5, 1.0)
  }
  keys = [(pid, cam, index) for pid, cam, index, _ in worlds[0.0]]
  for a, images in worlds.items():
    assert [(pid, cam, index) for pid, cam, index, _ in images] == keys
    for (_, cam, _, image), (_, _, _, independent) in zip(images, worlds[0.0]):
      if cam in render.RGB_CAMERAS:
        np.testing.assert_array_equal(image, independent)
  ir = [i for i, (_, cam, _) in enumerate(keys) if cam in render.IR_CAMERAS]
  assert all(not np.array_equal(worlds[1.0][i][3], worlds[0.0][i][3]) for i in ir)
  # Only the emissivities of the garments and the bag move.
  for pid in (1, 2, 3):
    independent = render.make_identity(0, pid)
    learnable = render.make_identity(0, pid, ir_from_colour=1.0)
    moved = {
        f.name
        for f in dataclasses.fields(render.Identity)
        if not np.array_equal(getattr(independent, f.name), getattr(learnable, f.name))
    }
    assert moved <= {'upper_ir', 'upper_ir2', 'lower_ir', 'lower_ir2', 'bag_ir'}


def test_learnable_world_emissivity_is_the_documented_nonlinear_law():
  # By hand, for red (0.85, 0.15, 0.15): opponent = cos(0.3) 0.7 +
  # sin(0.3) 0.35 = 0.772168; 0.5 + 0.36 tanh(2.316503) - 0.3 (0.85 - 0.5).
  np.testing.assert_allclose(
      render.emissivity_of_colour([0.85, 0.15, 0.15]), 0.5 + 0.36 * 0.980736 - 0.105, atol=1e-5
  )
  ids = [
      (
          render.make_identity(0, i),
          render.make_identity(0, i, ir_from_colour=1.0),
          render.make_identity(0, i, ir_from_colour=0.5),
      )
      for i in range(1, 200)
  ]
  for independent, learnable, half in ids:
    law = render.emissivity_of_colour(independent.upper_rgb2)
    assert learnable.upper_ir2 == pytest.approx(law)
    assert half.upper_ir2 == pytest.approx((independent.upper_ir2 + law) / 2)
  # Not luminance, nor any linear map of the channels.
  colours = np.array([x.upper_rgb for x, _, _ in ids])
  emissivity = np.array([y.upper_ir for _, y, _ in ids])
  luma = colours @ np.array([0.299, 0.587, 0.114])
  assert abs(np.corrcoef(luma, emissivity)[0, 1]) < 0.3
  design = np.concatenate([colours, np.ones((len(colours), 1))], 1)
  fit, *_ = np.linalg.lstsq(design, emissivity, rcond=None)
  spread = np.abs(emissivity - emissivity.mean()).mean()
  assert np.abs(design @ fit - emissivity).mean() > 0.3 * spread
  with pytest.raises(ValueError, match='ir_from_colour'):
    render.make_identity(0, 1, ir_from_colour=1.5)


def test_an_infrared_twin_differs_from_its_rgb_frame_only_in_the_modality():
  seed, pid, index = 0, 5, 1
  camera = dataclasses.replace(render.make_camera(seed, 1, base_height=96), blur=0)
  twin = render.twin_camera(seed, camera)
  a = dataclasses.replace(
      render.make_identity(seed, pid), upper_pattern=0, upper_rgb=np.full(3, 0.3), upper_ir=0.2
  )
  b = dataclasses.replace(a, upper_rgb=np.full(3, 0.7), upper_ir=0.8)
  rgb = lambda ident: render.render(ident, camera, seed=seed, person_id=pid, index=index)
  ir = lambda ident: render.render(
      ident, camera, seed=seed, person_id=pid, index=index, imaging=twin, noise=False
  )
  # The pixels the upper garment covers, seen through each modality: the
  # same person, pose and geometry give the same pixels.
  in_rgb = (rgb(a) != rgb(b)).any(-1)
  in_ir = (ir(a) != ir(b)).any(-1)
  assert in_rgb.sum() > 50
  np.testing.assert_array_equal(in_ir, in_rgb)
  # There the twin shows the garment's emissivity through the twin's
  # imaging: grey, no shading, no noise.
  expected = np.round(np.clip(0.2 * twin.gain + twin.offset, 0, 1) * 255)
  np.testing.assert_array_equal(ir(a)[in_ir], np.full((in_ir.sum(), 3), expected))
  # An infrared camera's own frame: its twin is the image without its noise.
  ir_camera = render.make_camera(seed, 3, base_height=96)
  ident = render.make_identity(seed, pid)
  real = render.render(ident, ir_camera, seed=seed, person_id=pid, index=index)
  clean = render.render(ident, ir_camera, seed=seed, person_id=pid, index=index, noise=False)
  assert real.shape == clean.shape
  assert 2 < np.abs(real.astype(float) - clean).mean() < 12  # N(0, 0.03) noise


def test_tfds_twins_pair_each_rgb_image_by_path(tfds_data_dir, tiny_records):
  import ml_collections

  from aligngan_jax import input_pipeline

  train, test = tiny_records
  config = ml_collections.ConfigDict(
      {'dataset': 'synthetic_vireid/tiny', 'data_dir': tfds_data_dir, 'manual_dir': None}
  )
  paired = input_pipeline.load_paired_ir(config, train, test)
  for split, records in (('train', train), ('test', test)):
    rgb, twins = paired[split]
    np.testing.assert_array_equal(rgb.path, records.path[records.modality == 0])
    np.testing.assert_array_equal(twins.path, rgb.path)
    np.testing.assert_array_equal(twins.person_id, rgb.person_id)
    assert (twins.modality == 1).all()
  rgb, twins = paired['test']
  rendered = {
      f'cam{cam}/{pid:04d}/{index + 1:04d}.jpg': image
      for pid, cam, index, image in render.examples(
          0,
          np.unique(test.person_id),
          image_height=40,
          max_images=3,
          cameras=render.RGB_CAMERAS,
          infrared_twins=True,
      )
  }
  assert set(rendered) == set(twins.path)
  decoded = np.asarray(Image.open(io.BytesIO(twins.images[0])).convert('RGB'))
  assert np.abs(decoded.astype(float) - rendered[twins.path[0]]).mean() < 3  # JPEG
