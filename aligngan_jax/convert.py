"""PyTorch weights into the Flax modules (spec §6).

Public API:

  load_torchvision_resnet50(path) -> {'params', 'batch_stats'} of
      ``ResNetEncoder()`` from torchvision's ``resnet50-*.pth`` (a state
      dict) or a torchvision/timm ``*.safetensors`` file (read without torch).
  load_official_checkpoint(directory, step=250) -> {name: variables} for the
      official release ``model-{0..7}_{step}.pkl`` (PyTorch state dicts with
      ``module.`` prefixes), keyed G_rgb2ir, G_ir2rgb, D_rgb, D_ir,
      D_rgb_warmup, D_ir_warmup, encoder, embeder.

Layouts: conv weights [O, I, kh, kw] -> kernel [kh, kw, I, O]; transposed
conv weights [I, O, kh, kw] -> kernel [kh, kw, I, O]; Linear [O, I] ->
[I, O]; norm weight/bias -> scale/bias; running_mean/var -> batch_stats
mean/var; ``num_batches_tracked`` is read and dropped (nothing here uses it).
Every source key must be consumed and every target leaf filled, or a
``ValueError`` lists the offenders. Reading ``.pth``/``.pkl`` needs torch
(``pip install -e ".[torch]"``), imported only inside these loaders.
"""

import json
import os
import re
import struct

import flax
import jax
import jax.numpy as jnp
import numpy as np

from aligngan_jax.models import embedder as embedder_lib
from aligngan_jax.models import gan
from aligngan_jax.models import resnet

OFFICIAL_NETWORKS = (
    'G_rgb2ir',
    'G_ir2rgb',
    'D_rgb',
    'D_ir',
    'D_rgb_warmup',
    'D_ir_warmup',
    'encoder',
    'embeder',
)
OFFICIAL_NUM_CLASSES = 395
RESNET50_URL = 'https://download.pytorch.org/models/resnet50-0676ba61.pth'
FETCH_USAGE = """Pre-fetch ImageNet weights (on a machine with network access):

  python -m aligngan_jax.convert --fetch torchvision --out DIR

DIR then holds the verified file; copy it into the weights cache of an
offline machine (config.weights_dir, $ALIGNGAN_WEIGHTS_DIR or
~/.cache/aligngan_jax/weights), or pass its path as
config.pretrained_backbone."""


def official_modules(num_classes: int = OFFICIAL_NUM_CLASSES) -> dict:
  """Default-constructed modules in the official ``model_list`` order."""
  return {
      'G_rgb2ir': gan.Generator(),
      'G_ir2rgb': gan.Generator(),
      'D_rgb': gan.PatchDiscriminator(),
      'D_ir': gan.JointDiscriminator(),
      'D_rgb_warmup': gan.PatchDiscriminator(),
      'D_ir_warmup': gan.PatchDiscriminator(),
      'encoder': resnet.ResNetEncoder(),
      'embeder': embedder_lib.Embedder(num_classes=num_classes),
  }


def _template(name: str, module) -> dict:
  """Shapes of the module's variables (no computation)."""
  if name.startswith('G_') or name.endswith('_warmup') or name == 'D_rgb':
    args = (jnp.zeros((1, 128, 128, 3)),)
  elif name == 'D_ir':
    args = (jnp.zeros((1, 128, 128, 3)), jnp.zeros((1, 24, 12, 2048)))
  elif name == 'encoder':
    args = (jnp.zeros((1, 64, 32, 3)),)
  else:
    args = (jnp.zeros((1, 2, 1, 2048)),)
  return jax.eval_shape(lambda: module.init(jax.random.key(0), *args, train=False))


# ----------------------------------------------------------------------------
# Key translation: torch key -> (flax module path, torch leaf name).


def _sequential_path(key: str) -> tuple[tuple[str, ...], str]:
  """'model.9.model.0.weight' -> (('model_9', 'model_0'), 'weight')."""
  *parts, leaf = key.split('.')
  path = []
  for part in parts:
    if part.isdigit() and path:
      path[-1] = f'{path[-1]}_{part}'
    else:
      path.append(part)
  return tuple(path), leaf


def _resnet_path(key: str) -> tuple[tuple[str, ...], str]:
  """torchvision names: layer1.0.downsample.1.weight -> layer1_0/downsample_bn."""
  path, leaf = _sequential_path(key)
  renamed = {'downsample_0': 'downsample_conv', 'downsample_1': 'downsample_bn'}
  return tuple(renamed.get(p, p) for p in path), leaf


