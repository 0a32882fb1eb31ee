"""The feature module's heads (``Embeder`` in the official code, §1.5)."""

import flax.linen as nn
import jax.numpy as jnp

from aligngan_jax.models import layers

# kaiming_normal(fan_out, a=0) for the bottleneck Linear.
_bottle_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
# PyTorch's default Linear init: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
_torch_linear_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


class Embedder(nn.Module):
  """Global pooling, a classifier branch and an embedding branch.

  ``__call__(feature_map, *, train)`` returns a dict:
    * ``pooled``: [N, C] global average of the feature map, the official
      test feature (§5; dropout only acts in training, on the classifier's
      input).
    * ``logits``: Dropout(0.5) -> Linear(C, bottle_dim) -> BatchNorm ->
      LeakyReLU(0.1) -> Linear(bottle_dim, num_classes).
    * ``embedding``: Linear(C, embed_dim) of the pooled feature (no
      dropout); the triplet loss uses it.
  Submodule names map the official keys: ``bottle`` = classifier0.bottle.0,
  ``bottle_bn`` = classifier0.bottle.1, ``classifier`` =
  classifier0.classifier.0, ``embedder`` = embedder0.
  """

  num_classes: int
  bottle_dim: int = 256
  embed_dim: int = 256
  dropout_rate: float = 0.5
  # Not official: BatchNorm on the pooled feature before the embedding
  # Linear (docs/decisions.md; tried for the from-scratch demo, unused).
  embed_bn: bool = False
  # Official: N(0, 0.001). From scratch, so small a classifier starves the
  # trunk of CE gradient for hundreds of steps (docs/decisions.md).
  classifier_init_std: float = 0.001

  @nn.compact
  def __call__(self, feature_map, *, train: bool) -> dict:
    feature_map = feature_map.astype(jnp.float32)
    pooled = jnp.mean(feature_map, axis=(1, 2))
    fan_in = pooled.shape[-1]
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(pooled)
    x = nn.Dense(
        self.bottle_dim, kernel_init=_bottle_init, bias_init=nn.initializers.zeros, name='bottle'
    )(x)
    x = layers.BatchNorm(scale_init=layers.normal_around_one(0.02), name='bottle_bn')(
        x, train=train
    )
    x = nn.leaky_relu(x, negative_slope=0.1)
    logits = nn.Dense(
        self.num_classes,
        kernel_init=nn.initializers.normal(self.classifier_init_std),
        bias_init=nn.initializers.zeros,
        name='classifier',
    )(x)
    embed_input = pooled
    if self.embed_bn:
      embed_input = layers.BatchNorm(name='embed_bn')(embed_input, train=train)
    embedding = nn.Dense(
        self.embed_dim,
        kernel_init=_torch_linear_init,
        bias_init=layers.torch_bias_init(fan_in),
        name='embedder',
    )(embed_input)
    return {'pooled': pooled, 'logits': logits, 'embedding': embedding}
