"""Linen modules of AlignGAN (NHWC inputs, a keyword ``train``).

Plugged into a model of your own (the README runs this; a test runs the
README)::

  class RgbToIrFeatures(nn.Module):     # translate RGB to IR, then embed
    num_classes: int = 395              # Embedder needs the training classes
    @nn.compact
    def __call__(self, rgb, *, train: bool):   # [N, 128, 128, 3] in [-1, 1]
      fake_ir = Generator(name='G_rgb2ir')(rgb, train=train)
      fmap = ResNetEncoder(name='encoder')(prepare_encoder_input(fake_ir), train=train)
      return Embedder(self.num_classes, name='embedder')(fmap, train=train)

Training calls pass ``mutable=['batch_stats']`` and a ``'dropout'`` rng.
PyTorch's NCHW weights load through ``aligngan_jax.convert``.
"""

from aligngan_jax.models.embedder import Embedder
from aligngan_jax.models.gan import Generator
from aligngan_jax.models.gan import JointDiscriminator
from aligngan_jax.models.gan import PatchDiscriminator
from aligngan_jax.models.resnet import ResNetEncoder
from aligngan_jax.models.resnet import prepare_encoder_input

__all__ = [
    'Embedder',
    'Generator',
    'JointDiscriminator',
    'PatchDiscriminator',
    'ResNetEncoder',
    'prepare_encoder_input',
]