_OFFICIAL_ENCODER = {
    '0': 'conv1',
    '1': 'bn1',
    '4': 'layer1',
    '5': 'layer2',
    '6': 'layer3',
    '7': 'layer4',
}
_OFFICIAL_EMBEDER = {
    'classifier0.bottle.0': 'bottle',
    'classifier0.bottle.1': 'bottle_bn',
    'classifier0.classifier.0': 'classifier',
    'embedder0': 'embedder',
}


def _official_path(network: str, key: str) -> tuple[tuple[str, ...], str]:
  key = key[len('module.') :] if key.startswith('module.') else key
  if network == 'encoder':
    match = re.fullmatch(r'resnet_conv\.(\d+)\.(.*)', key)
    if not match or match.group(1) not in _OFFICIAL_ENCODER:
      return (key,), ''
    return _resnet_path(f'{_OFFICIAL_ENCODER[match.group(1)]}.{match.group(2)}')
  if network == 'embeder':
    module, _, leaf = key.rpartition('.')
    return (_OFFICIAL_EMBEDER.get(module, module),), leaf
  return _sequential_path(key)


# ----------------------------------------------------------------------------
# Filling a template.

_NORM_LEAVES = {
    'weight': ('params', 'scale'),
    'bias': ('params', 'bias'),
    'running_mean': ('batch_stats', 'mean'),
    'running_var': ('batch_stats', 'var'),
}


def _fill(
    state_dict: dict,
    template: dict,
    translate,
    *,
    source: str,
    ignore=(),
    transposed_convs=frozenset(),
) -> dict:
  """Maps every state-dict entry onto the template's leaves."""
  flat = flax.traverse_util.flatten_dict(template)
  filled, unknown, mismatched = {}, [], []
  for key, tensor in state_dict.items():
    if key in ignore:
      continue
    path, leaf = translate(key)
    if leaf == 'num_batches_tracked':
      continue
    value = np.asarray(tensor, np.float32)
    candidates = []
    if leaf == 'weight':
      candidates.append(('params', *path, 'kernel'))
    if leaf in _NORM_LEAVES:
      collection, name = _NORM_LEAVES[leaf]
      candidates.append((collection, *path, name))
    target = next((c for c in candidates if c in flat), None)
    if target is None:
      unknown.append(key)
      continue
    if target[-1] == 'kernel':
      if value.ndim == 4:
        # Conv: [O, I, kh, kw]; transposed conv: [I, O, kh, kw].
        value = (
            value.transpose(2, 3, 0, 1)
            if path[-1] in transposed_convs
            else value.transpose(2, 3, 1, 0)
        )
      elif value.ndim == 2:
        value = value.T
    if value.shape != tuple(flat[target].shape):
      mismatched.append(
          f'{key} {tuple(tensor.shape)} -> {"/".join(target)} {tuple(flat[target].shape)}'
      )
      continue
    filled[target] = jnp.asarray(value)
  missing = sorted('/'.join(k) for k in flat if k not in filled)
  problems = []
  if unknown:
    problems.append(f'unknown keys {sorted(unknown)}')
  if mismatched:
    problems.append(f'shape mismatches {mismatched}')
  if missing:
    problems.append(f'missing target leaves {missing}')
  if problems:
    raise ValueError(f'{source}: ' + '; '.join(problems))
  return flax.traverse_util.unflatten_dict(filled)


# ----------------------------------------------------------------------------
# File readers.


def _torch():
  try:
    import torch
  except ImportError as e:
    raise ImportError(
        'Reading PyTorch .pth/.pkl files needs torch: '
        'pip install -e ".[torch]" (or use a .safetensors file '
        'for the ResNet-50 backbone).'
    ) from e
  return torch


def _load_torch_state_dict(path: str) -> dict:
  torch = _torch()
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:
    raise ValueError(f'{path}: not a readable PyTorch state dict ({e}).') from e
  if isinstance(state, dict) and 'state_dict' in state and isinstance(state['state_dict'], dict):
    state = state['state_dict']
  if not isinstance(state, dict):
    raise ValueError(f'{path}: holds a {type(state).__name__}, not a state dict.')
  return {k: v.detach().cpu().float().numpy() for k, v in state.items()}


_SAFETENSORS_DTYPES = {
    'F32': np.float32,
    'F16': np.float16,
    'F64': np.float64,
    'I64': np.int64,
    'I32': np.int32,
}


def read_safetensors(path: str) -> dict:
  """{name: numpy array} from a .safetensors file, without torch."""
  with open(path, 'rb') as f:
    data = f.read()
  try:
    (header_size,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8 : 8 + header_size])
  except (struct.error, ValueError) as e:
    raise ValueError(f'{path}: not a safetensors file ({e}).') from e
  body = memoryview(data)[8 + header_size :]
  out = {}
  for name, info in header.items():
    if name == '__metadata__':
      continue
    dtype = info['dtype']
    if dtype == 'BF16':
      import ml_dtypes

      np_dtype = ml_dtypes.bfloat16
    elif dtype in _SAFETENSORS_DTYPES:
      np_dtype = _SAFETENSORS_DTYPES[dtype]
    else:
      raise ValueError(f'{path}: tensor {name} has unsupported dtype {dtype}.')
    start, end = info['data_offsets']
    out[name] = np.frombuffer(body[start:end], np_dtype).reshape(info['shape'])
  return out


