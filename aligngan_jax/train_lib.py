"""The job: train (IDE baseline or AlignGAN) or evaluate a workdir.

The one module the entry point calls. Training of either trainer
(``config.trainer``) runs in `train_loop`; nothing else in the package
imports this module.
"""

import os

from absl import logging
import jax
import ml_collections

from aligngan_jax import config_checks
from aligngan_jax import reporting
from aligngan_jax import sharding
from aligngan_jax import train_loop
from aligngan_jax import trained
from aligngan_jax.evaluation import diagnostics as diagnostics_lib
from aligngan_jax.evaluation import driver
from aligngan_jax.evaluation import translation

ConfigError = config_checks.ConfigError


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from ``workdir`` if it holds a checkpoint) and
  evaluates; returns the final evaluation result."""
  jax.config.update('jax_debug_nans', bool(config.debug_nans))
  return train_loop.train_and_evaluate(config, workdir)


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """``config.mode='eval'``: evaluates checkpoint ``config.resume_step``
  (-1: the newest) in ``workdir``, or the official release in
  ``config.init_from``."""
  config_checks.validate_config(config, num_devices=jax.device_count())
  if not config.init_from:
    trained.require_trained_workdir(workdir, config.resume_step)  # before the data is read
  # Where the results go, proven writable before the data is read.
  config_checks.ensure_writable(workdir)
  config_checks.ensure_writable(os.path.join(workdir, 'eval'))
  mesh = sharding.create_mesh()
  from aligngan_jax import input_pipeline  # TensorFlow: only here.

  data = input_pipeline.TFDSData.load(config)
  if config.init_from:
    writer = reporting.writer_for(workdir)
    result = driver.evaluate_official(config, data.test, mesh)
    driver.write_eval(workdir, writer, 0, result)
    writer.close()  # flushes, and ends the asynchronous writer's thread
    return result
  opened = trained.restore(config, workdir, trained.num_classes(workdir), mesh)
  truth = None
  pairs = (
      data.paired_images(opened.load_size)
      if opened.translator is not None and config.eval.diagnostics
      else None
  )
  if pairs is not None:
    truth = (translation.Truth.from_pairs(*pairs), opened.translator)
  # The per-stage table's row for this checkpoint (with (e) where the
  # dataset has infrared twins), e.g. to compare test-time settings.
  with opened.finite_features():
    result, extra = train_loop.evaluate(
        opened.state, opened.trainer, opened.extractors, data, config, mesh, truth
    )
  if result is not None and extra.get('diagnostics'):
    logging.info(
        '%s',
        diagnostics_lib.format_table(
            [
                {
                    'stage': '-',
                    'step': opened.step,
                    'diagnostics': extra['diagnostics'],
                    'protocol': diagnostics_lib.protocol_summary(result),
                }
            ]
        ),
    )
  writer = reporting.writer_for(workdir)
  driver.write_eval(workdir, writer, opened.step, result, extra=extra)
  writer.close()  # flushes, and ends the asynchronous writer's thread
  return result
