"""Checkpoints: bit-identical restore and resume, another trainer's or
config's checkpoint refused, damaged or altered checkpoints named in one
line, a full disk (issue 17: nothing lost, nothing silent)."""

import errno
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aligngan_jax import checkpointing
from aligngan_jax import config_checks
from aligngan_jax import players
from aligngan_jax import sharding
from aligngan_jax import train_loop
from aligngan_jax import trained
import ide_steps
import run_files
import workdirs


def test_checkpoint_restore_is_bit_identical(ide_config, ide_models, tmp_path):
  mesh = sharding.create_mesh()
  state, _ = ide_steps.run(ide_config, ide_models, mesh, 2)
  manager = checkpointing.create_manager(str(tmp_path), save_every=1, max_to_keep=2)
  checkpointing.save(manager, state, force=True)
  manager.wait_until_finished()
  # Restored into an abstract template: shapes, dtypes and shardings only.
  template = players.create_state(ide_config, ide_models, mesh, abstract=True)
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(template))
  restored = checkpointing.restore(manager, template)
  manager.close()
  assert int(restored.step) == 2
  np.testing.assert_array_equal(jax.random.key_data(restored.rng), jax.random.key_data(state.rng))
  for field in ('params', 'batch_stats', 'opt_state'):
    for a, b in zip(
        jax.tree.leaves(getattr(state, field)), jax.tree.leaves(getattr(restored, field))
    ):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  repl = sharding.replicated(mesh)
  assert all(x.sharding.is_equivalent_to(repl, x.ndim) for x in jax.tree.leaves(restored.params))


def test_a_checkpoint_of_another_trainer_is_refused(ide_config, ide_models, tmp_path):
  mesh = sharding.create_mesh()
  ide = players.create_state(ide_config, ide_models, mesh)

  def save(state, name):
    manager = checkpointing.create_manager(str(tmp_path / name), save_every=1, max_to_keep=1)
    checkpointing.save(manager, state, force=True)
    manager.wait_until_finished()
    return manager

  other = save(ide, 'ide')
  # A template with one more network stands for another trainer's state
  # (the check runs before anything is read).
  with_generator = ide.replace(params={**ide.params, 'G_rgb2ir': ide.params['encoder']})
  with pytest.raises(
      config_checks.ConfigError,
      match=r"holds the networks \['embedder', 'encoder'\], but this config "
      r"builds \['G_rgb2ir', 'embedder', 'encoder'\]",
  ):
    checkpointing.restore(other, with_generator)
  other.close()


def _final_state(config, workdir):
  """The newest checkpoint of ``workdir`` on the host."""
  return jax.device_get(trained.restore(config, workdir, trained.num_classes(workdir)).state)


def _assert_stage_diagnostics(workdir, log_text):
  """An evaluation with diagnostics at the end of every stage: console
  table, eval/stages.json, eval/step_N.json and TensorBoard."""
  with open(os.path.join(workdir, 'eval', 'stages.json')) as f:
    rows = json.load(f)
  assert [(r['stage'], r['step']) for r in rows] == [(0, 0), (1, 2), (2, 4), (3, 6)]
  for row in rows:
    d = row['diagnostics']
    # (e): the tiny synthetic world holds the RGB test images' infrared twins.
    assert set(d) == {'fake_ir_to_ir', 'ir_to_ir', 'cosine', 'translation'}
    e = d['translation']
    assert e['num_images'] == 16 and 0 < e['l1'] < 1 and -1 <= e['ssim'] <= 1
    # The references do not depend on the generator.
    assert (e['luminance_l1'], e['linear_l1']) == (
        rows[0]['diagnostics']['translation']['luminance_l1'],
        rows[0]['diagnostics']['translation']['linear_l1'],
    )
    for measure in ('fake_ir_to_ir', 'ir_to_ir'):
      assert 0.0 <= d[measure]['rank1'] <= 1.0
      assert 0.0 < d[measure]['chance_rank1'] < 1.0
    assert -1.0 <= d['cosine']['different_mean'] <= 1.0
    assert 0.0 <= row['protocol']['rank1'] <= 1.0
  with open(os.path.join(workdir, 'eval', 'step_4.json')) as f:
    step4 = json.load(f)
  assert step4['stage'] == 2 and step4['diagnostics'] == rows[2]['diagnostics']
  tags = run_files.tensorboard_tags(workdir)
  assert {
      'diagnostics/fake_ir_to_ir/rank1',
      'diagnostics/ir_to_ir/mAP',
      'diagnostics/cosine/gap',
      'diagnostics/translation/l1',
      'diagnostics/translation/luminance_ssim',
  } <= tags
  # The tag scheme both trainers share.
  assert {
      'train/feature/loss',
      'train/G/loss',
      'train/stage',
      'train/steps_per_sec',
      'lr/encoder',
      'lr/G_rgb2ir',
      'translation',
  } <= tags
  assert log_text.count('Per-stage diagnostics') == 4
  assert '(e) L1 G/luma/lin' in log_text


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(aligngan_run, tmp_path):
  # The straight run is the session's shared one (main.py, conftest.py).
  straight, stderr = aligngan_run
  config = trained.load_config(straight)
  _assert_stage_diagnostics(straight, stderr)
  # A run that crashed after iteration 3 (inside stage 2) has exactly the
  # straight run's first three checkpoints (saving is deterministic; a crash
  # cannot change what was already written): copy them rather than train
  # them again.
  broken = str(tmp_path / 'broken')
  os.makedirs(os.path.join(broken, 'checkpoints'))
  for step in ('1', '2', '3'):
    shutil.copytree(
        os.path.join(straight, 'checkpoints', step), os.path.join(broken, 'checkpoints', step)
    )
  result = train_loop.train_and_evaluate(config, broken)
  assert 'sysu all single' in result['results']
  # Translation grids at the end of each stage: 5 columns of 64 px tiles
  # (real RGB | fake IR | true IR | real IR | reconstructed RGB).
  from PIL import Image

  for step in (2, 4, 6):
    png = Image.open(os.path.join(straight, 'images', f'translation_{step:06d}.png'))
    assert png.size[0] == 5 * 66 - 2 and (png.size[1] + 2) % 66 == 0
  a, b = _final_state(config, straight), _final_state(config, broken)
  assert int(a.step) == int(b.step) == 6
  for x, y in zip(
      jax.tree.leaves((a.params, a.batch_stats, a.opt_state)),
      jax.tree.leaves((b.params, b.batch_stats, b.opt_state)),
  ):
    np.testing.assert_array_equal(x, y)


