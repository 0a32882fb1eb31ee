"""The data a run trains and evaluates on, held in memory, without TensorFlow.

`Records` is one split (images plus metadata). `Data` is what the training
loop takes from its caller: the train and test records, the infrared twins
of the synthetic worlds where they exist, and the batches made from them.
`Data` itself makes batches with numpy from decoded images (``[n, H, W, 3]``
uint8, at the trainer's `load_size`): a bench, a tool or a test hands the loop its data with no
TensorFlow installed. `input_pipeline.TFDSData` is the same interface over
the TFDS builders, with tf.data batches; main.py passes that one.

Both make the same values: a horizontal flip, an optional single colour
channel or luma (`sampler.PKBatch.rgb_mono`), then [-1, 1] scaling of the
0..255 levels, in float32 and in that order.
"""

import dataclasses
from typing import Iterator

import jax
import numpy as np

RGB, IR = 0, 1  # values of the `modality` field

# Rows: R, G, B, ITU-R 601 luma (PIL's convert('L')); see PKBatch.rgb_mono.
MONO_WEIGHTS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.299, 0.587, 0.114))


@dataclasses.dataclass(frozen=True)
class Records:
  """One split held in memory: images plus their metadata, sorted by
  (camera, person id, index, modality) so the order never depends on how
  the split was built."""

  # Object array of encoded image bytes, or [N, H, W, 3] uint8 once decoded.
  images: np.ndarray
  person_id: np.ndarray
  label: np.ndarray  # training label (0..classes-1); -1 on test splits
  camera: np.ndarray
  modality: np.ndarray  # RGB (0) or IR (1)
  index: np.ndarray  # position in its (modality, camera, id) folder
  path: np.ndarray

  def __len__(self):
    return len(self.person_id)

  def select(self, mask) -> 'Records':
    return Records(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))


def is_decoded(records: Records) -> bool:
  return records.images.ndim == 4


def modality_masks(records: Records) -> tuple[tuple[str, np.ndarray], ...]:
  """(('rgb', mask of the RGB records), ('ir', mask of the IR records)): the
  extractor each record goes through."""
  is_rgb = records.modality == RGB
  return ('rgb', is_rgb), ('ir', ~is_rgb)


def height_width(image_size) -> tuple[int, int]:
  """(height, width) of a load size: an int (square, AlignGAN's
  ``config.image_size``) or a (height, width) pair (AGW's 288 x 144)."""
  if isinstance(image_size, (int, np.integer)):
    return int(image_size), int(image_size)
  height, width = image_size
  return int(height), int(width)


