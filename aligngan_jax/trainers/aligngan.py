"""AlignGAN (``config.trainer='aligngan'``): the three stages of spec §2-§3
over its eight networks (`players.ALL`), ``config.gan.stage_iterations``
iterations each; RGB test images are translated by G_rgb2ir first
(``config.gan.pixel_alignment``, spec §5)."""

import os

from absl import logging
import jax
import ml_collections

from aligngan_jax import config_checks
from aligngan_jax import convert
from aligngan_jax import players
from aligngan_jax import pretrained
from aligngan_jax import sampler as sampler_lib
from aligngan_jax import stages
from aligngan_jax.trainers import base
from aligngan_jax.trainers import feature_module

# config.gan.test_instance_norm: the generators' eval-mode InstanceNorm.
TEST_INSTANCE_NORMS = ('running', 'instance')


@base.register
class AlignGANTrainer(feature_module.FeatureModuleTrainer):
  name = 'aligngan'
  config_group = 'gan'
  network_names = players.ALL

  @classmethod
  def default_config(cls):
    """The pixel module and the three stages (§2-§3; aligngan_jax/stages.py)."""
    g = ml_collections.ConfigDict()
    g.conv_dim = 64
    g.num_residual = 4
    g.d_layers = 4
    g.learning_rate = 2e-4  # Adam, every pixel-module net
    g.adam_b1 = 0.5
    g.adam_b2 = 0.999
    g.lambda_cyc = 10.0
    g.lambda_idt = 5.0
    g.lambda_pixel_tri = 0.1
    g.lambda_pixel_cls = 0.1
    g.lambda_feature_gan = 0.1
    # Ablation switch (official True): False feeds the feature module the
    # real RGB image instead of G_rgb2ir's fake IR, in the joint feature
    # iteration and at test time ("AlignGAN without pixel alignment").
    g.pixel_alignment = True
    # Test-time InstanceNorm of the generators: 'running' (official) uses
    # the running statistics, which average what G_rgb2ir saw in training:
    # real RGB, fake RGB (cycle) and real IR (identity); 'instance' (not
    # official) normalises each image with its own statistics, as in
    # training. Changes nothing in training. The demo uses 'instance'
    # (configs/synthetic.py).
    g.test_instance_norm = 'running'
    g.pixel_ids_per_batch = 4  # pixel batches: 4 x 4 per modality
    g.pixel_instances_per_id = 4
    # Iterations of stage 1 (feature warm-up), 2 (pixel warm-up), 3
    # (joint), and the global iteration of the x0.1 decay of every optimizer
    # (official step 200 = 20,000 iterations, 5,000 into stage 3).
    g.stage_iterations = (5_000, 10_000, 10_100)
    g.lr_milestones = (20_000,)
    return g

  @classmethod
  def validate(cls, config, *, num_devices):
    g = config.gan
    config_checks.check_ints(
        config,
        ('gan.conv_dim', 'gan.d_layers', 'gan.pixel_ids_per_batch', 'gan.pixel_instances_per_id'),
    )
    config_checks.check_ints(config, ('gan.num_residual',), minimum=0)
    iterations = tuple(g.stage_iterations)
    if (
        len(iterations) != 3
        or not all(map(config_checks.is_count, iterations))
        or sum(iterations) <= 0
    ):
      raise config_checks.ConfigError(
          f'config.gan.stage_iterations={iterations} must be three non-negative '
          'integers (stages 1, 2, 3), at least one of them positive.'
      )
    config_checks.check_milestones(config, 'gan.lr_milestones')
    if g.test_instance_norm not in TEST_INSTANCE_NORMS:
      raise config_checks.ConfigError(
          f'config.gan.test_instance_norm={g.test_instance_norm!r} is not one of '
          f'{TEST_INSTANCE_NORMS}.'
      )
    if g.pixel_instances_per_id < 2:
      raise config_checks.ConfigError(
          f'config.gan.pixel_instances_per_id={g.pixel_instances_per_id} must be '
          '>= 2: the triplet on the fake IR images needs a positive other than '
          'the anchor.'
      )
    _check_image_size(config)
    if g.pixel_ids_per_batch < 2:
      raise config_checks.ConfigError(
          f'config.gan.pixel_ids_per_batch={g.pixel_ids_per_batch} must be >= 2: '
          'the joint discriminator pairs each IR image with the feature map of '
          'another identity.'
      )
    pixel = g.pixel_ids_per_batch * g.pixel_instances_per_id
    if pixel % num_devices:
      raise config_checks.ConfigError(
          f'config.gan.pixel_ids_per_batch * config.gan.pixel_instances_per_id = '
          f'{g.pixel_ids_per_batch} * {g.pixel_instances_per_id} = {pixel} images '
          f'per modality is not divisible by the {num_devices} devices.'
      )

  @classmethod
  def check_release(cls, config):
    missing = [
        f'model-{i}_{config.init_from_step}.pkl'
        for i in range(8)
        if not os.path.isfile(
            os.path.join(config.init_from, f'model-{i}_{config.init_from_step}.pkl')
        )
    ]
    if missing:
      raise config_checks.ConfigError(
          f'config.init_from={config.init_from!r} lacks {", ".join(missing)}: it must hold '
          'the official AlignGAN release files model-{0..7}_'
          f'{config.init_from_step}.pkl (config.init_from_step).'
      )

  @classmethod
  def release_extractors(cls, config, mesh):
    """The official release (spec §5): RGB images translated by G_rgb2ir."""
    variables = convert.load_official_checkpoint(config.init_from, step=config.init_from_step)
    return pretrained.official_extractors(variables, config, mesh)

  def before_training(self):
    _warn_about_image_size(self.config)

  # --- data and stages ----------------------------------------------------------
  def samplers(self, rgb_labels, ir_labels):
    self.check_data(rgb_labels, ir_labels, ('ids_per_batch', 'gan.pixel_ids_per_batch'))
    g = self.config.gan
    return {
        'feature': self.feature_sampler(rgb_labels, ir_labels),
        'pixel': sampler_lib.PKSampler(
            rgb_labels,
            ir_labels,
            ids_per_batch=g.pixel_ids_per_batch,
            instances_per_id=g.pixel_instances_per_id,
            seed=self.config.seed + 1,
        ),
    }

  def stages(self):
    c, models = self.config, self.networks
    feature = c.ids_per_batch * c.instances_per_id
    pixel = c.gan.pixel_ids_per_batch * c.gan.pixel_instances_per_id
    iterations = [int(n) for n in c.gan.stage_iterations]

    def on(sampler, step):
      # Stages 1 and 2 take one batch, stage 3 both.
      return lambda state, batches: step(
          state, batches[sampler] if sampler else batches, models=models, config=c
      )

    # Stage 1 reads the IR half of a feature batch only.
    return (
        base.Stage(
            1, 'stage 1', on('feature', stages.stage1_step), ('feature',), iterations[0], feature
        ),
        base.Stage(
            2, 'stage 2', on('pixel', stages.stage2_step), ('pixel',), iterations[1], 2 * pixel
        ),
        base.Stage(
            3,
            'stage 3',
            on(None, stages.stage3_step),
            ('feature', 'pixel'),
            iterations[2],
            2 * (feature + pixel),
        ),
    )

  # --- test time -------------------------------------------------------------------
  @property
  def translates_rgb(self):
    return bool(self.config.gan.pixel_alignment)

  def translator(self):
    """Jitted (state, rgb) -> (fake IR, reconstructed RGB), eval mode: what
    the generators do at test time."""
    models = self.networks

    def translate(state, rgb):
      apply = lambda name, x: models[name].apply(
          {'params': state.params[name], 'batch_stats': state.batch_stats[name]}, x, train=False
      )
      fake_ir = apply('G_rgb2ir', rgb)
      return fake_ir, apply('G_ir2rgb', fake_ir)

    return jax.jit(translate)


