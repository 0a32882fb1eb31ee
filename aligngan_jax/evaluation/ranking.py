"""The ranking kernel: CMC, mAP and mINP from a distance matrix, in jnp.

Semantics are those of the AGW baseline (``numpy_reference`` spells them out
as its per-query loop):

* The gallery is ranked by ascending distance, ties broken by gallery index
  (a stable sort; MATLAB's order, reproducible on every machine).
* ``protocol='sysu'``: queries from camera 3 skip every gallery image from
  camera 2 (the same room), whatever its identity; the CMC counts
  *identities* (each at its first appearance in the kept ranking).
  ``protocol='regdb'``: nothing is removed and the CMC counts images.
* AP is the mean precision at each true match of the kept ranking, INP =
  matches / rank of the last match. CMC, mAP and mINP are averaged over the
  queries that keep at least one true match.
* Galleries shorter than ``max_rank``: the cumulative curve keeps its last
  value (AGW would return a shorter array).

How it is fast: no sort. A rank is a count, so the rank of each true match
is the number of kept gallery items with a smaller (distance, index) key,
and the identity-level rank of a query's first true match is the number of
other identities owning a kept item ahead of it. Both are compare-and-reduce
passes over the gallery that XLA fuses, O(matches x gallery) per query
instead of a comparison sort per query. Queries run in fixed-size chunks
under ``lax.map`` inside one jitted call, so memory stays bounded and
there is no Python loop over queries; it runs on CPU, GPU or TPU.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

PROTOCOLS = ('sysu', 'regdb')
_SYSU_QUERY_CAM, _SYSU_SKIPPED_GALLERY_CAM = 3, 2
# Elements of one chunk's [queries, matches, gallery] comparison.
_CHUNK_ELEMENTS = 1 << 23


def _gallery_layout(gallery_ids: np.ndarray):
  """Gallery positions grouped by identity.

  Returns (ids [U], layout [U + 1, L]): row u lists, in ascending order, the
  gallery positions of identity ids[u], padded with G (one past the end);
  the extra last row is all padding, for queries whose id is absent.
  """
  num_gallery = len(gallery_ids)
  ids, inverse, counts = np.unique(gallery_ids, return_inverse=True,
                                   return_counts=True)
  order = np.argsort(inverse, kind='stable')
  slot = np.arange(num_gallery) - np.repeat(np.cumsum(counts) - counts, counts)
  layout = np.full((len(ids) + 1, counts.max()), num_gallery, np.int32)
  layout[inverse[order], slot] = order
  return ids, layout


def _chunk_metrics(dist, query_slot, query_skips, row_valid, gallery_skipped,
                   layout, *, identity_cmc: bool, max_rank: int):
  """Sums of CMC / AP / INP and the valid count for one chunk of queries."""
  num_gallery = dist.shape[1]
  removed = query_skips[:, None] & gallery_skipped[None, :]
  dist = jnp.where(removed, jnp.inf, dist)
  # Column G is the padding target of the layout: never kept, never ahead.
  dist_pad = jnp.pad(dist, ((0, 0), (0, 1)), constant_values=jnp.inf)
  kept_pad = jnp.pad(~removed, ((0, 0), (0, 1)))
  cols = layout[query_slot]                                   # [c, L]
  match_dist = jnp.take_along_axis(dist_pad, cols, axis=1)
  is_match = jnp.take_along_axis(kept_pad, cols, axis=1)      # kept true matches
  # 1-based rank of every true match among kept items. Removed items hold
  # +inf and distances are finite, so they are never ahead of a kept item.
  position = jnp.arange(num_gallery)
  d, m = dist[:, None, :], match_dist[:, :, None]
  # Two plain compare-and-count passes (fast); the index tie-break only runs
  # for chunks where some match shares its distance with another item.
  below = (d < m).sum(axis=2)
  not_above = (d <= m).sum(axis=2)
  has_tie = jnp.any(is_match & (not_above - below > 1))

  def tie_broken():
    return (d == m) & (position < cols[:, :, None])
  ties_ahead = jax.lax.cond(has_tie, lambda: tie_broken().sum(axis=2),
                            lambda: jnp.zeros_like(below))
  rank = below + ties_ahead + 1                               # [c, L]
  num_matches = is_match.sum(axis=1)
  valid = row_valid & (num_matches > 0)
  # Precision at each match: matches ranked at or before it, over its rank.
  hits = (is_match[:, None, :] & (rank[:, None, :] <= rank[:, :, None])).sum(2)
  ap = jnp.where(is_match, hits / rank, 0.0).sum(1) / jnp.maximum(num_matches, 1)
  last = jnp.where(is_match, rank, 0).max(1)
  inp = num_matches / jnp.maximum(last, 1)
  big = num_gallery + 1
  first = jnp.argmin(jnp.where(is_match, rank, big), axis=1)
  if identity_cmc:
    # Identities (other than the query's) with a kept item ahead of its
    # first true match; removed items are +inf, hence never ahead.
    best_d = jnp.take_along_axis(match_dist, first[:, None], 1)
    best_pos = jnp.take_along_axis(cols, first[:, None], 1)
    item_ahead = (dist < best_d) | ((dist == best_d) & (position < best_pos))
    item_ahead = jnp.pad(item_ahead, ((0, 0), (0, 1)))
    id_ahead = item_ahead[:, layout].any(axis=2)              # [c, U + 1]
    own = jnp.arange(layout.shape[0])[None, :] == query_slot[:, None]
    position_of_hit = (id_ahead & ~own).sum(1)
  else:
    position_of_hit = jnp.take_along_axis(rank, first[:, None], 1)[:, 0] - 1
  cmc = valid[:, None] & (position_of_hit[:, None] <= jnp.arange(max_rank))
  zero = jnp.zeros_like(ap)
  return (cmc.sum(0), jnp.where(valid, ap, zero).sum(),
          jnp.where(valid, inp, zero).sum(), valid.sum())


@functools.partial(jax.jit, static_argnames=('identity_cmc', 'max_rank'))
def _kernel(dist, query_slot, query_skips, row_valid, gallery_skipped, layout,
            *, identity_cmc, max_rank):
  """All chunks ([n, c, ...] inputs) in one call; returns summed metrics."""
  def one(args):
    return _chunk_metrics(*args, gallery_skipped, layout,
                          identity_cmc=identity_cmc, max_rank=max_rank)
  cmc, ap, inp, valid = jax.lax.map(
      one, (dist, query_slot, query_skips, row_valid))
  finite = jnp.isfinite(dist).all()
  return cmc.sum(0), ap.sum(), inp.sum(), valid.sum(), finite


def rank_metrics(distmat, query_ids, gallery_ids, query_cams, gallery_cams, *,
                 protocol: str = 'sysu', max_rank: int = 20,
                 chunk_size: int | None = None) -> dict:
  """Ranks every query's gallery and scores it (see the module docstring).

  Args:
    distmat: [num_query, num_gallery] finite distances (smaller is closer).
    query_ids, gallery_ids: person ids.
    query_cams, gallery_cams: camera numbers (the SYSU-MM01 rule uses them).
    protocol: 'sysu' or 'regdb'.
    max_rank: CMC length.
    chunk_size: queries per chunk; by default sized so that one chunk's
      comparisons hold about 8M elements.

  Returns:
    {'cmc': float32 numpy [max_rank], 'mAP': float, 'mINP': float,
     'num_valid_queries': int}.

  Raises:
    ValueError: unknown protocol, mismatched shapes, non-finite distances,
      or no query with a true match in the (kept) gallery.
  """
  if protocol not in PROTOCOLS:
    raise ValueError(f'rank_metrics: protocol={protocol!r}; expected one of '
                     f'{PROTOCOLS}.')
  distmat = jnp.asarray(distmat, jnp.float32)
  query_ids, gallery_ids = np.asarray(query_ids), np.asarray(gallery_ids)
  query_cams, gallery_cams = np.asarray(query_cams), np.asarray(gallery_cams)
  num_query, num_gallery = distmat.shape
  if (len(query_ids), len(query_cams)) != (num_query,) * 2 or (
      (len(gallery_ids), len(gallery_cams)) != (num_gallery,) * 2):
    raise ValueError(
        f'rank_metrics: distmat is {num_query}x{num_gallery} but got '
        f'{len(query_ids)} query ids, {len(query_cams)} query cams, '
        f'{len(gallery_ids)} gallery ids, {len(gallery_cams)} gallery cams.')
  if num_query == 0 or num_gallery == 0:
    raise ValueError('rank_metrics: empty query set or gallery.')
  ids, layout = _gallery_layout(gallery_ids)
  slot = np.searchsorted(ids, query_ids)
  present = (slot < len(ids)) & (ids[np.minimum(slot, len(ids) - 1)] == query_ids)
  slot = np.where(present, slot, len(ids)).astype(np.int32)
  if protocol == 'sysu':
    query_skips = query_cams == _SYSU_QUERY_CAM
    gallery_skipped = gallery_cams == _SYSU_SKIPPED_GALLERY_CAM
  else:
    query_skips = np.zeros(num_query, bool)
    gallery_skipped = np.zeros(num_gallery, bool)

  if chunk_size is None:
    chunk_size = max(1, _CHUNK_ELEMENTS // (layout.shape[1] * num_gallery))
  chunk = min(chunk_size, num_query)
  num_chunks = -(-num_query // chunk)
  pad = num_chunks * chunk - num_query

  def chunked(x):
    x = jnp.asarray(x)
    x = jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1))
    return x.reshape((num_chunks, chunk) + x.shape[1:])

  cmc, ap_sum, inp_sum, num_valid, finite = _kernel(
      chunked(distmat), chunked(slot), chunked(query_skips),
      chunked(np.ones(num_query, bool)), jnp.asarray(gallery_skipped),
      jnp.asarray(layout), identity_cmc=protocol == 'sysu', max_rank=max_rank)
  if not bool(finite):
    raise ValueError('rank_metrics: distmat holds NaN or infinite values.')
  num_valid = int(num_valid)
  if num_valid == 0:
    raise ValueError(
        'rank_metrics: no query has a true match in the gallery (after the '
        f'{protocol!r} protocol removals); check that query and gallery share '
        'identities.')
  return {'cmc': (np.asarray(cmc, np.float64) / num_valid).astype(np.float32),
          'mAP': float(ap_sum) / num_valid, 'mINP': float(inp_sum) / num_valid,
          'num_valid_queries': num_valid}
