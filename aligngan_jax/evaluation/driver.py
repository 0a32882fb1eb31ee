"""The evaluation driver: features of a split, then every protocol setting.

Features are extracted sharded over the ``data`` mesh (replicated output),
scored by process 0 (`engine.evaluate_features`), and written as a console
table, TensorBoard scalars and ``<workdir>/eval/*.json`` (`write_eval`).
"""

import json
import os

from absl import logging
import jax
import numpy as np

from aligngan_jax import data as data_lib
from aligngan_jax import errors
from aligngan_jax import reporting
from aligngan_jax import sharding
from aligngan_jax.evaluation import engine


class NonFiniteFeatures(errors.UserError, FloatingPointError):
  """Features holding NaN or inf: nothing may be ranked, written or drawn
  from them. The message says how many images; callers add the checkpoint
  and the step to use instead (`trained.Opened.finite_features`)."""


def check_finite(feats) -> None:
  """Raises `NonFiniteFeatures` unless every feature (an array, or a dict
  of named arrays, one row per image) is finite."""
  for name, part in (feats.items() if isinstance(feats, dict) else [(None, feats)]):
    rows = ~np.isfinite(np.asarray(part)).reshape(len(part), -1).all(axis=1)
    if rows.any():
      named = f' (feature {name!r})' if name is not None else ''
      raise NonFiniteFeatures(
          f'the features of {int(rows.sum())} of {len(rows)} images{named} hold NaN or inf'
      )


def eval_settings(config) -> engine.EvalSettings:
  return engine.EvalSettings.from_config(config.eval, regdb_trial=config.get('trial', 1))


def extract_features(extract, records, config, mesh, *, image_size, batches=None):
  """Features (``extract``: sharded images -> unit-norm features, an array
  or a dict of named arrays) of every record, in record order, with a
  progress line. ``image_size``: the trainer's `load_size`. ``batches``: `data.Data.eval_batches` of the run's data;
  None reads ``records`` through tf.data."""
  if batches is None:
    from aligngan_jax import input_pipeline  # TensorFlow: only when evaluating data.

    batches = input_pipeline.create_eval_iterator
  iterator = batches(records, image_size=image_size, batch_size=config.eval_batch_size)
  num_batches = -(-len(records) // config.eval_batch_size)
  progress = reporting.Progress(
      start_step=0, num_steps=num_batches, images_per_step=config.eval_batch_size
  )
  feats = []
  for i, batch in enumerate(iterator, start=1):
    feats.append(jax.tree.map(np.asarray, extract(sharding.shard_batch(batch['image'], mesh))))
    if i % max(1, num_batches // 5) == 0 or i == num_batches:
      logging.info('features: %s', progress.short_line(i, progress.update(i)))
  return jax.tree.map(lambda *parts: np.concatenate(parts)[: len(records)], *feats)


def evaluate_official(config, test_records, mesh, *, batches=None) -> dict:
  """The converted official release of ``config.trainer`` (``config.init_from``)
  on the protocols; the trainer's first named feature is the one reported."""
  from aligngan_jax import trainers

  trainer = trainers.get(config.trainer)
  feats = features_by_modality(
      trainer.release_extractors(config, mesh),
      test_records,
      config,
      mesh,
      image_size=trainer.load_size(config),
      batches=batches,
  )
  return score(feats[trainer.feature_names[0]], test_records, config)


def features_by_modality(extractors: dict, records, config, mesh, *, image_size, batches=None):
  """Features of every record (an array, or a dict of named arrays, as the
  extractors give them): RGB ones by ``extractors['rgb']`` (which may
  translate them first), IR ones by ``extractors['ir']``, in record order.
  Features holding NaN or inf raise `NonFiniteFeatures`: every evaluation,
  sheet, search and export gets its features here, so nothing is ranked,
  written or drawn from them."""
  feats = None
  for modality, mask in data_lib.modality_masks(records):
    if not mask.any():
      continue
    part = extract_features(
        extractors[modality],
        records.select(mask),
        config,
        mesh,
        image_size=image_size,
        batches=batches,
    )
    if feats is None:
      feats = jax.tree.map(lambda p: np.zeros((len(records), p.shape[1]), np.float32), part)

    def put(full, p, mask=mask):
      full[mask] = p
      return full

    feats = jax.tree.map(put, feats, part)
  # The one guard of every consumer (evaluation, sheets, search, export).
  check_finite(feats)
  return feats


def score(feats, records, config) -> dict | None:
  """Every configured setting scored from the features (which every process
  holds: extraction is sharded, the output replicated). Computed once, by
  process 0, which alone reports; the other processes get None."""
  if jax.process_index() != 0:
    return None
  return engine.evaluate_features(feats, records, eval_settings(config))


def write_eval(workdir, writer, step, result, extra: dict | None = None):
  """The evaluation table to the console, scalars to TensorBoard, and
  ``<workdir>/eval/step_<step>.json`` and ``latest.json`` (``result`` plus
  ``extra``, e.g. the stage and its diagnostics)."""
  if result is None:  # not process 0
    return
  logging.info('Evaluation at step %d:\n%s', step, engine.format_report(result))
  writer.write_scalars(step, engine.scalars(result))
  # The trainer's other named test features (AGW's 'pool' beside 'bn').
  for name, summary in ((extra or {}).get('features') or {}).items():
    if 'rank1' not in summary:  # no setting scored on this split
      continue
    logging.info(
        'Feature %r, %s: Rank-1 %.2f%%, mAP %.2f%% (chance %.2f%%)',
        name,
        summary['setting'],
        100 * summary['rank1'],
        100 * summary['mAP'],
        100 * summary['chance_rank1'],
    )
    writer.write_scalars(
        step,
        {
            f'eval_features/{name}/rank1': summary['rank1'],
            f'eval_features/{name}/mAP': summary['mAP'],
        },
    )
  if jax.process_index() == 0:
    os.makedirs(os.path.join(workdir, 'eval'), exist_ok=True)
    payload = {'step': step, **(extra or {}), **result}
    for name in (f'step_{step}.json', 'latest.json'):
      with open(os.path.join(workdir, 'eval', name), 'w') as f:
        json.dump(payload, f, indent=2)