def eval_layout(num_records: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """[num_batches, batch_size] record indices (padding repeats the last
  record) and the matching validity mask."""
  num_batches = max(1, -(-num_records // batch_size))
  flat = np.arange(num_batches * batch_size)
  mask = flat < num_records
  flat = np.minimum(flat, num_records - 1)
  return flat.reshape(num_batches, batch_size), mask.reshape(num_batches, batch_size)


def grid_pairs(records: Records, num_people: int) -> tuple[np.ndarray, np.ndarray]:
  """Record indices (rgb [n], ir [n]) of the first RGB and the first IR image
  of up to ``num_people`` identities seen in both modalities (on the test
  split: people the generators never saw), for translation grids."""
  rgb, ir = [], []
  for pid in np.unique(records.person_id):
    of_id = records.person_id == pid
    r = np.flatnonzero(of_id & (records.modality == RGB))
    i = np.flatnonzero(of_id & (records.modality == IR))
    if len(r) and len(i):
      rgb.append(r[0])
      ir.append(i[0])
    if len(rgb) == num_people:
      break
  return np.asarray(rgb, np.int64), np.asarray(ir, np.int64)


def augment(levels: np.ndarray, flip: np.ndarray, mono: np.ndarray | None = None) -> np.ndarray:
  """A batch [b, H, W, 3] of 0..255 levels -> per-image flip, optional single
  channel or luma (``mono``: -1 keeps the colour), [-1, 1] float32."""
  images = np.where(flip[:, None, None, None], levels[:, :, ::-1], levels)
  images = images.astype(np.float32)
  if mono is not None and np.any(mono >= 0):
    weights = np.asarray(MONO_WEIGHTS, np.float32)[np.maximum(mono, 0)][:, None, None]
    single = (
        images[..., 0] * weights[..., 0]
        + images[..., 1] * weights[..., 1]
        + images[..., 2] * weights[..., 2]
    )
    images = np.where(
        (mono >= 0)[:, None, None, None], np.repeat(single[..., None], 3, axis=-1), images
    )
  return images / np.float32(127.5) - np.float32(1.0)


class Data:
  """Train and test `Records` with decoded images, and the batches made from
  them (numpy). ``paired``: {'train', 'test'}: (the split's RGB records,
  their infrared twins in the same order), where the world has twins.

  The loop calls `training_split`, `train_batches`, `eval_batches`,
  `grid_images` and `paired_images`; `input_pipeline.TFDSData` overrides
  them with tf.data versions.
  """

  def __init__(self, train: Records, test: Records, paired: dict | None = None):
    self.train, self.test, self._paired = train, test, paired

  def twins(self) -> dict | None:
    """{'train', 'test'}: (RGB records, their infrared twins), or None."""
    return self._paired

  def _check_decoded(self, records: Records, image_size):
    height, width = height_width(image_size)
    if not is_decoded(records) or records.images.shape[1:3] != (height, width):
      raise ValueError(
          f'In-memory data holds images of shape {records.images.shape[1:]}; the '
          f"run needs decoded [n, {height}, {width}, 3] uint8 images (the trainer's "
          "load_size: config.image_size, or its group's input_size)."
      )

  def training_split(self, image_size, decode_once: bool = True) -> tuple[Records, Records]:
    """(RGB, IR) records of the training split, as batches read them."""
    del decode_once  # held decoded already
    self._check_decoded(self.train, image_size)
    return (
        self.train.select(self.train.modality == RGB),
        self.train.select(self.train.modality == IR),
    )

  def train_batches(
      self, rgb: Records, ir: Records, sampler, *, image_size, start_step: int, num_steps: int
  ) -> Iterator[dict]:
    """This process's rows of {'rgb', 'ir': [b, H, W, 3] in [-1, 1],
    'labels': [b] int32} for steps ``start_step .. num_steps-1``."""
    del image_size
    for step in range(start_step, num_steps):
      b = sampler(step).process_slice(jax.process_index(), jax.process_count())
      yield {
          'rgb': augment(rgb.images[b.rgb], b.rgb_flip, b.rgb_mono),
          'ir': augment(ir.images[b.ir], b.ir_flip),
          'labels': b.labels.astype(np.int32),
      }

  def eval_batches(self, records: Records, *, image_size, batch_size: int) -> Iterator[dict]:
    """Unflipped batches over ``records`` in order: this process's rows of
    {'image': [b, H, W, 3], 'mask': [b]}; the last batch padded and masked."""
    self._check_decoded(records, image_size)
    count = jax.process_count()
    if batch_size % count:
      raise ValueError(
          f'config.eval_batch_size={batch_size} is not divisible by {count} processes.'
      )
    local = batch_size // count
    cols = slice(jax.process_index() * local, (jax.process_index() + 1) * local)
    indices, mask = eval_layout(len(records), batch_size)
    for rows, valid in zip(indices[:, cols], mask[:, cols]):
      yield {'image': augment(records.images[rows], np.zeros(len(rows), bool)), 'mask': valid}

  def load_images(self, records: Records, image_size) -> np.ndarray:
    """All images of ``records`` ([n, H, W, 3] in [-1, 1]) in one batch."""
    self._check_decoded(records, image_size)
    return augment(records.images, np.zeros(len(records), bool))

  def grid_images(self, num_people: int, image_size):
    """The test RGB and IR images of `grid_pairs`, each [n, H, W, 3] in
    [-1, 1], and the RGB images' infrared twins where the data has them
    (else None)."""
    test = self.test
    rgb, ir = grid_pairs(test, num_people)
    true_ir = None
    if self.twins() is not None:
      rgb_records, twins = self.twins()['test']
      where = {path: i for i, path in enumerate(rgb_records.path)}
      true_ir = self.load_images(
          twins.select(np.asarray([where[p] for p in test.path[rgb]], np.int64)), image_size
      )
    return (
        self.load_images(test.select(rgb), image_size),
        self.load_images(test.select(ir), image_size),
        true_ir,
    )

  def paired_images(self, image_size) -> tuple[np.ndarray, ...] | None:
    """(train RGB, their twins, test RGB, their twins), each [n, H, W, 3] in
    [-1, 1], or None when the data has no infrared twins (every real
    dataset)."""
    paired = self.twins()
    if paired is None:
      return None
    return tuple(
        self.load_images(records, image_size)
        for split in ('train', 'test')
        for records in paired[split]
    )
