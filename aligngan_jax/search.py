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
Unreadable files (a broken image, a dangling symlink, a folder that cannot
be listed) are named in a warning, skipped and counted; a cache file that
cannot be read is extracted again, one that cannot be written is skipped.

Every argument is checked before the model is restored and compiled (tens
of seconds), so a mistake is one ``error:`` line within seconds: the
workdir (config.json and a checkpoint), ``--top_k``, the gallery's
listing, the query images (read then) and the sheet's folder. A missing folder of
the sheet is created then, as ``mkdir -p`` would (the default one, in the
workdir, too); one that cannot be created or written is an error then, not
after the extraction.
"""

import hashlib
import json
import os
import stat
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np

from aligngan_jax import cli
from aligngan_jax import errors

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
MAX_SHEET_ROWS = 16

FLAGS = flags.FLAGS


class SearchError(errors.UserError, ValueError):
  """Bad search input: the message names the path at fault."""


def list_images(path: str, flag: str | None = None) -> list[str]:
  """``path`` itself if it is a file, else its image files, sorted.

  Entries that cannot be opened (a dangling symlink, something that is not
  a regular file, a subfolder that cannot be listed) are named in a
  warning, skipped and counted: one bad entry must not end a search over
  thousands, nor reach the cache key (which stats every file). ``flag``
  (e.g. '--gallery') names the argument in messages.
  """
  named = f'{flag}={path}' if flag else path
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise SearchError(f'{named} {_not_there(path)}.')
  found, skipped = [], []

  def unlisted(error):
    skipped.append(error.filename)
    logging.warning('Skipping %s: cannot be listed (%s).', error.filename, error.strerror or error)

  for folder, _, names in os.walk(path, onerror=unlisted):
    for name in names:
      if not name.lower().endswith(IMAGE_EXTENSIONS):
        continue
      file = os.path.join(folder, name)
      try:
        why = None if stat.S_ISREG(os.stat(file).st_mode) else 'not a regular file'
      except OSError as e:
        why = _not_there(file) if os.path.islink(file) else e.strerror or str(e)
      if why:
        skipped.append(file)
        logging.warning('Skipping %s: %s.', file, why)
      else:
        found.append(file)
  if skipped:
    logging.warning(
        'Skipped %d entr%s of %s that cannot be opened.',
        len(skipped),
        'y' if len(skipped) == 1 else 'ies',
        named,
    )
  return sorted(found)


def _not_there(path: str) -> str:
  """Why ``path`` cannot be opened, for an error or warning."""
  if os.path.islink(path) and not os.path.exists(path):
    return f'is a dangling symlink (to {os.readlink(path)})'
  if not os.path.exists(path):
    return 'does not exist'
  return 'is neither an image file nor a folder'


def names_a_folder(path: str) -> bool:
  """An existing folder, or a path ending in a slash: not a file name."""
  return os.path.isdir(path) or path.endswith(('/', os.sep))


def prepare_output(path: str) -> str | None:
  """Creates the folder of the file ``path`` (as ``mkdir -p``) and proves it
  writable; returns what is wrong, or None.

  Run before the model is restored (search's sheet, export's features), so
  that a bad output path costs a second, not the extracted features.
  """
  if names_a_folder(path):
    return 'is a folder; name the file to write'
  if os.path.exists(path) and not os.access(path, os.W_OK):
    return 'exists and is read-only'
  folder = os.path.dirname(os.path.abspath(path))
  above = folder
  while not os.path.exists(above):
    above = os.path.dirname(above)
  if not os.path.isdir(above):
    return f'{above} is a file, not a folder'
  from aligngan_jax import config_checks

  if problem := config_checks.writable_problem(folder):
    return f'its folder {folder} cannot be created or written ({problem})'
  return None


def write_whole(path: str, write) -> None:
  """``write(file)`` into a temporary file next to ``path``, renamed into
  place: ``path`` is written whole or not at all (an interrupted write
  would leave a truncated file that breaks every later reader)."""
  partial = f'{path}.{os.getpid()}.partial'
  try:
    with open(partial, 'wb') as f:
      write(f)
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def read_images(paths: list[str]) -> tuple[list[str], list[bytes]]:
  """(readable paths, their bytes); unreadable files are logged and skipped."""
  import io

  from PIL import Image

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
  """Unit-norm test features of encoded images of one modality (finite, or
  a one-line error naming the checkpoint: `trained.Opened.features`)."""
  from aligngan_jax import data as data_lib

  n = len(blobs)
  code = data_lib.IR if modality == 'ir' else data_lib.RGB
  images = np.empty(n, dtype=object)
  images[:] = blobs
  records = data_lib.Records(
      images=images,
      person_id=np.full(n, -1),
      label=np.full(n, -1),
      camera=np.zeros(n, int),
      modality=np.full(n, code),
      index=np.arange(n),
      path=np.array([''] * n),
  )
  return opened.features(records)


def _cache_key(opened, workdir: str, folder: str, paths: list[str], modality: str) -> str:
  checkpoint = os.path.join(os.path.abspath(workdir), 'checkpoints', str(opened.step))
  stats = []
  for path in paths:
    try:
      st = os.stat(path)
    except OSError as e:  # Gone since it was listed: read_images skips it too.
      logging.warning('Skipping %s in the cache key: %s.', path, e.strerror or e)
      continue
    stats.append((os.path.relpath(path, folder), st.st_size, st.st_mtime_ns))
  payload = {
      'checkpoint': checkpoint,
      'checkpoint_mtime': os.stat(checkpoint).st_mtime_ns,
      'modality': modality,
      'image_size': list(opened.load_size),
      'encoder_input_size': list(opened.config.encoder_input_size),
      'files': stats,
  }
  return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def gallery_features(
    opened, workdir: str, folder: str, modality: str, paths: list[str] | None = None
):
  """(paths, features, from_cache) of every readable image in ``folder``
  (``paths``: its `list_images`, when the caller has it already).

  The cache is a convenience: one that cannot be read is extracted again,
  one that cannot be written is skipped (the features are still used), and
  it is written whole or not at all (an interrupted write would otherwise
  leave a file that breaks every later search of the gallery).
  """
  paths = list_images(folder, '--gallery') if paths is None else paths
  if not paths:
    raise SearchError(f'--gallery={folder} holds no image files ({", ".join(IMAGE_EXTENSIONS)}).')
  cache = os.path.join(
      workdir, 'search_cache', f'gallery_{_cache_key(opened, workdir, folder, paths, modality)}.npz'
  )
  if os.path.isfile(cache):
    try:
      with np.load(cache) as stored:
        cached = list(stored['paths']), stored['features']
      if np.isfinite(cached[1]).all():
        return *cached, True
      logging.warning(
          'Ignoring the gallery cache %s: it holds non-finite features; extracting again.', cache
      )
    except Exception as e:  #  (zip, pickle, OS errors)
      logging.warning('Ignoring the unreadable gallery cache %s (%s); extracting again.', cache, e)
  paths, blobs = read_images(paths)
  if not paths:
    raise SearchError(f'--gallery={folder}: none of its image files can be read.')
  feats = features(opened, blobs, modality)
  try:
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    write_whole(cache, lambda f: np.savez(f, paths=np.array(paths), features=feats))
  except OSError as e:
    logging.warning(
        'Could not cache the gallery features in %s (%s); the next search extracts them again.',
        cache,
        e.strerror or e,
    )
  return paths, feats, False


def check_arguments(
    workdir: str,
    query: str,
    gallery: str,
    *,
    top_k: int,
    query_modality: str,
    gallery_modality: str,
    out: str | None,
    step: int = -1,
):
  """(config, query paths, query bytes, gallery paths, sheet path), or the
  first mistake as a one-line `SearchError`/`ConfigError`.

  Reads only the workdir's config.json, the folders' listings and the
  query images: seconds, where restoring and compiling the model takes
  tens of them. Creates the sheet's folder (`prepare_output`).
  """
  from aligngan_jax import trained

  if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
    raise SearchError(
        f'--top_k={top_k!r} must be a positive integer (the gallery images listed per query).'
    )
  for flag, value in (('query_modality', query_modality), ('gallery_modality', gallery_modality)):
    if value not in ('ir', 'rgb'):
      raise SearchError(f'--{flag}={value!r} is not one of ir, rgb.')
  trained.require_trained_workdir(workdir, step, '--step')
  config = trained.load_config(workdir)
  g_paths = list_images(gallery, '--gallery')
  if not g_paths:
    raise SearchError(f'--gallery={gallery} holds no image files ({", ".join(IMAGE_EXTENSIONS)}).')
  q_paths = list_images(query, '--query')
  if not q_paths:
    raise SearchError(f'--query={query} holds no image files ({", ".join(IMAGE_EXTENSIONS)}).')
  q_paths, q_blobs = read_images(q_paths)
  if not q_paths:
    raise SearchError(f'--query={query}: no readable image (see the warnings above).')
  if out:
    if problem := prepare_output(out):
      raise SearchError(f'--out={out}: {problem}.')
  else:
    stem = os.path.splitext(os.path.basename(os.path.normpath(query)))[0]
    out = os.path.join(workdir, 'search', f'{stem}.png')
    if problem := prepare_output(out):
      raise SearchError(
          f'--workdir={workdir}: the sheet goes to {out} without '
          f'--out, but {problem}; pass --out.'
      )
  return config, q_paths, q_blobs, g_paths, out


def search(
    workdir: str,
    query: str,
    gallery: str,
    *,
    top_k: int = 10,
    query_modality: str = 'ir',
    gallery_modality: str | None = None,
    out: str | None = None,
    step: int = -1,
) -> dict:
  """Ranks the gallery for every query with checkpoint ``step`` (-1: the
  newest); returns {'queries': [...], 'ranked': [[(path, distance), ...]
  per query], 'sheet': PNG path, 'from_cache': bool}.

  Every argument is checked (`check_arguments`) before the model is
  restored. Features holding NaN or inf are a one-line error naming the
  checkpoint and the newest one to use instead: nothing is ranked."""
  from aligngan_jax import trained
  from aligngan_jax import visualize

  gallery_modality = gallery_modality or ('rgb' if query_modality == 'ir' else 'ir')
  config, q_paths, q_blobs, g_listed, out = check_arguments(
      workdir,
      query,
      gallery,
      top_k=top_k,
      query_modality=query_modality,
      gallery_modality=gallery_modality,
      out=out,
      step=step,
  )
  trained.hide_gpus_from_tensorflow()  # before the extraction's tf.data
  opened = trained.open_workdir(workdir, config, step=step)
  g_paths, g_feats, cached = gallery_features(opened, workdir, gallery, gallery_modality, g_listed)
  q_feats = features(opened, q_blobs, query_modality)
  distance = 1.0 - q_feats.astype(np.float64) @ g_feats.astype(np.float64).T
  order = np.argsort(distance, axis=1, kind='stable')[:, :top_k]
  ranked = [[(g_paths[j], float(distance[i, j])) for j in order[i]] for i in range(len(q_paths))]
  rows = []
  for i, path in enumerate(q_paths[:MAX_SHEET_ROWS]):
    hits = []
    for k, j in enumerate(order[i]):
      with open(g_paths[j], 'rb') as f:
        tile = visualize.tile_from_encoded(f.read())
      hits.append(
          visualize.Hit(
              image=tile,
              rank=k + 1,
              distance=float(distance[i, j]),
              camera=None,
              name=os.path.basename(g_paths[j]),
          )
      )
    rows.append(
        visualize.RetrievalRow(
            query=visualize.tile_from_encoded(q_blobs[i]),
            caption=('query', os.path.basename(path)[:12]),
            hits=tuple(hits),
        )
    )
  sheet, _ = visualize.retrieval_sheet(rows)
  out = visualize.save_png(out, sheet)
  return {'queries': q_paths, 'ranked': ranked, 'sheet': out, 'from_cache': cached}


def format_table(result: dict) -> str:
  lines = []
  for query, ranked in zip(result['queries'], result['ranked']):
    lines.append(f'query {query}')
    lines += [f'  {k:>3}  {d:7.4f}  {path}' for k, (path, d) in enumerate(ranked, 1)]
  lines.append(
      f'sheet: {result["sheet"]}'
      + (' (gallery features from cache)' if result['from_cache'] else '')
  )
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    result = search(
        FLAGS.workdir,
        FLAGS.query,
        FLAGS.gallery,
        top_k=FLAGS.top_k,
        query_modality=FLAGS.query_modality,
        gallery_modality=FLAGS.gallery_modality,
        out=FLAGS.out,
        step=FLAGS.step,
    )
  except (errors.UserError, NotImplementedError) as e:
    sys.exit('error: ' + ' '.join(str(e).splitlines()))  # One line, always.
  print(format_table(result))


def define_flags():
  """The command-line flags (defined only when run as a program, so that
  importing this module defines no global flags)."""
  flags.DEFINE_string('workdir', None, 'A trained workdir (main.py --workdir).')
  flags.DEFINE_string('query', None, 'An image file, or a folder of them.')
  flags.DEFINE_string('gallery', None, 'A folder of images (searched recursively).')
  flags.DEFINE_integer('top_k', 10, 'Gallery images listed per query.')
  flags.DEFINE_enum('query_modality', 'ir', ['ir', 'rgb'], 'Modality of the queries.')
  flags.DEFINE_enum(
      'gallery_modality', None, ['ir', 'rgb'], 'Modality of the gallery (default: the other one).'
  )
  flags.DEFINE_string('out', None, 'Sheet PNG (default <workdir>/search/<query>.png).')
  flags.DEFINE_integer('step', -1, 'Checkpoint step to search with (-1: the newest).')


if __name__ == '__main__':
  define_flags()
  flags.mark_flags_as_required(['workdir', 'query', 'gallery'])
  cli.run(main)
