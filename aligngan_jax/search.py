"""Search a folder of images with a trained model.

  python -m aligngan_jax.search --workdir=runs/demo --query=person.jpg \
      --gallery=photos/ [--top_k=10] [--query_modality=ir]

Queries (one image, or every image in a folder) are ranked against every
image in the gallery folder (recursively; JPEG, PNG or BMP, any size) by
the cosine distance of the model's test features; RGB images go through
the model's RGB path (AlignGAN: translated to IR first). The gallery is of
the other modality unless ``--gallery_modality`` says otherwise. Prints a ranked
table per query and writes a retrieval sheet (grey borders: identities are
unknown) to ``--out`` (default ``<workdir>/search/<query name>.png``).
Gallery features are cached in ``<workdir>/search_cache/``, keyed by the
checkpoint and the folder's file list (path, size, modification time), so
a second query against the same gallery extracts only the query.
Unreadable files are named, skipped and counted.
"""

import hashlib
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
MAX_SHEET_ROWS = 16

FLAGS = flags.FLAGS



class SearchError(ValueError):
  """Bad search input: the message names the path at fault."""


def list_images(path: str) -> list[str]:
  """``path`` itself if it is a file, else its image files, sorted."""
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise SearchError(f'{path} is neither an image file nor a folder.')
  found = []
  for folder, _, names in os.walk(path):
    found += [os.path.join(folder, n) for n in names
              if n.lower().endswith(IMAGE_EXTENSIONS)]
  return sorted(found)


