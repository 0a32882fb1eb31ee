"""Nothing lost, nothing silent (issue 17): divergence keeps a resumable
finite checkpoint; damaged, altered or mismatched checkpoints and a full
disk are named in one line; bad config values are refused before any data
is read or step compiled. The runs are the tiny IDE trainer, in-process;
main.py's one-line rendering of these errors is tested in test_main.py."""

import errno
import json
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aligngan_jax import checkpointing
from aligngan_jax import config_checks
from aligngan_jax import divergence
from aligngan_jax import players
from aligngan_jax import sharding
from aligngan_jax import train_loop
from aligngan_jax import trainers
from aligngan_jax import trained
from configs import synthetic


def _config(data_dir, **overrides):
  config = synthetic.get_config('ide,tiny')
  config.data_dir = data_dir
  config.checkpoint_every_steps = 1
  config.max_checkpoints_to_keep = 3
  config.eval.num_trials, config.eval.stage_end = 2, False
  config.ide.num_train_steps = 8
  config.update_from_flattened_dict(overrides)
  return config


@pytest.fixture(scope='module')
def diverged(tfds_data_dir, tmp_path_factory):
  """A run at learning rate 10 (parameters and BatchNorm running variances
  grow ~10x a step while the losses stay finite: the state after step 3
  passes 1e6), then the same workdir resumed from the step the error names
  with a sane rate, to the end.

  Returns (workdir, the error's message, the resumed run's result)."""
  workdir = str(tmp_path_factory.mktemp('diverged') / 'run')
  with pytest.raises(divergence.DivergenceError) as error:
    train_loop.train_and_evaluate(
        _config(tfds_data_dir, learning_rate=10.0, max_checkpoints_to_keep=10), workdir)
  message = str(error.value)
  step = int(message.split('--config.resume_step=')[1].split()[0])
  result = train_loop.train_and_evaluate(
      _config(tfds_data_dir, learning_rate=0.01, resume_step=step), workdir)
  return workdir, message, result, step


def _restore(workdir, config=None, step=None):
  config = config or trained.load_config(workdir)
  trainer = trainers.trainer_for(config, trainers.DataInfo(trained.num_classes(workdir)))
  template = trainers.create_state(trainer, sharding.create_mesh(), abstract=True)
  manager = checkpointing.create_manager(workdir, save_every=1, max_to_keep=3,
                                         create=False)
  try:
    return checkpointing.restore(manager, template, config, step=step)
  finally:
    manager.close()


def test_divergence_keeps_only_finite_checkpoints_and_resumes_from_the_named_one(diverged):
  workdir, message, result, step = diverged
  # The term, the step, the newest finite checkpoint and what to do.
  assert message.startswith('Training diverged: the state after step ')
  assert 'beyond config.checkpoint_max_abs=1e+06' in message and 'was not saved' in message
  assert f'Go on from step {step} in ' in message
  assert 'a lower learning rate' in message and '\n' not in message
  failed = int(message.split('after step ')[1].split()[0])

  assert failed > step
  # The resumed run finished, and every checkpoint kept is finite.
  assert 'sysu all single' in result['results']
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')))
  assert steps[-1] == 8 and all(s > step for s in steps)
  # The diverging checkpoints after the named step were set aside, not deleted.
  assert str(step + 1) in os.listdir(os.path.join(workdir, checkpointing.SET_ASIDE))
  for s in steps:
    state = jax.device_get(_restore(workdir, step=s))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(
        (state.params, state.batch_stats, state.opt_state)))


def test_a_non_finite_loss_names_the_term_and_the_exact_step():
  from aligngan_jax import reporting
  history = [{'a': 1.0, 'b': 2.0}, {'a': 1.0, 'b': 2.0}, {'a': np.nan, 'b': np.inf},
             {'a': np.nan, 'b': 1.0}]
  assert reporting.first_non_finite(history, first_step=10) == (13, ['a', 'b'])
  assert reporting.first_non_finite(history[:2], first_step=10) is None


