"""The three-stage loop: resume after an interruption is bit-identical."""

import json
import os
import shutil

import jax
import numpy as np

from aligngan_jax import train_loop
from aligngan_jax import trained
import run_files


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
    assert set(d) == {'fake_ir_to_ir', 'ir_to_ir', 'cosine'}
    for measure in ('fake_ir_to_ir', 'ir_to_ir'):
      assert 0.0 <= d[measure]['rank1'] <= 1.0
      assert 0.0 < d[measure]['chance_rank1'] < 1.0
    assert -1.0 <= d['cosine']['different_mean'] <= 1.0
    assert 0.0 <= row['protocol']['rank1'] <= 1.0
  with open(os.path.join(workdir, 'eval', 'step_4.json')) as f:
    step4 = json.load(f)
  assert step4['stage'] == 2 and step4['diagnostics'] == rows[2]['diagnostics']
  tags = run_files.tensorboard_tags(workdir)
  assert {'diagnostics/fake_ir_to_ir/rank1', 'diagnostics/ir_to_ir/mAP',
          'diagnostics/cosine/gap'} <= tags
  # The tag scheme both trainers share.
  assert {'train/feature/loss', 'train/G/loss', 'train/stage', 'train/steps_per_sec',
          'lr/encoder', 'lr/G_rgb2ir', 'translation'} <= tags
  assert log_text.count('Per-stage diagnostics') == 4


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
    shutil.copytree(os.path.join(straight, 'checkpoints', step),
                    os.path.join(broken, 'checkpoints', step))
  result = train_loop.train_and_evaluate(config, broken)
  assert 'sysu all single' in result['results']
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
