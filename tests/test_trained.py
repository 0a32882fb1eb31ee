"""A trained workdir reopened (trained.py): config.mode=eval reads the newest
checkpoint; a wrong workdir is one line and creates nothing."""

import logging
import os

from aligngan_jax import config_checks
from aligngan_jax import train_lib
from aligngan_jax import trained
import run_files
import workdirs


def test_eval_mode_reads_the_newest_checkpoint(copy_run, caplog):
  config = trained.load_config(copy_run)
  config.mode = 'eval'
  with caplog.at_level(logging.INFO):
    train_lib.evaluate_checkpoint(config, copy_run)
  # The protocol table, naming the variant.
  for phrase in (
      'SYSU-MM01',
      'all-search single-shot',
      'indoor-search multi-shot',
      'identity-level CMC',
      "AGW's random.seed(trial)",
  ):
    assert phrase in caplog.text
  assert run_files.latest_eval(copy_run)['step'] == 6


def test_workdir_errors_are_one_line_and_create_nothing(tmp_path):
  ce = config_checks.ConfigError
  mistyped = str(tmp_path / 'rnu')
  for call in (trained.require_trained_workdir, trained.open_workdir):
    workdirs.raises_one_line(
        ce,
        r'^--workdir=\S*rnu does not exist: pass the folder given to main\.py --workdir\.$',
        call,
        mistyped,
    )
  assert not os.path.exists(mistyped)
  run = tmp_path / 'run'
  os.makedirs(run)
  workdirs.raises_one_line(
      ce, r'^--workdir=\S*run has no config\.json', trained.require_trained_workdir, str(run)
  )
  (run / 'config.json').write_text('{"image_size": 64, "dataset": "d", "model": {}}')
  for call in (trained.require_trained_workdir, trained.num_classes):
    workdirs.raises_one_line(ce, r'^--workdir=\S*run holds no checkpoint', call, str(run))
  assert not os.path.exists(run / 'checkpoints')
  # An interrupted save is not a checkpoint.
  os.makedirs(run / 'checkpoints' / '3.orbax-checkpoint-tmp-1700000000')
  workdirs.raises_one_line(ce, 'holds no checkpoint', trained.require_trained_workdir, str(run))
  assert trained.load_config(str(run)).image_size == 64
  (run / 'config.json').write_text('{"image_size": 6')
  workdirs.raises_one_line(
      ce,
      r'^\S*config\.json is truncated or not valid JSON \(.* at line 1 '
      r'column \d+\); copy it from a backup',
      trained.load_config,
      str(run),
  )
  (run / 'config.json').write_text('[64]')
  workdirs.raises_one_line(
      ce, r'config\.json holds a JSON list, not the config object', trained.load_config, str(run)
  )
  (run / 'config.json').write_text('{"hello": 1}')  # someone else's config.json
  workdirs.raises_one_line(
      ce,
      r'config\.json is not a run config \(it lacks dataset, model or image_size\)',
      trained.load_config,
      str(run),
  )
