"""Test-time features (spec §5): pooled trunk features of an image plus its
horizontal flip, summed and L2-normalised."""

import jax
import jax.numpy as jnp

from aligngan_jax.models import resnet


def flip_pooled_features(encoder, variables, images, *, encoder_input_size) -> jax.Array:
  """[N, C] unit-norm features of [N, H, W, 3] images in [-1, 1].

  ``encoder`` runs in eval mode (running BN statistics). The flip is applied
  to the input image, before the re-sampling to the encoder size.
  """

  def pooled(x):
    fmap = encoder.apply(
        variables, resnet.prepare_encoder_input(x, encoder_input_size), train=False
    )
    return jnp.mean(fmap.astype(jnp.float32), axis=(1, 2))

  feats = pooled(images) + pooled(images[:, :, ::-1])
  return feats / jnp.maximum(jnp.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


def translated_test_features(
    generator, g_variables, encoder, enc_variables, images, *, translate: bool, encoder_input_size
) -> jax.Array:
  """Spec §5: RGB images (``translate``) go through G_rgb2ir in eval mode
  (InstanceNorm running statistics) first; then flip_pooled_features."""
  if translate:
    images = generator.apply(g_variables, images, train=False)
  return flip_pooled_features(encoder, enc_variables, images, encoder_input_size=encoder_input_size)
