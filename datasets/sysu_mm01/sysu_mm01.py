"""TFDS builder for SYSU-MM01, read from the user's download (``manual_dir``).

The dataset is license-gated: its authors send it on request. Expected
layout under ``manual_dir`` (the official archive, unpacked)::

  cam1/ ... cam6/<4-digit person id>/<4-digit>.jpg
  exp/train_id.txt  exp/val_id.txt  exp/test_id.txt   (one line: 1,2,3,...)

Splits (spec §4): ``train`` holds the train + val identities (395 classes on
the real data), labels re-indexed 0..N-1 by ascending person id, as the
official code; ``test`` holds the test identities (96), all six cameras,
label -1. RGB cameras 1, 2, 4, 5; IR cameras 3, 6. ``index`` is an image's
position in ascending file-name order within its (camera, id) folder: what
the official evaluation kit's ``rand_perm_cam.mat`` permutations index.

Where the download differs from the archive: hidden files and macOS
AppleDouble files (``._0001.jpg``, left by copies made on a Mac) are not
images; they are skipped (one warning per split) and do not count for
``index``. A listed id with no image in any camera is left out with a
warning; the official code enumerates the listed ids, but here the train
labels run 0..N-1 over the ids that have images, so that N (the classifier
size) counts only classes that can be trained (on the real data every
listed id has images, and the two agree). A split left with no image at
all stops the build.
"""

import os

from absl import logging
import tensorflow_datasets as tfds

from datasets import common

RGB_CAMERAS, IR_CAMERAS = (1, 2, 4, 5), (3, 6)
CAMERAS = (1, 2, 3, 4, 5, 6)
SPLIT_FILES = {'train': ('train_id.txt', 'val_id.txt'), 'test': ('test_id.txt',)}
# Counts of the real dataset, checked at build time (a mismatch warns).
EXPECTED = {('train', 'rgb'): 22_258, ('train', 'ir'): 11_909, ('test', 'ir'): 3_803}

HOW_TO_GET = """\
SYSU-MM01 is distributed by its authors on request (Wu et al., ICCV 2017;
see https://github.com/wuancong/SYSU-MM01 for the request procedure and the
license). Unpack the archive and pass its folder as
--config.manual_dir=/path/to/SYSU-MM01, which must hold:
  cam1/ .. cam6/<4-digit person id>/<4-digit>.jpg
  exp/train_id.txt, exp/val_id.txt, exp/test_id.txt"""


class SysuMm01Error(common.DatasetError):
  """The manual download is missing, incomplete or holds a bad file."""


def read_ids(path: str) -> list[int]:
  """Person ids of an official split file: comma-separated on one line."""
  if not os.path.isfile(path):
    raise SysuMm01Error(f'SYSU-MM01: split file {path} is missing.\n{HOW_TO_GET}')
  with open(path) as f:
    text = f.read().strip()
  try:
    return sorted(int(x) for x in text.replace('\n', ',').split(',') if x.strip())
  except ValueError as e:
    raise SysuMm01Error(
        f'SYSU-MM01: {path} should hold comma-separated person ids; could not read it ({e}).'
    ) from e


def check_camera_folders(root: str) -> str:
  for cam in CAMERAS:
    if not os.path.isdir(os.path.join(root, f'cam{cam}')):
      raise SysuMm01Error(
          f'SYSU-MM01: camera folder {os.path.join(root, f"cam{cam}")} '
          f'is missing.\n{HOW_TO_GET}'
      )
  return root


def list_images(root: str, cam: int, pid: int) -> tuple[list[str], list[str]]:
  """File names of one (camera, id) folder in ascending order (none if the
  person was not seen by that camera), and the paths of the hidden and
  AppleDouble files left out (read, they would stop the build; counted,
  they would shift every ``index``)."""
  folder = os.path.join(root, f'cam{cam}', f'{pid:04d}')
  if not os.path.isdir(folder):
    return [], []
  names = sorted(os.listdir(folder))
  skipped = [os.path.join(folder, f) for f in names if common.is_hidden(f)]
  images = [f for f in names if not common.is_hidden(f) and f.lower().endswith('.jpg')]
  return images, skipped


