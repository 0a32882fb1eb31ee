"""Identity-balanced P x K sampling, as a pure function of (seed, step).

The official `UniformSampler` shuffles all identities once per epoch, draws
K images per identity, and cuts the list into batches of P identities; the
RGB and IR samplers share their seeds, so both batches of an iteration hold
the same identities in the same order (spec §3). Here the same scheme is a
function of the step number, so a resumed run sees exactly the batches an
uninterrupted run would, and every process can compute the global batch and
keep its own slice. No TensorFlow: `input_pipeline` wraps this in tf.data.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class PKBatch:
  """Indices of one global batch: slot j of `rgb` and `ir` is identity
  `labels[j]`; identities come in runs of K."""

  rgb: np.ndarray  # [P*K] indices into the RGB records
  ir: np.ndarray  # [P*K] indices into the IR records
  labels: np.ndarray  # [P*K] training labels
  rgb_flip: np.ndarray  # [P*K] bool: flip the RGB image horizontally
  ir_flip: np.ndarray  # [P*K] bool
  # [P*K] int8: -1 keeps the RGB image's colour; 0, 1, 2 replace it by its
  # R, G or B channel on all three channels, 3 by its luma (grey). Off by
  # default (see docs/decisions.md).
  rgb_mono: np.ndarray

  def process_slice(self, process_index: int, process_count: int) -> 'PKBatch':
    """The rows this JAX process feeds (contiguous, equal-sized)."""
    n = len(self.labels)
    if n % process_count:
      raise ValueError(f'Global batch of {n} is not divisible by {process_count} processes.')
    s = slice(process_index * n // process_count, (process_index + 1) * n // process_count)
    return PKBatch(*(getattr(self, f.name)[s] for f in dataclasses.fields(self)))


class PKSampler:
  """Draws aligned RGB/IR P x K batches; see the module docstring.

  Args:
    rgb_labels: [N_rgb] training label of every RGB record.
    ir_labels: [N_ir] training label of every IR record.
    ids_per_batch: P.
    instances_per_id: K, drawn without replacement when an identity has at
      least K images in that modality, with replacement otherwise.
    seed: the data seed.
    rgb_grey_prob: probability of a grey RGB image; rgb_channel_prob: of an
      RGB image replaced by one random colour channel (channel augmentation).
      Neither is in the official code, which only flips; see
      docs/decisions.md.
  """

  def __init__(
      self,
      rgb_labels,
      ir_labels,
      *,
      ids_per_batch: int,
      instances_per_id: int,
      seed: int,
      rgb_grey_prob: float = 0.0,
      rgb_channel_prob: float = 0.0,
  ):
    if rgb_grey_prob < 0 or rgb_channel_prob < 0 or rgb_grey_prob + rgb_channel_prob > 1:
      raise ValueError(
          f'rgb_grey_prob={rgb_grey_prob} and rgb_channel_prob='
          f'{rgb_channel_prob} must be >= 0 and sum to at most 1.'
      )
    rgb_labels, ir_labels = np.asarray(rgb_labels), np.asarray(ir_labels)
    # Only identities seen in both modalities can be paired.
    self.labels = np.intersect1d(rgb_labels, ir_labels)
    if len(self.labels) < ids_per_batch:
      raise ValueError(
          f'P x K sampling needs ids_per_batch={ids_per_batch} identities with '
          f'both RGB and IR images, but the training split has '
          f'{len(self.labels)}; lower config.ids_per_batch.'
      )
    self._rgb = [np.flatnonzero(rgb_labels == l) for l in self.labels]
    self._ir = [np.flatnonzero(ir_labels == l) for l in self.labels]
    self.ids_per_batch = ids_per_batch
    self.instances_per_id = instances_per_id
    self.seed = seed
    self.rgb_grey_prob = rgb_grey_prob
    self.rgb_channel_prob = rgb_channel_prob

  @property
  def batch_size(self) -> int:
    """Images per modality in a global batch (P x K)."""
    return self.ids_per_batch * self.instances_per_id

  @property
  def batches_per_epoch(self) -> int:
    return len(self.labels) // self.ids_per_batch

  def __call__(self, step: int) -> PKBatch:
    """The global batch of training step ``step`` (0-based)."""
    epoch, position = divmod(int(step), self.batches_per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.labels))
    chosen = order[position * self.ids_per_batch : (position + 1) * self.ids_per_batch]
    rng = np.random.default_rng([self.seed, epoch, position, 1])
    k = self.instances_per_id

    def draw(pool):
      return rng.choice(pool, size=k, replace=len(pool) < k)

    rgb = np.concatenate([draw(self._rgb[c]) for c in chosen])
    ir = np.concatenate([draw(self._ir[c]) for c in chosen])
    flips = rng.random((2, len(rgb))) < 0.5
    u = rng.random(len(rgb))
    channel = rng.integers(0, 3, len(rgb))
    mono = np.where(
        u < self.rgb_grey_prob,
        3,
        np.where(u < self.rgb_grey_prob + self.rgb_channel_prob, channel, -1),
    ).astype(np.int8)
    return PKBatch(
        rgb=rgb,
        ir=ir,
        labels=np.repeat(self.labels[chosen], k),
        rgb_flip=flips[0],
        ir_flip=flips[1],
        rgb_mono=mono,
    )


class IdentitySampler:
  """The official AGW / CAJ ``IdentitySampler`` (mangye16/Cross-Modal-Re-ID-
  baseline ``utils.py``; baselines_reference.md §3), as a function of the
  step: one ``np.random.RandomState(seed)`` stream from the start of
  training, as the official main process draws it after ``set_seed``.

  Each epoch holds ``int(max(N_rgb, N_ir) / (P K)) + 1`` batches (the larger
  modality sets its length); each batch draws P identities of the RGB
  labels without replacement (new ones for every batch, no epoch
  permutation), then for each identity in order K RGB and K IR positions
  with replacement. Labels must be 0..n-1. ``sampler(step)`` replays the
  stream up to ``step`` (once; sequential steps continue from a cache), so
  a resumed run gets the batches an uninterrupted one would. Returns a
  `PKBatch` without flips or mono channels (the official augmentations draw
  those from other generators).
  """

  def __init__(
      self,
      rgb_labels,
      ir_labels,
      *,
      ids_per_batch: int = 8,
      instances_per_id: int = 4,
      seed: int = 0,
  ):
    rgb_labels, ir_labels = np.asarray(rgb_labels), np.asarray(ir_labels)
    self.ids_per_batch, self.instances_per_id, self.seed = ids_per_batch, instances_per_id, seed
    self.labels = np.unique(rgb_labels)
    self._rgb = {int(l): np.flatnonzero(rgb_labels == l) for l in self.labels}
    self._ir = {int(l): np.flatnonzero(ir_labels == l) for l in self.labels}
    missing = [int(l) for l in self.labels if not len(self._ir[int(l)])]
    if missing:
      raise ValueError(
          f'IdentitySampler: identities {missing[:5]} have RGB but no IR '
          'images (the official sampler draws both for every identity).'
      )
    self.batches_per_epoch = (
        int(max(len(rgb_labels), len(ir_labels)) / (ids_per_batch * instances_per_id)) + 1
    )
    self._rng, self._next = None, None

  @property
  def batch_size(self) -> int:
    return self.ids_per_batch * self.instances_per_id

  def _draw(self, rng) -> PKBatch:
    chosen = rng.choice(self.labels, self.ids_per_batch, replace=False)
    rgb, ir = [], []
    for label in chosen:
      rgb.append(rng.choice(self._rgb[int(label)], self.instances_per_id))
      ir.append(rng.choice(self._ir[int(label)], self.instances_per_id))
    n = self.batch_size
    no = np.zeros(n, bool)
    return PKBatch(
        rgb=np.concatenate(rgb),
        ir=np.concatenate(ir),
        labels=np.repeat(chosen, self.instances_per_id),
        rgb_flip=no,
        ir_flip=no.copy(),
        rgb_mono=np.full(n, -1, np.int8),
    )

  def __call__(self, step: int) -> PKBatch:
    step = int(step)
    if self._next is None or step < self._next:
      self._rng, self._next = np.random.RandomState(self.seed), 0
    while self._next < step:
      self._draw(self._rng)
      self._next += 1
    self._next += 1
    return self._draw(self._rng)
