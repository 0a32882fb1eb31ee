"""TFDS builder for RegDB, read from the user's download (``manual_dir``).

RegDB (Nguyen et al., Sensors 2017) is distributed by its authors on
request. The field's 10 trials (each a random 206 / 206 identity split) come
as the index lists of the AGW baseline. Expected layout under
``manual_dir``::

  Visible/...  Thermal/...                    (the images, any sub-folders)
  idx/train_visible_{1..10}.txt  idx/train_thermal_{1..10}.txt
  idx/test_visible_{1..10}.txt   idx/test_thermal_{1..10}.txt

each list line being ``relative/path label``. One builder config per trial
(``regdb/trial1`` .. ``regdb/trial10``); splits ``train`` (labels re-indexed
0..N-1 by ascending list label) and ``test`` (label -1). ``person_id`` is the
list label; camera 1 is visible, camera 2 thermal; ``index`` is an image's
position in ascending path order within its (modality, person). Images are
stored as PNG (lossless; the originals are BMP). Only the images the lists
name are read (no folder is listed, so stray hidden or macOS ``._*`` files
are never seen); an empty list, or a line naming such a file, is an error
naming the list.
"""

import dataclasses
import os

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from datasets import common

MODALITIES = {'visible': ('rgb', 1), 'thermal': ('ir', 2)}
# Per trial and split: 206 ids x 10 images per modality on the real data.
EXPECTED_PER_MODALITY = 2_060

HOW_TO_GET = """\
RegDB is distributed by its authors on request (Nguyen et al., Sensors 2017,
"Person Recognition System Based on a Combination of Body Images from Visible
Light and Thermal Cameras"; the request form is on the Dongguk University
dataset page). The trial lists are those of the AGW baseline
(github.com/mangye16/Cross-Modal-Re-ID-baseline, idx/). Pass the folder as
--config.manual_dir=/path/to/RegDB, which must hold:
  Visible/, Thermal/ (the images)
  idx/{train,test}_{visible,thermal}_{1..10}.txt, lines "relative/path label\""""


class RegdbError(common.DatasetError):
  """The manual download is missing, incomplete or holds a bad file."""


def read_list(path: str) -> list[tuple[str, int]]:
  """(relative path, label) pairs of one index list."""
  return common.read_list(path, RegdbError, 'RegDB', HOW_TO_GET)


def _read_png(path: str) -> np.ndarray:
  from PIL import Image

  if not os.path.isfile(path):
    raise RegdbError(f'RegDB: image {path} (named in the index lists) is missing.')
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert('RGB'))
  except Exception as e:  # PIL raises several types for bad files
    raise RegdbError(
        f'RegDB: image {path} cannot be decoded ({e}); re-extract it from the archive.'
    ) from e


@dataclasses.dataclass
class RegdbConfig(tfds.core.BuilderConfig):
  trial: int = 1


class Regdb(tfds.core.GeneratorBasedBuilder):
  """RegDB visible-thermal person re-identification, one config per trial."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = HOW_TO_GET
  BUILDER_CONFIGS = [
      RegdbConfig(name=f'trial{t}', description=f'Trial {t} split.', trial=t) for t in range(1, 11)
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return common.reid_info(
        self,
        description='RegDB: 412 identities, 10 visible + 10 thermal images each.',
        homepage='http://dm.dongguk.edu/link.html',
        encoding_format='png',
    )

  def _split_generators(self, dl_manager):
    root = common.checked_manual_dir(dl_manager, RegdbError, 'RegDB', HOW_TO_GET)
    trial = self.builder_config.trial
    splits = {}
    for split in ('train', 'test'):
      lists = {
          m: read_list(os.path.join(root, 'idx', f'{split}_{m}_{trial}.txt')) for m in MODALITIES
      }
      for modality, pairs in lists.items():
        if len(pairs) != EXPECTED_PER_MODALITY:
          logging.warning(
              'RegDB trial %d %s split: %d %s images listed, the official lists have %d.',
              trial,
              split,
              len(pairs),
              modality,
              EXPECTED_PER_MODALITY,
          )
      splits[split] = self._generate_examples(root, lists, labelled=split == 'train')
    return splits

  def _generate_examples(self, root, lists, *, labelled):
    ids = sorted({label for pairs in lists.values() for _, label in pairs})
    for modality_name, pairs in lists.items():
      modality, camera = MODALITIES[modality_name]
      index_of = {}
      for pid in ids:
        paths = sorted(p for p, label in pairs if label == pid)
        index_of.update({p: i for i, p in enumerate(paths)})
      for path, pid in pairs:
        yield f'{modality_name}/{path}', {
            'image': _read_png(os.path.join(root, path)),
            'person_id': pid,
            'label': ids.index(pid) if labelled else -1,
            'camera': camera,
            'modality': modality,
            'index': index_of[path],
            'path': path,
        }
