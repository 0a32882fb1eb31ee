"""What the project's builders share: the record features, the errors, the
index-list reader and the image check."""

import io
import os

import numpy as np
import tensorflow_datasets as tfds


class DatasetError(ValueError):
  """A missing, incomplete or corrupt dataset download; the message names
  the folder or file at fault and what to do."""


def reid_features(encoding_format: str) -> tfds.features.FeaturesDict:
  """One image and its re-id metadata (every builder, every split)."""
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3),
                                   encoding_format=encoding_format),
      'person_id': np.int32,
      'label': np.int32,       # 0..N-1 on train; -1 on test
      'camera': np.int32,      # SYSU 1..6; RegDB 1 visible, 2 thermal; LLCM 1..9
      'modality': tfds.features.ClassLabel(names=['rgb', 'ir']),
      'index': np.int32,       # position in its (modality, camera, id) folder
      'path': tfds.features.Text(),
  })


def reid_info(builder, *, description: str, homepage: str,
              encoding_format: str) -> tfds.core.DatasetInfo:
  """The DatasetInfo of a re-id builder (every builder has the same features)."""
  return tfds.core.DatasetInfo(builder=builder, description=description,
                               features=reid_features(encoding_format),
                               supervised_keys=None, homepage=homepage)


def checked_manual_dir(dl_manager, error: type[DatasetError], dataset: str,
                       how_to_get: str) -> str:
  """The manual folder, or ``error`` naming it and how to get the data when
  it is unset, missing or empty."""
  root = manual_dir(dl_manager)
  if not root or not os.path.isdir(root) or not os.listdir(root):
    raise error(f'{dataset}: manual_dir {root or "(not set)"} is missing or '
                f'empty.\n{how_to_get}')
  return root


def manual_dir(dl_manager) -> str:
  """The manual folder as given ('' if unset), even when TFDS finds it
  missing or empty (it asserts then; the builders explain instead)."""
  try:
    root = dl_manager.manual_dir
  except AssertionError:
    root = getattr(dl_manager, '_manual_dir', None)
  return str(root) if root else ''


def read_list(path: str, error: type[DatasetError], dataset: str,
              how_to_get: str) -> list[tuple[str, int]]:
  """(relative path, label) pairs of an index list ("relative/path label"
  lines, as the AGW baseline and DEEN distribute them)."""
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
        raise error(f'{dataset}: {path} line {number} is {line.strip()!r}; '
                    'expected "relative/path label".') from e
  return pairs


def read_encoded(path: str, error: type[DatasetError], dataset: str) -> io.BytesIO:
  """The file's bytes (stored as they are), after checking that they decode."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise error(f'{dataset}: image {path} is missing.')
  with open(path, 'rb') as f:
    data = f.read()
  try:
    with Image.open(io.BytesIO(data)) as im:
      im.load()
  except Exception as e:  # PIL raises several types for bad files
    raise error(f'{dataset}: image {path} cannot be decoded ({e}); re-extract '
                'it from the archive.') from e
  return io.BytesIO(data)
