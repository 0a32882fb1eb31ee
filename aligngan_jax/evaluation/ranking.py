"""The ranking kernel: CMC, mAP and mINP from a distance matrix, in jnp.

Queries are processed in fixed-size chunks by one jitted function (no Python
loop over queries; the last chunk is padded and masked), so memory stays
bounded for large galleries and the kernel runs on CPU, GPU or TPU alike.

Semantics (the AGW baseline's ``eval_regdb``): the gallery is ranked by
ascending distance with a *stable* sort, so ties keep gallery order;
nothing is removed from the gallery; the CMC counts images; AP is the mean
precision at each true match; INP = matches / rank of the last match. All
are averaged over queries with at least one true match. The SYSU-MM01
variant (same-location removal, identity-level CMC) belongs to the
evaluation-protocol work and raises NotImplementedError until then.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.partial(jax.jit, static_argnames=('max_rank',))
def _chunk_metrics(dist, query_ids, valid_rows, gallery_ids, *, max_rank):
  order = jnp.argsort(dist, axis=1, stable=True)
  matches = gallery_ids[order] == query_ids[:, None]           # [q, g]
  num_matches = matches.sum(axis=1)
  valid = valid_rows & (num_matches > 0)
  first = jnp.argmax(matches, axis=1)
  cmc = (first[:, None] <= jnp.arange(max_rank)[None, :]) & valid[:, None]
  hits = jnp.cumsum(matches, axis=1)
  ranks = jnp.arange(1, matches.shape[1] + 1)
  ap = (jnp.where(matches, hits / ranks, 0.0).sum(axis=1)
        / jnp.maximum(num_matches, 1))
  last = matches.shape[1] - jnp.argmax(matches[:, ::-1], axis=1)  # 1-based
  inp = num_matches / last
  zero = jnp.zeros_like(ap)
  return (cmc.sum(axis=0), jnp.where(valid, ap, zero).sum(),
          jnp.where(valid, inp, zero).sum(), valid.sum())


def rank_metrics(distmat, query_ids, gallery_ids, query_cams=None,
                 gallery_cams=None, *, protocol: str = 'regdb',
                 max_rank: int = 20, chunk_size: int = 256) -> dict:
  """Ranks every query's gallery and scores it.

  Args:
    distmat: [num_query, num_gallery] distances (smaller is closer).
    query_ids, gallery_ids: person ids.
    query_cams, gallery_cams: cameras (unused by the 'regdb' semantics).
    protocol: 'regdb' (image-level CMC, no removal).
    max_rank: CMC length.
    chunk_size: queries per kernel call.

  Returns:
    {'cmc': float32 numpy [max_rank], 'mAP': float, 'mINP': float,
     'num_valid_queries': int}.

  Raises:
    ValueError: when no query has a true match in the gallery.
  """
  del query_cams, gallery_cams
  if protocol != 'regdb':
    raise NotImplementedError(
        f"rank_metrics(protocol={protocol!r}): only 'regdb' semantics exist so "
        'far; the SYSU-MM01 protocol engine is planned.')
  distmat = jnp.asarray(distmat, jnp.float32)
  query_ids = np.asarray(query_ids)
  gallery_ids = jnp.asarray(gallery_ids)
  num_query = distmat.shape[0]
  chunk = min(chunk_size, max(num_query, 1))
  padded = -(-num_query // chunk) * chunk
  pad = padded - num_query
  dist = jnp.pad(distmat, ((0, pad), (0, 0)))
  ids = jnp.asarray(np.pad(query_ids, (0, pad)))
  valid_rows = jnp.arange(padded) < num_query
  cmc = np.zeros(max_rank, np.int64)
  ap_sum = inp_sum = 0.0
  num_valid = 0
  for start in range(0, padded, chunk):
    s = slice(start, start + chunk)
    c, a, i, v = _chunk_metrics(dist[s], ids[s], valid_rows[s], gallery_ids,
                                max_rank=max_rank)
    cmc += np.asarray(c)
    ap_sum += float(a)
    inp_sum += float(i)
    num_valid += int(v)
  if num_valid == 0:
    raise ValueError('rank_metrics: no query has a true match in the gallery; '
                     'check that query and gallery share identities.')
  return {'cmc': (cmc / num_valid).astype(np.float32),
          'mAP': ap_sum / num_valid, 'mINP': inp_sum / num_valid,
          'num_valid_queries': num_valid}
