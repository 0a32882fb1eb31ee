"""Checks a run's config and workdir before any expensive work.

Every error is a `ConfigError` whose message names the key or path at
fault; main.py prints it as one line.
"""

import os
import tempfile

from absl import logging
import ml_collections

from aligngan_jax import players
from aligngan_jax import pretrained
from aligngan_jax import trainers
from aligngan_jax.evaluation import protocols
from aligngan_jax.evaluation import ranking
from aligngan_jax.models import gan
from aligngan_jax.models import resnet

_MODES = ('train', 'eval', 'visualize')
_IDE_OPTIMIZERS = ('sgd', 'adam')
# config.gan.test_instance_norm: the generators' eval-mode InstanceNorm.
TEST_INSTANCE_NORMS = ('running', 'instance')
# Keys that one trainer alone reads moved into its group; an old config
# file or command line that still sets them gets the new place in one line.
MOVED_KEYS = {'num_train_steps': 'ide.num_train_steps',
              'lr_milestones': 'ide.lr_milestones (AlignGAN: gan.lr_milestones)',
              'optimizer': 'ide.optimizer'}


class ConfigError(ValueError):
  """An invalid config value or path; the message names the key or path."""


def validate_config(config: ml_collections.ConfigDict, *, num_devices: int):
  """Checks the values a run depends on before any work is done."""
  if config.mode not in _MODES:
    raise ConfigError(f'config.mode={config.mode!r} is not one of {_MODES}.')
  for key in MOVED_KEYS:
    if key in config:
      raise ConfigError(moved_key_message(key))
  if config.trainer not in trainers.TRAINERS:
    raise ConfigError(f'config.trainer={config.trainer!r} is not one of '
                      f'{trainers.TRAINERS}.')
  if config.compute_dtype not in players.COMPUTE_DTYPES:
    raise ConfigError(f'config.compute_dtype={config.compute_dtype!r} is not one '
                      f'of {players.COMPUTE_DTYPES}.')
  _check_ints(config, ('image_size', 'ids_per_batch', 'instances_per_id',
                       'eval_batch_size', 'log_every_steps',
                       'checkpoint_every_steps', 'max_checkpoints_to_keep',
                       'eval_every_steps', 'image_every_steps', 'grid_people',
                       'eval.max_rank', 'eval.num_trials'))
  _check_ints(config, ('resume_step',), minimum=-1)
  if not isinstance(config.checkpoint_max_abs, (int, float)) or config.checkpoint_max_abs < 0:
    raise ConfigError(f'config.checkpoint_max_abs={config.checkpoint_max_abs!r} must be '
                      'a number >= 0 (0: no bound).')
  if config.instances_per_id < 2:
    raise ConfigError(
        f'config.instances_per_id={config.instances_per_id} must be >= 2: the '
        'batch-hard triplet of a modality needs a positive other than the anchor.')
  _validate_eval(config.eval)
  if config.trainer == 'ide':
    _validate_ide(config)
  else:
    _validate_gan(config, num_devices)
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
  if config.model.depth not in resnet.DEPTHS:
    raise ConfigError(f'config.model.depth={config.model.depth} must be one of '
                      f'{", ".join(map(str, resnet.DEPTHS))}.')


def moved_key_message(key: str) -> str:
  return (f'config.{key} moved to config.{MOVED_KEYS[key]}: it is read by one '
          'trainer only (configs/default.py).')


def _get(config, key):
  for part in key.split('.'):
    config = config[part]
  return config


def _is_count(value, minimum=0) -> bool:
  """An integer (not a bool) >= ``minimum``."""
  return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_ints(config, keys, *, minimum=1):
  """Each key must hold an integer >= ``minimum``."""
  for key in keys:
    value = _get(config, key)
    if not _is_count(value, minimum):
      kind = 'a positive integer' if minimum == 1 else f'an integer >= {minimum}'
      raise ConfigError(f'config.{key}={value!r} must be {kind}.')


def _check_milestones(config, key):
  value = tuple(_get(config, key))
  if not all(map(_is_count, value)) or list(value) != sorted(value):
    raise ConfigError(f'config.{key}={value} must be ascending non-negative '
                      'integers (global iterations).')


def _validate_ide(config):
  """The keys only the IDE trainer reads (config.ide)."""
  _check_ints(config, ('ide.num_train_steps',))
  _check_milestones(config, 'ide.lr_milestones')
  if config.ide.optimizer not in _IDE_OPTIMIZERS:
    raise ConfigError(f'config.ide.optimizer={config.ide.optimizer!r} is not one '
                      f'of {_IDE_OPTIMIZERS}.')


