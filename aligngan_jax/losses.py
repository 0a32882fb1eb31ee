"""Losses of AlignGAN's feature module (spec §2). Pure jnp, no state."""

import jax
import jax.numpy as jnp
import optax

# The official code masks with +-9999999 rather than inf, which keeps a row
# without any positive (or negative) finite: its hinge is then 0, not NaN.
_MASK = 9999999.0


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels (no smoothing)."""
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels).mean()


def cosine_similarity(a: jax.Array, b: jax.Array) -> jax.Array:
  """[N, M] cosine similarities between the rows of ``a`` and ``b``."""
  a = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
  b = b / jnp.linalg.norm(b, axis=-1, keepdims=True)
  return a @ b.T


def cross_modal_triplet(emb1, emb2, emb3, labels1, labels2, labels3, *,
                        margin: float = 1.0) -> jax.Array:
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
