"""The jnp ranking kernel against the per-query NumPy loop and hand-worked cases."""

import numpy as np
import pytest

from aligngan_jax.evaluation import numpy_reference
from aligngan_jax.evaluation import ranking


def _random_case(rng, num_query, num_gallery, num_ids, decimals):
  q_ids = rng.integers(0, num_ids + 2, size=num_query)  # some ids never in gallery
  g_ids = rng.integers(0, num_ids, size=num_gallery)
  q_cams = rng.choice([3, 6], size=num_query)
  g_cams = rng.choice([1, 2, 4, 5], size=num_gallery)
  distmat = rng.random((num_query, num_gallery))
  if decimals is not None:
    distmat = np.round(distmat, decimals)  # exact ties: the exact path
  return distmat, q_ids, g_ids, q_cams, g_cams


def _assert_same(got, want):
  assert got['num_valid_queries'] == want['num_valid_queries']
  assert got['cmc'].dtype == np.float32 and got['cmc'].shape == want['cmc'].shape
  np.testing.assert_allclose(got['cmc'], want['cmc'], atol=1e-6)
  np.testing.assert_allclose(got['mAP'], want['mAP'], rtol=1e-5)
  np.testing.assert_allclose(got['mINP'], want['mINP'], rtol=1e-5)


@pytest.mark.parametrize('ties', [True, False])
@pytest.mark.parametrize('protocol', ['sysu', 'regdb', 'llcm'])
def test_kernel_matches_numpy_loop_on_many_random_cases(protocol, ties, monkeypatch):
  rng = np.random.default_rng(0)
  for case in range(20):
    # Small galleries (shorter than max_rank), few or many ids (per-id
    # repeats: identity- vs image-level CMC differ; more than 32 ids: several
    # words of the identity bitmask); coarse distances (ties) or continuous
    # ones. Every other case sweeps 4-column blocks, so ties are broken by
    # the sweep's thresholds as well as by the exact path.
    # Shapes come from a few buckets (each distinct shape is a compile):
    # one query or many, galleries of one, shorter than max_rank, longer.
    monkeypatch.setattr(ranking, '_SWEEP_BLOCK', 4 if case % 2 else 64)
    num_query = int(rng.choice([1, 17, 59]))
    num_gallery = int(rng.choice([1, 19, 44 if ties else 119]))
    args = _random_case(
        rng,
        num_query,
        num_gallery,
        int(rng.integers(1, 15 if case % 4 < 2 else 80)),
        decimals=int(rng.integers(1, 3)) if ties else None,
    )
    if protocol == 'llcm':
      # Shared camera numbers, so the own-identity-own-camera rule bites.
      args = args[:3] + (rng.integers(1, 4, num_query), rng.integers(1, 4, num_gallery))
    chunk = int(rng.choice([4, 19]))
    try:
      want = numpy_reference.rank_metrics_loop(*args, protocol=protocol, max_rank=20)
    except ValueError:
      with pytest.raises(ValueError, match='no query has a true match'):
        ranking.rank_metrics(*args, protocol=protocol, chunk_size=chunk)
      continue
    _assert_same(
        ranking.rank_metrics(*args, protocol=protocol, max_rank=20, chunk_size=chunk), want
    )


def test_kernel_matches_numpy_loop_on_sysu_shaped_gallery():
  # Multi-shot-like: 10 images per (id, camera), so each query has many matches.
  rng = np.random.default_rng(1)
  ids = np.arange(30)
  g_ids = np.repeat(ids, 40)
  g_cams = np.tile(np.repeat([1, 2, 4, 5], 10), 30)
  q_ids = rng.choice(ids, 200)
  q_cams = rng.choice([3, 6], 200)
  distmat = rng.random((200, len(g_ids))).astype(np.float32)
  for protocol in ('sysu', 'regdb', 'llcm'):
    want = numpy_reference.rank_metrics_loop(
        distmat, q_ids, g_ids, q_cams, g_cams, protocol=protocol, max_rank=20
    )
    _assert_same(
        ranking.rank_metrics(distmat, q_ids, g_ids, q_cams, g_cams, protocol=protocol), want
    )


