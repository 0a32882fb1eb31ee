"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) in jnp.

Same algorithm as the authors' published ``re_ranking(q_g, q_q, g_g, k1, k2,
lambda)`` loop, written with dense masks over all N = queries + gallery
items instead of Python loops:

1. ``original`` = squared distances over all N items, each row divided by
   its maximum.
2. R(i) = k1-reciprocal neighbours: j in the top k1+1 of i and i in the top
   k1+1 of j (neighbour lists by ascending distance, ties to the lower index).
3. Expansion: a candidate c in R(i) adds its round(k1/2)-reciprocal set
   R'(c) when more than 2/3 of R'(c) lies in R(i).
4. V(i) = exp(-original(i, .)) on the expanded set, normalised to sum 1;
   query expansion averages V over the top-k2 neighbours of i.
5. Jaccard distance 1 - s / (2 - s), s = sum_k min(V(i, k), V(j, k)),
   computed sparsely over the non-zeros of V(i).
6. final = (1 - lambda) x Jaccard + lambda x original, queries x gallery.

Memory is a few N x N arrays (N = 6,813 for SYSU-MM01 multi-shot: about
1 GB on the host).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _squared_distances(a, b):
  d = jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2.0 * a @ b.T
  return jnp.maximum(d, 0.0)


def _neighbours(dist, k):
  """Indices of the k nearest items of each row (ties: lower index first)."""
  return jax.lax.top_k(-dist, k)[1]


def _reciprocal(neighbours, num):
  """Dense [N, N] mask: j in neighbours(i) and i in neighbours(j)."""
  rows = jnp.arange(num)[:, None]
  member = jnp.zeros((num, num), bool).at[rows, neighbours].set(True)
  return member & member.T


@functools.partial(jax.jit, static_argnames=('k1', 'k2'))
def _expanded_weights(original, *, k1, k2):
  num = original.shape[0]
  forward = _neighbours(original, k1 + 1)  # [N, k1+1]
  reciprocal = _reciprocal(forward, num)  # R(i) as a mask
  half = int(np.around(k1 / 2.0)) + 1
  half_forward = _neighbours(original, half)  # [N, h]
  half_reciprocal = _reciprocal(half_forward, num)
  # R'(c) as lists: half_forward[c] masked by reciprocity.
  half_mask = jnp.take_along_axis(half_reciprocal, half_forward, 1)  # [N, h]
  half_size = half_mask.sum(1)  # |R'(c)|
  # Candidates c of i: forward[i] entries that are in R(i).
  is_candidate = jnp.take_along_axis(reciprocal, forward, 1)  # [N, k1+1]
  cand_lists = half_forward[forward]  # [N, k1+1, h]
  cand_masks = half_mask[forward]
  in_r = reciprocal[jnp.arange(num)[:, None, None], cand_lists] & cand_masks
  overlap = in_r.sum(2)  # |R'(c) & R(i)|
  take = is_candidate & (overlap > 2.0 / 3.0 * half_size[forward])
  added = take[:, :, None] & cand_masks
  expanded = (
      reciprocal.astype(jnp.int32)
      .at[jnp.arange(num)[:, None, None], cand_lists]
      .add(added.astype(jnp.int32))
      > 0
  )
  weights = jnp.where(expanded, jnp.exp(-original), 0.0)
  v = weights / weights.sum(1, keepdims=True)
  if k2 != 1:
    nearest = forward[:, :k2] if k2 <= k1 + 1 else _neighbours(original, k2)
    v = sum(v[nearest[:, t]] for t in range(k2)) / k2
  return v


@functools.partial(jax.jit, static_argnames=('num_query', 'max_nonzero'))
def _jaccard(v, *, num_query, max_nonzero):
  """[q, g] Jaccard distances from the sparse rows of ``v``."""
  values, cols = jax.lax.top_k(v[:num_query], max_nonzero)  # [q, K]
  gallery_v = v[num_query:]  # [g, N]

  def one(args):
    vals, idx = args
    s = jnp.minimum(vals[None, :], gallery_v[:, idx]).sum(1)  # [g]
    return 1.0 - s / (2.0 - s)

  return jax.lax.map(one, (values, cols))


def k_reciprocal_rerank(
    query_features, gallery_features, *, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> jax.Array:
  """Re-ranked [num_query, num_gallery] distances (smaller is closer).

  Distances between features are Euclidean (the published code's input);
  for L2-normalised features their ranking equals the cosine ranking.
  """
  query_features = jnp.asarray(query_features, jnp.float32)
  gallery_features = jnp.asarray(gallery_features, jnp.float32)
  num_query = query_features.shape[0]
  everything = jnp.concatenate([query_features, gallery_features])
  num = everything.shape[0]
  if not 1 <= k1 < num or not 1 <= k2 <= num:
    raise ValueError(
        f'k_reciprocal_rerank: k1={k1}, k2={k2} need 1 <= k1 < '
        f'{num} and 1 <= k2 <= {num} (queries + gallery).'
    )
  squared = _squared_distances(everything, everything)
  original = squared / jnp.max(squared, axis=1, keepdims=True)
  v = _expanded_weights(original, k1=k1, k2=k2)
  max_nonzero = int(jnp.max(jnp.sum(v[:num_query] != 0, axis=1)))
  jaccard = _jaccard(v, num_query=num_query, max_nonzero=max(max_nonzero, 1))
  return (1.0 - lambda_value) * jaccard + lambda_value * original[:num_query, num_query:]
