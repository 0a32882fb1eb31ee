"""k-reciprocal re-ranking against a loop transcription of the published algorithm."""

import numpy as np
import pytest

from aligngan_jax.evaluation import rerank


def _loop_rerank(q, g, k1, k2, lam):
  """Zhong et al.'s re_ranking, one item at a time (stable neighbour order)."""
  x = np.concatenate([q, g]).astype(np.float64)
  num_query, num = len(q), len(q) + len(g)
  original = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
  original = original / original.max(axis=1, keepdims=True)
  initial_rank = np.argsort(original, axis=1, kind='stable')
  v = np.zeros((num, num))
  for i in range(num):
    forward = initial_rank[i, : k1 + 1]
    backward = initial_rank[forward, : k1 + 1]
    k_recip = forward[np.where(backward == i)[0]]
    expansion = k_recip
    half = int(np.around(k1 / 2.0)) + 1
    for c in k_recip:
      c_forward = initial_rank[c, :half]
      c_backward = initial_rank[c_forward, :half]
      c_recip = c_forward[np.where(c_backward == c)[0]]
      if len(np.intersect1d(c_recip, k_recip)) > 2.0 / 3 * len(c_recip):
        expansion = np.append(expansion, c_recip)
    expansion = np.unique(expansion)
    weight = np.exp(-original[i, expansion])
    v[i, expansion] = weight / weight.sum()
  if k2 != 1:
    v = np.stack([v[initial_rank[i, :k2]].mean(0) for i in range(num)])
  jaccard = np.zeros((num_query, num))
  for i in range(num_query):
    shared = np.minimum(v[i][None, :], v).sum(1)
    jaccard[i] = 1 - shared / (2.0 - shared)
  final = jaccard * (1 - lam) + original[:num_query] * lam
  return final[:, num_query:]


@pytest.mark.parametrize('k1,k2,lam', [(20, 6, 0.3), (5, 1, 0.5), (8, 3, 0.0)])
def test_matches_loop_reference(k1, k2, lam):
  rng = np.random.default_rng(k1)
  # Clustered features so that reciprocal neighbourhoods are non-trivial.
  centres = rng.normal(size=(6, 16))
  q = centres[rng.integers(0, 6, 25)] + 0.6 * rng.normal(size=(25, 16))
  g = centres[rng.integers(0, 6, 40)] + 0.6 * rng.normal(size=(40, 16))
  got = np.asarray(rerank.k_reciprocal_rerank(q, g, k1=k1, k2=k2, lambda_value=lam))
  want = _loop_rerank(q, g, k1, k2, lam)
  assert got.shape == (25, 40)
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_rejects_k1_larger_than_the_data():
  with pytest.raises(ValueError, match='k1=20'):
    rerank.k_reciprocal_rerank(np.zeros((3, 4)), np.ones((4, 4)), k1=20)
