"""The jitted train step, sharding, and checkpoint round trips."""


import os

import jax
import numpy as np
import pytest

from aligngan_jax import checkpointing
from aligngan_jax import config_checks
from aligngan_jax import players
from aligngan_jax import sharding
from aligngan_jax import trainers
from configs import synthetic
import golden

NUM_CLASSES = 6


@pytest.fixture(scope='module')
def config():
  return synthetic.get_config('ide,tiny')


@pytest.fixture(scope='module')
def models(config):
  return players.create_models(config, NUM_CLASSES, players.FEATURE)


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


_STEPS = {}


def _step(config, models, mesh):
  """The IDE trainer's one jitted stage step, once per (config, models, mesh)
  in this module (kept alive with ``models``, so ids are not reused)."""
  key = (config.to_json(), id(models), tuple(d.id for d in mesh.devices.flat))
  if key not in _STEPS:
    trainer = trainers.trainer_for(config, trainers.DataInfo(NUM_CLASSES))
    _STEPS[key] = (models, trainers.make_steps(trainer, mesh)[1])
  return _STEPS[key][1]


def _run(config, models, mesh, steps):
  state = players.create_state(config, models, mesh)
  step = _step(config, models, mesh)
  for i in range(steps):
    state, metrics = step(state, {'feature': sharding.shard_batch(_batch(config, i), mesh)})
  return state, metrics


def test_step_changes_parameters_and_keeps_replicated_shardings(config, models):
  mesh = sharding.create_mesh()
  assert mesh.devices.size == 2               # conftest forces two host devices
  before = _host(players.create_state(config, models, mesh).params)
  state, metrics = _run(config, models, mesh, 1)
  assert int(state.step) == 1
  assert np.isfinite(float(metrics['feature/loss']))
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


def test_learning_rate_groups_and_decay_follow_the_running_trainer(config):
  base = config.learning_rate
  # Each trainer decays at its own group's milestone, never at the other's.
  for trainer, milestone in (('ide', 3), ('aligngan', 5)):
    cfg = config.copy_and_resolve_references()
    cfg.trainer = trainer
    cfg.ide.lr_milestones, cfg.gan.lr_milestones = (3,), (5,)
    before, after = players.lr_at(cfg, milestone - 1), players.lr_at(cfg, milestone)
    assert float(before['embedder']) == pytest.approx(base)
    assert float(before['encoder']) == pytest.approx(base * cfg.encoder_lr_multiplier)
    assert float(after['embedder']) == pytest.approx(base * cfg.lr_decay_factor)
    assert float(before['G_rgb2ir']) == pytest.approx(cfg.gan.learning_rate)


def test_checkpoint_restore_is_bit_identical(config, models, tmp_path):
  mesh = sharding.create_mesh()
  state, _ = _run(config, models, mesh, 2)
  manager = checkpointing.create_manager(str(tmp_path), save_every=1, max_to_keep=2)
  checkpointing.save(manager, state, force=True)
  manager.wait_until_finished()
  # Restored into an abstract template: shapes, dtypes and shardings only.
  template = players.create_state(config, models, mesh, abstract=True)
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(template))
  restored = checkpointing.restore(manager, template)
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
  bad.ids_per_batch, bad.instances_per_id = 3, 3
  with pytest.raises(config_checks.ConfigError,
                     match=r'ids_per_batch \* config.instances_per_id = 3 \* 3 = 9'):
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
  from configs import synthetic
  bad = synthetic.get_config('tiny')
  bad.gan.test_instance_norm = 'batch'
  with pytest.raises(config_checks.ConfigError,
                     match="config.gan.test_instance_norm='batch' is not one of"):
    config_checks.validate_config(bad, num_devices=2)


def test_joint_forward_shares_batchnorm_statistics(config, models):
  """Joint and separate forwards agree exactly when RGB and IR batches are the
  same images (each modality's batch statistics then equal the joint ones),
  and differ otherwise."""
  mesh = sharding.create_mesh()
  same = _batch(config)
  same['ir'] = same['rgb']
  losses = {}
  for joint in (True, False):   # one jitted step per forward, two batches each
    cfg = config.copy_and_resolve_references()
    cfg.joint_modality_forward = joint
    cfg.model.dropout_rate = 0.0
    nets = players.create_models(cfg, NUM_CLASSES, players.FEATURE)
    step = _step(cfg, nets, mesh)
    for name, batch in (('same', same), ('different', _batch(config))):
      _, metrics = step(players.create_state(cfg, nets, mesh),
                        {'feature': sharding.shard_batch(batch, mesh)})
      losses[joint, name] = {k: float(metrics[f'feature/{k}'])
                             for k in ('ce_rgb', 'ce_ir', 'triplet')}
  for k in losses[True, 'same']:
    np.testing.assert_allclose(losses[True, 'same'][k], losses[False, 'same'][k], rtol=1e-5)
  assert abs(losses[True, 'different']['ce_rgb'] - losses[False, 'different']['ce_rgb']) > 1e-4


