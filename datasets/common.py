"""What the project's builders share: the record features and the errors."""

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
      'camera': np.int32,      # SYSU layout 1..6; RegDB 1 visible, 2 thermal
      'modality': tfds.features.ClassLabel(names=['rgb', 'ir']),
      'index': np.int32,       # position in its (camera, id) folder
      'path': tfds.features.Text(),
  })


def manual_dir(dl_manager) -> str:
  """The manual folder as given ('' if unset), even when TFDS finds it
  missing or empty (it asserts then; the builders explain instead)."""
  try:
    root = dl_manager.manual_dir
  except AssertionError:
    root = getattr(dl_manager, '_manual_dir', None)
  return str(root) if root else ''
