"""Losses against straightforward numpy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aligngan_jax import losses


def _numpy_triplet(e1, e2, e3, y1, y2, y3, margin):
  def cos(a, b):
    return (a @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))

  s12, s13 = cos(e1, e2), cos(e1, e3)
  total = 0.0
  for i in range(len(e1)):
    pos = [s12[i, j] for j in range(len(e2)) if y2[j] == y1[i]]
    neg = [s13[i, j] for j in range(len(e3)) if y3[j] != y1[i]]
    total += max(0.0, max(neg) - min(pos) + margin)
  return total / len(e1)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_cross_modal_triplet_matches_numpy(seed):
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(4), 3)  # P=4, K=3, aligned modalities
  e1, e2, e3 = (rng.normal(size=(12, 8)).astype(np.float32) for _ in range(3))
  for margin in (1.0, 0.3):
    got = losses.cross_modal_triplet(e1, e2, e3, labels, labels, labels, margin=margin)
    want = _numpy_triplet(e1, e2, e3, labels, labels, labels, margin)
    np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-6)


def test_triplet_hand_computed_case():
  # Anchor 0 (label 0) = (1, 0). Set 2: same-label rows at 0 and 90 degrees
  # -> hardest positive cos = 0. Set 3: other label at 60 degrees -> 0.5.
  e1 = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
  e2 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]], np.float32)
  e3 = np.array([[1.0, 0.0], [0.5, np.sqrt(3) / 2], [0.0, 1.0], [0.0, -1.0]], np.float32)
  y1 = np.array([0, 1])
  y2 = np.array([0, 0, 1, 1])
  y3 = np.array([0, 1, 1, 0])
  # Anchor 0: hard_p = min(1, 0) = 0; hard_n = max over y3 != 0 of (0.5, 0) = 0.5
  #   -> 0.5 - 0 + 1 = 1.5.
  # Anchor 1 = (0, 1): positives (1,1)/sqrt2 -> 0.707, (-1,0) -> 0; hard_p = 0;
  #   negatives (1,0) -> 0, (0,-1) -> -1; hard_n = 0 -> 0 - 0 + 1 = 1.
  got = losses.cross_modal_triplet(e1, e2, e3, y1, y2, y3, margin=1.0)
  np.testing.assert_allclose(float(got), (1.5 + 1.0) / 2, rtol=1e-6)


def test_triplet_gradient_flows_only_through_selected_entries():
  rng = np.random.default_rng(3)
  labels = np.repeat(np.arange(3), 2)
  e1, e2, e3 = (rng.normal(size=(6, 4)).astype(np.float32) for _ in range(3))
  grad = jax.grad(
      lambda b: losses.cross_modal_triplet(e1, b, e3, labels, labels, labels, margin=5.0)
  )(jnp.asarray(e2))
  # With a large margin every anchor is active; each anchor selects exactly one
  # positive row of e2, so rows of e2 never selected get exactly zero gradient.
  s12 = np.asarray(losses.cosine_similarity(e1, e2))
  selected = {
      int(np.flatnonzero(labels == labels[i])[np.argmin(s12[i, labels == labels[i]])])
      for i in range(6)
  }
  for j in range(6):
    assert (np.abs(np.asarray(grad[j])).sum() > 0) == (j in selected)


def test_cross_entropy_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(5, 7)).astype(np.float32)
  labels = rng.integers(0, 7, size=5)
  shifted = logits - logits.max(axis=1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  want = -log_probs[np.arange(5), labels].mean()
  np.testing.assert_allclose(float(losses.cross_entropy(logits, labels)), want, rtol=1e-6)


def torch_official_triplet(x, t, kind, alpha=1.0, gamma=1.0, square=True):
  """AGW's TripletLoss_WRT ('wrt'), CAJ's TripletLoss_ADP ('adp') and the base
  method's OriTripletLoss ('ori') as the official code computes them
  (baselines_reference.md §2), on torch tensors (differentiable)."""
  import torch

  n = x.shape[0]
  pow_ = torch.pow(x, 2).sum(dim=1, keepdim=True).expand(n, n)
  dist = (pow_ + pow_.t()).addmm(x, x.t(), beta=1, alpha=-2).clamp(min=1e-12).sqrt()
  is_pos = t.expand(n, n).eq(t.expand(n, n).t()).float()
  is_neg = t.expand(n, n).ne(t.expand(n, n).t()).float()

  def softmax_weights(d, mask):
    max_v = torch.max(d * mask, dim=1, keepdim=True)[0]
    diff = d - max_v
    z = torch.sum(torch.exp(diff) * mask, dim=1, keepdim=True) + 1e-6
    return torch.exp(diff) * mask / z

  d_ap, d_an = dist * is_pos, dist * is_neg
  scale = alpha if kind == 'adp' else 1.0
  pos = torch.sum(d_ap * softmax_weights(d_ap * scale, is_pos), dim=1)
  neg = torch.sum(d_an * softmax_weights(-d_an * scale, is_neg), dim=1)
  soft_margin = torch.nn.SoftMarginLoss()
  if kind == 'wrt':
    return soft_margin(neg - pos, torch.ones_like(pos))
  if kind == 'ori':  # OriTripletLoss, the base method's: batch-hard, margin 0.3
    ap = torch.cat([dist[i][is_pos[i] > 0].max().unsqueeze(0) for i in range(n)])
    an = torch.cat([dist[i][is_neg[i] > 0].min().unsqueeze(0) for i in range(n)])
    return torch.nn.MarginRankingLoss(margin=0.3)(an, ap, torch.ones_like(an))
  if not square:
    return soft_margin(gamma * (neg - pos), torch.ones_like(pos))
  diff_pow = torch.clamp_max(torch.pow(pos - neg, 2) * gamma, max=88)
  y1 = (pos > neg).float()
  return soft_margin(diff_pow, -(y1 + y1 - 1))


def _torch_official(features, labels, kind, **kwargs):
  """The official loss and its gradient with respect to the features."""
  import torch

  x = torch.tensor(features, requires_grad=True)
  loss = torch_official_triplet(x, torch.tensor(labels), kind, **kwargs)
  loss.backward()
  return loss.item(), x.grad.numpy()


@pytest.mark.parametrize('scale', [0.3, 1.0, 4.0])
def test_agw_and_caj_triplets_equal_the_official_pytorch_code(scale):
  """Values and gradients (through the softmax weights, the self distance
  among the positives, the un-stabilised negatives) against PyTorch."""
  rng = np.random.default_rng(int(scale * 10))
  labels = np.repeat(np.arange(4), 4)
  features = (scale * np.abs(rng.normal(size=(16, 32)))).astype(np.float32)
  cases = {
      'wrt': (losses.weighted_regularized_triplet, {}),
      'adp': (losses.adaptive_triplet, dict(alpha=1.0, gamma=1.0, square=True)),
      'adp_plain': (losses.adaptive_triplet, dict(alpha=2.0, gamma=0.5, square=False)),
      'ori': (losses.batch_hard_triplet, {}),
  }
  for name, (fn, kwargs) in cases.items():
    loss, grad = jax.value_and_grad(lambda f, fn=fn, kw=kwargs: fn(f, labels, **kw))(features)
    kind = name if name in ('wrt', 'ori') else 'adp'
    want, want_grad = _torch_official(features, labels, kind, **kwargs)
    np.testing.assert_allclose(float(loss), want, rtol=2e-5, err_msg=name)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=2e-4, atol=1e-6, err_msg=name)


def test_official_triplet_quirks_at_large_distances():
  """Far apart, the un-stabilised negative weights sum to almost 0 (d- ->
  0), and CAJ's squared term saturates at the clamp: the loss is exactly
  log1p(exp(88)) in float32 with zero gradient."""
  labels = np.repeat(np.arange(3), 2)
  rng = np.random.default_rng(0)
  far = (60.0 * rng.normal(size=(6, 8))).astype(np.float32)  # every pair far apart
  dist = np.asarray(losses.euclidean_distances(far))
  assert dist.min() > 0  # the clamp keeps the diagonal off 0
  d_pos, d_neg = losses._weighted_pairs(far, labels)
  assert float(np.max(d_neg)) < 1e-6 < float(np.min(d_pos))
  loss, grad = jax.value_and_grad(lambda f: losses.adaptive_triplet(f, labels))(far)
  assert float(loss) == pytest.approx(float(np.log1p(np.exp(np.float32(88.0)))), rel=1e-6)
  assert not np.any(np.asarray(grad))
