"""The ranking semantics written as the per-query NumPy loop of the AGW
baseline (``eval_sysu`` / ``eval_regdb``) and of DEEN's ``eval_llcm``, with a
stable sort.

This is the readable statement of what :func:`rank_metrics` computes. The
tests check the jnp kernel against it, and ``bench/eval_bench.py`` times it
as the baseline. It is deliberately a straightforward loop over queries.
"""

import numpy as np


def rank_metrics_loop(
    distmat, query_ids, gallery_ids, query_cams, gallery_cams, *, protocol: str, max_rank: int = 20
) -> dict:
  """Per-query loop; same arguments and result as ``ranking.rank_metrics``."""
  distmat = np.asarray(distmat)
  query_ids, gallery_ids = np.asarray(query_ids), np.asarray(gallery_ids)
  query_cams, gallery_cams = np.asarray(query_cams), np.asarray(gallery_cams)
  cmc_sum = np.zeros(max_rank)
  ap_sum = inp_sum = 0.0
  num_valid = 0
  for q in range(len(distmat)):
    order = np.argsort(distmat[q], kind='stable')
    if protocol == 'sysu':
      # Cam-3 queries skip every cam-2 gallery image (same room).
      keep = ~((query_cams[q] == 3) & (gallery_cams[order] == 2))
    elif protocol == 'llcm':
      # DEEN's eval_llcm: drop the query's identity seen by its own camera.
      keep = ~((gallery_ids[order] == query_ids[q]) & (gallery_cams[order] == query_cams[q]))
    else:
      keep = np.ones(len(order), bool)
    ranked_ids = gallery_ids[order][keep]
    matches = (ranked_ids == query_ids[q]).astype(np.int64)
    if not matches.any():
      continue
    num_valid += 1
    if protocol in ('sysu', 'llcm'):
      # Identity-level CMC: each identity counts at its first appearance.
      _, first = np.unique(ranked_ids, return_index=True)
      distinct = ranked_ids[np.sort(first)]
      hit = np.cumsum(distinct == query_ids[q])
    else:
      hit = np.minimum(np.cumsum(matches), 1)
    # Galleries shorter than max_rank: the curve stays at its last value.
    hit = np.concatenate([hit, np.full(max(0, max_rank - len(hit)), hit[-1])])
    cmc_sum += hit[:max_rank]
    hits = np.cumsum(matches)
    positions = np.flatnonzero(matches)
    ap_sum += np.mean(hits[positions] / (positions + 1.0))
    inp_sum += hits[positions[-1]] / (positions[-1] + 1.0)
  if num_valid == 0:
    raise ValueError('no query has a true match in the gallery')
  return {
      'cmc': (cmc_sum / num_valid).astype(np.float32),
      'mAP': ap_sum / num_valid,
      'mINP': inp_sum / num_valid,
      'num_valid_queries': num_valid,
  }