def _validate_gan(config, num_devices):
  """The keys only the AlignGAN trainer reads (config.gan)."""
  g = config.gan
  _check_ints(config, ('gan.conv_dim', 'gan.d_layers', 'gan.pixel_ids_per_batch',
                       'gan.pixel_instances_per_id'))
  _check_ints(config, ('gan.num_residual',), minimum=0)
  iterations = tuple(g.stage_iterations)
  if len(iterations) != 3 or not all(map(_is_count, iterations)) or sum(iterations) <= 0:
    raise ConfigError(f'config.gan.stage_iterations={iterations} must be three '
                      'non-negative integers (stages 1, 2, 3), at least one of '
                      'them positive.')
  _check_milestones(config, 'gan.lr_milestones')
  if g.test_instance_norm not in TEST_INSTANCE_NORMS:
    raise ConfigError(f'config.gan.test_instance_norm={g.test_instance_norm!r} is '
                      f'not one of {TEST_INSTANCE_NORMS}.')
  if g.pixel_instances_per_id < 2:
    raise ConfigError(
        f'config.gan.pixel_instances_per_id={g.pixel_instances_per_id} must be '
        '>= 2: the triplet on the fake IR images needs a positive other than '
        'the anchor.')
  _check_image_size(config)
  if g.pixel_ids_per_batch < 2:
    raise ConfigError(f'config.gan.pixel_ids_per_batch={g.pixel_ids_per_batch} '
                      'must be >= 2: the joint discriminator pairs each IR image '
                      'with the feature map of another identity.')
  pixel = g.pixel_ids_per_batch * g.pixel_instances_per_id
  if pixel % num_devices:
    raise ConfigError(
        f'config.gan.pixel_ids_per_batch * config.gan.pixel_instances_per_id = '
        f'{g.pixel_ids_per_batch} * {g.pixel_instances_per_id} = {pixel} images '
        f'per modality is not divisible by the {num_devices} devices.')


def _discriminator_halvings(config) -> dict[str, int]:
  """How often each discriminator halves the image (models/gan.py: 4x4
  stride-2 convolutions, rounding down) before its last InstanceNorm."""
  return {'PatchDiscriminator': config.gan.d_layers + 1, 'JointDiscriminator': 5}


def _check_image_size(config):
  """The AlignGAN networks' minimum image sizes: the generators map S to S
  only for S divisible by 4 (two stride-2 downs, two transposed ups); a
  discriminator whose last InstanceNorm sees a 0x0 map gives NaN."""
  size = config.image_size
  if size % 4:
    raise ConfigError(f'config.image_size={size}: the generators need a multiple '
                      f'of 4 (nearest valid: {size - size % 4 or 4}, {size + 4 - size % 4}).')
  for network, halvings in _discriminator_halvings(config).items():
    if size >> halvings < 1:
      raise ConfigError(
          f'config.image_size={size} is too small for the {network}: its last '
          f'InstanceNorm would see a 0x0 map (NaN losses); the smallest valid '
          f'size is {1 << halvings}, {2 << halvings} for 2x2 maps.')


def warn_about_image_size(config):
  """Logs (once, when AlignGAN training starts; `validate_config` runs in
  several places) each discriminator whose last InstanceNorm sees 1x1 maps:
  it normalises them to zero, so that discriminator learns little."""
  size = config.image_size
  for network, halvings in _discriminator_halvings(config).items():
    if size >> halvings == 1:
      logging.warning(
          'config.image_size=%d: the %s\'s last InstanceNorm sees 1x1 maps, '
          'which it normalises to zero (that discriminator then learns '
          'little); %d or more gives 2x2 maps.', size, network, 2 << halvings)


def check_data(config, train_labels_rgb, train_labels_ir):
  """The P x K batch layouts against the training split's identities (those
  with RGB and IR images), right after the split is read: before anything
  is compiled."""
  both = len(set(train_labels_rgb.tolist()) & set(train_labels_ir.tolist()))
  keys = [('ids_per_batch', config.ids_per_batch)]
  if config.trainer == 'aligngan':
    keys.append(('gan.pixel_ids_per_batch', config.gan.pixel_ids_per_batch))
  for key, value in keys:
    if value > both:
      raise ConfigError(
          f'config.{key}={value} is more than the {both} training identities '
          f'with both RGB and IR images in {config.dataset}; lower config.{key}.')


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

