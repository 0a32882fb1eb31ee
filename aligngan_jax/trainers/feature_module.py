"""What the IDE and AlignGAN trainers share: the feature module (ResNet
trunk + heads, `players.feature_models`), its SGD, its learning-rate path,
its pretrained trunk, its P x K feature sampler and its test feature (spec
§5: flip-summed pooled trunk features, L2-normalised)."""

import functools

from absl import logging
import jax

from aligngan_jax import players
from aligngan_jax import pretrained
from aligngan_jax import sampler as sampler_lib
from aligngan_jax import sharding
from aligngan_jax.evaluation import features as features_lib
from aligngan_jax.trainers import base


class FeatureModuleTrainer(base.Trainer):
  """Base of `ide.IDETrainer` and `aligngan.AlignGANTrainer`."""

  feature_names = ('pool',)
  # The networks it trains, in `players.ALL` order.
  network_names: tuple[str, ...] = players.FEATURE

  # --- config ---------------------------------------------------------------
  @classmethod
  def fetch_pretrained(cls, config):
    """The local file of ``config.pretrained_backbone`` (fetched and verified
    on first use), or None."""
    return pretrained.backbone_file(config) if config.pretrained_backbone else None

  # --- networks and optimisation --------------------------------------------
  def build_networks(self) -> dict:
    return players.create_models(self.config, self.info.num_classes, self.network_names)

  def init_variables(self, key):
    return players.init_variables(self.config, self.networks, key)

  def optimizers(self) -> dict:
    return players.create_optimizers(self.config, self.network_names)

  def learning_rates(self, step) -> dict:
    rates = players.lr_at(self.config, step)
    return {name: rates[name] for name in self.network_names}

  def load_pretrained(self, state, mesh, fetched):
    if not self.config.pretrained_backbone:
      return state
    state = pretrained.load_backbone(state, self.config, mesh, resolved=fetched)
    logging.info('Trunk initialised from %s.', self.config.pretrained_backbone)
    return state

  # --- data ---------------------------------------------------------------------
  def feature_sampler(self, rgb_labels, ir_labels) -> sampler_lib.PKSampler:
    c = self.config
    return sampler_lib.PKSampler(
        rgb_labels,
        ir_labels,
        ids_per_batch=c.ids_per_batch,
        instances_per_id=c.instances_per_id,
        seed=c.seed,
        rgb_grey_prob=c.rgb_grey_prob,
        rgb_channel_prob=c.rgb_channel_prob,
    )

  def samplers(self, rgb_labels, ir_labels) -> dict:
    self.check_data(rgb_labels, ir_labels, ('ids_per_batch',))
    return {'feature': self.feature_sampler(rgb_labels, ir_labels)}

  # --- test time ------------------------------------------------------------------
  @property
  def translates_rgb(self) -> bool:
    """Whether RGB test images pass through G_rgb2ir first (spec §5)."""
    return False

  def _features(self, state, images, *, translate: bool) -> dict:
    variables = lambda name: {'params': state.params[name], 'batch_stats': state.batch_stats[name]}
    return {
        'pool': features_lib.translated_test_features(
            self.networks.get('G_rgb2ir'),
            variables('G_rgb2ir') if translate else None,
            self.networks['encoder'],
            variables('encoder'),
            images,
            translate=translate,
            encoder_input_size=tuple(self.config.encoder_input_size),
        )
    }

  def test_features(self, state, images, *, modality):
    return self._features(state, images, translate=modality == 'rgb' and self.translates_rgb)

  def extractors(self, mesh) -> dict:
    # Without translation both modalities share one function (one compile).
    repl = sharding.replicated(mesh)
    jitted = {
        translate: jax.jit(
            functools.partial(self._features, translate=translate),
            in_shardings=(repl, sharding.data_sharded(mesh)),
            out_shardings=repl,
        )
        for translate in {False, self.translates_rgb}
    }
    return {'rgb': jitted[self.translates_rgb], 'ir': jitted[False]}
