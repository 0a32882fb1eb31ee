"""The jitted train step, sharding, and checkpoint round trips."""


import jax
import numpy as np
import pytest

from aligngan_jax import checkpointing
from aligngan_jax import config_checks
from aligngan_jax import ide_train
from aligngan_jax import sharding
from configs import synthetic

NUM_CLASSES = 6


@pytest.fixture(scope='module')
def config():
  return synthetic.get_config('ide,tiny')


@pytest.fixture(scope='module')
def models(config):
  return ide_train.create_models(config, NUM_CLASSES)


def _batch(config, seed=0):
  rng = np.random.default_rng(seed)
  b = config.ids_per_batch * config.instances_per_id
  s = config.image_size
  labels = np.repeat(rng.choice(NUM_CLASSES, config.ids_per_batch, replace=False),
                     config.instances_per_id).astype(np.int32)
  return {'rgb': rng.uniform(-1, 1, (b, s, s, 3)).astype(np.float32),
          'ir': rng.uniform(-1, 1, (b, s, s, 3)).astype(np.float32),
          'labels': labels}


def _host(tree):
  return jax.tree.map(np.asarray, tree)


def _run(config, models, mesh, steps):
  state = ide_train.create_train_state(config, models, mesh)
  step = ide_train.make_train_step(models, config, mesh)
  for i in range(steps):
    state, metrics = step(state, sharding.shard_batch(_batch(config, i), mesh))
  return state, metrics


def test_step_changes_parameters_and_keeps_replicated_shardings(config, models):
  mesh = sharding.create_mesh()
  assert mesh.devices.size == 2               # conftest forces two host devices
  before = _host(ide_train.create_train_state(config, models, mesh).params)
  state, metrics = _run(config, models, mesh, 1)
  assert int(state.step) == 1
  assert np.isfinite(float(metrics['loss']))
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)),
                         before, state.params)
  assert all(jax.tree.leaves(changed))        # every parameter got an update
  repl = sharding.replicated(mesh)
  for leaf in jax.tree.leaves(state):
    assert leaf.sharding.is_equivalent_to(repl, leaf.ndim)


def test_one_and_two_devices_agree(config, models):
  one, _ = _run(config, models, sharding.create_mesh(jax.devices()[:1]), 2)
  two, _ = _run(config, models, sharding.create_mesh(jax.devices()[:2]), 2)
  for a, b in zip(jax.tree.leaves(_host(one.params)), jax.tree.leaves(_host(two.params))):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
  for a, b in zip(jax.tree.leaves(_host(one.batch_stats)),
                  jax.tree.leaves(_host(two.batch_stats))):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_learning_rate_groups_and_decay(config):
  rates = ide_train.learning_rates(config)
  base = config.learning_rate
  milestone = config.lr_milestones[0]
  assert float(rates['embedder'](0)) == pytest.approx(base)
  assert float(rates['encoder'](0)) == pytest.approx(base * config.encoder_lr_multiplier)
  assert float(rates['embedder'](milestone - 1)) == pytest.approx(base)
  assert float(rates['embedder'](milestone)) == pytest.approx(base * config.lr_decay_factor)


def test_checkpoint_restore_is_bit_identical(config, models, tmp_path):
  mesh = sharding.create_mesh()
  state, _ = _run(config, models, mesh, 2)
  manager = checkpointing.create_manager(str(tmp_path), save_every=1, max_to_keep=2)
  checkpointing.save(manager, state, force=True)
  manager.wait_until_finished()
  template = ide_train.create_train_state(config, models, mesh)
  restored = checkpointing.restore_latest(manager, template)
  manager.close()
  assert int(restored.step) == 2
  np.testing.assert_array_equal(jax.random.key_data(restored.rng),
                                jax.random.key_data(state.rng))
  for field in ('params', 'batch_stats', 'opt_state'):
    for a, b in zip(jax.tree.leaves(getattr(state, field)),
                    jax.tree.leaves(getattr(restored, field))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  repl = sharding.replicated(mesh)
  assert all(x.sharding.is_equivalent_to(repl, x.ndim)
             for x in jax.tree.leaves(restored.params))


def test_config_errors_name_the_key_or_path(config, tmp_path):
  bad = config.copy_and_resolve_references()
  bad.ids_per_batch, bad.instances_per_id = 3, 1
  with pytest.raises(config_checks.ConfigError,
                     match=r'ids_per_batch \* config.instances_per_id = 3 \* 1 = 3'):
    config_checks.validate_config(bad, num_devices=2)
  bad = config.copy_and_resolve_references()
  bad.mode = 'serve'
  with pytest.raises(config_checks.ConfigError, match="config.mode='serve'"):
    config_checks.validate_config(bad, num_devices=2)
  blocker = tmp_path / 'a_file'
  blocker.write_text('x')
  with pytest.raises(config_checks.ConfigError, match=str(blocker / 'run')):
    config_checks.ensure_writable(str(blocker / 'run'))
  with pytest.raises(config_checks.ConfigError, match='eval_batch_size=3'):
    bad = config.copy_and_resolve_references()
    bad.eval_batch_size = 3
    config_checks.validate_config(bad, num_devices=2)
  bad = config.copy_and_resolve_references()
  bad.model.remat = 'all'
  with pytest.raises(config_checks.ConfigError, match="config.model.remat='all' is not one of"):
    config_checks.validate_config(bad, num_devices=2)


def test_joint_forward_shares_batchnorm_statistics(config, models):
  """Joint and separate forwards agree exactly when RGB and IR batches are the
  same images (each modality's batch statistics then equal the joint ones),
  and differ otherwise."""
  mesh = sharding.create_mesh()

  def losses(joint, batch):
    cfg = config.copy_and_resolve_references()
    cfg.joint_modality_forward = joint
    cfg.model.dropout_rate = 0.0
    nets = ide_train.create_models(cfg, NUM_CLASSES)
    state = ide_train.create_train_state(cfg, nets, mesh)
    _, metrics = ide_train.make_train_step(nets, cfg, mesh)(
        state, sharding.shard_batch(batch, mesh))
    return {k: float(metrics[k]) for k in ('ce_rgb', 'ce_ir', 'triplet')}

  same = _batch(config)
  same['ir'] = same['rgb']
  a, b = losses(True, same), losses(False, same)
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-5)
  c, d = losses(True, _batch(config)), losses(False, _batch(config))
  assert abs(c['ce_rgb'] - d['ce_rgb']) > 1e-4


