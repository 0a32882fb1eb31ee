"""Divergence: only states training can go on from are kept, the probe,
the first non-finite loss, the resume advice, and no tool ranks, writes or
draws from non-finite features."""

import os
import types

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aligngan_jax import checkpointing
from aligngan_jax import config_checks
from aligngan_jax import divergence
from aligngan_jax import train_loop
from aligngan_jax import trained
import workdirs


def test_divergence_keeps_only_finite_checkpoints_and_resumes_from_the_named_one(diverged):
  workdir, message, settings, step = diverged
  # The term, the step, the newest finite checkpoint and what to do.
  assert message.startswith('Training diverged: the state after step ')
  assert 'beyond config.checkpoint_max_abs=1e+06' in message and 'was not saved' in message
  assert f'Go on from step {step} in ' in message
  assert 'a lower learning rate' in message and '\n' not in message
  failed = int(message.split('after step ')[1].split()[0])

  assert failed > step
  # The resumed run finished, and every checkpoint kept is finite.
  assert 'sysu all single' in settings
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')))
  assert steps[-1] == 8 and all(s > step for s in steps)
  # The diverging checkpoints after the named step were set aside, not deleted.
  assert str(step + 1) in os.listdir(os.path.join(workdir, checkpointing.SET_ASIDE))
  for s in steps:
    state = jax.device_get(workdirs.restore(workdir, step=s))
    assert all(
        np.all(np.isfinite(x))
        for x in jax.tree.leaves((state.params, state.batch_stats, state.opt_state))
    )


def test_a_non_finite_loss_names_the_term_and_the_exact_step():
  from aligngan_jax import reporting

  history = [
      {'a': 1.0, 'b': 2.0},
      {'a': 1.0, 'b': 2.0},
      {'a': np.nan, 'b': np.inf},
      {'a': np.nan, 'b': 1.0},
  ]
  assert reporting.first_non_finite(history, first_step=10) == (13, ['a', 'b'])
  assert reporting.first_non_finite(history[:2], first_step=10) is None


def test_a_state_training_cannot_go_on_from_is_never_kept(tfds_data_dir, tmp_path):
  # Fault 1/5 (lr 1e3): the state after step 1 is finite and small (largest
  # parameter ~2.6e3), but the next forward pass makes BatchNorm variances
  # of ~4e11 at any learning rate; it was kept and advised, so every resume
  # diverged again.
  workdir = str(tmp_path / 'run')
  with pytest.raises(divergence.DivergenceError) as error:
    train_loop.train_and_evaluate(workdirs.ide_config(tfds_data_dir, learning_rate=1e3), workdir)
  message = str(error.value)
  assert message.startswith(
      'Training diverged: the state after step 1 cannot be trained '
      'on: from it, one forward pass of the probe batch gives '
  )
  assert 'running statistics beyond config.checkpoint_max_abs=1e+06' in message
  assert message.endswith(
      'No checkpoint has been written yet: start again (lower the '
      'learning rate if the losses diverged).'
  )
  assert checkpointing.steps_in(workdir) == []


class _State(flax.struct.PyTreeNode):
  params: jax.Array
  batch_stats: dict


def test_the_probe_judges_losses_statistics_and_features():
  """Each verdict of `divergence.Probe` on hand-made steps and extractors;
  the state it is given is not consumed."""
  state = _State(params=jnp.ones(3), batch_stats={'bn': {'var': jnp.ones(3)}})

  def probe(loss=1.0, var=1.0, feature=1.0):
    step = lambda s, batch: (
        s.replace(batch_stats={'bn': {'var': s.batch_stats['bn']['var'] * var}}),
        {'loss': jnp.float32(loss)},
    )
    extract = lambda s, images: {'f': images * feature}
    return divergence.Probe(
        {1: step}, {1: {}}, {'ir': extract}, {'ir': jnp.ones((2, 4))}, max_abs=1e6
    ).problem(state, 1)

  assert probe() is None
  assert probe(loss=np.nan) == 'non-finite loss'
  assert probe(var=np.inf).startswith("non-finite running statistics (in ['batch_stats']")
  assert probe(var=4e11).startswith(
      'running statistics beyond config.checkpoint_max_abs=1e+06 (up to 4e+11'
  )
  assert probe(feature=np.nan) == 'non-finite test features of the IR probe images'
  assert float(state.batch_stats['bn']['var'][0]) == 1.0  # not donated away


def _nan_feature_checkpoint(diverged, tmp_path):
  """A copy of the diverged fixture's workdir with a step 9: the step-8
  state with its running variances negated, saved without
  the checks, as before the probe existed: finite, small, and every test
  feature NaN (fault 1's checkpoint)."""
  workdir = workdirs.copy(diverged[0], tmp_path)
  config = trained.load_config(workdir)
  state = workdirs.restore(workdir, config)
  stats = jax.tree_util.tree_map_with_path(
      lambda path, x: -x if 'var' in jax.tree_util.keystr(path) else x, state.batch_stats
  )
  state = state.replace(step=state.step + 1, batch_stats=stats)
  manager = checkpointing.create_manager(workdir, save_every=1, max_to_keep=10)
  checkpointing.save(
      manager,
      state,
      force=True,
      config=config,
      metadata={'num_classes': trained.num_classes(workdir)},
  )
  manager.wait_until_finished()
  manager.close()
  return workdir, config


def test_no_tool_ranks_writes_or_draws_from_non_finite_features(diverged, tfds_data_dir, tmp_path):
  from PIL import Image

  from aligngan_jax import export
  from aligngan_jax import search
  from aligngan_jax import sheets
  from aligngan_jax import train_lib
  from aligngan_jax.evaluation import driver

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
  with pytest.raises(
      config_checks.ConfigError, match=r'^config\.resume_step=3 is not a checkpoint in .*\(there: '
  ):
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
      'config.gan.learning_rate).'
  )
