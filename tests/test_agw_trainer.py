"""The AGW trainer (trainers/agw.py) as the next issue's consumer of the
trainer interface: its schedule against the official table, and a tiny run
through the real loop on in-memory data (train, checkpoint, evaluate both
named features)."""

import json

import numpy as np
import pytest

from aligngan_jax import train_loop
from aligngan_jax import trainers
from aligngan_jax.trainers import agw
from configs import default
from test_trainer_interface import ListWriter
from test_trainer_interface import memory_run


def test_learning_rate_follows_the_official_adjust_learning_rate():
  # baselines_reference.md §4: e < 10: lr (e + 1) / 10; 10 <= e < 20: lr;
  # 20 <= e < 50: 0.1 lr; e >= 50: 0.01 lr.
  want = {0: 0.01, 4: 0.05, 9: 0.1, 10: 0.1, 19: 0.1, 20: 0.01, 49: 0.01, 50: 0.001, 80: 0.001}
  for epoch, lr in want.items():
    assert float(agw.learning_rate(epoch, 0.1)) == pytest.approx(lr, rel=1e-6), epoch


def _tiny(trainer: str, epochs: int, seed: int):
  """A ResNet-10 of width 4 at 32 x 16 on `memory_run`'s in-memory data."""
  config, data = memory_run(trainer, seed, size=(32, 16))
  config.model.depth, config.model.width = 10, 4
  config[trainer].update({**default.TINY_BASELINE, 'epochs': epochs})
  return config, data


def test_the_agw_schedule_follows_the_split_sizes():
  """Steps per epoch from the larger modality, epochs x steps iterations,
  the trunk at 0.1x. (The AGW trainer runs end to end in
  test_sysu_mm01.py on a SYSU-MM01 tree; one iteration is checked against
  the official one in test_agw_parity.py.)"""
  config, _ = _tiny('agw', epochs=2, seed=1)
  trainer = trainers.trainer_for(config, trainers.DataInfo(6, 48, 24))
  assert trainer.steps_per_epoch == int(48 / 4) + 1 == 13
  assert trainer.total_iterations == 26
  rates = trainer.learning_rates(13)  # epoch 1: decayed once
  assert float(rates['head']) == pytest.approx(0.01)
  assert float(rates['backbone']) == pytest.approx(0.001)
  assert trainer.feature_names == ('bn', 'pool')


def test_augmentations_by_hand():
  import jax
  import jax.numpy as jnp

  from aligngan_jax import augment

  image = jnp.broadcast_to(jnp.asarray([1.0, 2.0, 3.0]), (1, 4, 4, 3))
  # Pad-crop-flip: the centred crop without flip is the image; the corner
  # crop shows the padding (pixel 0 = -1 in [-1, 1]).
  ramp = jnp.arange(16.0).reshape(1, 4, 4, 1)
  same = augment.pad_crop_flip(ramp, jnp.asarray([[2, 2]]), jnp.asarray([False]), pad=2)
  np.testing.assert_array_equal(same, ramp)
  corner = augment.pad_crop_flip(ramp, jnp.asarray([[0, 0]]), jnp.asarray([True]), pad=2)
  np.testing.assert_array_equal(corner[0, :2, :, 0], [[-1] * 4] * 2)
  np.testing.assert_array_equal(corner[0, 2, :, 0], [1, 0, -1, -1])  # [-1, -1, 0, 1] flipped
  np.testing.assert_array_equal(
      augment.channel_exchange(image, jnp.asarray([1])), jnp.full((1, 4, 4, 3), 2.0)
  )
  grey = 0.2989 * 1 + 0.5870 * 2 + 0.1140 * 3
  three = jnp.concatenate([image] * 3)
  got = augment.channel_adaptive_grey(
      three, jnp.asarray([3, 3, 0]), jnp.asarray([False, True, True])
  )
  np.testing.assert_allclose(got[0], np.full((4, 4, 3), grey), rtol=1e-6)
  np.testing.assert_array_equal(got[1], image[0])  # kept
  np.testing.assert_array_equal(got[2], np.full((4, 4, 3), 1.0))  # channel R
  erased = augment.erase_rectangles(
      image,
      jnp.asarray([True]),
      jnp.asarray([1]),
      jnp.asarray([2]),
      jnp.asarray([2]),
      jnp.asarray([1]),
  )
  np.testing.assert_allclose(erased[0, 1:3, 2], np.tile(augment.ERASE_FILL, (2, 1)), rtol=1e-6)
  assert int(jnp.sum(erased != image)) == 2 * 3
  # The official draws: where erasing applies, the rectangle fits.
  apply, top, left, h, w = map(np.asarray, augment.draw_erasing(jax.random.key(0), 512, (32, 16)))
  assert 0.35 < apply.mean() < 0.65
  h, w, top, left = h[apply], w[apply], top[apply], left[apply]
  assert np.all(
      (h < 32)
      & (w < 16)
      & (top + h <= 32)
      & (left + w <= 16)
      & (top >= 0)
      & (left >= 0)
      & (h >= 1)
      & (w >= 1)
  )


