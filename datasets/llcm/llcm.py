"""TFDS builder for LLCM, read from the user's download (``manual_dir``).

LLCM (Zhang and Wang, CVPR 2023, "Diverse Embedding Expansion Network and
Low-Light Cross-Modality Benchmark for Visible-Infrared Person
Re-identification") is distributed by its authors on request. Its nine
cameras each record a visible (VIS) and a near-infrared (NIR) stream.
Expected layout under ``manual_dir`` (the released archive, unpacked)::

  vis/<person id>/<id>_c<camera>_s<...>_f<...>_vis.jpg
  nir/<person id>/<id>_c<camera>_s<...>_f<...>_nir.jpg
  idx/train_vis.txt  idx/train_nir.txt  idx/test_vis.txt  idx/test_nir.txt

each list line being ``relative/path label``. The lists define the splits;
person id and camera come from the file name (``0001_c03_...`` is person 1,
camera 3), as in DEEN's code, so the lists' label column may be any
numbering. Splits: ``train`` (labels re-indexed 0..N-1 by ascending person
id over both modalities), ``test`` (label -1). ``camera`` is 1..9, shared by
both modalities; ``index`` is an image's position in ascending file-name
order within its (modality, camera, person). Images are stored as the
original JPEG bytes. DEEN's preprocessing script (which copies the test
images into ``test_vis/cam<c>/<id>/`` folders) is not needed. Only the
images the lists name are read (no folder is listed, so stray hidden or
macOS ``._*`` files are never seen); an empty list, or a line naming such a
file, is an error naming the list.
"""

import collections
import os
import re

from absl import logging
import tensorflow_datasets as tfds

from datasets import common

MODALITIES = {'vis': 'rgb', 'nir': 'ir'}
SPLITS = ('train', 'test')
_FILE_NAME = re.compile(r'^(\d+)_c(\d+)_')

HOW_TO_GET = """\
LLCM is distributed by its authors on request (Zhang and Wang, CVPR 2023; see
https://github.com/ZYK100/LLCM for the dataset release agreement and where to
send it). Unpack the archive and pass its folder as
--config.manual_dir=/path/to/LLCM, which must hold:
  vis/<id>/<id>_c<cam>_..._vis.jpg, nir/<id>/<id>_c<cam>_..._nir.jpg
  idx/{train,test}_{vis,nir}.txt, lines "relative/path label\""""


class LlcmError(common.DatasetError):
  """The manual download is missing, incomplete or holds a bad file."""


def parse_name(path: str, list_path: str) -> tuple[int, int]:
  """(person id, camera) from an LLCM file name such as 0001_c03_s..._vis.jpg."""
  match = _FILE_NAME.match(os.path.basename(path))
  if not match:
    raise LlcmError(
        f'LLCM: {list_path} names {path}, whose file name does not '
        'start with <person id>_c<camera>_ as LLCM file names do.'
    )
  return int(match.group(1)), int(match.group(2))


def read_split(root: str, split: str) -> dict[str, list[tuple[str, int, int]]]:
  """{modality: [(relative path, person id, camera)]} from the split's lists."""
  out = {}
  for name, modality in MODALITIES.items():
    list_path = os.path.join(root, 'idx', f'{split}_{name}.txt')
    pairs = common.read_list(list_path, LlcmError, 'LLCM', HOW_TO_GET)
    out[modality] = [(p, *parse_name(p, list_path)) for p, _ in pairs]
  return out


class Llcm(tfds.core.GeneratorBasedBuilder):
  """LLCM visible-infrared person re-identification (manual download)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = HOW_TO_GET

  def _info(self) -> tfds.core.DatasetInfo:
    return common.reid_info(
        self,
        description='LLCM: low-light visible-infrared re-id, 9 cameras, 1,064 identities.',
        homepage='https://github.com/ZYK100/LLCM',
        encoding_format='jpeg',
    )

  def _split_generators(self, dl_manager):
    root = common.checked_manual_dir(dl_manager, LlcmError, 'LLCM', HOW_TO_GET)
    splits = {}
    for split in SPLITS:
      items = read_split(root, split)
      for modality, rows in items.items():
        logging.info(
            'LLCM %s split: %d %s images of %d identities listed.',
            split,
            len(rows),
            modality.upper(),
            len({pid for _, pid, _ in rows}),
        )
      splits[split] = self._generate_examples(root, items, labelled=split == 'train')
    return splits

  def _generate_examples(self, root, items, *, labelled):
    ids = sorted({pid for rows in items.values() for _, pid, _ in rows})
    label_of = {pid: i for i, pid in enumerate(ids)}
    for modality, rows in items.items():
      folders = collections.defaultdict(list)
      for path, pid, cam in rows:
        folders[(pid, cam)].append(path)
      index_of = {
          p: i
          for paths in folders.values()
          for i, p in enumerate(sorted(paths, key=os.path.basename))
      }
      for path, pid, cam in rows:
        yield f'{modality}/{path}', {
            'image': common.read_encoded(os.path.join(root, path), LlcmError, 'LLCM'),
            'person_id': pid,
            'label': label_of[pid] if labelled else -1,
            'camera': cam,
            'modality': modality,
            'index': index_of[path],
            'path': path,
        }