def _copy(workdir, tmp_path):
  copy = str(tmp_path / 'run')
  shutil.copytree(workdir, copy)
  return copy


def _data_files(workdir, step):
  folder = os.path.join(workdir, 'checkpoints', str(step), 'state', 'ocdbt.process_0', 'd')
  return sorted((os.path.join(folder, n) for n in os.listdir(folder)),
                key=os.path.getsize)


def test_a_damaged_newest_checkpoint_names_the_intact_one_and_resume_step_uses_it(
    diverged, tmp_path):
  workdir = _copy(diverged[0], tmp_path)
  with open(_data_files(workdir, 8)[-1], 'r+b') as f:
    f.truncate(100)
  with pytest.raises(checkpointing.CheckpointError) as error:
    _restore(workdir)
  message = str(error.value)
  assert message.startswith(f'Checkpoint {workdir}/checkpoints/8 is damaged (')
  assert 'The newest intact one is step 7: rerun with --config.resume_step=7' in message
  assert '\n' not in message and len(message) < 600
  # Deleted metadata: the same one line.
  second = _copy(diverged[0], tmp_path / 'metadata')
  os.remove(os.path.join(second, 'checkpoints', '8', 'state', '_METADATA'))
  with pytest.raises(checkpointing.CheckpointError, match='8 is damaged .* step 7'):
    _restore(second)
  # Its fingerprint deleted (with the step's metadata): damaged, not an old
  # format loaded unverified.
  third = _copy(diverged[0], tmp_path / 'fingerprint')
  os.remove(os.path.join(third, 'checkpoints', '8', '_CHECKPOINT_METADATA'))
  with pytest.raises(checkpointing.CheckpointError,
                     match=r'8 is damaged \(its fingerprint is missing .*step 7'):
    _restore(third)
  # Resuming from the named step sets the damaged one aside (nothing deleted).
  config = trained.load_config(workdir)
  config.resume_step = 7
  models = players.create_models(config, trained.num_classes(second), ('encoder', 'embedder'))
  mesh = sharding.create_mesh()
  manager, state, resumed = checkpointing.resume_or_start(
      config, workdir, lambda abstract=False: players.create_state(
          config, models, mesh, abstract=abstract))
  manager.close()
  assert resumed and int(state.step) == 7
  assert '8' in os.listdir(os.path.join(workdir, checkpointing.SET_ASIDE))
  assert '8' not in os.listdir(os.path.join(workdir, 'checkpoints'))


