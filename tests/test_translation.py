"""Diagnostic (e): translation error against the true infrared image."""

import numpy as np

from aligngan_jax.evaluation import translation


def _to_net(unit):
  """[0, 1] images -> the network range [-1, 1]."""
  return np.asarray(unit, np.float32) * 2 - 1


def _ssim_by_loops(x, y):
  """SSIM of two [H, W] images in [0, 1], window by window (Wang et al.
  2004, Gaussian 11 x 11, sigma 1.5, population statistics)."""
  r = np.arange(11) - 5.0
  g = np.exp(-(r**2) / (2 * 1.5**2))
  w = np.outer(g, g) / np.outer(g, g).sum()
  c1, c2 = 0.01**2, 0.03**2
  values = []
  for i in range(x.shape[0] - 10):
    for j in range(x.shape[1] - 10):
      a, b = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
      ma, mb = (w * a).sum(), (w * b).sum()
      va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
      cov = (w * (a - ma) * (b - mb)).sum()
      values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
  return float(np.mean(values))


def test_l1_and_ssim_of_hand_checkable_images():
  a = np.full((1, 16, 16, 3), 0.2)
  b = np.full((1, 16, 16, 3), 0.6)
  # L1 in [0, 1] units: |0.2 - 0.6|.
  np.testing.assert_allclose(translation.l1(_to_net(a), _to_net(b)), [0.4], atol=1e-5)
  # Constant images: no variance, so SSIM is the luminance term alone,
  # (2 ab + C1) / (a^2 + b^2 + C1).
  c1 = 0.01**2
  expected = (2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1)
  # (float32 E[x^2] - E[x]^2 leaves a variance of ~1e-8 against C2 = 9e-4).
  np.testing.assert_allclose(translation.ssim(_to_net(a), _to_net(b)), [expected], rtol=1e-4)
  # An image against itself: L1 0, SSIM 1.
  rng = np.random.default_rng(0)
  x = _to_net(rng.uniform(0, 1, (2, 16, 16, 3)))
  np.testing.assert_allclose(translation.l1(x, x), [0, 0], atol=1e-7)
  np.testing.assert_allclose(translation.ssim(x, x), [1, 1], atol=1e-5)


def test_ssim_matches_a_window_by_window_reference():
  rng = np.random.default_rng(1)
  truth = rng.uniform(0, 1, (2, 18, 15, 3))
  noisy = np.clip(truth + rng.normal(0, 0.2, truth.shape), 0, 1)
  got = translation.ssim(_to_net(noisy), _to_net(truth))
  want = [_ssim_by_loops(noisy[i].mean(-1), truth[i].mean(-1)) for i in range(2)]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  assert 0 < want[0] < 0.9  # the noise is visible to the measure


def test_linear_map_recovers_an_exact_linear_law_and_luminance_is_luma():
  rng = np.random.default_rng(2)
  rgb = rng.uniform(-1, 1, (3, 8, 8, 3)).astype(np.float32)
  law = np.array([0.5, -0.3, 0.2, 0.1])
  ir = np.repeat((rgb @ law[:3] + law[3])[..., None], 3, axis=-1)
  weights = translation.fit_linear_map(rgb, ir)
  np.testing.assert_allclose(weights, law, atol=1e-6)
  np.testing.assert_allclose(translation.apply_linear_map(rgb, weights), ir, atol=1e-5)
  pixel = np.array([[[[1.0, -1.0, 0.0]]]], np.float32)
  np.testing.assert_allclose(translation.luminance(pixel)[0, 0, 0], [0.299 - 0.587] * 3, atol=1e-6)


def test_truth_measures_a_translator_in_padded_batches_beside_the_references():
  rng = np.random.default_rng(3)
  train_rgb = _to_net(rng.uniform(0, 1, (4, 12, 12, 3)))
  # The world's infrared is the red channel; test pairs follow the same law.
  red = lambda rgb: np.repeat(rgb[..., :1], 3, axis=-1)
  test_rgb = _to_net(rng.uniform(0, 1, (5, 12, 12, 3)))
  truth = translation.Truth.from_pairs(train_rgb, red(train_rgb), test_rgb, red(test_rgb))
  shapes = []

  def perfect(batch):
    shapes.append(batch.shape)
    return red(batch)

  out = truth.measure(perfect, batch_size=2)
  assert shapes == [(2, 12, 12, 3)] * 3  # 5 images: the last batch padded
  assert out['num_images'] == 5
  np.testing.assert_allclose([out['l1'], out['ssim']], [0, 1], atol=1e-5)
  # The linear map finds the law; luminance does not.
  np.testing.assert_allclose([out['linear_l1'], out['linear_ssim']], [0, 1], atol=1e-4)
  assert out['luminance_l1'] > 0.05
  wrong = truth.measure(lambda b: -red(b), batch_size=2)
  assert wrong['l1'] > out['luminance_l1'] and wrong['ssim'] < 0.5
