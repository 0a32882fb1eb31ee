"""Times the TFDS builders of SYSU-MM01, RegDB and LLCM and measures what
they write, on synthetic trees in each real layout (the real datasets are
license-gated and not on this machine).

  python bench/build_bench.py [--images=2000] [--height=288 --width=144]

Each tree holds about `--images` smooth JPEGs (RegDB: BMPs, as released) of
the given size; the build (list reading, decoding every image to check it,
TFRecord writing) is timed and extrapolated linearly to the real image
counts. Disk: the TFDS folder's size over the source images' size (SYSU-MM01
and LLCM store the original JPEG bytes, RegDB lossless PNGs of its BMPs).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import common  # bench/common.py: puts the repository root on sys.path

ROOT = common.ROOT
sys.path.insert(0, os.path.join(ROOT, 'tests'))

from absl import flags  # noqa: E402

from aligngan_jax import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer('images', 2000, 'Images per synthetic tree (about).')
flags.DEFINE_integer('height', 288, 'Image height (RegDB keeps its 128).')
flags.DEFINE_integer('width', 144, 'Image width (RegDB keeps its 64).')

# Real image counts (papers): SYSU-MM01 30,071 RGB + 15,792 IR; RegDB 412 ids
# x 10 x 2 (every trial config builds them all); LLCM 46,767.
REAL_IMAGES = {'sysu_mm01': 45_863, 'regdb/trial1': 8_240, 'llcm': 46_767}


def _du(path: str) -> int:
  return int(subprocess.check_output(['du', '-sb', path]).split()[0])


def _write(name: str, root: str, n: int):
  import dataset_fixtures as fx

  if name == 'sysu_mm01':
    ids = list(range(1, n // 30 + 2))  # ~30 images per id over 6 cameras
    images = {
        (cam, pid): [f'{k + 1:04d}.jpg' for k in range(5)] for pid in ids for cam in range(1, 7)
    }
    third = len(ids) // 3
    fx.write_sysu_tree(
        root,
        train_ids=ids[:third],
        val_ids=ids[third : 2 * third],
        test_ids=ids[2 * third :],
        images=images,
    )
  elif name == 'regdb/trial1':
    ids = list(range(1, n // 20 + 1))  # 10 visible + 10 thermal per id
    half = len(ids) // 2
    fx.write_regdb_tree(
        root,
        splits={1: {'train': ids[:half], 'test': ids[half:]}},
        images_per_id=10,
        size=(128, 64),
    )  # RegDB's 64x128 BMPs
  else:
    ids = list(range(1, n // 24 + 2))  # ~24 images per id
    half = len(ids) // 2
    fx.write_llcm_tree(
        root,
        splits={'train': ids[:half], 'test': ids[half:]},
        cameras={'vis': [1, 2, 3, 4, 5, 6], 'nir': [1, 2, 4, 5, 6, 7]},
        images_per_folder=2,
    )


def main(_):
  from absl import logging
  import tensorflow_datasets as tfds

  from aligngan_jax import input_pipeline
  import dataset_fixtures as fx
  import datasets  # noqa: F401  (registers the builders)

  tfds.disable_progress_bar()
  logging.set_verbosity(logging.WARNING)
  fx.IMAGE_SIZE = (FLAGS.height, FLAGS.width)
  print(common.machine_header(f'{FLAGS.height}x{FLAGS.width} JPEG sources'))
  print(
      f'{"dataset":<14}{"images":>8}{"build s":>9}{"images/s":>10}{"source MB":>11}'
      f'{"TFDS MB":>9}{"TFDS/src":>9}{"real images":>13}{"real build min":>16}'
  )
  for name in REAL_IMAGES:
    work = tempfile.mkdtemp()
    try:
      manual, data = os.path.join(work, 'manual'), os.path.join(work, 'tfds')
      _write(name, manual, FLAGS.images)
      count = sum(
          len(files)
          for folder, _, files in os.walk(manual)
          if os.path.basename(folder) not in ('idx', 'exp')
      )
      start = time.perf_counter()
      input_pipeline.get_builder(name, data_dir=data, manual_dir=manual)
      seconds = time.perf_counter() - start
      source = _du(manual)
      built = _du(data)
      rate = count / seconds
      print(
          f'{name:<14}{count:>8}{seconds:>9.1f}{rate:>10.0f}{source / 2**20:>11.1f}'
          f'{built / 2**20:>9.1f}{built / source:>9.2f}{REAL_IMAGES[name]:>13}'
          f'{REAL_IMAGES[name] / rate / 60:>16.1f}',
          flush=True,
      )
    finally:
      shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
  cli.run(main)