def test_pretrained_backbone_errors_name_the_key(config, tmp_path):
  bad = config.copy_and_resolve_references()
  bad.pretrained_backbone = str(tmp_path / 'resnet50.pth')
  with pytest.raises(config_checks.ConfigError, match='config.model.depth=18'):
    config_checks.validate_config(bad, num_devices=2)
  bad.model.depth, bad.model.width = 50, 64
  with pytest.raises(config_checks.ConfigError,
                     match=r'pretrained_backbone=.*does not exist.*resnet50-0676ba61'):
    config_checks.validate_config(bad, num_devices=2)
  bad.mode, bad.init_from = 'eval', str(tmp_path)
  with pytest.raises(config_checks.ConfigError, match='model-0_250.pkl'):
    config_checks.validate_config(bad, num_devices=2)


def test_a_saved_trunk_starts_a_new_state_and_a_wrong_one_is_named(config, models,
                                                                     tmp_path):
  from aligngan_jax import pretrained
  mesh = sharding.create_mesh()
  other = config.copy_and_resolve_references()
  other.seed = 7
  source = jax.device_get(ide_train.create_train_state(other, models, mesh))
  path = str(tmp_path / 'trunk.msgpack')
  pretrained.save_trunk(path, source.params['encoder'], source.batch_stats['encoder'],
                        config, source='test')
  run = config.copy_and_resolve_references()
  run.pretrained_backbone = path
  assert pretrained.check_backbone_config(run) is None
  state = ide_train.create_train_state(run, models, mesh)
  loaded = jax.device_get(pretrained.load_backbone(state, run, mesh))
  for got, want in zip(jax.tree.leaves((loaded.params['encoder'], loaded.batch_stats['encoder'])),
                       jax.tree.leaves((source.params['encoder'], source.batch_stats['encoder']))):
    np.testing.assert_array_equal(got, want)
  # The heads stay as initialised.
  for got, want in zip(jax.tree.leaves(loaded.params['embedder']),
                       jax.tree.leaves(jax.device_get(state.params['embedder']))):
    np.testing.assert_array_equal(got, want)
  wider = run.copy_and_resolve_references()
  wider.model.width = 8
  with pytest.raises(config_checks.ConfigError, match=r'trunk.msgpack.*width 4.*width=8'):
    config_checks.validate_config(wider, num_devices=2)
  with open(path, 'wb') as f:
    f.write(b'not a trunk')
  with pytest.raises(config_checks.ConfigError, match=r'trunk.msgpack.*not a trunk file'):
    config_checks.validate_config(run, num_devices=2)


def test_the_demo_config_finds_its_committed_trunk_from_any_directory(tmp_path, monkeypatch):
  from aligngan_jax import pretrained
  monkeypatch.chdir(tmp_path)
  demo = synthetic.get_config()
  assert demo.pretrained_backbone.endswith('weights/synthetic_trunk_r18w16.msgpack')
  assert pretrained.check_backbone_config(demo) is None
  trunk = pretrained.read_trunk(demo.pretrained_backbone)
  assert (trunk['depth'], trunk['width']) == (demo.model.depth, demo.model.width)
  assert synthetic.get_config('tiny').pretrained_backbone == ''
