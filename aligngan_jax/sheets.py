"""``config.mode='visualize'``: the pictures of a trained workdir.

Writes to ``<workdir>/visualize/`` (and as TensorBoard images, at the
checkpoint's step):

* ``retrieval_<setting>.png``: ranked retrievals of the first evaluated
  setting, trial 0 (SYSU-MM01: all-search single-shot; RegDB: v2t; LLCM:
  i2v): seeded random queries, then the worst ones by rank of their first
  true match;
* ``translation.png``: real RGB | generated IR | (true IR, where the dataset
  has infrared twins) | real IR | reconstructed RGB of test people (AlignGAN
  only);
* ``cmc.png``: the CMC curve of every evaluated setting (mean over trials).
"""

import os

import jax
import numpy as np

from aligngan_jax import config_checks
from aligngan_jax import reporting
from aligngan_jax import sharding
from aligngan_jax import trained
from aligngan_jax import visualize
from aligngan_jax.evaluation import driver
from aligngan_jax.evaluation import engine
from aligngan_jax.evaluation import retrieval


def _hit(records, position, rank, distance, correct):
  return visualize.Hit(
      image=visualize.tile_from_encoded(records.images[position]),
      rank=int(rank),
      distance=float(distance),
      camera=int(records.camera[position]),
      correct=bool(correct),
  )


def retrieval_rows(
    features, records, split, *, queries: int, worst: int, top_k: int, seed: int
) -> list[visualize.RetrievalRow]:
  """Rows of a retrieval sheet for ``split`` (a protocols.Split): ``queries``
  random valid queries (seeded), then the ``worst`` valid queries by rank of
  their first true match. Distances shown are cosine distances, 1 - cos."""
  q, g = split.query, split.gallery
  ids, cams = np.asarray(records.person_id), np.asarray(records.camera)
  distance = 1.0 - np.asarray(features[q], np.float64) @ np.asarray(features[g], np.float64).T
  ranked = retrieval.rank(
      distance, ids[q], ids[g], cams[q], cams[g], protocol=split.protocol, top_k=top_k
  )
  valid = np.flatnonzero(ranked.first_rank > 0)
  worst_rows = valid[np.argsort(-ranked.first_rank[valid], kind='stable')[:worst]]
  others = np.setdiff1d(valid, worst_rows)
  picked = np.sort(
      np.random.default_rng(seed).choice(others, min(queries, len(others)), replace=False)
  )
  rows = []
  for i in np.concatenate([picked, worst_rows]).astype(int):
    hits = tuple(
        _hit(records, g[pos], k + 1, ranked.top_distance[i, k], ranked.top_correct[i, k])
        for k, pos in enumerate(ranked.top[i])
        if pos >= 0
    )
    first = None
    if ranked.first_rank[i] > top_k:
      pos = ranked.first_position[i]
      first = _hit(records, g[pos], ranked.first_rank[i], distance[i, pos], True)
    label = 'worst, ' if i in worst_rows else ''
    rows.append(
        visualize.RetrievalRow(
            query=visualize.tile_from_encoded(records.images[q[i]]),
            caption=(f'query id {ids[q[i]]}', f'{label}cam {cams[q[i]]}'),
            hits=hits,
            first_match=first,
        )
    )
  return rows


def write_sheets(config, workdir: str) -> dict[str, str]:
  """Writes the sheets of checkpoint ``config.resume_step`` (-1: the newest)
  in ``workdir``; returns {name: PNG path}."""
  from aligngan_jax import input_pipeline  # TensorFlow: only here.

  config_checks.validate_config(config, num_devices=jax.device_count())
  trained.require_trained_workdir(workdir, config.resume_step)  # before the data is read
  # Where the sheets go, proven writable before minutes of extraction.
  config_checks.ensure_writable(workdir)
  config_checks.ensure_writable(os.path.join(workdir, 'visualize'))
  mesh = sharding.create_mesh()
  data = input_pipeline.TFDSData.load(config)
  test = data.test
  opened = trained.restore(config, workdir, trained.num_classes(workdir), mesh)
  features = opened.features(test)
  settings = driver.eval_settings(config)
  # Galleries drawn once: scored here, and trial 0 of one drawn below.
  all_splits = engine.splits(test, settings)
  result = engine.evaluate_features(features, test, settings, all_splits)
  scored = [n for n, row in result['results'].items() if 'skipped' not in row]
  if not scored:
    raise config_checks.ConfigError(
        'config.mode=visualize: no evaluation setting can be scored on this test split.'
    )
  pictures = {}
  curves = {engine.setting_title(n): np.asarray(result['results'][n]['cmc']) for n in scored}
  pictures['cmc'], _ = visualize.cmc_plot(
      curves, title=f'{engine.protocol_title(result["protocol"])} CMC, step {opened.step}'
  )
  split = all_splits[scored[0]][0]
  vis = config.visualize
  rows = retrieval_rows(
      features, test, split, queries=vis.queries, worst=vis.worst, top_k=vis.top_k, seed=config.seed
  )
  pictures[f'retrieval_{scored[0].replace(" ", "_")}'], _ = visualize.retrieval_sheet(rows)
  if opened.translate is not None:
    real_rgb, real_ir, true_ir = data.grid_images(config.grid_people, opened.load_size)
    fake_ir, reconstructed = jax.device_get(opened.translate(real_rgb))
    pictures['translation'] = visualize.translation_grid(
        real_rgb, fake_ir, real_ir, reconstructed, true_ir
    )
  writer = reporting.writer_for(workdir)
  writer.write_images(opened.step, {f'visualize/{k}': v[None] for k, v in pictures.items()})
  writer.close()
  paths = {}
  if jax.process_index() == 0:
    for name, picture in pictures.items():
      paths[name] = visualize.save_png(os.path.join(workdir, 'visualize', f'{name}.png'), picture)
  return paths
