"""Config and workdir checks: a bad key, value, group or folder is one line
naming it, raised before any data is read or step compiled; the demo
configs find their trunk and name the swept point. main.py's rendering of
these errors is tested in test_main.py."""

import logging
import os
import shutil

import pytest

from aligngan_jax import checkpointing
from aligngan_jax import config_checks
from aligngan_jax import players
from aligngan_jax import train_loop
from aligngan_jax import trained
from aligngan_jax import trainers
from configs import synthetic
import workdirs


def test_config_errors_name_the_key_or_path(ide_config, tmp_path):
  bad = ide_config.copy_and_resolve_references()
  bad.ids_per_batch, bad.instances_per_id = 3, 3
  with pytest.raises(
      config_checks.ConfigError, match=r'ids_per_batch \* config.instances_per_id = 3 \* 3 = 9'
  ):
    config_checks.validate_config(bad, num_devices=2)
  bad = ide_config.copy_and_resolve_references()
  bad.mode = 'serve'
  with pytest.raises(config_checks.ConfigError, match="config.mode='serve'"):
    config_checks.validate_config(bad, num_devices=2)
  blocker = tmp_path / 'a_file'
  blocker.write_text('x')
  with pytest.raises(config_checks.ConfigError, match=str(blocker / 'run')):
    config_checks.ensure_writable(str(blocker / 'run'))
  with pytest.raises(config_checks.ConfigError, match='eval_batch_size=3'):
    bad = ide_config.copy_and_resolve_references()
    bad.eval_batch_size = 3
    config_checks.validate_config(bad, num_devices=2)
  bad = ide_config.copy_and_resolve_references()
  bad.model.remat = 'all'
  with pytest.raises(config_checks.ConfigError, match="config.model.remat='all' is not one of"):
    config_checks.validate_config(bad, num_devices=2)
  from configs import synthetic

  bad = synthetic.get_config('tiny')
  bad.gan.test_instance_norm = 'batch'
  with pytest.raises(
      config_checks.ConfigError, match="config.gan.test_instance_norm='batch' is not one of"
  ):
    config_checks.validate_config(bad, num_devices=2)


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
  monkeypatch.syspath_prepend(bench)  # as `python bench/pixel_sweep.py` has it
  path = os.path.join(bench, 'pixel_sweep.py')
  spec = importlib.util.spec_from_file_location('pixel_sweep', path)
  sweep = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(sweep)
  swept = synthetic.get_config()
  for override in sweep.POINTS['g16r2_long']:
    key, value = override[len('--config.') :].split('=')
    *groups, leaf = key.split('.')
    node = swept
    for group in groups:
      node = node[group]
    current = node[leaf]
    node[leaf] = (
        tuple(int(v) for v in value.strip('()').split(',') if v)
        if isinstance(current, tuple)
        else type(current)(value)
    )
  assert synthetic.get_config('learnable').to_dict() == swept.to_dict()
  tiny = synthetic.get_config('learnable,tiny')
  assert tiny.dataset == 'synthetic_vireid/tiny_learnable' and tiny.gan.conv_dim == 4
  with pytest.raises(ValueError, match="unknown argument.*'nope'"):
    synthetic.get_config('learnable,nope')


def test_trainer_groups_are_validated(ide_config):
  """Keys one trainer reads live in its group and are checked by it."""

  def error(edit, trainer='ide'):
    bad = ide_config.copy_and_resolve_references()
    bad.trainer = trainer
    edit(bad)
    with pytest.raises(config_checks.ConfigError) as e:
      config_checks.validate_config(bad, num_devices=2)
    return str(e.value)

  assert "config.ide.optimizer='rmsprop'" in error(
      lambda c: c.ide.__setattr__('optimizer', 'rmsprop')
  )
  assert 'config.ide.num_train_steps=0' in error(lambda c: c.ide.__setattr__('num_train_steps', 0))
  assert 'config.ide.lr_milestones=(5, 2)' in error(
      lambda c: c.ide.__setattr__('lr_milestones', (5, 2))
  )
  for stage_iterations in ((2, -1, 2), (0, 0, 0), (2, 2)):
    assert 'config.gan.stage_iterations' in error(
        lambda c, s=stage_iterations: c.gan.__setattr__('stage_iterations', s), 'aligngan'
    )
  assert 'config.gan.lr_milestones' in error(
      lambda c: c.gan.__setattr__('lr_milestones', (3, 1)), 'aligngan'
  )
  assert 'config.gan.pixel_instances_per_id=0 must be a positive integer' in error(
      lambda c: c.gan.__setattr__('pixel_instances_per_id', 0), 'aligngan'
  )
  bad_pixel = error(
      lambda c: c.gan.update({'pixel_ids_per_batch': 3, 'pixel_instances_per_id': 3}), 'aligngan'
  )
  assert bad_pixel.startswith(
      'config.gan.pixel_ids_per_batch * config.gan.pixel_'
      'instances_per_id = 3 * 3 = 9 images per modality is '
      'not divisible by the 2 devices'
  )
  # Each trainer ignores the other's group: a broken one does not stop it.
  fine = ide_config.copy_and_resolve_references()
  fine.trainer, fine.ide.optimizer = 'aligngan', 'rmsprop'
  config_checks.validate_config(fine, num_devices=2)
  assert synthetic.get_config('tiny').trainer == 'aligngan'


