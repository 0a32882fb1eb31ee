"""P x K sampler and train input pipeline invariants."""

import numpy as np
import pytest

from aligngan_jax import data as data_lib
from aligngan_jax import sampler as sampler_lib


def _labels():
  # 10 identities with uneven image counts; identity 9 has no IR image.
  rng = np.random.default_rng(0)
  rgb = np.concatenate([np.full(rng.integers(1, 7), i) for i in range(10)])
  ir = np.concatenate([np.full(rng.integers(1, 5), i) for i in range(9)])
  return rgb, ir


def _sampler(seed=0, p=4, k=3):
  rgb, ir = _labels()
  return rgb, ir, sampler_lib.PKSampler(rgb, ir, ids_per_batch=p, instances_per_id=k, seed=seed)


def test_batches_are_p_by_k_and_aligned_across_modalities():
  rgb, ir, sampler = _sampler()
  for step in range(7):
    b = sampler(step)
    assert b.rgb.shape == b.ir.shape == b.labels.shape == (12,)
    # Slot j of both modalities holds identity labels[j].
    np.testing.assert_array_equal(rgb[b.rgb], b.labels)
    np.testing.assert_array_equal(ir[b.ir], b.labels)
    runs = b.labels.reshape(4, 3)
    assert (runs == runs[:, :1]).all()  # K consecutive images per id
    assert len(set(runs[:, 0])) == 4  # P distinct identities
    assert 9 not in b.labels  # RGB-only identity excluded


def test_epoch_visits_each_identity_at_most_once():
  _, _, sampler = _sampler()
  assert sampler.batches_per_epoch == 2  # 9 paired ids // P=4
  seen = np.concatenate([sampler(s).labels[::3] for s in range(2)])
  assert len(set(seen)) == len(seen) == 8


def test_deterministic_from_seed_and_step_in_any_order():
  _, _, a = _sampler(seed=5)
  _, _, b = _sampler(seed=5)
  forward = [a(s) for s in range(6)]
  backward = [b(s) for s in reversed(range(6))][::-1]
  for x, y in zip(forward, backward):
    for field in ('rgb', 'ir', 'labels', 'rgb_flip', 'ir_flip'):
      np.testing.assert_array_equal(getattr(x, field), getattr(y, field))
  _, _, other = _sampler(seed=6)
  assert any(not np.array_equal(a(s).rgb, other(s).rgb) for s in range(6))
  assert not np.array_equal(a(0).rgb, a(2).rgb)


def test_process_slices_partition_the_global_batch():
  _, _, sampler = _sampler()
  b = sampler(3)
  parts = [b.process_slice(i, 3) for i in range(3)]
  np.testing.assert_array_equal(np.concatenate([p.rgb for p in parts]), b.rgb)
  np.testing.assert_array_equal(np.concatenate([p.labels for p in parts]), b.labels)
  with pytest.raises(ValueError, match='not divisible'):
    b.process_slice(0, 5)


def test_rgb_mono_draws_are_deterministic_with_the_configured_rates():
  rgb, ir = _labels()
  sampler = sampler_lib.PKSampler(
      rgb, ir, ids_per_batch=4, instances_per_id=2, seed=0, rgb_grey_prob=0.25, rgb_channel_prob=0.5
  )
  mono = np.concatenate([sampler(s).rgb_mono for s in range(400)])
  np.testing.assert_array_equal(sampler(7).rgb_mono, sampler(7).rgb_mono)
  assert set(np.unique(mono)) == {-1, 0, 1, 2, 3}
  rates = [np.mean(mono == -1), np.mean(mono == 3), np.mean((mono >= 0) & (mono < 3))]
  np.testing.assert_allclose(rates, [0.25, 0.25, 0.5], atol=0.04)
  off = sampler_lib.PKSampler(rgb, ir, ids_per_batch=4, instances_per_id=2, seed=0)
  assert (off(3).rgb_mono == -1).all()
  with pytest.raises(ValueError, match='sum to at most 1'):
    sampler_lib.PKSampler(
        rgb,
        ir,
        ids_per_batch=4,
        instances_per_id=2,
        seed=0,
        rgb_grey_prob=0.6,
        rgb_channel_prob=0.6,
    )


