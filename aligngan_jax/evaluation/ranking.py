"""The ranking kernel: CMC, mAP and mINP from a distance matrix, in jnp.

Semantics are those of the AGW baseline (``numpy_reference`` spells them out
as its per-query loop):

* The gallery is ranked by ascending distance, ties broken by gallery index
  (a stable sort; MATLAB's order, reproducible on every machine).
* ``protocol='sysu'``: queries from camera 3 skip every gallery image from
  camera 2 (the same room), whatever its identity; the CMC counts
  *identities* (each at its first appearance in the kept ranking).
  ``protocol='regdb'``: nothing is removed and the CMC counts images.
  ``protocol='llcm'`` (DEEN's ``eval_llcm``): each query drops the gallery
  images of its own identity from its own camera (market-style); the CMC
  counts identities.
* AP is the mean precision at each true match of the kept ranking, INP =
  matches / rank of the last match. CMC, mAP and mINP are averaged over the
  queries that keep at least one true match.
* Galleries shorter than ``max_rank``: the cumulative curve keeps its last
  value (AGW would return a shorter array).

How it is fast: no sort. A rank is a count: the rank of each true match is
one plus the number of kept gallery items closer than it, and the
identity-level rank of a query's first true match is the number of other
identities owning a kept item closer than it. One jitted sweep over the
gallery columns (`_sweep`, a `fori_loop` over blocks of columns, vectorised
across all queries at once) counts both for every query: O(matches x
gallery) compare-and-adds per query, no per-query Python loop, memory
O(queries x matches) beyond the matrix.

Ties are broken by gallery index inside the sweep: an item in an earlier
block than the match is compared with <=, one in the match's block or later
with <. A query where a true match shares its distance with an earlier item
of its own block (rare with float32 features) is recomputed by the exact
path, which breaks ties by gallery index item by item, in fixed-size chunks
under ``lax.map``. Both paths run on CPU, GPU or TPU.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PROTOCOLS = ('sysu', 'regdb', 'llcm')
_SYSU_QUERY_CAM, _SYSU_SKIPPED_GALLERY_CAM = 3, 2


class _Rules(NamedTuple):
  """What a protocol removes and how its CMC counts."""

  identity_cmc: bool  # CMC over identities (else over images)
  cam3_skips_cam2: bool  # SYSU: cam-3 queries drop every cam-2 item
  own_camera: bool  # LLCM: drop the query's identity in its camera


_PROTOCOL_RULES = {
    'sysu': _Rules(True, True, False),
    'regdb': _Rules(False, False, False),
    'llcm': _Rules(True, False, True),
}


class _Queries(NamedTuple):
  slot: jax.Array  # [q] row of the query's identity in the layout
  cam: jax.Array  # [q]
  skips: jax.Array  # [q] bool: drops the gallery's `skipped` items


class _Gallery(NamedTuple):
  slot: jax.Array  # [G] identity row of each item
  cam: jax.Array  # [G]
  skipped: jax.Array  # [G] bool
  layout: jax.Array  # [U + 1, L] (see `_gallery_layout`)


def _removed(queries, slot, cam, skipped, own_camera: bool):
  """Which gallery items each query does not rank ([q, n]); `slot`, `cam`,
  `skipped` describe the items, [n] (shared) or [q, n] (per query)."""
  removed = queries.skips[:, None] & skipped
  if own_camera:
    removed = removed | ((slot == queries.slot[:, None]) & (cam == queries.cam[:, None]))
  return removed


# Elements of one chunk's [queries, matches, gallery] comparison (exact path).
_CHUNK_ELEMENTS = 1 << 23
# Gallery columns per step of the counting sweep (fastest on CPU, 2026-11:
# below ~40 XLA's CPU fusion of the unrolled block slows down 1.5x).
_SWEEP_BLOCK = 64


def _gallery_layout(gallery_ids: np.ndarray):
  """Gallery positions grouped by identity.

  Returns (ids [U], slot [G]: each item's row in ids, layout [U + 1, L]):
  row u lists, in ascending order, the
  gallery positions of identity ids[u], padded with G (one past the end);
  the extra last row is all padding, for queries whose id is absent.
  """
  num_gallery = len(gallery_ids)
  ids, inverse, counts = np.unique(gallery_ids, return_inverse=True, return_counts=True)
  order = np.argsort(inverse, kind='stable')
  slot = np.arange(num_gallery) - np.repeat(np.cumsum(counts) - counts, counts)
  layout = np.full((len(ids) + 1, counts.max()), num_gallery, np.int32)
  layout[inverse[order], slot] = order
  return ids, inverse, layout


def _scores(rank, is_match, position_of_hit):
  """Per-query (position_of_hit, AP, INP, valid) from 1-based match ranks.

  rank, is_match: [q, L] (one slot per gallery item of the query's id);
  position_of_hit: [q], 0-based CMC position of the first true match.
  """
  num_matches = is_match.sum(axis=1)
  # Precision at each match: matches ranked at or before it, over its rank.
  hits = (is_match[:, None, :] & (rank[:, None, :] <= rank[:, :, None])).sum(2)
  ap = jnp.where(is_match, hits / rank, 0.0).sum(1) / jnp.maximum(num_matches, 1)
  last = jnp.where(is_match, rank, 0).max(1)
  inp = num_matches / jnp.maximum(last, 1)
  return position_of_hit, ap, inp, num_matches > 0


def _order_keys(x):
  """int32 keys in the order of the float32 distances (IEEE order on every
  finite value; -0 and +0 are one key). Integer comparisons stay exact where
  XLA's float ones flush denormals to zero, and "<=" is "< key + 1"."""
  bits = jax.lax.bitcast_convert_type(x + 0.0, jnp.int32)  # + 0.0: -0 -> +0
  return bits ^ ((bits >> 31) & 0x7FFFFFFF)


# Key of removed items: after every finite distance (and +inf's key).
_REMOVED_KEY = np.iinfo(np.int32).max


def _match_slots(dist, queries, gallery, own_camera):
  """Each query's true matches: gallery columns, distances (+inf where
  absent or removed) and presence, [q, L] each."""
  num_gallery = dist.shape[1]
  cols = gallery.layout[queries.slot]
  at_cols = [jnp.pad(x, (0, 1))[cols] for x in gallery[:3]]
  removed = _removed(queries, *at_cols, own_camera)
  is_match = (cols < num_gallery) & ~removed
  dist_pad = jnp.pad(dist, ((0, 0), (0, 1)), constant_values=jnp.inf)
  match_dist = jnp.take_along_axis(dist_pad, cols, axis=1)
  return cols, jnp.where(is_match, match_dist, jnp.inf), is_match


def _sweep(
    dist,
    match_dist,
    match_cols,
    first_dist,
    first_col,
    queries,
    gallery,
    *,
    own_camera: bool,
    num_words: int,
    block: int,
):
  """One pass over the gallery columns, counting for every query.

  Returns `ahead` ([q, L]: kept items before each true match in the stable
  order), the identity bitmask ([q, num_words] uint32: bit u set when
  identity u owns a kept item before the first true match) and a [q, block]
  mask that is False where the matrix holds NaN or +-inf (accumulated per
  element: cheaper than a separate pass or a per-block reduction).

  The stable order (distance, then gallery index) needs one comparison per
  (item, match): an item in a block wholly before the match's block is
  ahead when its distance is <= the match's (a strict < against the key one
  up), an item in the match's block or after it when its distance is <. Only equal distances inside the match's own block are miscounted;
  `_own_block_ties` flags those rows for the exact path.

  Columns are read in blocks of `block` (one [q, block] slice per loop
  step): XLA vectorises this across queries, ~15x faster on CPU than
  reducing each row along the gallery axis.
  """
  num_query, num_gallery = dist.shape
  # Each column's identity as a bitmask: [G, num_words] uint32.
  word, bit = gallery.slot // 32, (gallery.slot % 32).astype(jnp.uint32)
  id_masks = jnp.where(
      jnp.arange(num_words) == word[:, None],
      jnp.left_shift(jnp.uint32(1), bit)[:, None],
      jnp.uint32(0),
  )
  match_key, first_key = _order_keys(match_dist), _order_keys(first_dist)[:, None]
  first_col = first_col[:, None]

  def body(i, carry):
    ahead, seen, finite = carry
    # The last block is shifted left to end at the gallery's end (one shape
    # for every step); its columns already counted are masked out.
    start = jnp.minimum(i * block, num_gallery - block)
    end = start + block
    blk = jax.lax.dynamic_slice_in_dim(dist, start, block, 1)
    masks = jax.lax.dynamic_slice_in_dim(id_masks, start, block)
    items = [jax.lax.dynamic_slice_in_dim(x, start, block) for x in gallery[:3]]
    removed = _removed(queries, *items, own_camera) | (start + jnp.arange(block) < i * block)
    finite = finite & (jnp.abs(blk) < jnp.inf)
    blk = jnp.where(removed, _REMOVED_KEY, _order_keys(blk))
    threshold = match_key + (match_cols >= end)
    first_threshold = first_key + (first_col >= end)
    for b in range(block):
      column = blk[:, b : b + 1]
      ahead = ahead + (column < threshold).astype(jnp.int32)
      if num_words:
        seen = seen | jnp.where(column < first_threshold, masks[b], jnp.uint32(0))
    return ahead, seen, finite

  carry = (
      jnp.zeros(match_dist.shape, jnp.int32),
      jnp.zeros((num_query, num_words), jnp.uint32),
      jnp.ones((num_query, block), bool),
  )
  return jax.lax.fori_loop(0, -(-num_gallery // block), body, carry)


def _own_block_ties(dist, match_cols, match_dist, is_match, block):
  """[q]: does a true match share its distance with an item of its own
  sweep block that precedes it (the one case `_sweep` miscounts)?

  The last sweep block is shifted back, but the items it skips were counted
  by the block before, so the own region is always [c // block * block, c).
  Float equality may also flag two denormals that differ (flushed to zero):
  a false alarm only costs the exact path."""
  num_gallery = dist.shape[1]
  width = min(block, num_gallery)
  block_start = match_cols // block * block
  # dynamic_slice clamps a window that would run past the end; positions
  # follow the clamped start.
  start = jnp.minimum(block_start, num_gallery - width)
  window = jax.vmap(
      jax.vmap(lambda row, s: jax.lax.dynamic_slice_in_dim(row, s, width), in_axes=(None, 0))
  )(
      dist, start
  )  # [q, L, width]
  position = start[:, :, None] + jnp.arange(width)
  before = (position >= block_start[:, :, None]) & (position < match_cols[:, :, None])
  return jnp.any(is_match[:, :, None] & before & (window == match_dist[:, :, None]), axis=(1, 2))


@functools.partial(jax.jit, static_argnames=('rules', 'num_words', 'block'))
def _fast_kernel(dist, queries, gallery, *, rules, num_words, block):
  """Per-query scores by counting, each query's tie flag, and whether every
  distance is finite."""
  cols, match_dist, is_match = _match_slots(dist, queries, gallery, rules.own_camera)
  first = jnp.argmin(match_dist, axis=1)[:, None]
  first_dist = jnp.take_along_axis(match_dist, first, 1)[:, 0]
  first_col = jnp.take_along_axis(cols, first, 1)[:, 0]
  ahead, seen, finite = _sweep(
      dist,
      match_dist,
      cols,
      first_dist,
      first_col,
      queries,
      gallery,
      own_camera=rules.own_camera,
      num_words=num_words if rules.identity_cmc else 0,
      block=block,
  )
  tie = _own_block_ties(dist, cols, match_dist, is_match, block)
  if rules.identity_cmc:
    position_of_hit = jax.lax.population_count(seen).sum(1).astype(jnp.int32)
  else:
    position_of_hit = jnp.where(is_match, ahead, dist.shape[1]).min(1)
  finite = finite.all()
  return _scores(ahead + 1, is_match, position_of_hit) + (tie, finite)


def _exact_chunk(dist, queries, gallery, *, rules):
  """Exact scores for one chunk of queries, ties broken by gallery index:
  O(matches x gallery) comparisons per query, materialised per chunk."""
  num_gallery = dist.shape[1]
  dist = jnp.where(_removed(queries, *gallery[:3], rules.own_camera), jnp.inf, dist)
  cols, match_dist, is_match = _match_slots(dist, queries, gallery, rules.own_camera)
  # Removed items hold +inf and distances are finite: never ahead of a match.
  # Compared as order keys, like the sweep (exact on denormals too).
  dist, match_dist = _order_keys(dist), _order_keys(match_dist)
  position = jnp.arange(num_gallery)
  d, m = dist[:, None, :], match_dist[:, :, None]
  ahead = (d < m) | ((d == m) & (position < cols[:, :, None]))
  rank = ahead.sum(axis=2) + 1  # [c, L]
  first = jnp.argmin(jnp.where(is_match, rank, num_gallery + 1), axis=1)
  if rules.identity_cmc:
    # Identities (other than the query's) with a kept item ahead of its
    # first true match.
    best_d = jnp.take_along_axis(match_dist, first[:, None], 1)
    best_pos = jnp.take_along_axis(cols, first[:, None], 1)
    item_ahead = (dist < best_d) | ((dist == best_d) & (position < best_pos))
    item_ahead = jnp.pad(item_ahead, ((0, 0), (0, 1)))
    id_ahead = item_ahead[:, gallery.layout].any(axis=2)  # [c, U + 1]
    own = jnp.arange(gallery.layout.shape[0])[None, :] == queries.slot[:, None]
    position_of_hit = (id_ahead & ~own).sum(1)
  else:
    position_of_hit = jnp.take_along_axis(rank, first[:, None], 1)[:, 0] - 1
  return _scores(rank, is_match, position_of_hit)


@functools.partial(jax.jit, static_argnames=('rules',))
def _exact_kernel(dist, queries, gallery, *, rules):
  """`_exact_chunk` over [n, c, ...] chunks under ``lax.map``; [n * c] out."""

  def one(args):
    return _exact_chunk(*args, gallery, rules=rules)

  out = jax.lax.map(one, (dist, queries))
  return tuple(x.reshape(-1) for x in out)


def _exact_rows(rows, dist, queries, gallery, *, rules, chunk):
  """Exact scores of the given query rows (padded to a power of two, so
  few shapes compile)."""
  num_rows = len(rows)
  padded = max(8, 1 << (num_rows - 1).bit_length())
  chunk = min(chunk, padded)
  padded = -(-padded // chunk) * chunk
  take = jnp.asarray(np.pad(rows, (0, padded - num_rows)))  # pads repeat row 0

  def chunked(x):
    x = x[take]
    return x.reshape((padded // chunk, chunk) + x.shape[1:])

  out = _exact_kernel(chunked(dist), _Queries(*map(chunked, queries)), gallery, rules=rules)
  return tuple(np.asarray(x)[:num_rows] for x in out)


def rank_metrics(
    distmat,
    query_ids,
    gallery_ids,
    query_cams,
    gallery_cams,
    *,
    protocol: str = 'sysu',
    max_rank: int = 20,
    chunk_size: int | None = None,
) -> dict:
  """Ranks every query's gallery and scores it (see the module docstring).

  Args:
    distmat: [num_query, num_gallery] finite distances (smaller is closer).
    query_ids, gallery_ids: person ids.
    query_cams, gallery_cams: camera numbers (the SYSU-MM01 and LLCM rules
      use them).
    protocol: 'sysu', 'regdb' or 'llcm'.
    max_rank: CMC length.
    chunk_size: queries per chunk of the exact (tie-breaking) path; by
      default sized so that one chunk's comparisons hold about 8M elements.

  Returns:
    {'cmc': float32 numpy [max_rank], 'mAP': float, 'mINP': float,
     'num_valid_queries': int}.

  Raises:
    ValueError: unknown protocol, mismatched shapes, non-finite distances,
      or no query with a true match in the (kept) gallery.
  """
  if protocol not in PROTOCOLS:
    raise ValueError(f'rank_metrics: protocol={protocol!r}; expected one of {PROTOCOLS}.')
  distmat = jnp.asarray(distmat, jnp.float32)
  query_ids, gallery_ids = np.asarray(query_ids), np.asarray(gallery_ids)
  query_cams, gallery_cams = np.asarray(query_cams), np.asarray(gallery_cams)
  num_query, num_gallery = distmat.shape
  if (len(query_ids), len(query_cams)) != (num_query,) * 2 or (
      (len(gallery_ids), len(gallery_cams)) != (num_gallery,) * 2
  ):
    raise ValueError(
        f'rank_metrics: distmat is {num_query}x{num_gallery} but got '
        f'{len(query_ids)} query ids, {len(query_cams)} query cams, '
        f'{len(gallery_ids)} gallery ids, {len(gallery_cams)} gallery cams.'
    )
  if num_query == 0 or num_gallery == 0:
    raise ValueError('rank_metrics: empty query set or gallery.')
  ids, gallery_slot, layout = _gallery_layout(gallery_ids)
  slot = np.searchsorted(ids, query_ids)
  present = (slot < len(ids)) & (ids[np.minimum(slot, len(ids) - 1)] == query_ids)
  slot = np.where(present, slot, len(ids)).astype(np.int32)
  rules = _PROTOCOL_RULES[protocol]
  cam3_skips_cam2 = rules.cam3_skips_cam2
  queries = _Queries(
      jnp.asarray(slot),
      jnp.asarray(query_cams, jnp.int32),
      jnp.asarray(cam3_skips_cam2 & (query_cams == _SYSU_QUERY_CAM)),
  )
  gallery = _Gallery(
      jnp.asarray(gallery_slot, jnp.int32),
      jnp.asarray(gallery_cams, jnp.int32),
      jnp.asarray(cam3_skips_cam2 & (gallery_cams == _SYSU_SKIPPED_GALLERY_CAM)),
      jnp.asarray(layout),
  )
  if chunk_size is None:
    chunk_size = max(1, _CHUNK_ELEMENTS // (layout.shape[1] * num_gallery))
  out = _fast_kernel(
      distmat,
      queries,
      gallery,
      rules=rules,
      num_words=-(-len(ids) // 32),
      block=min(_SWEEP_BLOCK, num_gallery),
  )
  position_of_hit, ap, inp, valid, tie, finite = (np.array(x) for x in out)
  if not finite:
    raise ValueError('rank_metrics: distmat holds NaN or infinite values.')
  tied = np.flatnonzero(tie & valid)
  if len(tied):
    exact = _exact_rows(tied, distmat, queries, gallery, rules=rules, chunk=chunk_size)
    for full, part in zip((position_of_hit, ap, inp), exact):
      full[tied] = part
  num_valid = int(valid.sum())
  if num_valid == 0:
    raise ValueError(
        'rank_metrics: no query has a true match in the gallery (after the '
        f'{protocol!r} protocol removals); check that query and gallery share '
        'identities.'
    )
  cmc = (position_of_hit[valid, None] <= np.arange(max_rank)).mean(0)
  return {
      'cmc': cmc.astype(np.float32),
      'mAP': float(ap[valid].mean()),
      'mINP': float(inp[valid].mean()),
      'num_valid_queries': num_valid,
  }
