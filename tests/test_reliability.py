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
import types

import flax
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
      '32, 64 for 2x2 maps.')
  # Fault 11: every size suggested is itself valid.
  for size in (7, 30, 66, 99):
    message = error(image_size=size)
    suggested = [int(v) for v in message.split('valid: ' if 'nearest' in message
                                                else 'size is ')[1].split(')')[0]
                 .replace(' for 2x2 maps.', '').replace(',', ' ').split()]
    assert suggested, message
    for valid in suggested:
      error_free = gan.copy_and_resolve_references()
      error_free.image_size = valid
      config_checks.validate_config(error_free, num_devices=2)
  assert error(image_size=66) == ('config.image_size=66: the generators need a multiple '
                                  'of 4 (nearest valid: 64, 68).')
  assert error(image_size=7).endswith('the smallest valid size is 32, 64 for 2x2 maps.')
  # Faults 8, 9: rates, weights, factors and probabilities, finite and in range.
  nan, inf = float('nan'), float('inf')
  assert error(learning_rate=-0.1) == 'config.learning_rate=-0.1 must be > 0 (a learning rate).'
  assert error(learning_rate=nan) == 'config.learning_rate=nan must be a finite number.'
  assert error(**{'gan.learning_rate': 0.0}).startswith('config.gan.learning_rate=0.0 must be > 0')
  assert error(**{'agw.learning_rate': inf}) == 'config.agw.learning_rate=inf must be a finite number.'
  assert error(**{'gan.lambda_cyc': -1.0}) == 'config.gan.lambda_cyc=-1.0 must be >= 0.'
  assert error(weight_decay=nan) == 'config.weight_decay=nan must be a finite number.'
  assert error(rgb_grey_prob=1.5) == 'config.rgb_grey_prob=1.5 must lie in [0, 1].'
  assert error(**{'gan.adam_b1': 1.5}) == 'config.gan.adam_b1=1.5 must lie in [0, 1].'
  assert error(**{'caj.erase_p': -0.5}) == 'config.caj.erase_p=-0.5 must lie in [0, 1].'
  assert error(checkpoint_max_abs=-1.0) == 'config.checkpoint_max_abs=-1.0 must be >= 0 (0: no bound).'
  assert error(**{'gan.lambda_cyc': 0.0, 'encoder_lr_multiplier': 0.0}) is None
  # Fault 10: a file given as a folder.
  a_file = tmp_path / 'SYSU-MM01.zip'
  a_file.write_text('')
  assert error(manual_dir=str(a_file)) == (
      f'config.manual_dir={a_file} is a file, not a folder: pass the folder holding the '
      "dataset's download.")
  assert error(data_dir=str(a_file)).startswith(f'config.data_dir={a_file} is a file')
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


# --- issue 29: nothing non-finite reaches a user; advice that can be followed ---


def test_a_state_training_cannot_go_on_from_is_never_kept(tfds_data_dir, tmp_path):
  # Fault 1/5 (lr 1e3): the state after step 1 is finite and small (largest
  # parameter ~2.6e3), but the next forward pass makes BatchNorm variances
  # of ~4e11 at any learning rate; it was kept and advised, so every resume
  # diverged again.
  workdir = str(tmp_path / 'run')
  with pytest.raises(divergence.DivergenceError) as error:
    train_loop.train_and_evaluate(_config(tfds_data_dir, learning_rate=1e3), workdir)
  message = str(error.value)
  assert message.startswith('Training diverged: the state after step 1 cannot be trained '
                            'on: from it, one forward pass of the probe batch gives ')
  assert "running statistics beyond config.checkpoint_max_abs=1e+06" in message
  assert message.endswith('No checkpoint has been written yet: start again (lower the '
                          'learning rate if the losses diverged).')
  assert checkpointing.steps_in(workdir) == []


class _State(flax.struct.PyTreeNode):
  params: jax.Array
  batch_stats: dict


