"""Tiny runs' configs and workdirs for tests: the tiny IDE config, copying a
workdir, restoring its checkpoints, a checkpoint's data files, one-line
errors."""

import os
import shutil

import pytest

from aligngan_jax import checkpointing
from aligngan_jax import sharding
from aligngan_jax import trained
from aligngan_jax import trainers
from configs import synthetic


def ide_config(data_dir, **overrides):
  """The tiny IDE run of the checkpointing, divergence and config tests."""
  config = synthetic.get_config('ide,tiny')
  config.data_dir = data_dir
  config.checkpoint_every_steps = 1
  config.max_checkpoints_to_keep = 3
  config.eval.num_trials, config.eval.stage_end = 2, False
  config.ide.num_train_steps = 8
  config.update_from_flattened_dict(overrides)
  return config


def restore(workdir, config=None, step=None):
  config = config or trained.load_config(workdir)
  trainer = trainers.trainer_for(config, trainers.DataInfo(trained.num_classes(workdir)))
  template = trainers.create_state(trainer, sharding.create_mesh(), abstract=True)
  manager = checkpointing.create_manager(workdir, save_every=1, max_to_keep=3, create=False)
  try:
    return checkpointing.restore(manager, template, config, step=step)
  finally:
    manager.close()


def copy(workdir, tmp_path):
  copied = str(tmp_path / 'run')
  shutil.copytree(workdir, copied)
  return copied


def data_files(workdir, step):
  folder = os.path.join(workdir, 'checkpoints', str(step), 'state', 'ocdbt.process_0', 'd')
  return sorted((os.path.join(folder, n) for n in os.listdir(folder)), key=os.path.getsize)


def raises_one_line(error, match, call, *args, **kwargs):
  with pytest.raises(error, match=match) as raised:
    call(*args, **kwargs)
  assert '\n' not in str(raised.value)
