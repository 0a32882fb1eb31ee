"""Training input throughput: images/s per host CPU core at the official sizes.

  python bench/input_bench.py                 # 1 core and all cores
  python bench/input_bench.py --cores=1,4,8

Feature batches of 18 ids x 4 images per modality (144 images, what every
stage-1 and stage-3 iteration loads), 128x128 outputs, through
`input_pipeline.create_train_iterator` exactly as training calls it. The
images are JPEGs at SYSU-MM01-like sizes (RGB crops 256-576 px high, IR
192-384, person aspect ~0.42; smooth colour fields with edges and noise,
quality 90), held in memory like the TFDS records. Each row runs in its own
process pinned to that many cores (`os.sched_setaffinity`, before
TensorFlow starts its thread pools). ``--decode_once`` rows first decode
and resize every image once (`input_pipeline.decode_records`) and then read
uint8 arrays per step; the one-time cost is printed too.

The table ends with the cores each stage needs at the issue-15 step-time
targets (15 / 25 / 50 ms for stages 1 / 2 / 3) from the 1-core rate.
"""

import io
import os
import time

from absl import flags
import common  # bench/common.py: puts the repository root on sys.path

from aligngan_jax import cli

FLAGS = flags.FLAGS
flags.DEFINE_list('cores', ['1', str(len(os.sched_getaffinity(0)))], 'Cores per row.')
flags.DEFINE_integer('ids', 60, 'Identities in the in-memory training set.')
flags.DEFINE_integer('per_id', 8, 'Images per identity and modality.')
flags.DEFINE_integer('steps', 30, 'Timed batches (after 3 untimed).')
flags.DEFINE_string('_child', '', 'Internal: "cores,decode_once".')

# Images per iteration (both modalities) and the step-time targets.
_STAGES = {1: (144, 15.0), 2: (32, 25.0), 3: (176, 50.0)}


def _jpeg(rng, height, width) -> bytes:
  import numpy as np
  from PIL import Image

  coarse = rng.uniform(0, 255, (6, 3, 3))
  image = Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BICUBIC)
  pixels = np.asarray(image, np.float32)
  pixels[height // 3 : height // 3 + 4] = 20.0  # an edge or two
  pixels += rng.normal(0, 12, pixels.shape)  # texture and noise
  out = io.BytesIO()
  Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, 'JPEG', quality=90)
  return out.getvalue()


def _records(modality: int, heights: tuple[int, int]):
  import numpy as np

  from aligngan_jax import input_pipeline

  rng = np.random.default_rng(modality)
  n = FLAGS.ids * FLAGS.per_id
  labels = np.repeat(np.arange(FLAGS.ids), FLAGS.per_id)
  sizes = rng.integers(*heights, n)
  images = np.empty(n, object)
  images[:] = [_jpeg(rng, h, int(h * 0.42)) for h in sizes]
  zeros = np.zeros(n, np.int64)
  return input_pipeline.Records(
      images=images,
      person_id=labels,
      label=labels,
      camera=zeros,
      modality=zeros + modality,
      index=zeros,
      path=np.asarray([''] * n),
  )


def _child(cores: int, decode_once: bool) -> dict:
  os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:cores]))
  from aligngan_jax import input_pipeline
  from aligngan_jax import sampler as sampler_lib

  rgb, ir = _records(0, (256, 577)), _records(1, (192, 385))
  encoded_mb = sum(len(x) for x in (*rgb.images, *ir.images)) / 2**20
  decode_s = 0.0
  if decode_once:
    start = time.perf_counter()
    rgb = input_pipeline.decode_records(rgb, 128)
    ir = input_pipeline.decode_records(ir, 128)
    decode_s = time.perf_counter() - start
  sampler = sampler_lib.PKSampler(rgb.label, ir.label, ids_per_batch=18, instances_per_id=4, seed=0)
  batches = input_pipeline.create_train_iterator(
      rgb,
      ir,
      sampler,
      image_size=128,
      start_step=0,
      num_steps=FLAGS.steps + 3,
      process_index=0,
      process_count=1,
  )
  for _ in range(3):
    next(batches)
  start = time.perf_counter()
  for _ in range(FLAGS.steps):
    batch = next(batches)
  seconds = time.perf_counter() - start
  assert batch['rgb'].shape == (72, 128, 128, 3)
  images = 2 * len(rgb) if decode_once else 0
  return {
      'cores': cores,
      'decode_once': decode_once,
      'images_per_s': FLAGS.steps * 144 / seconds,
      'decode_images_per_s': images / decode_s if decode_s else 0.0,
      'encoded_kb': 1024 * encoded_mb / (2 * len(rgb)),
  }


def main(argv):
  del argv
  if FLAGS._child:
    cores, once = FLAGS._child.split(',')
    common.print_result(_child(int(cores), once == '1'))
    return
  print(
      common.machine_header(
          f'feature batch 18 x 4 x 2 modalities -> 128x128; {FLAGS.ids * FLAGS.per_id} '
          'images per modality in memory',
          machine=False,
      )
  )
  print(f'{"input":<22}{"cores":>6}{"img/s":>9}{"img/s/core":>12}{"one-time decode":>17}')
  per_core = {}
  for once in (False, True):
    for cores in FLAGS.cores:
      r = common.run_child(__file__, f'{cores},{int(once)}')
      if isinstance(r, str):
        print(r)
        continue
      name = 'decoded once, uint8' if once else 'JPEG decode per step'
      rate = r['images_per_s'] / r['cores']
      per_core.setdefault(name, rate if r['cores'] == 1 else None)
      decode = (
          f'{r["decode_images_per_s"]:.0f} img/s' if once else f'({r["encoded_kb"]:.0f} KB/JPEG)'
      )
      print(
          f'{name:<22}{r["cores"]:>6}{r["images_per_s"]:>9.0f}{rate:>12.0f}{decode:>17}', flush=True
      )
  for name, rate in per_core.items():
    if rate:
      need = ', '.join(f'stage {s} {n / (ms / 1e3) / rate:.1f}' for s, (n, ms) in _STAGES.items())
      print(f'# cores needed at 15 / 25 / 50 ms ({name}, 1-core rate): {need}')


if __name__ == '__main__':
  cli.run(main)