def test_the_probe_judges_losses_statistics_and_features():
  """Each verdict of `divergence.Probe` on hand-made steps and extractors;
  the state it is given is not consumed."""
  state = _State(params=jnp.ones(3), batch_stats={'bn': {'var': jnp.ones(3)}})

  def probe(loss=1.0, var=1.0, feature=1.0):
    step = lambda s, batch: (s.replace(batch_stats={'bn': {'var': s.batch_stats['bn']['var'] * var}}),
                             {'loss': jnp.float32(loss)})
    extract = lambda s, images: {'f': images * feature}
    return divergence.Probe({1: step}, {1: {}}, {'ir': extract}, {'ir': jnp.ones((2, 4))},
                            max_abs=1e6).problem(state, 1)
  assert probe() is None
  assert probe(loss=np.nan) == 'non-finite loss'
  assert probe(var=np.inf).startswith("non-finite running statistics (in ['batch_stats']")
  assert probe(var=4e11).startswith('running statistics beyond config.checkpoint_max_abs=1e+06 '
                                    '(up to 4e+11')
  assert probe(feature=np.nan) == 'non-finite test features of the IR probe images'
  assert float(state.batch_stats['bn']['var'][0]) == 1.0   # not donated away


def _nan_feature_checkpoint(diverged, tmp_path):
  """A copy of the diverged fixture's workdir with a step 9: the step-8
  state with its running variances negated, saved without
  the checks, as before the probe existed: finite, small, and every test
  feature NaN (fault 1's checkpoint)."""
  workdir = _copy(diverged[0], tmp_path)
  config = trained.load_config(workdir)
  state = _restore(workdir, config)
  stats = jax.tree_util.tree_map_with_path(
      lambda path, x: -x if 'var' in jax.tree_util.keystr(path) else x, state.batch_stats)
  state = state.replace(step=state.step + 1, batch_stats=stats)
  manager = checkpointing.create_manager(workdir, save_every=1, max_to_keep=10)
  checkpointing.save(manager, state, force=True, config=config,
                     metadata={'num_classes': trained.num_classes(workdir)})
  manager.wait_until_finished()
  manager.close()
  return workdir, config


def test_no_tool_ranks_writes_or_draws_from_non_finite_features(diverged, tfds_data_dir,
                                                                 tmp_path):
  from aligngan_jax import export
  from aligngan_jax import search
  from aligngan_jax import sheets
  from aligngan_jax import train_lib
  from aligngan_jax.evaluation import driver
  from PIL import Image
  workdir, config = _nan_feature_checkpoint(diverged, tmp_path)
  config.data_dir = tfds_data_dir
  where = f'Checkpoint {workdir}/checkpoints/9 gives non-finite features (the features of '
  then = 'a diverged state; nothing was ranked, written or drawn. Step 8 gives finite features'
  # eval and visualize: one line naming the step, advising one they honour.
  for mode, call in (('eval', train_lib.evaluate_checkpoint), ('visualize', sheets.write_sheets)):
    config.mode = mode
    with pytest.raises(driver.NonFiniteFeatures) as error:
      call(config, workdir)
    message = str(error.value)
    assert message.startswith(where) and then in message and '\n' not in message
    assert message.endswith('rerun with --config.resume_step=8.')
  assert not os.path.exists(os.path.join(workdir, 'eval', 'step_9.json'))
  assert not os.listdir(os.path.join(workdir, 'visualize'))
  # The step they advise is read before any work (export below follows its
  # advice to the end; the resume tests do for training).
  config.resume_step = 3
  with pytest.raises(config_checks.ConfigError,
                     match=r'^config\.resume_step=3 is not a checkpoint in .*\(there: '):
    train_lib.evaluate_checkpoint(config, workdir)
  # export and search: the same line with their --step; nothing written.
  out = str(tmp_path / 'features.npz')
  with pytest.raises(driver.NonFiniteFeatures, match=r'9 gives non-finite .* --step=8\.$'):
    export.export(workdir, 'test', out, data_dir=tfds_data_dir)
  assert not os.path.exists(out)
  with np.load(export.export(workdir, 'test', out, data_dir=tfds_data_dir, step=8)) as saved:
    assert int(saved['step']) == 8 and np.isfinite(saved['features']).all()
  gallery = tmp_path / 'gallery'
  os.makedirs(gallery)
  for i in range(3):
    Image.fromarray(np.full((32, 16, 3), 40 * i, np.uint8)).save(gallery / f'{i}.png')
  sheet = str(tmp_path / 'sheet.png')
  with pytest.raises(driver.NonFiniteFeatures, match=r'9 gives non-finite .* --step=8\.$'):
    search.search(workdir, str(gallery / '0.png'), str(gallery), out=sheet)
  assert not os.path.exists(sheet)
  with pytest.raises(config_checks.ConfigError, match=r'^--step=3 is not a checkpoint in '):
    search.search(workdir, str(gallery / '0.png'), str(gallery), out=sheet, step=3)