def _refused_before_any_work(config, workdir, monkeypatch):
  """The ConfigError of ``config``, asserting that no state was built and no
  step compiled first."""

  def too_early(*args, **kwargs):
    raise AssertionError('work started before the config was checked')

  monkeypatch.setattr(players, 'create_state', too_early)
  monkeypatch.setattr(trainers, 'make_steps', too_early)
  with pytest.raises(config_checks.ConfigError) as error:
    train_loop.train_and_evaluate(config, workdir)
  return str(error.value)


def test_values_no_run_can_use_are_refused_before_any_work(
    tfds_data_dir, tmp_path, monkeypatch, caplog
):
  workdir = str(tmp_path / 'run')
  # More identities per batch than the training split has (8 here): right
  # after the split is read.
  message = _refused_before_any_work(
      workdirs.ide_config(tfds_data_dir, ids_per_batch=10), workdir, monkeypatch
  )
  assert message == (
      'config.ids_per_batch=10 is more than the 8 training identities '
      'with both RGB and IR images in synthetic_vireid/tiny; lower '
      'config.ids_per_batch.'
  )
  gan = synthetic.get_config('tiny')

  def error(**overrides):
    """validate_config's message for ``overrides``, or None if it passes."""
    bad = gan.copy_and_resolve_references()
    bad.update_from_flattened_dict(overrides)
    try:
      config_checks.validate_config(bad, num_devices=2)
    except config_checks.ConfigError as e:
      return str(e)
    return None

  # An image size whose joint-discriminator maps would be 0x0 (NaN after
  # two stages): the network and the smallest valid sizes.
  assert error(image_size=16) == (
      'config.image_size=16 is too small for the JointDiscriminator: its last '
      'InstanceNorm would see a 0x0 map (NaN losses); the smallest valid size is '
      '32, 64 for 2x2 maps.'
  )
  # Fault 11: every size suggested is itself valid.
  for size in (7, 30, 66, 99):
    message = error(image_size=size)
    suggested = [
        int(v)
        for v in message.split('valid: ' if 'nearest' in message else 'size is ')[1]
        .split(')')[0]
        .replace(' for 2x2 maps.', '')
        .replace(',', ' ')
        .split()
    ]
    assert suggested, message
    for valid in suggested:
      error_free = gan.copy_and_resolve_references()
      error_free.image_size = valid
      config_checks.validate_config(error_free, num_devices=2)
  assert error(image_size=66) == (
      'config.image_size=66: the generators need a multiple of 4 (nearest valid: 64, 68).'
  )
  assert error(image_size=7).endswith('the smallest valid size is 32, 64 for 2x2 maps.')
  # Faults 8, 9: rates, weights, factors and probabilities, finite and in range.
  nan, inf = float('nan'), float('inf')
  assert error(learning_rate=-0.1) == 'config.learning_rate=-0.1 must be > 0 (a learning rate).'
  assert error(learning_rate=nan) == 'config.learning_rate=nan must be a finite number.'
  assert error(**{'gan.learning_rate': 0.0}).startswith('config.gan.learning_rate=0.0 must be > 0')
  assert (
      error(**{'agw.learning_rate': inf}) == 'config.agw.learning_rate=inf must be a finite number.'
  )
  assert error(**{'gan.lambda_cyc': -1.0}) == 'config.gan.lambda_cyc=-1.0 must be >= 0.'
  assert error(weight_decay=nan) == 'config.weight_decay=nan must be a finite number.'
  assert error(rgb_grey_prob=1.5) == 'config.rgb_grey_prob=1.5 must lie in [0, 1].'
  assert error(**{'gan.adam_b1': 1.5}) == 'config.gan.adam_b1=1.5 must lie in [0, 1].'
  assert error(**{'caj.erase_p': -0.5}) == 'config.caj.erase_p=-0.5 must lie in [0, 1].'
  assert (
      error(checkpoint_max_abs=-1.0) == 'config.checkpoint_max_abs=-1.0 must be >= 0 (0: no bound).'
  )
  assert error(**{'gan.lambda_cyc': 0.0, 'encoder_lr_multiplier': 0.0}) is None
  # Fault 10: a file given as a folder.
  a_file = tmp_path / 'SYSU-MM01.zip'
  a_file.write_text('')
  assert error(manual_dir=str(a_file)) == (
      f'config.manual_dir={a_file} is a file, not a folder: pass the folder holding the '
      "dataset's download."
  )
  assert error(data_dir=str(a_file)).startswith(f'config.data_dir={a_file} is a file')
  assert error(instances_per_id=1).startswith('config.instances_per_id=1 must be >= 2')
  assert error(**{'gan.pixel_instances_per_id': 1}).startswith(
      'config.gan.pixel_instances_per_id=1 must be >= 2'
  )
  assert 'config.resume_step' in error(resume_step=-2)
  # 32 px runs, with a warning that the joint discriminator learns little.
  ok = gan.copy_and_resolve_references()
  ok.image_size = 32
  config_checks.validate_config(ok, num_devices=2)
  with caplog.at_level(logging.WARNING):
    trainers.trainer_for(ok, trainers.DataInfo(4)).before_training()
  assert "JointDiscriminator's last InstanceNorm sees 1x1 maps" in caplog.text
  # An unknown dataset, and visualize on a mistyped workdir (not created).
  from aligngan_jax import input_pipeline
  from aligngan_jax import sheets
  from datasets import common

  with pytest.raises(common.DatasetError, match="config.dataset='nope' is not a registered"):
    input_pipeline.get_builder('nope', data_dir=tfds_data_dir)
  config = workdirs.ide_config(tfds_data_dir)
  with pytest.raises(config_checks.ConfigError, match='typo does not exist'):
    sheets.write_sheets(config, str(tmp_path / 'typo'))
  assert not (tmp_path / 'typo').exists()
  # A resume step that is not there names those that are.
  with pytest.raises(checkpointing.CheckpointError, match='holds no checkpoint'):
    checkpointing.resume_or_start(
        workdirs.ide_config(tfds_data_dir, resume_step=3),
        str(tmp_path / 'new'),
        lambda abstract=False: None,
    )