def test_pretrained_backbone_errors_name_the_key(config, tmp_path):
  bad = config.copy_and_resolve_references()
  bad.pretrained_backbone = str(tmp_path / 'resnet50.pth')
  with pytest.raises(config_checks.ConfigError, match='config.model.depth=10'):
    config_checks.validate_config(bad, num_devices=2)
  bad.model.depth, bad.model.width = 50, 64
  with pytest.raises(config_checks.ConfigError,
                     match=r"pretrained_backbone=.*does not exist.*'torchvision'"):
    config_checks.validate_config(bad, num_devices=2)
  bad.mode, bad.init_from = 'eval', str(tmp_path)
  # The IDE baseline has no official release; AlignGAN's names its files.
  with pytest.raises(NotImplementedError, match="trainer 'ide' cannot evaluate"):
    config_checks.validate_config(bad, num_devices=2)
  bad.trainer = 'aligngan'
  with pytest.raises(config_checks.ConfigError, match='model-0_250.pkl'):
    config_checks.validate_config(bad, num_devices=2)


def test_a_saved_trunk_starts_a_new_state_and_a_wrong_one_is_named(config, models,
                                                                     tmp_path):
  from aligngan_jax import pretrained
  mesh = sharding.create_mesh()
  other = config.copy_and_resolve_references()
  other.seed = 7
  source = jax.device_get(players.create_state(other, models, mesh))
  path = str(tmp_path / 'trunk.msgpack')
  pretrained.save_trunk(path, source.params['encoder'], source.batch_stats['encoder'],
                        config, source='test')
  run = config.copy_and_resolve_references()
  run.pretrained_backbone = path
  assert pretrained.check_backbone_config(run) is None
  state = players.create_state(run, models, mesh)
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


def test_the_learnable_setting_is_the_swept_point_it_names(monkeypatch):
  """configs/synthetic.py:learnable is bench/pixel_sweep.py's g16r2_long
  point, the one measured against its own ablation (issue 26): the sweep's
  overrides applied to the demo give the same config."""
  import importlib.util
  bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bench')
  monkeypatch.syspath_prepend(bench)   # as `python bench/pixel_sweep.py` has it
  path = os.path.join(bench, 'pixel_sweep.py')
  spec = importlib.util.spec_from_file_location('pixel_sweep', path)
  sweep = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(sweep)
  swept = synthetic.get_config()
  for override in sweep.POINTS['g16r2_long']:
    key, value = override[len('--config.'):].split('=')
    *groups, leaf = key.split('.')
    node = swept
    for group in groups:
      node = node[group]
    current = node[leaf]
    node[leaf] = (tuple(int(v) for v in value.strip('()').split(',') if v)
                  if isinstance(current, tuple) else type(current)(value))
  assert synthetic.get_config('learnable').to_dict() == swept.to_dict()
  tiny = synthetic.get_config('learnable,tiny')
  assert tiny.dataset == 'synthetic_vireid/tiny_learnable' and tiny.gan.conv_dim == 4
  with pytest.raises(ValueError, match="unknown argument.*'nope'"):
    synthetic.get_config('learnable,nope')


def test_ide_trainer_runs_in_the_one_loop_and_keeps_its_golden_numbers(tfds_data_dir, tmp_path, caplog):
  """The IDE baseline through train_lib, as main.py runs it: checkpoints,
  evaluation, the shared tag scheme, then config.mode='eval'."""
  import logging
  from aligngan_jax import train_lib
  import run_files
  workdir = str(tmp_path / 'run')
  config = run_files.override(synthetic.get_config('ide,tiny'),
                              run_files.IDE_TINY_OVERRIDES)
  config.data_dir = tfds_data_dir
  with caplog.at_level(logging.INFO):
    train_lib.train_and_evaluate(config, workdir)
  # What it learned is what it learned when tests/golden/ide_tiny.json was
  # written (tests/golden.py: losses at every step, final metrics).
  golden.check('ide_tiny', workdir)
  assert 'ide step 2/2' in caplog.text
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['1', '2']
  result = run_files.latest_eval(workdir)
  assert result['step'] == 2 and result['stage'] == 1 and result['protocol'] == 'sysu'
  tags = run_files.tensorboard_tags(workdir)
  assert {'train/feature/loss', 'train/feature/accuracy_ir', 'train/stage',
          'lr/encoder', 'lr/embedder'} <= tags
  assert not any(t.startswith('lr/G') or t == 'translation' for t in tags)
  # Resuming (also with a longer schedule) is tested in test_multihost.py,
  # where the same IDE run resumes in-process from other topologies.
  config.mode = 'eval'
  caplog.clear()
  with caplog.at_level(logging.INFO):
    train_lib.evaluate_checkpoint(config, workdir)
  assert 'Evaluation at step 2' in caplog.text
  assert run_files.latest_eval(workdir)['step'] == 2


