"""Checks a run's config and workdir before any expensive work.

Every error is a `ConfigError` whose message names the key or path at
fault; main.py prints it as one line.
"""

import json
import math
import os
import re
import tempfile

import ml_collections

from aligngan_jax import errors
from aligngan_jax import players
from aligngan_jax import pretrained
from aligngan_jax.evaluation import protocols
from aligngan_jax.evaluation import ranking
from aligngan_jax.models import gan
from aligngan_jax.models import resnet

_MODES = ('train', 'eval', 'visualize')


ConfigError = errors.ConfigError


def validate_config(config: ml_collections.ConfigDict, *, num_devices: int):
  """Checks the values a run depends on before any work is done."""
  if config.mode not in _MODES:
    raise ConfigError(f'config.mode={config.mode!r} is not one of {_MODES}.')
  from aligngan_jax import trainers

  known = tuple(trainers.registered())
  if config.trainer not in known:
    raise ConfigError(f'config.trainer={config.trainer!r} is not one of {known}.')
  trainer = trainers.get(config.trainer)
  if config.compute_dtype not in players.COMPUTE_DTYPES:
    raise ConfigError(
        f'config.compute_dtype={config.compute_dtype!r} is not one of {players.COMPUTE_DTYPES}.'
    )
  check_ints(
      config,
      (
          'image_size',
          'ids_per_batch',
          'instances_per_id',
          'eval_batch_size',
          'log_every_steps',
          'checkpoint_every_steps',
          'max_checkpoints_to_keep',
          'eval_every_steps',
          'image_every_steps',
          'grid_people',
          'eval.max_rank',
          'eval.num_trials',
      ),
  )
  check_ints(config, ('resume_step',), minimum=-1)
  check_real_values(config)
  check_folders(config)
  if config.instances_per_id < 2:
    raise ConfigError(
        f'config.instances_per_id={config.instances_per_id} must be >= 2: the '
        'batch-hard triplet of a modality needs a positive other than the anchor.'
    )
  _validate_eval(config.eval)
  if trainer.config_group and trainer.config_group not in config:
    raise ConfigError(
        f'config.{trainer.config_group} is missing: the group of '
        f'config.trainer={config.trainer!r} (configs/default.py adds '
        'the group of every registered trainer).'
    )
  trainer.validate(config, num_devices=num_devices)
  batch = config.ids_per_batch * config.instances_per_id
  if batch % num_devices:
    raise ConfigError(
        f'config.ids_per_batch * config.instances_per_id = '
        f'{config.ids_per_batch} * {config.instances_per_id} = {batch} images per '
        f'modality is not divisible by the {num_devices} devices; change '
        'config.ids_per_batch or config.instances_per_id.'
    )
  if config.eval_batch_size % num_devices:
    raise ConfigError(
        f'config.eval_batch_size={config.eval_batch_size} is not divisible by '
        f'the {num_devices} devices.'
    )
  grey, channel = config.rgb_grey_prob, config.rgb_channel_prob
  if grey < 0 or channel < 0 or grey + channel > 1:
    raise ConfigError(
        f'config.rgb_grey_prob={grey} and config.rgb_channel_prob='
        f'{channel} must be >= 0 and sum to at most 1.'
    )
  if config.mode == 'train' and (problem := pretrained.check_backbone_config(config)):
    raise ConfigError(problem)
  if config.mode == 'eval' and config.init_from:
    trainer.check_release(config)
  if config.model.gan_norm_scale_init not in gan.NORM_SCALE_INITS:
    raise ConfigError(
        f'config.model.gan_norm_scale_init={config.model.gan_norm_scale_init!r} '
        f'is not one of {tuple(gan.NORM_SCALE_INITS)}.'
    )
  if config.model.remat not in resnet.REMAT_POLICIES:
    raise ConfigError(
        f'config.model.remat={config.model.remat!r} is not one of '
        f'{tuple(resnet.REMAT_POLICIES)}.'
    )
  if config.model.depth not in resnet.DEPTHS:
    raise ConfigError(
        f'config.model.depth={config.model.depth} must be one of '
        f'{", ".join(map(str, resnet.DEPTHS))}.'
    )


# Real-valued keys by the last part of their name: rates must be positive,
# fractions lie in [0, 1]; every other real value (loss weights, factors,
# margins, decays, bounds) must be >= 0. Nothing here is meaningful when
# negative, and a NaN or inf only surfaces as a non-finite loss much later.
_POSITIVE = re.compile(r'(^|_)learning_rate$')
_FRACTION = re.compile(r'(_prob|_p|^momentum|^adam_b[12]|^dropout_rate|_lambda)$')


def _real_leaves(config, prefix=''):
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _real_leaves(value, f'{prefix}{key}.')
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      yield f'{prefix}{key}', key, value


def check_real_values(config) -> None:
  """Every rate, weight, factor, probability and bound: finite, and in its
  range (learning rates > 0, probabilities and momenta in [0, 1], the
  rest >= 0); floats everywhere, and the ints of rate-like keys."""
  for path, key, value in _real_leaves(config):
    if isinstance(value, int) and not (_POSITIVE.search(key) or _FRACTION.search(key)):
      continue  # counts and sizes: check_ints and the trainers' checks
    if not math.isfinite(value):
      raise ConfigError(f'config.{path}={value!r} must be a finite number.')
    if _POSITIVE.search(key) and value <= 0:
      raise ConfigError(f'config.{path}={value!r} must be > 0 (a learning rate).')
    if _FRACTION.search(key) and not 0 <= value <= 1:
      raise ConfigError(f'config.{path}={value!r} must lie in [0, 1].')
    if value < 0:
      raise ConfigError(
          f'config.{path}={value!r} must be >= 0'
          + (' (0: no bound).' if key == 'checkpoint_max_abs' else '.')
      )


