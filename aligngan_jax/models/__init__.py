"""Linen modules of AlignGAN (NHWC inputs, a keyword ``train``).

  from aligngan_jax.models import (Generator, PatchDiscriminator,
                                   JointDiscriminator, ResNetEncoder, Embedder,
                                   prepare_encoder_input)

PyTorch's NCHW weights load through ``aligngan_jax.convert``.
"""

from aligngan_jax.models.embedder import Embedder
from aligngan_jax.models.gan import Generator
from aligngan_jax.models.gan import JointDiscriminator
from aligngan_jax.models.gan import PatchDiscriminator
from aligngan_jax.models.resnet import ResNetEncoder
from aligngan_jax.models.resnet import prepare_encoder_input

__all__ = ['Embedder', 'Generator', 'JointDiscriminator', 'PatchDiscriminator',
           'ResNetEncoder', 'prepare_encoder_input']