def test_flipped_bytes_are_an_error_never_a_silent_load(diverged, tmp_path):
  workdir = _copy(diverged[0], tmp_path)
  path = _data_files(workdir, 8)[-1]
  with open(path, 'r+b') as f:
    data = bytearray(f.read())
    for i in range(len(data) // 2, len(data) // 2 + 8):
      data[i] ^= 0x10
    f.seek(0)
    f.write(data)
  with pytest.raises(checkpointing.CheckpointError, match='8 is damaged .* step 7'):
    _restore(workdir)


def test_the_fingerprint_sees_one_bit_and_ignores_the_device_layout():
  mesh = sharding.create_mesh()
  tree = {'w': jnp.arange(12, dtype=jnp.float32).reshape(3, 4), 'n': jnp.int32(7),
          'key': jax.random.key(0)}
  sums, bad = checkpointing.fingerprint(tree)
  assert bad == []
  # Replicated over two devices, or on one: the same checksums.
  assert checkpointing.fingerprint(
      jax.device_put(tree, sharding.replicated(mesh)))[0] == sums
  # The hand-computed checksum of 'w': sum of bits(x_i) * (2i + 1) mod 2^32.
  bits = np.arange(12, dtype=np.float32).view(np.uint32).astype(np.uint64)
  assert sums["['w']"] == int(np.sum(bits * (2 * np.arange(12) + 1)) % 2**32)
  flipped = np.arange(12, dtype=np.float32).reshape(3, 4)
  flipped.view(np.uint32)[1, 2] ^= 1 << 30
  assert checkpointing.fingerprint({**tree, 'w': jnp.asarray(flipped)})[0]["['w']"] != sums["['w']"]
  assert checkpointing.fingerprint({**tree, 'w': tree['w'].at[0, 0].set(jnp.inf)})[1] == ["['w']"]


def test_a_workdir_of_another_config_is_refused_with_the_differing_keys(diverged):
  workdir = diverged[0]
  config = trained.load_config(workdir)
  config.model.width = 8
  with pytest.raises(checkpointing.CheckpointError) as error:
    _restore(workdir, config)
  message = str(error.value)
  assert 'of other shapes than this config builds' in message and 'encoder' in message
  assert 'model.width (4 there, 8 now)' in message and 'a new --workdir' in message


def test_a_full_disk_is_one_line_and_leaves_no_evaluation_of_the_unsaved_step(
    diverged, tfds_data_dir, tmp_path, monkeypatch):
  workdir = _copy(diverged[0], tmp_path)
  config = _config(tfds_data_dir, learning_rate=0.01)
  config.ide.num_train_steps = 9

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(ocp.CheckpointManager, 'save', full)
  with pytest.raises(checkpointing.CheckpointError) as error:
    train_loop.train_and_evaluate(config, workdir)
  message = str(error.value)
  assert message.startswith(f'No space left on the device of {workdir}/checkpoints '
                            'while saving step 9: a checkpoint needs about ')
  assert 'Go on from step 8 in ' in message and '\n' not in message
  assert not os.path.exists(os.path.join(workdir, 'eval', 'step_9.json'))
  with open(os.path.join(workdir, 'eval', 'latest.json')) as f:
    assert json.load(f)['step'] == 8


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


def test_values_no_run_can_use_are_refused_before_any_work(tfds_data_dir, tmp_path,
                                                           monkeypatch, caplog):
  workdir = str(tmp_path / 'run')
  # More identities per batch than the training split has (8 here): right
  # after the split is read.
  message = _refused_before_any_work(_config(tfds_data_dir, ids_per_batch=10),
                                     workdir, monkeypatch)
  assert message == ('config.ids_per_batch=10 is more than the 8 training identities '
                     'with both RGB and IR images in synthetic_vireid/tiny; lower '
                     'config.ids_per_batch.')
  gan = synthetic.get_config('tiny')

  def error(**overrides):
    bad = gan.copy_and_resolve_references()
    bad.update_from_flattened_dict(overrides)
    with pytest.raises(config_checks.ConfigError) as e:
      config_checks.validate_config(bad, num_devices=2)
    return str(e.value)
  # An image size whose joint-discriminator maps would be 0x0 (NaN after
  # two stages): the network and the smallest valid sizes.
  assert error(image_size=16) == (
      'config.image_size=16 is too small for the JointDiscriminator: its last '
      'InstanceNorm would see a 0x0 map (NaN losses); the smallest valid size is '
      '32, 64 for 2x2 maps.')
  assert 'multiple of 4' in error(image_size=66)
  assert error(instances_per_id=1).startswith('config.instances_per_id=1 must be >= 2')
  assert error(**{'gan.pixel_instances_per_id': 1}).startswith(
      'config.gan.pixel_instances_per_id=1 must be >= 2')
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
  config = _config(tfds_data_dir)
  with pytest.raises(config_checks.ConfigError, match='typo does not exist'):
    sheets.write_sheets(config, str(tmp_path / 'typo'))
  assert not (tmp_path / 'typo').exists()
  # A resume step that is not there names those that are.
  with pytest.raises(checkpointing.CheckpointError, match='holds no checkpoint'):
    checkpointing.resume_or_start(_config(tfds_data_dir, resume_step=3), str(tmp_path / 'new'),
                                  lambda abstract=False: None)