def _discriminator_halvings(config) -> dict[str, int]:
  """How often each discriminator halves the image (models/gan.py: 4x4
  stride-2 convolutions, rounding down) before its last InstanceNorm."""
  return {'PatchDiscriminator': config.gan.d_layers + 1, 'JointDiscriminator': 5}


def _check_image_size(config):
  """The networks' minimum image sizes: the generators map S to S only for S
  divisible by 4 (two stride-2 downs, two transposed ups); a discriminator
  whose last InstanceNorm sees a 0x0 map gives NaN. The sizes suggested
  are valid under both rules."""
  size = config.image_size
  halvings = _discriminator_halvings(config)
  smallest = max(1 << h for h in halvings.values())  # a power of 2 >= 4
  for network, h in halvings.items():
    if size >> h < 1:
      raise config_checks.ConfigError(
          f'config.image_size={size} is too small for the {network}: its last '
          f'InstanceNorm would see a 0x0 map (NaN losses); the smallest valid '
          f'size is {smallest}, {2 * smallest} for 2x2 maps.'
      )
  if size % 4:
    below, above = size - size % 4, size + 4 - size % 4
    nearest = [s for s in (below, above) if s >= smallest]
    raise config_checks.ConfigError(
        f'config.image_size={size}: the generators need a multiple of 4 (nearest '
        f'valid: {", ".join(map(str, nearest))}).'
    )


def _warn_about_image_size(config):
  """Logs each discriminator whose last InstanceNorm sees 1x1 maps: it
  normalises them to zero, so that discriminator learns little."""
  size = config.image_size
  for network, halvings in _discriminator_halvings(config).items():
    if size >> halvings == 1:
      logging.warning(
          "config.image_size=%d: the %s's last InstanceNorm sees 1x1 maps, "
          'which it normalises to zero (that discriminator then learns '
          'little); %d or more gives 2x2 maps.',
          size,
          network,
          2 << halvings,
      )