def read_images(paths: list[str]) -> tuple[list[str], list[bytes]]:
  """(readable paths, their bytes); unreadable files are logged and skipped."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  kept, blobs, skipped = [], [], []
  for path in paths:
    try:
      with open(path, 'rb') as f:
        data = f.read()
      with Image.open(io.BytesIO(data)) as im:
        im.load()
    except Exception as e:  # PIL raises several types for bad files
      skipped.append(path)
      logging.warning('Skipping %s: not a readable image (%s).', path, e)
      continue
    kept.append(path)
    blobs.append(data)
  if skipped:
    logging.warning('Skipped %d unreadable file(s) of %d.', len(skipped), len(paths))
  return kept, blobs


def features(opened, blobs: list[bytes], modality: str) -> np.ndarray:
  """Unit-norm test features of encoded images of one modality."""
  from aligngan_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from aligngan_jax.evaluation import driver  # pylint: disable=g-import-not-at-top
  n = len(blobs)
  code = input_pipeline.IR if modality == 'ir' else input_pipeline.RGB
  images = np.empty(n, dtype=object)
  images[:] = blobs
  records = input_pipeline.Records(
      images=images, person_id=np.full(n, -1),
      label=np.full(n, -1), camera=np.zeros(n, int), modality=np.full(n, code),
      index=np.arange(n), path=np.array([''] * n))
  return driver.features_by_modality(opened.extract, records, opened.config,
                                        opened.mesh)


def _cache_key(opened, workdir: str, folder: str, paths: list[str], modality: str) -> str:
  checkpoint = os.path.join(os.path.abspath(workdir), 'checkpoints', str(opened.step))
  stats = [(os.path.relpath(p, folder), st.st_size, st.st_mtime_ns)
           for p, st in ((p, os.stat(p)) for p in paths)]
  payload = {'checkpoint': checkpoint, 'checkpoint_mtime': os.stat(checkpoint).st_mtime_ns,
             'modality': modality, 'image_size': opened.config.image_size,
             'encoder_input_size': list(opened.config.encoder_input_size),
             'files': stats}
  return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def gallery_features(opened, workdir: str, folder: str, modality: str):
  """(paths, features, from_cache) of every readable image in ``folder``."""
  paths = list_images(folder)
  if not paths:
    raise SearchError(f'--gallery={folder} holds no image files '
                      f'({", ".join(IMAGE_EXTENSIONS)}).')
  cache = os.path.join(workdir, 'search_cache',
                       f'gallery_{_cache_key(opened, workdir, folder, paths, modality)}.npz')
  if os.path.isfile(cache):
    with np.load(cache) as stored:
      return list(stored['paths']), stored['features'], True
  paths, blobs = read_images(paths)
  if not paths:
    raise SearchError(f'--gallery={folder}: none of its image files can be read.')
  feats = features(opened, blobs, modality)
  os.makedirs(os.path.dirname(cache), exist_ok=True)
  np.savez(cache, paths=np.array(paths), features=feats)
  return paths, feats, False


def search(workdir: str, query: str, gallery: str, *, top_k: int = 10,
           query_modality: str = 'ir', gallery_modality: str | None = None,
           out: str | None = None) -> dict:
  """Ranks the gallery for every query; returns {'queries': [...], 'ranked':
  [[(path, distance), ...] per query], 'sheet': PNG path, 'from_cache': bool}."""
  from aligngan_jax import trained  # pylint: disable=g-import-not-at-top
  from aligngan_jax import visualize  # pylint: disable=g-import-not-at-top
  opened = trained.open_workdir(workdir)
  gallery_modality = gallery_modality or ('rgb' if query_modality == 'ir' else 'ir')
  g_paths, g_feats, cached = gallery_features(opened, workdir, gallery, gallery_modality)
  q_paths, q_blobs = read_images(list_images(query))
  if not q_paths:
    raise SearchError(f'--query={query}: no readable image.')
  q_feats = features(opened, q_blobs, query_modality)
  distance = 1.0 - q_feats.astype(np.float64) @ g_feats.astype(np.float64).T
  order = np.argsort(distance, axis=1, kind='stable')[:, :top_k]
  ranked = [[(g_paths[j], float(distance[i, j])) for j in order[i]]
            for i in range(len(q_paths))]
  rows = []
  for i, path in enumerate(q_paths[:MAX_SHEET_ROWS]):
    hits = []
    for k, j in enumerate(order[i]):
      with open(g_paths[j], 'rb') as f:
        tile = visualize.tile_from_encoded(f.read())
      hits.append(visualize.Hit(image=tile, rank=k + 1, distance=float(distance[i, j]),
                                camera=None, name=os.path.basename(g_paths[j])))
    rows.append(visualize.RetrievalRow(
        query=visualize.tile_from_encoded(q_blobs[i]),
        caption=('query', os.path.basename(path)[:12]), hits=tuple(hits)))
  sheet, _ = visualize.retrieval_sheet(rows)
  stem = os.path.splitext(os.path.basename(os.path.normpath(query)))[0]
  out = visualize.save_png(out or os.path.join(workdir, 'search', f'{stem}.png'), sheet)
  return {'queries': q_paths, 'ranked': ranked, 'sheet': out, 'from_cache': cached}


def format_table(result: dict) -> str:
  lines = []
  for query, ranked in zip(result['queries'], result['ranked']):
    lines.append(f'query {query}')
    lines += [f'  {k:>3}  {d:7.4f}  {path}' for k, (path, d) in enumerate(ranked, 1)]
  lines.append(f'sheet: {result["sheet"]}' +
               (' (gallery features from cache)' if result['from_cache'] else ''))
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from aligngan_jax import config_checks  # pylint: disable=g-import-not-at-top
  from aligngan_jax import trained  # pylint: disable=g-import-not-at-top
  trained.hide_gpus_from_tensorflow()
  try:
    result = search(FLAGS.workdir, FLAGS.query, FLAGS.gallery, top_k=FLAGS.top_k,
                    query_modality=FLAGS.query_modality,
                    gallery_modality=FLAGS.gallery_modality, out=FLAGS.out)
  except (SearchError, config_checks.ConfigError) as e:
    sys.exit(f'error: {e}')
  print(format_table(result))


def define_flags():
  """The command-line flags (defined only when run as a program, so that
  importing this module defines no global flags)."""
  flags.DEFINE_string('workdir', None, 'A trained workdir (main.py --workdir).')
  flags.DEFINE_string('query', None, 'An image file, or a folder of them.')
  flags.DEFINE_string('gallery', None, 'A folder of images (searched recursively).')
  flags.DEFINE_integer('top_k', 10, 'Gallery images listed per query.')
  flags.DEFINE_enum('query_modality', 'ir', ['ir', 'rgb'], 'Modality of the queries.')
  flags.DEFINE_enum('gallery_modality', None, ['ir', 'rgb'],
                    'Modality of the gallery (default: the other one).')
  flags.DEFINE_string('out', None, 'Sheet PNG (default <workdir>/search/<query>.png).')


if __name__ == '__main__':
  define_flags()
  flags.mark_flags_as_required(['workdir', 'query', 'gallery'])
  app.run(main)
