"""Checks a run's config and workdir before any expensive work.

Every error is a `ConfigError` whose message names the key or path at
fault; main.py prints it as one line.
"""

import os
import tempfile

import ml_collections

from aligngan_jax import players
from aligngan_jax import pretrained
from aligngan_jax.evaluation import protocols
from aligngan_jax.evaluation import ranking
from aligngan_jax.models import gan
from aligngan_jax.models import resnet

_MODES = ('train', 'eval', 'visualize')
_TRAINERS = ('ide', 'aligngan')
_OPTIMIZERS = ('sgd', 'adam')


class ConfigError(ValueError):
  """An invalid config value or path; the message names the key or path."""


def validate_config(config: ml_collections.ConfigDict, *, num_devices: int):
  """Checks the values a run depends on before any work is done."""
  if config.mode not in _MODES:
    raise ConfigError(f'config.mode={config.mode!r} is not one of {_MODES}.')
  if config.trainer not in _TRAINERS:
    raise ConfigError(f'config.trainer={config.trainer!r} is not one of {_TRAINERS}.')
  if config.compute_dtype not in players.COMPUTE_DTYPES:
    raise ConfigError(f'config.compute_dtype={config.compute_dtype!r} is not one '
                      f'of {players.COMPUTE_DTYPES}.')
  for key in ('image_size', 'ids_per_batch', 'instances_per_id',
              'eval_batch_size', 'num_train_steps', 'log_every_steps',
              'checkpoint_every_steps', 'max_checkpoints_to_keep',
              'eval_every_steps', 'image_every_steps', 'grid_people',
              'eval.max_rank', 'eval.num_trials'):
    value = config[key.split('.')[0]][key.split('.')[1]] if '.' in key else config[key]
    if not isinstance(value, int) or value <= 0:
      raise ConfigError(f'config.{key}={value!r} must be a positive integer.')
  _validate_eval(config.eval)
  batch = config.ids_per_batch * config.instances_per_id
  if batch % num_devices:
    raise ConfigError(
        f'config.ids_per_batch * config.instances_per_id = '
        f'{config.ids_per_batch} * {config.instances_per_id} = {batch} images per '
        f'modality is not divisible by the {num_devices} devices; change '
        'config.ids_per_batch or config.instances_per_id.')
  if config.eval_batch_size % num_devices:
    raise ConfigError(
        f'config.eval_batch_size={config.eval_batch_size} is not divisible by '
        f'the {num_devices} devices.')
  grey, channel = config.rgb_grey_prob, config.rgb_channel_prob
  if grey < 0 or channel < 0 or grey + channel > 1:
    raise ConfigError(f'config.rgb_grey_prob={grey} and config.rgb_channel_prob='
                      f'{channel} must be >= 0 and sum to at most 1.')
  if config.mode == 'train' and (problem := pretrained.check_backbone_config(config)):
    raise ConfigError(problem)
  if config.mode == 'eval' and config.init_from:
    missing = [f'model-{i}_{config.init_from_step}.pkl' for i in range(8)
               if not os.path.isfile(os.path.join(
                   config.init_from, f'model-{i}_{config.init_from_step}.pkl'))]
    if missing:
      raise ConfigError(
          f'config.init_from={config.init_from!r} lacks {", ".join(missing)}: '
          'it must hold the official AlignGAN release files model-{0..7}_'
          f'{config.init_from_step}.pkl (config.init_from_step).')
  if config.model.gan_norm_scale_init not in gan.NORM_SCALE_INITS:
    raise ConfigError(
        f'config.model.gan_norm_scale_init={config.model.gan_norm_scale_init!r} '
        f'is not one of {tuple(gan.NORM_SCALE_INITS)}.')
  if config.model.remat not in resnet.REMAT_POLICIES:
    raise ConfigError(f'config.model.remat={config.model.remat!r} is not one of '
                      f'{tuple(resnet.REMAT_POLICIES)}.')
  if config.optimizer not in _OPTIMIZERS:
    raise ConfigError(f'config.optimizer={config.optimizer!r} is not one of '
                      f'{_OPTIMIZERS}.')
  if list(config.lr_milestones) != sorted(config.lr_milestones):
    raise ConfigError(f'config.lr_milestones={config.lr_milestones} must be '
                      'ascending.')
  if config.model.depth not in (18, 34, 50, 101):
    raise ConfigError(f'config.model.depth={config.model.depth} must be one of '
                      '18, 34, 50, 101.')


def _validate_eval(ev):
  choices = {'protocol': ranking.PROTOCOLS, 'sampling': protocols.SAMPLINGS}
  for key, allowed in choices.items():
    if ev[key] not in allowed:
      raise ConfigError(f'config.eval.{key}={ev[key]!r} is not one of {allowed}.')
  for key, allowed in (('sysu_modes', protocols.SYSU_GALLERY_CAMERAS),
                       ('sysu_shots', protocols.SYSU_SHOTS),
                       ('regdb_directions', protocols.REGDB_DIRECTIONS),
                       ('llcm_directions', protocols.LLCM_DIRECTIONS)):
    bad = [v for v in ev[key] if v not in allowed]
    if bad:
      raise ConfigError(f'config.eval.{key} has {bad}; allowed: {tuple(allowed)}.')
  if ev.num_trials > protocols.NUM_TRIALS:
    raise ConfigError(f'config.eval.num_trials={ev.num_trials}: the protocols '
                      f'define {protocols.NUM_TRIALS} trials.')
  if ev.sampling == 'official' and ev.protocol == 'sysu':
    if not ev.rand_perm_path or not os.path.isfile(ev.rand_perm_path):
      raise ConfigError(
          f'config.eval.rand_perm_path={ev.rand_perm_path!r} is not a file; '
          "config.eval.sampling='official' needs data_split/rand_perm_cam.mat "
          'from the official SYSU-MM01 evaluation kit '
          '(github.com/wuancong/SYSU-MM01).')


def ensure_writable(workdir: str):
  """Creates ``workdir`` and proves it is writable, or raises ConfigError."""
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as e:
    raise ConfigError(f'--workdir={workdir} is not writable: '
                      f'{e.strerror or e}.') from e