def test_mono_preprocessing_replicates_the_chosen_channel(tiny_records):
  from aligngan_jax import input_pipeline

  train, _ = tiny_records
  encoded = train.images[int(np.flatnonzero(train.modality == 0)[0])]
  colour = input_pipeline._preprocess(encoded, False, 16).numpy()
  # Luma weights sum to 1, so luma commutes with the [-1, 1] scaling.
  for mono, want in [
      (0, colour[..., 0]),
      (2, colour[..., 2]),
      (3, colour @ np.array([0.299, 0.587, 0.114])),
  ]:
    got = input_pipeline._preprocess(encoded, False, 16, mono).numpy()
    for c in range(3):
      np.testing.assert_allclose(got[..., c], want, atol=1e-5)


def test_too_few_identities_is_a_clear_error():
  rgb, ir = _labels()
  with pytest.raises(ValueError, match='ids_per_batch=20'):
    sampler_lib.PKSampler(rgb, ir, ids_per_batch=20, instances_per_id=2, seed=0)


def test_train_iterator_resumes_at_a_step_and_keeps_alignment(tiny_records):
  from aligngan_jax import input_pipeline

  train, _ = tiny_records
  rgb = train.select(train.modality == data_lib.RGB)
  ir = train.select(train.modality == data_lib.IR)
  sampler = sampler_lib.PKSampler(rgb.label, ir.label, ids_per_batch=4, instances_per_id=2, seed=0)
  kwargs = dict(image_size=16, num_steps=5, process_index=0, process_count=1)
  full = list(input_pipeline.create_train_iterator(rgb, ir, sampler, start_step=0, **kwargs))
  resumed = list(input_pipeline.create_train_iterator(rgb, ir, sampler, start_step=3, **kwargs))
  assert len(full) == 5 and len(resumed) == 2
  for a, b in zip(full[3:], resumed):
    for key in ('rgb', 'ir', 'labels'):
      np.testing.assert_array_equal(a[key], b[key])
  batch = full[0]
  assert batch['rgb'].shape == batch['ir'].shape == (8, 16, 16, 3)
  assert batch['rgb'].min() >= -1 and batch['rgb'].max() <= 1
  np.testing.assert_array_equal(batch['labels'], sampler(0).labels)
  # IR images are grey: three equal channels survive decoding and resizing.
  np.testing.assert_allclose(batch['ir'][..., 0], batch['ir'][..., 1], atol=0.03)
  # Two processes feed the two halves of the same global batch.
  halves = [
      next(
          input_pipeline.create_train_iterator(
              rgb,
              ir,
              sampler,
              start_step=0,
              image_size=16,
              num_steps=1,
              process_index=i,
              process_count=2,
          )
      )
      for i in range(2)
  ]
  np.testing.assert_array_equal(np.concatenate([h['rgb'] for h in halves]), full[0]['rgb'])


def test_images_decoded_once_give_the_same_batches(tiny_records):
  """decode_records keeps each resized image as uint8; batches drawn from it
  (flips and mono channels included) equal those decoded at every step."""
  from aligngan_jax import input_pipeline

  train, _ = tiny_records
  rgb = train.select(train.modality == data_lib.RGB)
  ir = train.select(train.modality == data_lib.IR)
  sampler = sampler_lib.PKSampler(
      rgb.label,
      ir.label,
      ids_per_batch=4,
      instances_per_id=2,
      seed=0,
      rgb_grey_prob=0.3,
      rgb_channel_prob=0.3,
  )
  kwargs = dict(image_size=16, start_step=0, num_steps=4, process_index=0, process_count=1)
  decoded = [input_pipeline.decode_records(r, 16) for r in (rgb, ir)]
  assert decoded[0].images.shape == (len(rgb), 16, 16, 3)
  assert decoded[0].images.dtype == np.uint8
  per_step = list(input_pipeline.create_train_iterator(rgb, ir, sampler, **kwargs))
  once = list(input_pipeline.create_train_iterator(*decoded, sampler, **kwargs))
  assert any(sampler(s).rgb_flip.any() and (sampler(s).rgb_mono >= 0).any() for s in range(4))
  for a, b in zip(per_step, once):
    for key in ('rgb', 'ir', 'labels'):
      np.testing.assert_array_equal(b[key], a[key])
  with pytest.raises(ValueError, match=r'not the load size \(32, 32\)'):
    next(input_pipeline.create_train_iterator(*decoded, sampler, **{**kwargs, 'image_size': 32}))


