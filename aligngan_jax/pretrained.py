"""Starting from, or evaluating, weights made with PyTorch.

* ``config.pretrained_backbone``: torchvision/timm ImageNet ResNet-50 weights
  for the trunk of a new run, named (``'torchvision'``, the official
  starting point and the default of configs/sysu.py, regdb.py and llcm.py,
  or ``'timm'``: fetched, verified and cached by `weights`) or as a path;
  or a ``.msgpack`` trunk of any
  depth and width written by ``save_trunk`` (the demo's, made by
  ``tools/pretrain_trunk.py``).
* ``config.init_from``: a directory of the official release files
  ``model-{0..7}_{step}.pkl``; ``config.mode='eval'`` then evaluates the
  converted official model with the test-time recipe of spec §5: RGB images
  are translated to fake IR by ``G_rgb2ir`` in eval mode (InstanceNorm
  running statistics), IR images are used as they are, and the feature is
  the flip-summed, L2-normalised pooled trunk feature.
"""

import os

import flax
import jax
import numpy as np

from aligngan_jax import convert
from aligngan_jax import sharding
from aligngan_jax import weights

TRUNK_SUFFIX = '.msgpack'
_TRUNK_FORMAT = 'aligngan_jax trunk v1'


def save_trunk(path: str, params, batch_stats, config, *, source: str):
  """Writes a trunk (encoder params and BatchNorm statistics) that
  ``config.pretrained_backbone`` can start a run from."""
  payload = {
      'format': _TRUNK_FORMAT,
      'depth': config.model.depth,
      'width': config.model.width,
      'source': source,
      'params': jax.tree.map(np.asarray, params),
      'batch_stats': jax.tree.map(np.asarray, batch_stats),
  }
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'wb') as f:
    f.write(flax.serialization.msgpack_serialize(payload))


def read_trunk(path: str) -> dict:
  """The payload of ``save_trunk``; ValueError naming the file if it is not one."""
  with open(path, 'rb') as f:
    try:
      payload = flax.serialization.msgpack_restore(f.read())
    except Exception as e:  # msgpack raises several unrelated types
      raise ValueError(
          f'config.pretrained_backbone={path!r} is not a trunk file '
          f'written by pretrained.save_trunk ({e}).'
      ) from e
  if not isinstance(payload, dict) or payload.get('format') != _TRUNK_FORMAT:
    raise ValueError(
        f'config.pretrained_backbone={path!r} is not a trunk file '
        f'written by pretrained.save_trunk.'
    )
  return payload


def check_backbone_config(config) -> str | None:
  """The problem with ``config.pretrained_backbone``, or None."""
  path = config.pretrained_backbone
  if not path:
    return None
  if path.endswith(TRUNK_SUFFIX):
    if not os.path.isfile(path):
      return (
          f"config.pretrained_backbone={path!r} does not exist (the demo's "
          'trunk is made by python -m tools.pretrain_trunk), '
          "or set config.pretrained_backbone='' to train from scratch."
      )
    try:
      trunk = read_trunk(path)
    except ValueError as e:
      return str(e)
    if (trunk['depth'], trunk['width']) != (config.model.depth, config.model.width):
      return (
          f'config.pretrained_backbone={path!r} holds a ResNet-{trunk["depth"]} '
          f'of width {trunk["width"]} but config.model.depth='
          f'{config.model.depth}, config.model.width={config.model.width}.'
      )
    return None
  if (config.model.depth, config.model.width) != (50, 64):
    return (
        f'config.pretrained_backbone={path!r} holds ResNet-50 weights but '
        f'config.model.depth={config.model.depth}, config.model.width='
        f'{config.model.width}; use depth 50 and width 64, or set '
        "config.pretrained_backbone=''."
    )
  if path in weights.SOURCES:
    return None  # fetched (or read from the cache) before the data is read
  if not os.path.isfile(path):
    return (
        f'config.pretrained_backbone={path!r} does not exist. Name a source '
        f"to fetch it ({', '.join(repr(n) for n in weights.SOURCES)}: "
        "config.pretrained_backbone='torchvision' is the official starting "
        'point), point the key at a local copy, or set '
        "config.pretrained_backbone='' to train from scratch."
    )
  return None


def backbone_file(config) -> str:
  """The local file of ``config.pretrained_backbone``: a named source
  fetched into the weights cache on first use (``config.weights_dir``), a
  path checked against the hash prefix its name may carry."""
  return weights.resolve(config.pretrained_backbone, config.weights_dir)


def encoder_variables(config, resolved: str | None = None, template=None) -> dict:
  """{'params', 'batch_stats'} of ``config.pretrained_backbone`` in
  `ResNetEncoder`'s layout (``conv1``, ``bn1``, ``layer1_0`` ...): a
  ``.msgpack`` trunk, or ImageNet ResNet-50 weights (``resolved``: the local
  file of `backbone_file`, when the caller has it). ``template``: the
  variables they must fit (a one-line error naming the file otherwise)."""
  path = config.pretrained_backbone
  if path.endswith(TRUNK_SUFFIX):
    trunk = read_trunk(path)
    variables = {'params': trunk['params'], 'batch_stats': trunk['batch_stats']}
  else:
    variables = convert.load_torchvision_resnet50(resolved or backbone_file(config))
  if template is not None and (
      jax.tree.map(np.shape, variables) != jax.tree.map(np.shape, template)
  ):
    raise ValueError(
        f'config.pretrained_backbone={path!r}: its trunk does not '
        'fit config.model (parameter names or shapes differ).'
    )
  return variables


def load_backbone(state, config, mesh, resolved: str | None = None):
  """``state`` with the trunk's params and BatchNorm statistics replaced
  (``resolved``: `backbone_file` of ``config``, when the caller has it)."""
  template = {'params': state.params['encoder'], 'batch_stats': state.batch_stats['encoder']}
  variables = encoder_variables(
      config, resolved, template if config.pretrained_backbone.endswith(TRUNK_SUFFIX) else None
  )
  variables = jax.device_put(variables, sharding.replicated(mesh))
  return state.replace(
      params={**state.params, 'encoder': variables['params']},
      batch_stats={**state.batch_stats, 'encoder': variables['batch_stats']},
  )


def official_extractors(variables: dict, config, mesh):
  """images -> features for RGB (translated first) and IR images of the
  converted official release (``variables``: `convert.load_official_checkpoint`):
  the AlignGAN trainer's own test features (spec §5), at the official
  network sizes whatever ``config`` says, with the variables as a
  replicated argument (not baked-in constants). ``config.gan`` still
  chooses the test-time InstanceNorm (official 'running', the default of
  the dataset configs) and whether RGB is translated (pixel_alignment)."""
  from aligngan_jax import train_state as train_state_lib
  from aligngan_jax import trainers

  official = config.copy_and_resolve_references()
  official.trainer = 'aligngan'
  official.model.depth, official.model.width = 50, 64
  official.gan.conv_dim, official.gan.num_residual = 64, 4
  official.compute_dtype = 'float32'
  trainer = trainers.trainer_for(official, trainers.DataInfo(num_classes=1))
  used = ('G_rgb2ir', 'encoder')
  state = jax.device_put(
      train_state_lib.TrainState(
          step=np.zeros((), np.int32),
          params={name: variables[name]['params'] for name in used},
          batch_stats={name: variables[name]['batch_stats'] for name in used},
          opt_state={},
          rng=jax.random.key(0),
          tx={},
      ),
      sharding.replicated(mesh),
  )
  return {
      modality: (lambda images, f=f: f(state, images))
      for modality, f in trainer.extractors(mesh).items()
  }