# ----------------------------------------------------------------------------
# Public loaders.


def load_torchvision_resnet50(path: str) -> dict:
  """ResNetEncoder() variables from torchvision/timm ImageNet ResNet-50 weights.

  The classifier (``fc.*``) has no counterpart in the trunk and is dropped.
  The last-stride change (§1.4) alters no weight shape, so the ImageNet
  weights load as they are.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'config.pretrained_backbone={path!r} does not exist. Download '
        f"torchvision's ImageNet ResNet-50 ({RESNET50_URL}, or timm's "
        'resnet50 model.safetensors from the Hugging Face hub) and pass its '
        "path, or set config.pretrained_backbone='' to train from scratch."
    )
  state = read_safetensors(path) if path.endswith('.safetensors') else _load_torch_state_dict(path)
  template = _template('encoder', resnet.ResNetEncoder())
  return _fill(state, template, _resnet_path, source=path, ignore=('fc.weight', 'fc.bias'))


def load_official_checkpoint(
    directory: str, step: int = 250, num_classes: int | None = None
) -> dict:
  """All eight official networks from ``model-{i}_{step}.pkl`` files.

  ``num_classes`` (the embeder's classifier; 395 for SYSU-MM01) is read from
  the checkpoint when not given.
  """
  out = {}
  for index, name in enumerate(OFFICIAL_NETWORKS):
    path = os.path.join(directory, f'model-{index}_{step}.pkl')
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f'{path} is missing: the official AlignGAN release has '
          f'model-0_{step}.pkl ... model-7_{step}.pkl (README of '
          'wangguanan/AlignGAN: Google Drive or Baidu links).'
      )
    state = _load_torch_state_dict(path)
    classes = num_classes
    if classes is None:
      weight = state.get('module.classifier0.classifier.0.weight')
      classes = OFFICIAL_NUM_CLASSES if weight is None else weight.shape[0]
    module = official_modules(classes)[name]
    transposed = frozenset()
    if isinstance(module, gan.Generator):
      first_up = 9 + module.num_residual
      transposed = frozenset({f'model_{first_up}', f'model_{first_up + 3}'})
    out[name] = _fill(
        state,
        _template(name, module),
        lambda k, n=name: _official_path(n, k),
        source=path,
        transposed_convs=transposed,
    )
  return out


def main(argv=None) -> int:
  """``python -m aligngan_jax.convert --fetch NAME --out DIR`` (FETCH_USAGE)."""
  import argparse
  import sys

  from aligngan_jax import weights

  parser = argparse.ArgumentParser(
      prog='python -m aligngan_jax.convert',
      description=FETCH_USAGE,
      formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument(
      '--fetch',
      required=True,
      choices=sorted(weights.SOURCES),
      help='The weights to download and verify.',
  )
  parser.add_argument('--out', required=True, help='Folder to put the file in.')
  args = parser.parse_args(argv)
  from absl import logging

  logging.set_verbosity(logging.INFO)  # the download's progress lines
  try:
    path = weights.fetch(args.fetch, args.out)
  except weights.WeightsError as e:
    sys.stderr.write(f'error: {e}\n')
    return 1
  print(f'{path} (SHA-256 {weights.sha256_of(path)})')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())


# ----------------------------------------------------------------------------
# AGW / CAJ (mangye16/Cross-Modal-Re-ID-baseline; baselines_reference.md §6).

_AGW_STEMS = {'visible_module.visible.': 'visible_stem', 'thermal_module.thermal.': 'thermal_stem'}
_AGW_NON_LOCAL = {'theta': 'theta', 'phi': 'phi', 'g.0': 'g', 'W.0': 'W_conv', 'W.1': 'W_bn'}


def _agw_path(key: str) -> tuple[tuple[str, ...], str]:
  for prefix, stem in _AGW_STEMS.items():
    if key.startswith(prefix) and key[len(prefix) :].split('.')[0] in ('conv1', 'bn1'):
      module, _, leaf = key[len(prefix) :].rpartition('.')
      return (stem, module), leaf
  if key.startswith('base_resnet.base.layer'):
    path, leaf = _resnet_path(key[len('base_resnet.base.') :])
    return ('trunk', *path), leaf
  match = re.fullmatch(r'NL_(\d)\.(\d)\.(.+)\.([a-z_]+)', key)
  if match and match.group(3) in _AGW_NON_LOCAL:
    return (
        ('trunk', f'nl{match.group(1)}_{match.group(2)}', _AGW_NON_LOCAL[match.group(3)]),
        match.group(4),
    )
  module, _, leaf = key.rpartition('.')
  return (module,), leaf


def _numpy_globals() -> list:
  """What unpickling an official checkpoint's NumPy values needs: array
  reconstruction, scalars and their dtypes, also under NumPy 1's module names."""
  core = np._core.multiarray
  dtypes = [
      type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)
  ]
  return [
      core._reconstruct,
      core.scalar,
      np.ndarray,
      np.dtype,
      *dtypes,
      (core._reconstruct, 'numpy.core.multiarray._reconstruct'),
      (core.scalar, 'numpy.core.multiarray.scalar'),
  ]