def test_in_memory_batches_equal_the_tf_data_ones(tiny_records):
  """data.Data (numpy, what a caller without TensorFlow hands the loop)
  makes the same training and evaluation batches as tf.data."""
  from aligngan_jax import input_pipeline

  train, test = tiny_records
  rgb, ir = (
      input_pipeline.decode_records(train.select(train.modality == m), 16)
      for m in (data_lib.RGB, data_lib.IR)
  )
  sampler = sampler_lib.PKSampler(
      rgb.label,
      ir.label,
      ids_per_batch=4,
      instances_per_id=2,
      seed=3,
      rgb_grey_prob=0.3,
      rgb_channel_prob=0.3,
  )
  memory = data_lib.Data(train, input_pipeline.decode_records(test, 16))
  got = list(memory.train_batches(rgb, ir, sampler, image_size=16, start_step=1, num_steps=4))
  want = list(
      input_pipeline.create_train_iterator(
          rgb,
          ir,
          sampler,
          image_size=16,
          start_step=1,
          num_steps=4,
          process_index=0,
          process_count=1,
      )
  )
  assert len(got) == len(want) == 3
  for a, b in zip(got, want):
    for key in ('rgb', 'ir', 'labels'):
      assert a[key].dtype == b[key].dtype
      np.testing.assert_array_equal(a[key], b[key])
  got = list(memory.eval_batches(memory.test, image_size=16, batch_size=8))
  want = list(
      input_pipeline.create_eval_iterator(
          test, image_size=16, batch_size=8, process_index=0, process_count=1
      )
  )
  assert len(got) == len(want) == -(-len(test) // 8)
  for a, b in zip(got, want):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['mask'], b['mask'])


def _official_identity_batches(rgb_labels, ir_labels, epochs, seed=0):
  """The official IdentitySampler loop (utils.py), rebuilt every epoch from
  the global NumPy RNG seeded once: its index lists, cut into batches of 32."""
  np.random.seed(seed)
  color_pos = [np.flatnonzero(rgb_labels == i) for i in range(int(rgb_labels.max()) + 1)]
  thermal_pos = [np.flatnonzero(ir_labels == i) for i in range(int(ir_labels.max()) + 1)]
  n = max(len(rgb_labels), len(ir_labels))
  batches = []
  for _ in range(epochs):
    uni_label = np.unique(rgb_labels)
    index1 = index2 = None
    for _ in range(int(n / (8 * 4)) + 1):
      batch_idx = np.random.choice(uni_label, 8, replace=False)
      for i in range(8):
        sample_color = np.random.choice(color_pos[batch_idx[i]], 4)
        sample_thermal = np.random.choice(thermal_pos[batch_idx[i]], 4)
        index1 = sample_color if index1 is None else np.hstack((index1, sample_color))
        index2 = sample_thermal if index2 is None else np.hstack((index2, sample_thermal))
    batches += [(index1[k : k + 32], index2[k : k + 32]) for k in range(0, len(index1), 32)]
  return batches


def test_identity_sampler_replays_the_official_stream():
  rng = np.random.default_rng(3)
  rgb_labels = np.sort(rng.integers(0, 12, 130))
  ir_labels = np.sort(np.concatenate([np.arange(12), rng.integers(0, 12, 40)]))
  want = _official_identity_batches(rgb_labels, ir_labels, epochs=2)
  sampler = sampler_lib.IdentitySampler(rgb_labels, ir_labels, seed=0)
  assert sampler.batches_per_epoch == int(130 / 32) + 1 == len(want) // 2
  # Sequentially, then from a resumed step (replayed), then backwards.
  for step in list(range(len(want))) + [7, 3, 9]:
    b = sampler(step)
    np.testing.assert_array_equal(b.rgb, want[step][0])
    np.testing.assert_array_equal(b.ir, want[step][1])
    np.testing.assert_array_equal(b.labels, rgb_labels[b.rgb])
    np.testing.assert_array_equal(b.labels, ir_labels[b.ir])
  with pytest.raises(ValueError, match='no IR'):
    sampler_lib.IdentitySampler(np.array([0, 1]), np.array([0, 0]))
