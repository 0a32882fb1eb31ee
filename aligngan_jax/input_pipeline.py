"""tf.data input: TFDS records -> aligned RGB/IR P x K batches, eval batches.

TensorFlow lives here (and in `datasets/`) only. Every iterator yields numpy
dicts holding this process's rows of a global batch; `sharding.shard_batch`
turns them into global `jax.Array`s. Preprocessing follows spec §3: bicubic
(antialiased, as PIL) resize to the trainer's load size (`data.height_width`:
a square `image_size`, or AGW's 288 x 144), rounding to uint8 as
PIL does, a random horizontal flip (training only), and [-1, 1] scaling.
"""

import dataclasses
import time
from typing import Iterator

from absl import logging
import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from aligngan_jax import data as data_lib
from aligngan_jax import distributed
from aligngan_jax import sampler as sampler_lib
from aligngan_jax.data import MONO_WEIGHTS
from aligngan_jax.data import RGB
from aligngan_jax.data import Records
from aligngan_jax.data import eval_layout
from aligngan_jax.data import height_width
from aligngan_jax.data import is_decoded


def get_builder(dataset: str, *, data_dir=None, manual_dir=None):
  """The prepared TFDS builder of ``dataset`` (built on first use).

  The project's builders must be registered first (``import datasets`` from
  the repository root, as main.py and the tests do).
  """
  from datasets import common

  try:
    builder = tfds.builder(dataset, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise common.DatasetError(
        f'config.dataset={dataset!r} is not a registered TFDS dataset. The '
        "project's builders register on `import datasets`; known here: "
        'synthetic_vireid/{tiny,demo}[_learnable], sysu_mm01, regdb/trial{1..10}, llcm.'
    ) from e
  common.remove_stale_builds(builder.data_path.parent)  # left by killed builds
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def load_split(builder, split: str) -> Records:
  """Reads a split into memory without decoding its images."""
  ds = builder.as_dataset(
      split=split, shuffle_files=False, decoders={'image': tfds.decode.SkipDecoding()}
  )
  columns = {f.name: [] for f in dataclasses.fields(Records)}
  for ex in tfds.as_numpy(ds):
    columns['images'].append(ex['image'])
    for key in ('person_id', 'label', 'camera', 'modality', 'index', 'path'):
      columns[key].append(ex[key])
  arrays = {k: np.asarray(v, dtype=object if k == 'images' else None) for k, v in columns.items()}
  arrays['path'] = np.asarray([p.decode() if isinstance(p, bytes) else p for p in arrays['path']])
  if not len(arrays['person_id']):
    from datasets import common

    raise common.DatasetError(
        f'Split {split!r} of {builder.info.full_name} is empty (in {builder.data_dir}).'
    )
  # Modality last: LLCM's cameras record both (elsewhere it follows camera).
  order = np.lexsort((arrays['modality'], arrays['index'], arrays['person_id'], arrays['camera']))
  return Records(**{k: v[order] for k, v in arrays.items()})


def dataset_name(config) -> str:
  """The TFDS name to build: RegDB has one builder config per trial
  (``--config.trial=N`` picks ``regdb/trialN``)."""
  if config.dataset == 'regdb':
    return f'regdb/trial{config.get("trial", 1)}'
  return config.dataset


def load_data(config):
  """(train, test) Records. With several processes, process 0 prepares the
  TFDS dataset first and the others then read it (no two builds racing in a
  shared data_dir)."""

  def prepare():
    return get_builder(dataset_name(config), data_dir=config.data_dir, manual_dir=config.manual_dir)

  if jax.process_index() == 0:
    builder = prepare()
  distributed.barrier('dataset prepared')
  if jax.process_index() != 0:
    builder = prepare()
  train = load_split(builder, 'train')
  test = load_split(builder, 'test')
  return train, test


# The synthetic builder's infrared twins of the RGB images of train and test
# (measurement only); real datasets have none.
PAIRED_IR_SPLITS = {'train': 'train_paired_ir', 'test': 'test_paired_ir'}


def load_paired_ir(config, train: Records, test: Records) -> dict | None:
  """{'train', 'test'}: (RGB records of the split, their infrared twins in
  the same order), or None when the dataset has no twins (every real one).
  Twins are matched to RGB images by ``path``."""
  builder = get_builder(
      dataset_name(config), data_dir=config.data_dir, manual_dir=config.manual_dir
  )
  if not all(split in builder.info.splits for split in PAIRED_IR_SPLITS.values()):
    return None
  out = {}
  for name, records in (('train', train), ('test', test)):
    rgb = records.select(records.modality == RGB)
    twins = load_split(builder, PAIRED_IR_SPLITS[name])
    where = {path: i for i, path in enumerate(twins.path)}
    missing = [path for path in rgb.path if path not in where]
    if missing:
      from datasets import common

      raise common.DatasetError(
          f'{builder.info.full_name}: split {PAIRED_IR_SPLITS[name]} has no infrared '
          f'twin of {len(missing)} RGB images of {name}, e.g. {missing[0]}; '
          f'rebuild the dataset (delete {builder.data_dir}).'
      )
    out[name] = (rgb, twins.select(np.asarray([where[p] for p in rgb.path], np.int64)))
  return out


def _decode_resize(encoded, image_size):
  """Encoded bytes -> [H, W, 3] float32 holding integers 0..255 (as PIL)."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image = tf.image.resize(image, height_width(image_size), method='bicubic', antialias=True)
  return tf.clip_by_value(tf.round(image), 0.0, 255.0)


def _augment(images, flip, mono=None):
  """A batch [b, H, W, 3] of 0..255 levels -> per-image flip, optional single
  channel or luma (``mono``: PKBatch.rgb_mono, -1 none), [-1, 1]. Each pass
  over the batch costs (this is the per-step host work), so the flip runs
  on the narrow input and the mono branch only when some image needs it."""
  images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
  images = tf.cast(images, tf.float32)
  if mono is not None:
    mono = tf.cast(mono, tf.int32)

    def to_mono(images):
      weights = tf.gather(tf.constant(MONO_WEIGHTS), tf.maximum(mono, 0))[:, None, None]
      single = (
          images[..., 0] * weights[..., 0]
          + images[..., 1] * weights[..., 1]
          + images[..., 2] * weights[..., 2]
      )
      return tf.where(
          (mono >= 0)[:, None, None, None], tf.repeat(single[..., None], 3, axis=-1), images
      )

    images = tf.cond(tf.reduce_any(mono >= 0), lambda: to_mono(images), lambda: images)
  return images / 127.5 - 1.0


def _preprocess(encoded, flip, image_size, mono=-1):
  """One image, as a training batch would hold it."""
  mono = None if isinstance(mono, int) and mono < 0 else tf.reshape(mono, [1])
  return _augment(_decode_resize(encoded, image_size)[None], tf.reshape(flip, [1]), mono)[0]


def training_records(
    rgb: Records, ir: Records, *, image_size, decode_once: bool
) -> tuple[Records, Records]:
  """The training loops' (rgb, ir): decoded once (`decode_records`) when
  ``config.decode_once``, else as read (decoded at every step)."""
  if not decode_once:
    return rgb, ir
  start = time.perf_counter()
  rgb, ir = decode_records(rgb, image_size), decode_records(ir, image_size)
  logging.info(
      'Decoded %d training images once in %.1f s (%.2f GB of uint8 in '
      'host memory; config.decode_once=False decodes per step).',
      len(rgb) + len(ir),
      time.perf_counter() - start,
      (rgb.images.nbytes + ir.images.nbytes) / 1e9,
  )
  return rgb, ir


def decode_records(records: Records, image_size) -> Records:
  """Decodes and resizes every image once: [N, H, W, 3] uint8 in host memory
  (H * W * 3 bytes each: 1.7 GB for SYSU-MM01's 34k training images at
  128). Training batches then cost a gather, a flip and a scale instead of a
  JPEG decode and an antialiased bicubic resize per image and step, with
  the same values (the resize already rounded to uint8 levels)."""
  ds = (
      tf.data.Dataset.from_tensor_slices(tf.constant(records.images))
      .map(
          lambda x: tf.cast(_decode_resize(x, image_size), tf.uint8),
          num_parallel_calls=tf.data.AUTOTUNE,
          deterministic=True,
      )
      .batch(256)
      .with_options(_options())
  )
  decoded = np.concatenate(list(ds.as_numpy_iterator()))
  return dataclasses.replace(records, images=decoded)


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = 8
  return options


def create_train_iterator(
    rgb: Records,
    ir: Records,
    sampler: sampler_lib.PKSampler,
    *,
    image_size,
    start_step: int,
    num_steps: int,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict]:
  """Batches for steps ``start_step .. num_steps-1``: this process's rows of
  {'rgb': [b,H,W,3], 'ir': [b,H,W,3], 'labels': [b]} (float32 in [-1, 1])."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  local = sampler.batch_size // process_count

  def step_indices():
    for step in range(start_step, num_steps):
      b = sampler(step).process_slice(process_index, process_count)
      yield b.rgb, b.ir, b.labels, b.rgb_flip, b.ir_flip, b.rgb_mono

  vector = lambda dtype: tf.TensorSpec([local], dtype)
  ds = tf.data.Dataset.from_generator(
      step_indices,
      output_signature=(
          vector(tf.int64),
          vector(tf.int64),
          vector(tf.int64),
          vector(tf.bool),
          vector(tf.bool),
          vector(tf.int8),
      ),
  )
  for records in (rgb, ir):
    if is_decoded(records) and records.images.shape[1:3] != height_width(image_size):
      raise ValueError(
          f'Decoded images are {records.images.shape[1:3]}, not the load size '
          f'{height_width(image_size)} (config.image_size, or the trainer '
          "group's input_size)."
      )

  def table(records):
    if not is_decoded(records):
      return tf.constant(records.images)
    # Decoded images are read in place: a tf.constant would copy the whole
    # array (1.7 GB for SYSU-MM01) for every iterator.
    images = records.images
    return lambda index: tf.ensure_shape(
        tf.numpy_function(lambda i: images[i], [index], tf.uint8, stateful=False),
        [None, *images.shape[1:]],
    )

  rgb_images, ir_images = table(rgb), table(ir)

  def levels(records, images, index):
    """Image(s) as 0..255 levels: gathered if decoded once, else decoded."""
    if is_decoded(records):
      return images(index)
    return _decode_resize(tf.gather(images, index), image_size)

  def augment(rgb_levels, ir_levels, label, rgb_flip, ir_flip, rgb_mono):
    return {
        'rgb': _augment(rgb_levels, rgb_flip, rgb_mono),
        'ir': _augment(ir_levels, ir_flip),
        'labels': tf.cast(label, tf.int32),
    }

  def load(r, i, *rest):
    return (levels(rgb, rgb_images, r), levels(ir, ir_images, i), *rest)

  parallel = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if is_decoded(rgb) and is_decoded(ir):
    # One element per step: whole-batch gathers, flips and scaling.
    ds = ds.map(load, **parallel).map(augment, **parallel)
  else:
    # Decoding is per image: one element per image, then batched.
    ds = (
        ds.unbatch()
        .map(load, **parallel)
        .batch(local, drop_remainder=True)
        .map(augment, **parallel)
    )
  ds = ds.prefetch(2).with_options(_options())
  return ds.as_numpy_iterator()


def create_eval_iterator(
    records: Records,
    *,
    image_size,
    batch_size: int,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict]:
  """Deterministic, unflipped batches over ``records`` in order.

  Yields this process's rows of each global batch of ``batch_size``:
  {'image': [b,H,W,3], 'mask': [b]}; the last global batch is padded and its
  padding masked out.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if batch_size % process_count:
    raise ValueError(
        f'config.eval_batch_size={batch_size} is not divisible by {process_count} processes.'
    )
  local = batch_size // process_count
  indices, mask = eval_layout(len(records), batch_size)
  cols = slice(process_index * local, (process_index + 1) * local)
  images = tf.constant(records.images)
  ds = tf.data.Dataset.from_tensor_slices((indices[:, cols].reshape(-1), mask[:, cols].reshape(-1)))
  ds = (
      ds.map(
          lambda i, m: {'image': _preprocess(tf.gather(images, i), False, image_size), 'mask': m},
          num_parallel_calls=tf.data.AUTOTUNE,
          deterministic=True,
      )
      .batch(local, drop_remainder=True)
      .prefetch(2)
      .with_options(_options())
  )
  return ds.as_numpy_iterator()


class TFDSData(data_lib.Data):
  """`data.Data` over a TFDS builder (``config.dataset``): encoded images
  read into memory, batches by tf.data (decoded once per run when
  ``config.decode_once``, else at every step). What main.py passes to
  the training loop."""

  def __init__(self, config, train: Records, test: Records):
    super().__init__(train, test)
    self._config, self._twins_read = config, False

  @classmethod
  def load(cls, config) -> 'TFDSData':
    return cls(config, *load_data(config))

  def twins(self):
    # Read on first use: only runs that translate measure against them.
    if not self._twins_read:
      self._paired = load_paired_ir(self._config, self.train, self.test)
      self._twins_read = True
    return self._paired

  def training_split(self, image_size, decode_once=True):
    train = self.train
    return training_records(
        train.select(train.modality == RGB),
        train.select(train.modality == data_lib.IR),
        image_size=image_size,
        decode_once=decode_once,
    )

  def train_batches(self, rgb, ir, sampler, *, image_size, start_step, num_steps):
    return create_train_iterator(
        rgb, ir, sampler, image_size=image_size, start_step=start_step, num_steps=num_steps
    )

  def eval_batches(self, records, *, image_size, batch_size):
    return create_eval_iterator(records, image_size=image_size, batch_size=batch_size)

  def load_images(self, records, image_size):
    batch = next(
        create_eval_iterator(
            records,
            image_size=image_size,
            batch_size=len(records),
            process_index=0,
            process_count=1,
        )
    )
    return batch['image']
