"""The three-stage loop: resume after an interruption is bit-identical."""

import json
import logging
import os
import shutil

import jax
import numpy as np

from aligngan_jax import aligngan_train
from aligngan_jax import checkpointing
from aligngan_jax import players
from aligngan_jax import sharding
from configs import synthetic


def _config(data_dir):
  config = synthetic.get_config('tiny')
  config.trainer = 'aligngan'
  config.data_dir = data_dir
  config.image_size = 64          # the joint D needs >= 2x2 maps at its end
  config.gan.stage_iterations = (2, 2, 2)
  config.checkpoint_every_steps = 1
  config.max_checkpoints_to_keep = 10
  config.log_every_steps = 1
  config.eval_every_steps = 1000
  return config


def _final_state(config, workdir):
  mesh = sharding.create_mesh()
  models = players.create_models(config, 8)
  template = players.create_state(config, models, mesh)
  manager = checkpointing.create_manager(workdir, save_every=1, max_to_keep=10)
  state = checkpointing.restore_latest(manager, template)
  manager.close()
  return jax.device_get(state)


def _tensorboard_tags(workdir):
  import tensorflow as tf
  tags = set()
  for name in os.listdir(workdir):
    if name.startswith('events.out.tfevents'):
      for event in tf.compat.v1.train.summary_iterator(os.path.join(workdir, name)):
        tags.update(v.tag for v in event.summary.value)
  return tags


def _assert_stage_diagnostics(workdir, log_text):
  """An evaluation with diagnostics at the end of every stage: console
  table, eval/stages.json, eval/step_N.json and TensorBoard."""
  with open(os.path.join(workdir, 'eval', 'stages.json')) as f:
    rows = json.load(f)
  assert [(r['stage'], r['step']) for r in rows] == [(0, 0), (1, 2), (2, 4), (3, 6)]
  for row in rows:
    d = row['diagnostics']
    assert set(d) == {'fake_ir_to_ir', 'ir_to_ir', 'cosine'}
    for measure in ('fake_ir_to_ir', 'ir_to_ir'):
      assert 0.0 <= d[measure]['rank1'] <= 1.0
      assert 0.0 < d[measure]['chance_rank1'] < 1.0
    assert -1.0 <= d['cosine']['different_mean'] <= 1.0
    assert 0.0 <= row['protocol']['rank1'] <= 1.0
  with open(os.path.join(workdir, 'eval', 'step_4.json')) as f:
    step4 = json.load(f)
  assert step4['stage'] == 2 and step4['diagnostics'] == rows[2]['diagnostics']
  tags = _tensorboard_tags(workdir)
  assert {'diagnostics/fake_ir_to_ir/rank1', 'diagnostics/ir_to_ir/mAP',
          'diagnostics/cosine/gap'} <= tags
  assert log_text.count('Per-stage diagnostics') == 4


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tfds_data_dir, tmp_path,
                                                              caplog):
  config = _config(tfds_data_dir)
  straight, broken = str(tmp_path / 'straight'), str(tmp_path / 'broken')
  with caplog.at_level(logging.INFO):
    result = aligngan_train.train_and_evaluate(config, straight)
  assert 'sysu all single' in result['results']
  _assert_stage_diagnostics(straight, caplog.text)
  # A run that crashed after iteration 3 (inside stage 2) has exactly the
  # straight run's first three checkpoints (saving is deterministic; a crash
  # cannot change what was already written): copy them rather than train
  # them again.
  os.makedirs(os.path.join(broken, 'checkpoints'))
  for step in ('1', '2', '3'):
    shutil.copytree(os.path.join(straight, 'checkpoints', step),
                    os.path.join(broken, 'checkpoints', step))
  aligngan_train.train_and_evaluate(config, broken)
  # Translation grids at the end of each stage: 4 columns of 64 px tiles.
  from PIL import Image
  for step in (2, 4, 6):
    png = Image.open(os.path.join(straight, 'images', f'translation_{step:06d}.png'))
    assert png.size[0] == 4 * 66 - 2 and (png.size[1] + 2) % 66 == 0
  a, b = _final_state(config, straight), _final_state(config, broken)
  assert int(a.step) == int(b.step) == 6
  for x, y in zip(jax.tree.leaves((a.params, a.batch_stats, a.opt_state)),
                  jax.tree.leaves((b.params, b.batch_stats, b.opt_state))):
    np.testing.assert_array_equal(x, y)