def _agw_unused(key: str) -> bool:
  """The official state dict's 630 keys no forward pass reads: the stem
  copies' own layer1-4 and the shared copy's conv1 / bn1."""
  for prefix in _AGW_STEMS:
    if key.startswith(prefix) and key[len(prefix) :].startswith('layer'):
      return True
  return key.startswith(('base_resnet.base.conv1.', 'base_resnet.base.bn1.'))


def agw_architecture(state: dict) -> dict:
  """`agw.AGWNet` fields of an official-format state dict: the variant (with
  non-local blocks: AGW with GeM; without: the ``base`` variant), the class
  count, and the trunk's depth and width (official 50 and 64; smaller ones
  are read the same way: blocks per layer, bottleneck or basic, conv1's
  channels)."""
  blocks = [
      len({k.split('.')[3] for k in state if k.startswith(f'base_resnet.base.layer{i}.')})
      for i in range(1, 5)
  ]
  bottleneck = any(
      k.endswith('.conv3.weight') for k in state if k.startswith('base_resnet.base.layer')
  )
  depths = [
      d for d, stages in resnet.STAGES.items() if list(stages) == blocks and (d >= 50) == bottleneck
  ]
  if not depths:
    raise ValueError(
        f'no ResNet depth has {blocks} blocks per layer '
        f'({"bottleneck" if bottleneck else "basic"} blocks)'
    )
  non_local = 'NL_2.0.theta.weight' in state
  return dict(
      num_classes=int(state['classifier.weight'].shape[0]),
      non_local=non_local,
      gem=non_local,
      depth=depths[0],
      width=int(state['visible_module.visible.conv1.weight'].shape[0]),
  )


def load_official_agw(path: str) -> dict:
  """`agw.AGWNet` variables ({'params', 'batch_stats'}) from an official AGW
  or CAJ checkpoint (``torch.save({'net': state_dict, ...})``, saved on CPU
  or GPU; a bare state dict too). The variant comes from the file: with
  non-local blocks it is AGW's network (``AGWNet(num_classes=K)``), without
  them the official ``base`` variant (``non_local=False, gem=False``); the
  class count is the classifier's rows, depth and width the trunk's
  (`agw_architecture`). The frozen BNNeck bias must be 0."""
  from aligngan_jax.models import agw

  torch = _torch()
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such official AGW/CAJ checkpoint.')
  try:
    # The official files hold NumPy arrays and scalars beside the weights
    # (cmc, mAP, mINP): allow exactly those globals, never weights_only=False.
    with torch.serialization.safe_globals(_numpy_globals()):
      saved = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f'{path}: not an official AGW/CAJ checkpoint ({first}).') from e
  state = saved.get('net', saved) if isinstance(saved, dict) else None
  if not isinstance(state, dict) or 'classifier.weight' not in state:
    raise ValueError(
        f"{path}: holds no AGW network (no 'net' state dict with a classifier.weight)."
    )
  state = {
      k[len('module.') :] if k.startswith('module.') else k: v.detach().cpu().float().numpy()
      for k, v in state.items()
  }
  try:
    architecture = agw_architecture(state)
  except (KeyError, ValueError) as e:
    raise ValueError(f'{path}: not an official AGW/CAJ network ({e}).') from e
  bias = state.pop('bottleneck.bias', None)
  if bias is not None and np.any(bias):
    raise ValueError(
        f'{path}: bottleneck.bias is not 0; the official BNNeck '
        'freezes it at 0, and AGWNet has no such parameter.'
    )
  model = agw.AGWNet(**architecture)
  x = jnp.zeros((1, 64, 32, 3))
  template = jax.eval_shape(lambda: model.init(jax.random.key(0), rgb=x, ir=x, train=False))
  return _fill(
      state, template, _agw_path, source=path, ignore=tuple(k for k in state if _agw_unused(k))
  )
