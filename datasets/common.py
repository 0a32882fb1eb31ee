"""What the project's builders share: the record features, the errors, the
index-list reader, the image check, the folder listings that leave out
files which are not images, and the clean-up of killed TFDS builds."""

import io
import os
import re

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from aligngan_jax import errors


class DatasetError(errors.UserError, ValueError):
  """A missing, incomplete or corrupt dataset download; the message names
  the folder or file at fault and what to do."""


def reid_features(encoding_format: str) -> tfds.features.FeaturesDict:
  """One image and its re-id metadata (every builder, every split)."""
  return tfds.features.FeaturesDict(
      {
          'image': tfds.features.Image(shape=(None, None, 3), encoding_format=encoding_format),
          'person_id': np.int32,
          'label': np.int32,  # 0..N-1 on train; -1 on test
          'camera': np.int32,  # SYSU 1..6; RegDB 1 visible, 2 thermal; LLCM 1..9
          'modality': tfds.features.ClassLabel(names=['rgb', 'ir']),
          'index': np.int32,  # position in its (modality, camera, id) folder
          'path': tfds.features.Text(),
      }
  )


def reid_info(
    builder, *, description: str, homepage: str, encoding_format: str
) -> tfds.core.DatasetInfo:
  """The DatasetInfo of a re-id builder (every builder has the same features)."""
  return tfds.core.DatasetInfo(
      builder=builder,
      description=description,
      features=reid_features(encoding_format),
      supervised_keys=None,
      homepage=homepage,
  )


def checked_manual_dir(dl_manager, error: type[DatasetError], dataset: str, how_to_get: str) -> str:
  """The manual folder, or ``error`` naming it and how to get the data when
  it is unset, missing or empty."""
  root = manual_dir(dl_manager)
  if not root or not os.path.isdir(root) or not listdir(root):
    raise error(f'{dataset}: manual_dir {root or "(not set)"} is missing or empty.\n{how_to_get}')
  return root


def manual_dir(dl_manager) -> str:
  """The manual folder as given ('' if unset), even when TFDS finds it
  missing or empty (it asserts then; the builders explain instead)."""
  try:
    root = dl_manager.manual_dir
  except AssertionError:
    root = getattr(dl_manager, '_manual_dir', None)
  return str(root) if root else ''


def read_list(
    path: str, error: type[DatasetError], dataset: str, how_to_get: str
) -> list[tuple[str, int]]:
  """(relative path, label) pairs of an index list ("relative/path label"
  lines, as the AGW baseline and DEEN distribute them); an empty list, or
  one naming a hidden or AppleDouble file, is an error."""
  if not os.path.isfile(path):
    raise error(f'{dataset}: index list {path} is missing.\n{how_to_get}')
  pairs = []
  with open(path) as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      parts = line.split()
      try:
        pairs.append((parts[0], int(parts[1])))
      except (IndexError, ValueError) as e:
        raise error(
            f'{dataset}: {path} line {number} is {line.strip()!r}; '
            'expected "relative/path label".'
        ) from e
      if is_hidden(os.path.basename(parts[0])):
        raise error(
            f'{dataset}: {path} line {number} names {parts[0]}, a hidden '
            'or macOS AppleDouble (._*) file, not an image; remove the line.'
        )
  if not pairs:
    # Else TFDS would keep an empty split, which every later run would read.
    raise error(f'{dataset}: index list {path} lists no images.\n{how_to_get}')
  return pairs


def is_hidden(name: str) -> bool:
  """Hidden files ('.DS_Store') and the macOS AppleDouble files that copies
  made on a Mac leave beside each file ('._0001.jpg': metadata, not an
  image, though it ends in .jpg). Neither is ever part of a dataset."""
  return name.startswith('.')


def listdir(folder: str) -> list[str]:
  """The folder's entries, hidden and AppleDouble files left out."""
  return [name for name in os.listdir(folder) if not is_hidden(name)]


def log_skipped(what: str, skipped: list[str]) -> None:
  """One line for the files that a split's folder listings left out, so that
  an image count that looks short can be traced."""
  if skipped:
    logging.warning(
        '%s: skipped %d hidden or macOS AppleDouble (._*) files, which are not images, e.g. %s',
        what,
        len(skipped),
        skipped[0],
    )


# The temporary folder of a TFDS build, beside the version folder it becomes:
# 'incomplete.<6 characters>_1.0.0' (TFDS 4.9); '1.0.0.incomplete<6
# characters>' in older releases.
_INCOMPLETE_BUILD = re.compile(r'^incomplete\.|\.incomplete')


def remove_stale_builds(dataset_dir) -> list[str]:
  """Removes the temporary folders of TFDS builds killed before finishing.

  TFDS builds into a temporary folder and renames it to the version folder
  when done; it removes the folder when the build raises, but not when the
  process is killed, and not on later builds. Such a folder is never read
  and can hold gigabytes. Only folders whose name marks them incomplete are
  removed, never a version folder. Builds running at the same time in one
  data_dir are not supported (TFDS fails one of them anyway).

  Args:
    dataset_dir: the folder holding the version folders,
      ``<data_dir>/<name>[/<config>]`` (``builder.data_path.parent``).

  Returns:
    The removed folders.
  """
  dataset_dir = epath.Path(dataset_dir)
  if not dataset_dir.is_dir():
    return []
  removed = []
  for path in sorted(dataset_dir.iterdir()):
    if not (_INCOMPLETE_BUILD.search(path.name) and path.is_dir()):
      continue
    try:
      path.rmtree()
    except OSError as e:  # The build does not need it gone: say so, go on.
      logging.warning(
          'Could not remove %s, the temporary folder of a TFDS '
          'build that did not finish (%s); remove it by hand.',
          path,
          e,
      )
      continue
    logging.warning(
        'Removed %s, the temporary folder of a TFDS build that '
        'did not finish (a killed run); it is never read.',
        path,
    )
    removed.append(os.fspath(path))
  return removed


def read_encoded(path: str, error: type[DatasetError], dataset: str) -> io.BytesIO:
  """The file's bytes (stored as they are), after checking that they decode."""
  from PIL import Image

  if not os.path.isfile(path):
    raise error(f'{dataset}: image {path} is missing.')
  with open(path, 'rb') as f:
    data = f.read()
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()
  except Exception as e:  # PIL raises several types for bad files
    raise error(
        f'{dataset}: image {path} cannot be decoded ({e}); re-extract it from the archive.'
    ) from e
  return io.BytesIO(data)
