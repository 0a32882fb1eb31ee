"""Starting from, or evaluating, weights made with PyTorch.

* ``config.pretrained_backbone``: torchvision/timm ImageNet ResNet-50 weights
  for the trunk of a new run (the official starting point; the default of
  configs/sysu.py and configs/regdb.py).
* ``config.init_from``: a directory of the official release files
  ``model-{0..7}_{step}.pkl``; ``config.mode='eval'`` then evaluates the
  converted official model with the test-time recipe of spec §5: RGB images
  are translated to fake IR by ``G_rgb2ir`` in eval mode (InstanceNorm
  running statistics), IR images are used as they are, and the feature is
  the flip-summed, L2-normalised pooled trunk feature.
"""

import os

import jax

from aligngan_jax import convert
from aligngan_jax import sharding
from aligngan_jax.evaluation import features as features_lib
from aligngan_jax.models import gan
from aligngan_jax.models import resnet


def check_backbone_config(config) -> str | None:
  """The problem with ``config.pretrained_backbone``, or None."""
  path = config.pretrained_backbone
  if not path:
    return None
  if (config.model.depth, config.model.width) != (50, 64):
    return (f'config.pretrained_backbone={path!r} holds ResNet-50 weights but '
            f'config.model.depth={config.model.depth}, config.model.width='
            f'{config.model.width}; use depth 50 and width 64, or set '
            "config.pretrained_backbone=''.")
  if not os.path.isfile(path):
    return (f'config.pretrained_backbone={path!r} does not exist. Download '
            f"torchvision's ImageNet ResNet-50 ({convert.RESNET50_URL}) or "
            "timm's resnet50 model.safetensors and point the key at it, or set "
            "config.pretrained_backbone='' to train from scratch.")
  return None


def load_backbone(state, config, mesh):
  """``state`` with the trunk's params and BatchNorm statistics replaced."""
  variables = convert.load_torchvision_resnet50(config.pretrained_backbone)
  variables = jax.device_put(variables, sharding.replicated(mesh))
  return state.replace(
      params={**state.params, 'encoder': variables['params']},
      batch_stats={**state.batch_stats, 'encoder': variables['batch_stats']})


def official_extractors(variables: dict, config, mesh):
  """images -> features for RGB (translated first) and IR images, jitted with
  the variables as a replicated argument (not baked-in constants)."""
  generator, encoder = gan.Generator(), resnet.ResNetEncoder()
  size = tuple(config.encoder_input_size)
  repl = sharding.replicated(mesh)
  used = jax.device_put({'G_rgb2ir': variables['G_rgb2ir'],
                         'encoder': variables['encoder']}, repl)

  def make(translate):
    def features(v, images):
      return features_lib.translated_test_features(
          generator, v['G_rgb2ir'], encoder, v['encoder'], images,
          translate=translate, encoder_input_size=size)
    jitted = jax.jit(features, in_shardings=(repl, sharding.data_sharded(mesh)),
                     out_shardings=repl)
    return lambda images: jitted(used, images)
  return {'rgb': make(True), 'ir': make(False)}
