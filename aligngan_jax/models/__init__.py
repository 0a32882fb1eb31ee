"""Linen modules of AlignGAN. Inputs are NHWC; PyTorch's NCHW weights are
converted on import (`aligngan_jax.convert`, a later piece)."""

from aligngan_jax.models.embedder import Embedder
from aligngan_jax.models.resnet import ResNetEncoder
from aligngan_jax.models.resnet import prepare_encoder_input

__all__ = ['Embedder', 'ResNetEncoder', 'prepare_encoder_input']
