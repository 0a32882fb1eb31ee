"""Ranked galleries for pictures: which images a query sees first.

NumPy, for the few hundred to few thousand queries a retrieval sheet picks
from; the metrics themselves come from the jnp kernel (`ranking`). Same
semantics: stable order by distance then gallery index, and the protocol's
removals (SYSU-MM01: cam-3 queries skip cam 2; LLCM: a query's own identity
in its own camera).
"""

import dataclasses

import numpy as np


def kept(query_ids, gallery_ids, query_cams, gallery_cams, protocol: str) -> np.ndarray:
  """[q, g] bool: the gallery items each query is ranked against."""
  q_ids, g_ids = np.asarray(query_ids)[:, None], np.asarray(gallery_ids)[None, :]
  q_cams, g_cams = np.asarray(query_cams)[:, None], np.asarray(gallery_cams)[None, :]
  if protocol == 'sysu':
    return ~((q_cams == 3) & (g_cams == 2))
  if protocol == 'llcm':
    return ~((q_ids == g_ids) & (q_cams == g_cams))
  return np.ones((q_ids.shape[0], g_ids.shape[1]), bool)


@dataclasses.dataclass(frozen=True)
class Ranked:
  """Per query: its top k kept gallery positions and its first true match."""

  top: np.ndarray  # [q, k] gallery positions (-1 past the kept ones)
  top_distance: np.ndarray  # [q, k]
  top_correct: np.ndarray  # [q, k] same identity as the query
  first_rank: np.ndarray  # [q] 1-based image rank of the first true match (0: none)
  first_position: np.ndarray  # [q] its gallery position (-1: none)


def rank(
    distmat, query_ids, gallery_ids, query_cams, gallery_cams, *, protocol: str, top_k: int
) -> Ranked:
  distmat = np.asarray(distmat, np.float64)
  keep = kept(query_ids, gallery_ids, query_cams, gallery_cams, protocol)
  order = np.argsort(np.where(keep, distmat, np.inf), axis=1, kind='stable')
  kept_sorted = np.take_along_axis(keep, order, 1)
  correct = (np.asarray(gallery_ids)[order] == np.asarray(query_ids)[:, None]) & kept_sorted
  has_match = correct.any(1)
  first = np.argmax(correct, axis=1)
  rows = np.arange(len(order))
  k = min(top_k, order.shape[1])
  top = np.where(kept_sorted[:, :k], order[:, :k], -1)
  return Ranked(
      top=top,
      top_distance=np.take_along_axis(distmat, order[:, :k], 1),
      top_correct=correct[:, :k],
      first_rank=np.where(has_match, first + 1, 0),
      first_position=np.where(has_match, order[rows, first], -1),
  )