def test_a_tiny_caj_run_trains_and_evaluates_both_features(tmp_path):
  config, data = _tiny('caj', epochs=1, seed=2)
  config.log_every_steps = 13
  trainer = trainers.trainer_for(config, trainers.DataInfo(6, 48, 24))
  assert trainer.schedule[0].images == 3 * 4
  writer = ListWriter()
  result = train_loop.train_and_evaluate(config, str(tmp_path), data=data, writer=writer)
  assert np.isfinite(writer.scalars[13]['train/caj/loss'])
  assert writer.scalars[13]['lr/backbone'] == pytest.approx(0.1 * writer.scalars[13]['lr/head'])
  assert result['results']['sysu all single']['rank1']['mean'] >= 0
  with open(tmp_path / 'eval' / 'latest.json') as f:
    features = json.load(f)['features']
  assert set(features) == {'pool', 'bn_noflip', 'pool_noflip'}
  pool = features['pool']
  # The second named feature reaches the writer as well as the JSON.
  assert writer.scalars[13]['eval_features/pool/rank1'] == pool['rank1']


def test_a_pretrained_trunk_goes_into_both_stems_and_the_shared_layers(tmp_path):
  import jax
  import jax.numpy as jnp

  from aligngan_jax import pretrained
  from aligngan_jax import sharding
  from aligngan_jax.models import resnet

  config = default.get_config()
  config.trainer = 'agw'
  config.model.depth, config.model.width = 10, 4
  config.agw.input_size = (32, 16)
  encoder = resnet.ResNetEncoder(depth=10, width=4)
  trunk = encoder.init(jax.random.key(7), jnp.zeros((1, 32, 16, 3)), train=False)
  path = str(tmp_path / 'trunk.msgpack')
  pretrained.save_trunk(path, trunk['params'], trunk['batch_stats'], config, source='test')
  config.pretrained_backbone = path
  trainer = trainers.trainer_for(config, trainers.DataInfo(5))
  mesh = sharding.create_mesh()
  fresh = trainers.create_state(trainer, mesh)
  state = trainer.load_pretrained(fresh, mesh, trainer.fetch_pretrained(config))
  backbone = jax.device_get(state.params['backbone'])
  for stem in ('visible_stem', 'thermal_stem'):
    np.testing.assert_array_equal(
        backbone[stem]['conv1']['kernel'], trunk['params']['conv1']['kernel']
    )
    np.testing.assert_array_equal(
        jax.device_get(state.batch_stats['backbone'])[stem]['bn1']['var'],
        trunk['batch_stats']['bn1']['var'],
    )
  np.testing.assert_array_equal(
      backbone['trunk']['layer3_0']['conv2']['kernel'],
      trunk['params']['layer3_0']['conv2']['kernel'],
  )
  # The non-local blocks and the head keep their initial values.
  np.testing.assert_array_equal(
      backbone['trunk']['nl2_0']['theta']['kernel'],
      jax.device_get(fresh.params['backbone'])['trunk']['nl2_0']['theta']['kernel'],
  )
  np.testing.assert_array_equal(
      jax.device_get(state.params['head'])['classifier']['kernel'],
      jax.device_get(fresh.params['head'])['classifier']['kernel'],
  )


def test_identities_the_official_sampler_cannot_draw_are_one_line(tmp_path):
  """The official sampler draws P identities without replacement, and RGB
  and IR images of each: a P above the identities with both modalities, or
  an identity without IR, is refused before anything compiles."""
  from aligngan_jax import errors

  config, data = _tiny('agw', epochs=1, seed=3)
  config.agw.ids_per_batch = 7  # the in-memory data has 6 training people
  with pytest.raises(
      errors.ConfigError, match=r'config\.agw\.ids_per_batch=7 is more than the 6 training'
  ):
    train_loop.train_and_evaluate(config, str(tmp_path), data=data, writer=ListWriter())
  # An identity seen only in RGB: the official sampler would fail mid-run.
  config.agw.ids_per_batch = 2
  train = data.train
  data.train = train.select(~((train.label == 5) & (train.modality == 1)))
  with pytest.raises(
      errors.UserError, match=r'1 training identities \(labels \[5\]\) have RGB but no IR'
  ):
    train_loop.train_and_evaluate(config, str(tmp_path), data=data, writer=ListWriter())


def test_caj_test_features_average_an_image_with_its_mirror():
  """The official testa.py: the flip-averaged features of an image and of its
  mirror image are the same (the unflipped ones are not), unit-norm."""
  import jax

  from aligngan_jax import sharding

  config, _ = _tiny('caj', epochs=1, seed=4)
  trainer = trainers.trainer_for(config, trainers.DataInfo(6))
  state = trainers.create_state(trainer, sharding.create_mesh())
  images = jax.random.uniform(jax.random.key(0), (3, 32, 16, 3), minval=-1, maxval=1)
  plain = trainer.test_features(state, images, modality='ir')
  mirrored = trainer.test_features(state, images[:, :, ::-1], modality='rgb')
  mirrored_ir = trainer.test_features(state, images[:, :, ::-1], modality='ir')
  for name in ('bn', 'pool'):
    np.testing.assert_allclose(plain[name], mirrored_ir[name], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(plain[name], axis=1), 1, atol=1e-5)
    assert np.abs(np.asarray(plain[f'{name}_noflip'] - mirrored_ir[f'{name}_noflip'])).max() > 1e-4
  # Each modality has its own stem.
  assert np.abs(np.asarray(plain['bn'] - mirrored['bn'])).max() > 1e-4
