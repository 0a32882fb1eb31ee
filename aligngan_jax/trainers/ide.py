"""The IDE baseline (``config.trainer='ide'``): the feature module alone,
one stage of `stages.ide_step` (CE on both modalities + the cross-modal
triplets), ``config.ide.num_train_steps`` iterations."""

import ml_collections

from aligngan_jax import config_checks
from aligngan_jax import players
from aligngan_jax import stages
from aligngan_jax.trainers import base
from aligngan_jax.trainers import feature_module

OPTIMIZERS = ('sgd', 'adam')


@base.register
class IDETrainer(feature_module.FeatureModuleTrainer):
  name = 'ide'
  config_group = 'ide'

  @classmethod
  def default_config(cls):
    # Its schedule mirrors the official feature module's: 5,000 warm-up +
    # 10,100 joint SGD steps, one decay after 5,000 joint steps.
    group = ml_collections.ConfigDict()
    group.num_train_steps = 15_100
    group.lr_milestones = (10_000,)
    group.optimizer = 'sgd'  # 'sgd' (official) | 'adam'
    return group

  @classmethod
  def validate(cls, config, *, num_devices):
    del num_devices
    config_checks.check_ints(config, ('ide.num_train_steps',))
    config_checks.check_milestones(config, 'ide.lr_milestones')
    if config.ide.optimizer not in OPTIMIZERS:
      raise config_checks.ConfigError(
          f'config.ide.optimizer={config.ide.optimizer!r} is not one of {OPTIMIZERS}.'
      )

  def optimizers(self):
    tx = players.feature_optimizer(self.config, self.config.ide.optimizer)
    return {name: tx for name in self.network_names}

  def stages(self):
    c = self.config
    models, config = self.networks, c
    return (
        base.Stage(
            1,
            'ide',
            lambda state, batches: stages.ide_step(
                state, batches['feature'], models=models, config=config
            ),
            ('feature',),
            int(c.ide.num_train_steps),
            2 * c.ids_per_batch * c.instances_per_id,
        ),
    )