def test_trainer_groups_are_validated(config):
  """Keys one trainer reads live in its group and are checked by it."""
  def error(edit, trainer='ide'):
    bad = config.copy_and_resolve_references()
    bad.trainer = trainer
    edit(bad)
    with pytest.raises(config_checks.ConfigError) as e:
      config_checks.validate_config(bad, num_devices=2)
    return str(e.value)
  assert "config.ide.optimizer='rmsprop'" in error(
      lambda c: c.ide.__setattr__('optimizer', 'rmsprop'))
  assert 'config.ide.num_train_steps=0' in error(
      lambda c: c.ide.__setattr__('num_train_steps', 0))
  assert 'config.ide.lr_milestones=(5, 2)' in error(
      lambda c: c.ide.__setattr__('lr_milestones', (5, 2)))
  for stage_iterations in ((2, -1, 2), (0, 0, 0), (2, 2)):
    assert 'config.gan.stage_iterations' in error(
        lambda c, s=stage_iterations: c.gan.__setattr__('stage_iterations', s), 'aligngan')
  assert 'config.gan.lr_milestones' in error(
      lambda c: c.gan.__setattr__('lr_milestones', (3, 1)), 'aligngan')
  assert 'config.gan.pixel_instances_per_id=0 must be a positive integer' in error(
      lambda c: c.gan.__setattr__('pixel_instances_per_id', 0), 'aligngan')
  bad_pixel = error(lambda c: c.gan.update({'pixel_ids_per_batch': 3,
                                            'pixel_instances_per_id': 3}), 'aligngan')
  assert bad_pixel.startswith('config.gan.pixel_ids_per_batch * config.gan.pixel_'
                              'instances_per_id = 3 * 3 = 9 images per modality is '
                              'not divisible by the 2 devices')
  # Each trainer ignores the other's group: a broken one does not stop it.
  fine = config.copy_and_resolve_references()
  fine.trainer, fine.ide.optimizer = 'aligngan', 'rmsprop'
  config_checks.validate_config(fine, num_devices=2)
  assert synthetic.get_config('tiny').trainer == 'aligngan'


def test_cadence_says_which_periodic_actions_are_due():
  from aligngan_jax import train_loop
  cadence = train_loop.Cadence(log=2, checkpoint=3, image=4, eval=5,
                               eval_at_stage_end=True)
  due = lambda done, stage_end=False, last=False: set(
      cadence.due(done, stage_end=stage_end, last=last))
  assert due(1) == set()
  assert due(2) == {'log'}
  assert due(3) == {'log', 'checkpoint'}     # a save always follows a checked log
  assert due(4) == {'log', 'image'}
  assert due(5) == {'eval'}
  assert due(12) == {'log', 'checkpoint', 'image'}
  everything = {'log', 'image', 'checkpoint', 'eval'}
  assert due(7, stage_end=True) == due(7, last=True) == everything
  quiet = train_loop.Cadence(log=2, checkpoint=3, image=4, eval=5,
                             eval_at_stage_end=False)
  assert set(quiet.due(7, stage_end=True, last=False)) == everything - {'eval'}
  assert set(quiet.due(7, stage_end=False, last=True)) == everything


def test_a_checkpoint_of_another_trainer_is_refused(config, models, tmp_path):
  mesh = sharding.create_mesh()
  ide = players.create_state(config, models, mesh)

  def save(state, name):
    manager = checkpointing.create_manager(str(tmp_path / name), save_every=1,
                                           max_to_keep=1)
    checkpointing.save(manager, state, force=True)
    manager.wait_until_finished()
    return manager

  other = save(ide, 'ide')
  # A template with one more network stands for another trainer's state
  # (the check runs before anything is read).
  with_generator = ide.replace(params={**ide.params, 'G_rgb2ir': ide.params['encoder']})
  with pytest.raises(config_checks.ConfigError,
                     match=r"holds the networks \['embedder', 'encoder'\], but this config "
                           r"builds \['G_rgb2ir', 'embedder', 'encoder'\]"):
    checkpointing.restore(other, with_generator)
  other.close()