def test_a_damaged_newest_checkpoint_names_the_intact_one_and_resume_step_uses_it(
    diverged, tmp_path
):
  workdir = workdirs.copy(diverged[0], tmp_path)
  with open(workdirs.data_files(workdir, 8)[-1], 'r+b') as f:
    f.truncate(100)
  with pytest.raises(checkpointing.CheckpointError) as error:
    workdirs.restore(workdir)
  message = str(error.value)
  assert message.startswith(f'Checkpoint {workdir}/checkpoints/8 is damaged (')
  assert 'The newest intact one is step 7: rerun with --config.resume_step=7' in message
  assert '\n' not in message and len(message) < 600
  # Deleted metadata: the same one line.
  second = workdirs.copy(diverged[0], tmp_path / 'metadata')
  os.remove(os.path.join(second, 'checkpoints', '8', 'state', '_METADATA'))
  with pytest.raises(checkpointing.CheckpointError, match='8 is damaged .* step 7'):
    workdirs.restore(second)
  # Its fingerprint deleted (with the step's metadata): damaged, not an old
  # format loaded unverified.
  third = workdirs.copy(diverged[0], tmp_path / 'fingerprint')
  os.remove(os.path.join(third, 'checkpoints', '8', '_CHECKPOINT_METADATA'))
  with pytest.raises(
      checkpointing.CheckpointError, match=r'8 is damaged \(its fingerprint is missing .*step 7'
  ):
    workdirs.restore(third)
  # Resuming from the named step sets the damaged one aside (nothing deleted).
  config = trained.load_config(workdir)
  config.resume_step = 7
  models = players.create_models(config, trained.num_classes(second), ('encoder', 'embedder'))
  mesh = sharding.create_mesh()
  manager, state, resumed = checkpointing.resume_or_start(
      config,
      workdir,
      lambda abstract=False: players.create_state(config, models, mesh, abstract=abstract),
  )
  manager.close()
  assert resumed and int(state.step) == 7
  assert '8' in os.listdir(os.path.join(workdir, checkpointing.SET_ASIDE))
  assert '8' not in os.listdir(os.path.join(workdir, 'checkpoints'))


def test_flipped_bytes_are_an_error_never_a_silent_load(diverged, tmp_path):
  workdir = workdirs.copy(diverged[0], tmp_path)
  path = workdirs.data_files(workdir, 8)[-1]
  with open(path, 'r+b') as f:
    data = bytearray(f.read())
    for i in range(len(data) // 2, len(data) // 2 + 8):
      data[i] ^= 0x10
    f.seek(0)
    f.write(data)
  with pytest.raises(checkpointing.CheckpointError, match='8 is damaged .* step 7'):
    workdirs.restore(workdir)


def test_the_fingerprint_sees_one_bit_and_ignores_the_device_layout():
  mesh = sharding.create_mesh()
  tree = {
      'w': jnp.arange(12, dtype=jnp.float32).reshape(3, 4),
      'n': jnp.int32(7),
      'key': jax.random.key(0),
  }
  sums, bad = checkpointing.fingerprint(tree)
  assert bad == []
  # Replicated over two devices, or on one: the same checksums.
  assert checkpointing.fingerprint(jax.device_put(tree, sharding.replicated(mesh)))[0] == sums
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
    workdirs.restore(workdir, config)
  message = str(error.value)
  assert 'of other shapes than this config builds' in message and 'encoder' in message
  assert 'model.width (4 there, 8 now)' in message and 'a new --workdir' in message


def test_a_full_disk_is_one_line_and_leaves_no_evaluation_of_the_unsaved_step(
    diverged, tfds_data_dir, tmp_path, monkeypatch
):
  workdir = workdirs.copy(diverged[0], tmp_path)
  config = workdirs.ide_config(tfds_data_dir, learning_rate=0.01)
  config.ide.num_train_steps = 9

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, 'No space left on device')

  monkeypatch.setattr(ocp.CheckpointManager, 'save', full)
  with pytest.raises(checkpointing.CheckpointError) as error:
    train_loop.train_and_evaluate(config, workdir)
  message = str(error.value)
  assert message.startswith(
      f'No space left on the device of {workdir}/checkpoints '
      'while saving step 9: a checkpoint needs about '
  )
  assert 'Go on from step 8 in ' in message and '\n' not in message
  assert not os.path.exists(os.path.join(workdir, 'eval', 'step_9.json'))
  with open(os.path.join(workdir, 'eval', 'latest.json')) as f:
    assert json.load(f)['step'] == 8