def check_folders(config) -> None:
  """``config.data_dir`` and ``config.manual_dir``, when set, must not be
  files. (A missing one is fine here: TFDS creates data_dir, and a
  manual_dir is read only when a dataset is built, whose builder names it
  with where to get the data.)"""
  for key, what in (
      ('data_dir', 'the TFDS data folder'),
      ('manual_dir', "the folder holding the dataset's download"),
  ):
    path = config.get(key)
    if path and os.path.exists(path) and not os.path.isdir(path):
      raise ConfigError(f'config.{key}={path} is a file, not a folder: pass {what}.')


def get_key(config, key):
  """``config['a']['b']`` of ``key='a.b'``."""
  for part in key.split('.'):
    config = config[part]
  return config


def is_count(value, minimum=0) -> bool:
  """An integer (not a bool) >= ``minimum``."""
  return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def check_ints(config, keys, *, minimum=1):
  """Each key must hold an integer >= ``minimum``."""
  for key in keys:
    value = get_key(config, key)
    if not is_count(value, minimum):
      kind = 'a positive integer' if minimum == 1 else f'an integer >= {minimum}'
      raise ConfigError(f'config.{key}={value!r} must be {kind}.')


def check_milestones(config, key):
  value = tuple(get_key(config, key))
  if not all(map(is_count, value)) or list(value) != sorted(value):
    raise ConfigError(
        f'config.{key}={value} must be ascending non-negative integers (global iterations).'
    )


def _validate_eval(ev):
  choices = {'protocol': ranking.PROTOCOLS, 'sampling': protocols.SAMPLINGS}
  for key, allowed in choices.items():
    if ev[key] not in allowed:
      raise ConfigError(f'config.eval.{key}={ev[key]!r} is not one of {allowed}.')
  for key, allowed in (
      ('sysu_modes', protocols.SYSU_GALLERY_CAMERAS),
      ('sysu_shots', protocols.SYSU_SHOTS),
      ('regdb_directions', protocols.REGDB_DIRECTIONS),
      ('llcm_directions', protocols.LLCM_DIRECTIONS),
  ):
    bad = [v for v in ev[key] if v not in allowed]
    if bad:
      raise ConfigError(f'config.eval.{key} has {bad}; allowed: {tuple(allowed)}.')
  if ev.num_trials > protocols.NUM_TRIALS:
    raise ConfigError(
        f'config.eval.num_trials={ev.num_trials}: the protocols '
        f'define {protocols.NUM_TRIALS} trials.'
    )
  if ev.sampling == 'official' and ev.protocol == 'sysu':
    if not ev.rand_perm_path or not os.path.isfile(ev.rand_perm_path):
      raise ConfigError(
          f'config.eval.rand_perm_path={ev.rand_perm_path!r} is not a file; '
          "config.eval.sampling='official' needs data_split/rand_perm_cam.mat "
          'from the official SYSU-MM01 evaluation kit '
          '(github.com/wuancong/SYSU-MM01).'
      )


def writable_problem(folder: str) -> str | None:
  """Creates ``folder`` (as ``mkdir -p``) and proves it writable; returns
  why it cannot be, or None."""
  try:
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
      pass
  except OSError as e:
    return str(e.strerror or e)
  return None


def ensure_writable(workdir: str):
  """Creates ``workdir`` and proves it is writable, or raises ConfigError."""
  if problem := writable_problem(workdir):
    raise ConfigError(f'--workdir={workdir} is not writable: {problem}.')


# What training and the tools write into a workdir (clu adds
# events.out.tfevents.* files).
WORKDIR_ENTRIES = (
    'config.json',
    'log.txt',
    'checkpoints',
    'checkpoints_set_aside',
    'eval',
    'images',
    'visualize',
    'search',
    'search_cache',
)


def is_run_config(raw) -> bool:
  """Whether ``raw`` (a config.json's JSON) is a config this project wrote:
  an object with the keys every config has."""
  return isinstance(raw, dict) and {'dataset', 'model', 'image_size'} <= set(raw)


def _is_run_config_file(path: str) -> bool:
  try:
    with open(path, encoding='utf-8') as f:
      return is_run_config(json.load(f))
  except (OSError, ValueError):
    return False


def ensure_workdir(workdir: str):
  """Training's workdir: new, empty, or one this project wrote (its
  config.json, or checkpoints/); then created and proven writable. A
  folder of other files is refused before anything is written in it: a
  mistyped --workdir must not overwrite a config.json, or fill a home
  folder with checkpoints."""
  if os.path.isdir(workdir):
    names = os.listdir(workdir)
    config = os.path.join(workdir, 'config.json')
    if os.path.exists(config) and not _is_run_config_file(config):
      raise ConfigError(
          f'--workdir={workdir} holds a config.json that main.py did not write '
          '(not a run config); it is not overwritten: pass a new or empty --workdir.'
      )
    ours = os.path.exists(config) or os.path.isdir(os.path.join(workdir, 'checkpoints'))
    foreign = sorted(
        n for n in names if n not in WORKDIR_ENTRIES and not n.startswith('events.out.tfevents')
    )
    if foreign and not ours:
      raise ConfigError(
          f'--workdir={workdir} is a folder of other files ({", ".join(foreign[:3])}'
          f'{", ..." if len(foreign) > 3 else ""}), not a workdir of this project '
          '(no config.json or checkpoints/): pass a new or empty --workdir.'
      )
  ensure_writable(workdir)