def _ids_text(ids: list[int]) -> str:
  shown = ', '.join(f'{i:04d}' for i in ids[:5])
  return shown + (', ...' if len(ids) > 5 else '')


def read_split(root: str, split: str) -> tuple[list[int], dict]:
  """(ids with images, {(camera, id): file names}) of one split; warns of
  skipped files and of listed ids without images, raises if none has any."""
  files = [os.path.join(root, 'exp', f) for f in SPLIT_FILES[split]]
  listed = sorted(set(i for f in files for i in read_ids(f)))
  images, skipped = {}, []
  for pid in listed:
    for cam in CAMERAS:
      names, hidden = list_images(root, cam, pid)
      skipped += hidden
      if names:
        images[(cam, pid)] = names
  common.log_skipped(f'SYSU-MM01 {split} split', skipped)
  ids = sorted({pid for _, pid in images})
  if not ids:
    raise SysuMm01Error(
        f'SYSU-MM01 {split} split: no images under {root}/cam1..cam6/<id>/ for '
        f'the {len(listed)} ids listed in {", ".join(files)}; re-extract the archive.'
    )
  missing = sorted(set(listed) - set(ids))
  if missing:
    labels = (
        f', and the labels 0..{len(ids) - 1} run over the {len(ids)} ids that have images'
        if split == 'train'
        else ''
    )
    logging.warning(
        'SYSU-MM01 %s split: %d listed %s no images: %s (no folder '
        '%s/cam<1..6>/<id>/ holds a .jpg); left out of the split%s.',
        split,
        len(missing),
        'ids have' if len(missing) > 1 else 'id has',
        _ids_text(missing),
        root,
        labels,
    )
  return ids, images


class SysuMm01(tfds.core.GeneratorBasedBuilder):
  """SYSU-MM01 visible-infrared person re-identification (manual download)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = HOW_TO_GET

  def _info(self) -> tfds.core.DatasetInfo:
    return common.reid_info(
        self,
        description='SYSU-MM01: 491 identities, 4 RGB and 2 IR cameras.',
        homepage='https://github.com/wuancong/SYSU-MM01',
        encoding_format='jpeg',
    )

  def _split_generators(self, dl_manager):
    root = check_camera_folders(
        common.checked_manual_dir(dl_manager, SysuMm01Error, 'SYSU-MM01', HOW_TO_GET)
    )
    splits = {}
    for split in SPLIT_FILES:
      ids, images = read_split(root, split)
      self._check_counts(root, split, images)
      splits[split] = self._generate_examples(root, ids, images, labelled=split == 'train')
    return splits

  def _check_counts(self, root, split, images):
    for modality, cams in (('rgb', RGB_CAMERAS), ('ir', IR_CAMERAS)):
      expected = EXPECTED.get((split, modality))
      if expected is None:
        continue
      found = sum(len(names) for (c, _), names in images.items() if c in cams)
      if found != expected:
        logging.warning(
            'SYSU-MM01 %s split: %d %s images found, the official '
            'dataset has %d. Check %s against the original archive.',
            split,
            found,
            modality.upper(),
            expected,
            root,
        )

  def _generate_examples(self, root, ids, images, *, labelled):
    for label, pid in enumerate(ids):
      for cam in CAMERAS:
        for index, name in enumerate(images.get((cam, pid), ())):
          path = f'cam{cam}/{pid:04d}/{name}'
          yield path, {
              'image': common.read_encoded(os.path.join(root, path), SysuMm01Error, 'SYSU-MM01'),
              'person_id': pid,
              'label': label if labelled else -1,
              'camera': cam,
              'modality': 'ir' if cam in IR_CAMERAS else 'rgb',
              'index': index,
              'path': path,
          }
