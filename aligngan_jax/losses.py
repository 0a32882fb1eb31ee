"""Losses of AlignGAN's feature module (spec §2). Pure jnp, no state."""

import jax
import jax.numpy as jnp
import optax

# The official code masks with +-9999999 rather than inf, which keeps a row
# without any positive (or negative) finite: its hinge is then 0, not NaN.
_MASK = 9999999.0


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels (no smoothing)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def cosine_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
  """[N, M] cosine similarities between the rows of ``a`` and ``b``."""
  a = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
  b = b / jnp.linalg.norm(b, axis=-1, keepdims=True)
  return a @ b.T


def cross_modal_triplet(
    emb1, emb2, emb3, labels1, labels2, labels3, *, margin: float = 1.0
) -> jax.Array:
  """The official batch-hard cosine triplet ``tri(e1, e2, e3, y1, y2, y3)``.

  For each anchor row i of ``emb1``: the hardest positive is the least
  similar row of ``emb2`` with the same label, the hardest negative the most
  similar row of ``emb3`` with another label; the loss is
  ``mean_i max(0, hard_n[i] - hard_p[i] + margin)``. Gradients flow only
  through the selected similarities.
  """
  s12 = cosine_similarity(emb1.astype(jnp.float32), emb2.astype(jnp.float32))
  s13 = cosine_similarity(emb1.astype(jnp.float32), emb3.astype(jnp.float32))
  positive = labels1[:, None] == labels2[None, :]
  negative = labels1[:, None] != labels3[None, :]
  hard_p = jnp.min(jnp.where(positive, s12, _MASK), axis=1)
  hard_n = jnp.max(jnp.where(negative, s13, -_MASK), axis=1)
  return jnp.mean(jax.nn.relu(hard_n - hard_p + margin))


# --- AGW and CAJ (mangye16/Cross-Modal-Re-ID-baseline; baselines_reference.md §2) ---


def euclidean_distances(features: jax.Array) -> jax.Array:
  """[N, N] Euclidean distances as the official ``pdist_torch`` computes them:
  the expanded form |f_i|^2 + |f_j|^2 - 2 f_i.f_j, clamped at 1e-12, then
  the square root (so the diagonal is float-cancellation noise, not 0)."""
  f = features.astype(jnp.float32)
  squared = jnp.sum(f * f, axis=1)
  d2 = (
      squared[:, None]
      + squared[None, :]
      - 2.0 * jnp.matmul(f, f.T, precision=jax.lax.Precision.HIGHEST)
  )
  # torch.clamp(min=): gradient 1 at and above the bound, 0 below it.
  return jnp.sqrt(jnp.where(d2 < 1e-12, 1e-12, d2))


def _softmax_weights(scores, mask):
  """The official ``softmax_weights``: stabilised by the row-max of
  ``scores * mask`` (0 where every masked score is negative, as for the
  negatives: then not stabilised at all), 1e-6 added to the normaliser."""
  top = jnp.max(scores * mask, axis=1, keepdims=True)
  e = jnp.exp(scores - top) * mask
  return e / (jnp.sum(e, axis=1, keepdims=True) + 1e-6)


def _weighted_pairs(features, labels, alpha: float = 1.0):
  """(d+, d-): the softmax-weighted positive and negative distances of
  every anchor (self counted among the positives; weights from the
  distances scaled by ``alpha``, gradients through the weights)."""
  dist = euclidean_distances(features)
  positive = (labels[:, None] == labels[None, :]).astype(jnp.float32)
  negative = 1.0 - positive
  d_ap, d_an = dist * positive, dist * negative
  w_ap = _softmax_weights(d_ap * alpha, positive)
  w_an = _softmax_weights(-d_an * alpha, negative)
  return jnp.sum(d_ap * w_ap, axis=1), jnp.sum(d_an * w_an, axis=1)


def _soft_margin(x, y=1.0):
  """``nn.SoftMarginLoss`` as torch computes it: mean log(1 + exp(-y x))
  (inf, not a large finite value, once -y x passes about 88 in float32)."""
  return jnp.mean(jnp.log1p(jnp.exp(-y * x)))


def weighted_regularized_triplet(features: jax.Array, labels: jax.Array) -> jax.Array:
  """AGW's WRT loss (``TripletLoss_WRT``) on un-normalised pooled features:
  mean SoftMargin(d- - d+) with softmax-weighted positive and negative
  distances, no margin."""
  d_pos, d_neg = _weighted_pairs(features, labels)
  return _soft_margin(d_neg - d_pos)


def adaptive_triplet(
    features: jax.Array,
    labels: jax.Array,
    *,
    alpha: float = 1.0,
    gamma: float = 1.0,
    square: bool = True,
) -> jax.Array:
  """CAJ's triplet (``TripletLoss_ADP``): WRT with the weights' distances
  scaled by ``alpha``; ``square``: s = min(gamma (d+ - d-)^2, 88) (zero
  gradient above the clamp) against the sign y = -1 where d+ > d- (no
  gradient through y), else mean SoftMargin(gamma (d- - d+))."""
  d_pos, d_neg = _weighted_pairs(features, labels, alpha)
  if not square:
    return _soft_margin(gamma * (d_neg - d_pos))
  s = jnp.square(d_pos - d_neg) * gamma
  s = jnp.where(s > 88.0, 88.0, s)  # torch.clamp_max: gradient 1 up to 88
  y = jax.lax.stop_gradient(jnp.where(d_pos > d_neg, -1.0, 1.0))
  return _soft_margin(s, y)


def batch_hard_triplet(features: jax.Array, labels: jax.Array, *, margin: float = 0.3) -> jax.Array:
  """The official ``base`` method's triplet (``OriTripletLoss``): for each
  anchor the farthest positive (self among them) and the nearest negative
  in `euclidean_distances`, then ``MarginRankingLoss(margin)``: mean
  max(0, d+ - d- + margin)."""
  dist = euclidean_distances(features)
  positive = labels[:, None] == labels[None, :]
  hardest_positive = jnp.max(jnp.where(positive, dist, -jnp.inf), axis=1)
  hardest_negative = jnp.min(jnp.where(positive, jnp.inf, dist), axis=1)
  return jnp.mean(jax.nn.relu(hardest_positive - hardest_negative + margin))
