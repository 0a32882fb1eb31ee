"""The job: train (IDE baseline or AlignGAN) or evaluate a workdir.

The one module the entry point calls. Training of either trainer
(``config.trainer``) runs in `train_loop`; nothing else in the package
imports this module.
"""

import jax
import ml_collections

from aligngan_jax import config_checks
from aligngan_jax import reporting
from aligngan_jax import sharding
from aligngan_jax import train_loop
from aligngan_jax import trained
from aligngan_jax.evaluation import driver

ConfigError = config_checks.ConfigError


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from ``workdir`` if it holds a checkpoint) and
  evaluates; returns the final evaluation result."""
  jax.config.update('jax_debug_nans', bool(config.debug_nans))
  return train_loop.train_and_evaluate(config, workdir)


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """``config.mode='eval'``: evaluates the newest checkpoint in ``workdir``,
  or the official release in ``config.init_from``."""
  config_checks.validate_config(config, num_devices=jax.device_count())
  if not config.init_from:
    trained.require_trained_workdir(workdir)   # before the data is read
  mesh = sharding.create_mesh()
  from aligngan_jax import input_pipeline  # TensorFlow: only here.
  train, test = input_pipeline.load_data(config)
  if config.init_from:
    config_checks.ensure_writable(workdir)
    writer = reporting.writer_for(workdir)
    result = driver.evaluate_official(config, test, mesh)
    driver.write_eval(workdir, writer, 0, result)
    writer.close()  # flushes, and ends the asynchronous writer's thread
    return result
  opened = trained.restore(config, workdir, int(train.label.max()) + 1, mesh)
  config_checks.ensure_writable(workdir)
  writer = reporting.writer_for(workdir)
  feats = driver.features_by_modality(opened.extract, test, config, mesh)
  result = driver.score(feats, test, config)
  driver.write_eval(workdir, writer, opened.step, result)
  writer.close()  # flushes, and ends the asynchronous writer's thread
  return result

