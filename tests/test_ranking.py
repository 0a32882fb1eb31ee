"""The ranking kernel against a per-query numpy loop (AGW eval_regdb style)."""

import numpy as np
import pytest

from aligngan_jax.evaluation import ranking


def _numpy_reference(distmat, q_ids, g_ids, max_rank):
  cmc_sum, aps, inps = np.zeros(max_rank), [], []
  for i in range(len(q_ids)):
    order = np.argsort(distmat[i], kind='stable')
    matches = (g_ids[order] == q_ids[i]).astype(int)
    if not matches.any():
      continue
    cmc = matches.cumsum().clip(max=1)
    if len(cmc) < max_rank:
      cmc = np.concatenate([cmc, np.ones(max_rank - len(cmc))])
    cmc_sum += cmc[:max_rank]
    hits = matches.cumsum()
    pos = np.flatnonzero(matches)
    aps.append(np.mean(hits[pos] / (pos + 1)))
    inps.append(matches.sum() / (pos[-1] + 1))
  n = len(aps)
  return cmc_sum / n, np.mean(aps), np.mean(inps), n


@pytest.mark.parametrize('chunk_size', [1, 7, 256])
def test_matches_numpy_reference_with_ties_and_invalid_queries(chunk_size):
  rng = np.random.default_rng(0)
  q_ids = rng.integers(0, 12, size=37)
  g_ids = rng.integers(0, 10, size=50)       # ids 10, 11: no match in gallery
  distmat = np.round(rng.random((37, 50)), 1)  # many exact ties
  got = ranking.rank_metrics(distmat, q_ids, g_ids, max_rank=20,
                             chunk_size=chunk_size)
  cmc, m_ap, m_inp, n = _numpy_reference(distmat, q_ids, g_ids, 20)
  assert got['num_valid_queries'] == n < 37
  np.testing.assert_allclose(got['cmc'], cmc, rtol=1e-6)
  np.testing.assert_allclose(got['mAP'], m_ap, rtol=1e-5)
  np.testing.assert_allclose(got['mINP'], m_inp, rtol=1e-5)


def test_hand_computed_single_query():
  # Gallery ranked: [B, A, A, C, A] for query id A.
  distmat = np.array([[0.2, 0.1, 0.3, 0.4, 0.9]])
  g_ids = np.array([7, 3, 7, 5, 7])
  got = ranking.rank_metrics(distmat, np.array([7]), g_ids, max_rank=5)
  np.testing.assert_allclose(got['cmc'], [0, 1, 1, 1, 1])
  np.testing.assert_allclose(got['mAP'], (1 / 2 + 2 / 3 + 3 / 5) / 3)
  np.testing.assert_allclose(got['mINP'], 3 / 5)


def test_no_valid_query_raises():
  with pytest.raises(ValueError, match='no query has a true match'):
    ranking.rank_metrics(np.zeros((2, 3)), np.array([1, 2]), np.array([3, 3, 4]))


def test_unsupported_protocol_raises():
  with pytest.raises(NotImplementedError, match='sysu'):
    ranking.rank_metrics(np.zeros((1, 1)), [1], [1], protocol='sysu')
