"""Writers of small dataset trees in the real on-disk layouts (for tests)."""

import os

import numpy as np
from PIL import Image

# (height, width) of the fixture images; bench/build_bench.py raises it to
# photo size.
IMAGE_SIZE = (8, 4)


def write_jpeg(path: str, seed: int, size=None):
  """A valid 3-channel JPEG whose pixels depend on ``seed`` (smooth, so that
  large ones compress like photos)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  _smooth_image(seed, size or IMAGE_SIZE).save(path, format='JPEG', quality=90)


def _smooth_image(seed: int, size) -> Image.Image:
  height, width = size
  rng = np.random.default_rng(seed)
  coarse = rng.integers(0, 256, (max(1, height // 8), max(1, width // 8), 3), dtype=np.uint8)
  return Image.fromarray(coarse).resize((width, height), Image.BICUBIC)


def write_sysu_tree(root: str, *, train_ids, val_ids, test_ids, images) -> dict:
  """SYSU-MM01's layout: cam{c}/{pid:04d}/{name}.jpg and exp/*_id.txt.

  ``images``: {(camera, pid): [file names]} (names need not be contiguous,
  e.g. '0003.jpg', '0010.jpg'). Returns {(camera, pid): sorted names}.
  """
  os.makedirs(os.path.join(root, 'exp'), exist_ok=True)
  for name, ids in (('train_id', train_ids), ('val_id', val_ids), ('test_id', test_ids)):
    with open(os.path.join(root, 'exp', f'{name}.txt'), 'w') as f:
      f.write(','.join(str(i) for i in ids) + '\n')
  for cam in range(1, 7):
    os.makedirs(os.path.join(root, f'cam{cam}'), exist_ok=True)
  written = {}
  for (cam, pid), names in images.items():
    for name in names:
      write_jpeg(
          os.path.join(root, f'cam{cam}', f'{pid:04d}', name),
          seed=cam * 10_000 + pid * 10 + len(written),
      )
    written[(cam, pid)] = sorted(names)
  return written


def write_regdb_tree(root: str, *, splits: dict, images_per_id: int = 2, size=(8, 4)) -> dict:
  """RegDB's layout: Visible/ and Thermal/ BMP images plus AGW-style lists
  idx/{train,test}_{visible,thermal}_{trial}.txt ("relative/path label").

  ``splits``: {trial: {'train': [ids], 'test': [ids]}}. Every id gets
  ``images_per_id`` images per modality (listed in reverse name order, so the
  index must come from sorting). Returns {(trial, split, modality): lines}.
  """
  os.makedirs(os.path.join(root, 'idx'), exist_ok=True)
  all_ids = sorted({i for s in splits.values() for ids in s.values() for i in ids})
  for pid in all_ids:
    for folder in ('Visible', 'Thermal'):
      for k in range(images_per_id):
        path = os.path.join(root, folder, str(pid), f'{folder[0]}_{pid}_{k}.bmp')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _smooth_image(pid * 100 + k + (folder == 'Thermal'), size).save(path)
  written = {}
  for trial, by_split in splits.items():
    for split, ids in by_split.items():
      for modality, folder in (('visible', 'Visible'), ('thermal', 'Thermal')):
        lines = [
            (f'{folder}/{pid}/{folder[0]}_{pid}_{k}.bmp', pid)
            for pid in ids
            for k in reversed(range(images_per_id))
        ]
        with open(os.path.join(root, 'idx', f'{split}_{modality}_{trial}.txt'), 'w') as f:
          f.writelines(f'{p} {label}\n' for p, label in lines)
        written[(trial, split, modality)] = lines
  return written


def write_llcm_tree(root: str, *, splits: dict, cameras: dict, images_per_folder: int = 2) -> dict:
  """LLCM's layout: vis/<id>/<id>_c<cc>_s<..>_f<..>_vis.jpg (nir likewise)
  plus DEEN-style lists idx/{train,test}_{vis,nir}.txt ("relative/path label").

  ``splits``: {'train': [ids], 'test': [ids]}; ``cameras``: {'vis': [cams],
  'nir': [cams]}. Lists are written in reverse name order and label each
  image with its position among the split's ids (not the person id), so the
  builder must take order and identity from the file names. Returns
  {(split, modality): [relative paths]}.
  """
  os.makedirs(os.path.join(root, 'idx'), exist_ok=True)
  written = {}
  for split, ids in splits.items():
    for modality, cams in cameras.items():
      paths = []
      for pid in ids:
        for cam in cams:
          for k in range(images_per_folder):
            # Frame numbers descend with k: name order != write order.
            name = f'{pid:04d}_c{cam:02d}_s{100 + cam}_f{900 - k}_{modality}.jpg'
            path = f'{modality}/{pid:04d}/{name}'
            write_jpeg(os.path.join(root, path), seed=pid * 1000 + cam * 10 + k)
            paths.append(path)
      with open(os.path.join(root, 'idx', f'{split}_{modality}.txt'), 'w') as f:
        f.writelines(f'{p} {sorted(ids).index(int(p.split("/")[1]))}\n' for p in reversed(paths))
      written[(split, modality)] = paths
  return written
