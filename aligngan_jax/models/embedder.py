"""The feature module's heads (``Embeder`` in the official code, §1.5)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

# kaiming_normal(fan_out, a=0) for the bottleneck Linear.
_bottle_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# PyTorch's default Linear init: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
_torch_linear_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def _torch_linear_bias_init(fan_in: int):
  bound = 1.0 / fan_in ** 0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def _normal_around_one(stddev: float):
  def init(key, shape, dtype=jnp.float32):
    return 1.0 + stddev * jax.random.normal(key, shape, dtype)
  return init


class Embedder(nn.Module):
  """Global pooling, a classifier branch and an embedding branch.

  Returns ``(features_c, features_e, logits, embedding)``:
    * features_c: pooled [N, C] after dropout (identity in eval); the
      official test feature is this, in eval mode (§5).
    * features_e: pooled [N, C] without dropout, feeding the embedding.
    * logits: Linear(C, bottle_dim) -> BatchNorm -> LeakyReLU(0.1) ->
      Linear(bottle_dim, num_classes), from features_c.
    * embedding: Linear(C, embed_dim) of features_e; the triplet loss uses it.
  """
  num_classes: int
  bottle_dim: int = 256
  embed_dim: int = 256
  dropout_rate: float = 0.5
  # Not official: BatchNorm on features_e before the embedding Linear. From
  # scratch, pooled post-ReLU features share a large common component, all
  # embeddings start nearly parallel and the cosine triplet has almost no
  # gradient; standardising first removes it (docs/decisions.md).
  embed_bn: bool = False

  @nn.compact
  def __call__(self, feature_map, *, train: bool):
    feature_map = feature_map.astype(jnp.float32)
    pooled = jnp.mean(feature_map, axis=(1, 2))
    features_c = nn.Dropout(self.dropout_rate, deterministic=not train)(pooled)
    features_e = pooled
    x = nn.Dense(self.bottle_dim, kernel_init=_bottle_init,
                 bias_init=nn.initializers.zeros, name='bottle')(features_c)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     scale_init=_normal_around_one(0.02), name='bottle_bn')(x)
    x = nn.leaky_relu(x, negative_slope=0.1)
    logits = nn.Dense(self.num_classes,
                      kernel_init=nn.initializers.normal(0.001),
                      bias_init=nn.initializers.zeros, name='classifier')(x)
    fan_in = features_e.shape[-1]
    embed_input = features_e
    if self.embed_bn:
      embed_input = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                 epsilon=1e-5, name='embed_bn')(embed_input)
    embedding = nn.Dense(self.embed_dim, kernel_init=_torch_linear_init,
                         bias_init=_torch_linear_bias_init(fan_in),
                         name='embedder')(embed_input)
    return features_c, features_e, logits, embedding