def test_counting_sweep_against_numpy_counts():
  # The fast path's raw counts, checked directly against the stable order
  # (distance, then index) on distances with many exact ties, several words
  # of ids, cam-3 removals and a gallery that is not a multiple of the block
  # (the last block is shifted back). By design the sweep misses only equal
  # items that precede a match inside its own block; `_own_block_ties` must
  # flag exactly the rows where that happens.
  rng = np.random.default_rng(3)
  num_query, num_gallery, num_matches, block = 9, 53, 5, 10
  dist = np.round(rng.random((num_query, num_gallery)), 1).astype(np.float32)
  query_skips = rng.random(num_query) < 0.5
  skipped = rng.random(num_gallery) < 0.3
  slot = rng.integers(0, 70, num_gallery)
  kept = ~(query_skips[:, None] & skipped[None, :])
  cols = np.stack(
      [np.sort(rng.choice(np.flatnonzero(k), num_matches, replace=False)) for k in kept]
  )
  match_dist = np.take_along_axis(dist, cols, 1)
  first = np.argmin(match_dist, 1)  # earliest column among equal minima
  first_dist, first_col = match_dist[np.arange(num_query), first], cols[np.arange(num_query), first]
  queries = ranking._Queries(
      np.zeros(num_query, np.int32), np.zeros(num_query, np.int32), query_skips
  )
  gallery = ranking._Gallery(slot.astype(np.int32), np.ones(num_gallery, np.int32), skipped, None)
  ahead, seen, finite = ranking._sweep(
      dist,
      match_dist,
      cols,
      first_dist,
      first_col,
      queries,
      gallery,
      own_camera=False,
      num_words=3,
      block=block,
  )
  tie = ranking._own_block_ties(dist, cols, match_dist, np.ones_like(cols, bool), block)

  position = np.arange(num_gallery)
  d = np.where(kept, dist, np.inf)

  def stable_ahead(q, m, c):
    exact = (d[q] < m) | ((d[q] == m) & (position < c))
    own = (d[q] == m) & (position >= c // block * block) & (position < c)
    return exact, own

  want_tie = np.zeros(num_query, bool)
  for q in range(num_query):
    for j in range(num_matches):
      exact, own = stable_ahead(q, match_dist[q, j], cols[q, j])
      assert int(ahead[q, j]) == exact.sum() - own.sum()
      want_tie[q] |= own.any()
    exact, own = stable_ahead(q, first_dist[q], first_col[q])
    got = {u for u in range(96) if (int(seen[q, u // 32]) >> (u % 32)) & 1}
    assert got == set(slot[exact & ~own])
  np.testing.assert_array_equal(tie, want_tie)
  assert want_tie.any() and not want_tie.all()  # the case exercises both
  assert np.asarray(finite).all()


def test_hand_computed_sysu_and_regdb():
  # One cam-3 query of id 1. Gallery (distance, id, cam):
  #   0.1 id1 cam2 | 0.2 id2 cam1 | 0.3 id2 cam4 | 0.4 id1 cam4 | 0.5 id3 cam5 | 0.6 id1 cam5
  distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
  g_ids, g_cams = [1, 2, 2, 1, 3, 1], [2, 1, 4, 4, 5, 5]
  sysu = ranking.rank_metrics(distmat, [1], g_ids, [3], g_cams, protocol='sysu', max_rank=4)
  # SYSU: the cam-2 image goes. Kept: id2 id2 id1 id3 id1 -> distinct ids
  # id2, id1, id3: the true id comes second. Matches at kept ranks 3 and 5.
  np.testing.assert_allclose(sysu['cmc'], [0, 1, 1, 1])
  np.testing.assert_allclose(sysu['mAP'], (1 / 3 + 2 / 5) / 2, rtol=1e-6)
  np.testing.assert_allclose(sysu['mINP'], 2 / 5, rtol=1e-6)
  # A cam-6 query keeps everything: the first image is a hit.
  cam6 = ranking.rank_metrics(distmat, [1], g_ids, [6], g_cams, protocol='sysu', max_rank=4)
  np.testing.assert_allclose(cam6['cmc'], [1, 1, 1, 1])
  np.testing.assert_allclose(cam6['mAP'], (1 / 1 + 2 / 4 + 3 / 6) / 3, rtol=1e-6)
  # RegDB: nothing removed, image-level CMC: matches at ranks 1, 4, 6.
  regdb = ranking.rank_metrics(distmat, [1], g_ids, [3], g_cams, protocol='regdb', max_rank=4)
  np.testing.assert_allclose(regdb['cmc'], [1, 1, 1, 1])
  np.testing.assert_allclose(regdb['mAP'], 2 / 3, rtol=1e-6)
  np.testing.assert_allclose(regdb['mINP'], 3 / 6, rtol=1e-6)


def test_hand_computed_llcm():
  # A cam-2 query of id 1. Gallery (distance, id, cam):
  #   0.1 id1 cam2 | 0.2 id2 cam1 | 0.3 id1 cam1 | 0.4 id3 cam2 | 0.5 id1 cam3
  # LLCM drops only id 1 seen by cam 2 (the query's own camera); the cam-2
  # image of id 3 stays. Kept: id2 id1 id3 id1 -> the true id comes second;
  # matches at kept ranks 2 and 4.
  got = ranking.rank_metrics(
      [[0.1, 0.2, 0.3, 0.4, 0.5]],
      [1],
      [1, 2, 1, 3, 1],
      [2],
      [2, 1, 1, 2, 3],
      protocol='llcm',
      max_rank=3,
  )
  np.testing.assert_allclose(got['cmc'], [0, 1, 1])
  np.testing.assert_allclose(got['mAP'], (1 / 2 + 2 / 4) / 2, rtol=1e-6)
  np.testing.assert_allclose(got['mINP'], 2 / 4, rtol=1e-6)


def test_image_vs_identity_cmc_and_short_gallery():
  # Ranked: id5 id5 id5 id7 (query id 7): image rank 4, identity rank 2.
  distmat = np.array([[0.1, 0.2, 0.3, 0.4]])
  args = (distmat, [7], [5, 5, 5, 7], [6], [1, 1, 1, 1])
  np.testing.assert_allclose(
      ranking.rank_metrics(*args, protocol='sysu', max_rank=6)['cmc'], [0, 1, 1, 1, 1, 1]
  )  # curve keeps its last value past the gallery
  np.testing.assert_allclose(
      ranking.rank_metrics(*args, protocol='regdb', max_rank=6)['cmc'], [0, 0, 0, 1, 1, 1]
  )


def test_ties_follow_gallery_order():
  # Equal distances: the earlier gallery image ranks first.
  first_wrong = ranking.rank_metrics(
      [[0.5, 0.5]], [1], [2, 1], [6], [1, 1], protocol='regdb', max_rank=2
  )
  first_right = ranking.rank_metrics(
      [[0.5, 0.5]], [1], [1, 2], [6], [1, 1], protocol='regdb', max_rank=2
  )
  np.testing.assert_allclose(first_wrong['cmc'], [0, 1])
  np.testing.assert_allclose(first_wrong['mAP'], 0.5)
  np.testing.assert_allclose(first_right['cmc'], [1, 1])


def test_cam3_query_whose_only_match_is_in_cam2_is_not_valid():
  args = ([[0.1, 0.2], [0.1, 0.2]], [1, 1], [1, 2], [3, 6], [2, 4])
  got = ranking.rank_metrics(*args, protocol='sysu', max_rank=2)
  assert got['num_valid_queries'] == 1  # only the cam-6 query
  with pytest.raises(ValueError, match='no query has a true match'):
    ranking.rank_metrics([[0.1, 0.2]], [1], [1, 2], [3], [2, 4], protocol='sysu')


def test_bad_input_raises_clear_errors():
  with pytest.raises(ValueError, match='protocol'):
    ranking.rank_metrics([[0.0]], [1], [1], [3], [1], protocol='market')
  with pytest.raises(ValueError, match='NaN or infinite'):
    ranking.rank_metrics([[np.nan, 0.0]], [1], [1, 2], [3], [1, 1])
  # Anywhere in a wide gallery, also in a removed (cam-2) column.
  for col, value in ((0, np.inf), (70, -np.inf), (129, np.nan), (5, np.nan)):
    distmat = np.zeros((2, 130))
    distmat[1, col] = value
    cams = np.where(np.arange(130) == 5, 2, 1)
    with pytest.raises(ValueError, match='NaN or infinite'):
      ranking.rank_metrics(distmat, [1, 1], np.arange(130) % 3, [3, 3], cams)
  with pytest.raises(ValueError, match='distmat is 1x2'):
    ranking.rank_metrics([[0.0, 1.0]], [1], [1], [3], [1])