def test_the_advice_reads_the_checkpoint_still_being_written():
  # Fault 4: the first stop read the size of step 1, whose asynchronous save
  # had not finished, as inf ("every checkpoint kept is already close to the
  # bound (step 1: inf)"); the identical rerun advised step 1. A manager
  # whose step-1 metadata is readable only once its save has finished:
  class SavingManager:
    directory, saved = '/w/checkpoints', False

    def all_steps(self):
      return [1]

    def wait_until_finished(self):
      self.saved = True

    def metadata(self, step):
      if not self.saved:
        raise FileNotFoundError(f'{self.directory}/{step}/_CHECKPOINT_METADATA')
      return types.SimpleNamespace(custom_metadata={'largest': 2596.0})
  assert divergence.resume_advice(SavingManager(), max_abs=1e6) == (
      'Go on from step 1 in /w/checkpoints (largest value 2.6e+03): rerun with '
      '--config.resume_step=1 and a lower learning rate (config.learning_rate, '
      'config.gan.learning_rate).')


def test_training_writes_nothing_into_a_folder_it_did_not_make(tfds_data_dir, tmp_path,
                                                              monkeypatch):
  # Fault 13: a config.json of the user's was overwritten.
  theirs = tmp_path / 'theirs'
  os.makedirs(theirs)
  (theirs / 'config.json').write_text('{"hello": 1}')
  message = _refused_before_any_work(_config(tfds_data_dir), str(theirs), monkeypatch)
  assert message == (f'--workdir={theirs} holds a config.json that main.py did not write '
                     '(not a run config); it is not overwritten: pass a new or empty --workdir.')
  assert (theirs / 'config.json').read_text() == '{"hello": 1}'
  assert sorted(os.listdir(theirs)) == ['config.json']
  # A folder of other files (a home folder, a dataset) is not a workdir.
  (tmp_path / 'photos').mkdir()
  (tmp_path / 'photos' / 'a.jpg').write_text('')
  message = _refused_before_any_work(_config(tfds_data_dir), str(tmp_path / 'photos'),
                                     monkeypatch)
  assert 'is a folder of other files (a.jpg), not a workdir of this project' in message
  # New, empty, and this project's own workdirs are fine.
  for ok in (tmp_path / 'new', tmp_path / 'empty'):
    config_checks.ensure_workdir(str(ok))
  shutil.copy(tmp_path / 'photos' / 'a.jpg', tmp_path / 'empty')
  os.makedirs(tmp_path / 'empty' / 'checkpoints')
  config_checks.ensure_workdir(str(tmp_path / 'empty'))


def test_eval_and_visualize_prove_their_output_writable_before_any_work(diverged, tmp_path,
                                                                         monkeypatch):
  # Fault 12: visualize failed only after restoring and extracting (26 s).
  from aligngan_jax import input_pipeline
  from aligngan_jax import sheets
  from aligngan_jax import train_lib

  def too_early(*args, **kwargs):
    raise AssertionError('the data was read before the output was checked')
  monkeypatch.setattr(input_pipeline.TFDSData, 'load', too_early)
  workdir = _copy(diverged[0], tmp_path)
  config = trained.load_config(workdir)
  for mode, folder, call in (('visualize', 'visualize', sheets.write_sheets),
                             ('eval', 'eval', train_lib.evaluate_checkpoint)):
    shutil.rmtree(os.path.join(workdir, folder), ignore_errors=True)
    with open(os.path.join(workdir, folder), 'w') as f:   # unwritable, even for root
      f.write('')
    config.mode = mode
    with pytest.raises(config_checks.ConfigError,
                       match=rf'^--workdir={workdir}/{folder} is not writable: '):
      call(config, workdir)