def test_training_writes_nothing_into_a_folder_it_did_not_make(
    tfds_data_dir, tmp_path, monkeypatch
):
  # Fault 13: a config.json of the user's was overwritten.
  theirs = tmp_path / 'theirs'
  os.makedirs(theirs)
  (theirs / 'config.json').write_text('{"hello": 1}')
  message = _refused_before_any_work(workdirs.ide_config(tfds_data_dir), str(theirs), monkeypatch)
  assert message == (
      f'--workdir={theirs} holds a config.json that main.py did not write '
      '(not a run config); it is not overwritten: pass a new or empty --workdir.'
  )
  assert (theirs / 'config.json').read_text() == '{"hello": 1}'
  assert sorted(os.listdir(theirs)) == ['config.json']
  # A folder of other files (a home folder, a dataset) is not a workdir.
  (tmp_path / 'photos').mkdir()
  (tmp_path / 'photos' / 'a.jpg').write_text('')
  message = _refused_before_any_work(
      workdirs.ide_config(tfds_data_dir), str(tmp_path / 'photos'), monkeypatch
  )
  assert 'is a folder of other files (a.jpg), not a workdir of this project' in message
  # New, empty, and this project's own workdirs are fine.
  for ok in (tmp_path / 'new', tmp_path / 'empty'):
    config_checks.ensure_workdir(str(ok))
  shutil.copy(tmp_path / 'photos' / 'a.jpg', tmp_path / 'empty')
  os.makedirs(tmp_path / 'empty' / 'checkpoints')
  config_checks.ensure_workdir(str(tmp_path / 'empty'))


def test_eval_and_visualize_prove_their_output_writable_before_any_work(
    diverged, tmp_path, monkeypatch
):
  # Fault 12: visualize failed only after restoring and extracting (26 s).
  from aligngan_jax import input_pipeline
  from aligngan_jax import sheets
  from aligngan_jax import train_lib

  def too_early(*args, **kwargs):
    raise AssertionError('the data was read before the output was checked')

  monkeypatch.setattr(input_pipeline.TFDSData, 'load', too_early)
  workdir = workdirs.copy(diverged[0], tmp_path)
  config = trained.load_config(workdir)
  for mode, folder, call in (
      ('visualize', 'visualize', sheets.write_sheets),
      ('eval', 'eval', train_lib.evaluate_checkpoint),
  ):
    shutil.rmtree(os.path.join(workdir, folder), ignore_errors=True)
    with open(os.path.join(workdir, folder), 'w') as f:  # unwritable, even for root
      f.write('')
    config.mode = mode
    with pytest.raises(
        config_checks.ConfigError, match=rf'^--workdir={workdir}/{folder} is not writable: '
    ):
      call(config, workdir)
