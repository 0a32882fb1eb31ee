"""CAJ (Ye et al., ICCV 2021, channel augmented joint learning;
mangye16/Cross-Modal-Re-ID-baseline ``ICCV21_CAJ``), as a trainer
(``config.trainer='caj'``): AGW's network, sampler, optimizer and schedule
(`agw.AGWTrainer`), with the official CAJ data and loss
(baselines_reference.md §2-§5):

- three images per item, from independent draws: RGB view 0 (pad-crop-flip,
  normalise, channel random erasing), RGB view 1 of the same image (the same,
  then channel exchange) and IR (the same, then adaptive grey); the shared
  part sees [view 0; view 1; IR] with labels [l; l; l];
- CE + the adaptive triplet (``TripletLoss_ADP``, alpha 1, gamma 1, square);
  the KL term is off, as in the official runs;
- 100 epochs; at test time the flip variant: the L2-normalised outputs of the
  image and of its mirror image, averaged and normalised again ('bn', the
  reported one, and 'pool'); the unflipped ones too ('bn_noflip',
  'pool_noflip').

The official augmentations are hard-coded in its dataset whatever the
flags say; here they are fixed too. Their draws come from ``fold_in(rng,
step)`` (the official ones from Python's and PyTorch's generators).
"""

import jax
import jax.numpy as jnp

from aligngan_jax import augment
from aligngan_jax import losses
from aligngan_jax.trainers import agw
from aligngan_jax.trainers import base


@base.register
class CAJTrainer(agw.AGWTrainer):
  name = 'caj'
  config_group = 'caj'
  # The official test (testa.py) averages each feature with its mirror
  # image's; the unflipped ones are reported beside them.
  feature_names = ('bn', 'pool', 'bn_noflip', 'pool_noflip')

  @classmethod
  def default_config(cls):
    g = super().default_config()
    g.epochs = 100
    g.alpha = 1.0
    g.gamma = 1.0
    g.square = True
    g.erase_p = 0.5
    return g

  def train_inputs(self, batch, key):
    g = self.group
    keys = jax.random.split(key, 8)
    n = batch['rgb'].shape[0]
    size = tuple(g.input_size)

    def erased(images, k):
      return augment.erase_rectangles(images, *augment.draw_erasing(k, n, size, p=g.erase_p))

    view0 = erased(self._augmented(batch['rgb'], keys[0]), keys[1])
    view1 = erased(self._augmented(batch['rgb'], keys[2]), keys[3])
    view1 = augment.channel_exchange(view1, augment.draw_channel_exchange(keys[4], n))
    ir = erased(self._augmented(batch['ir'], keys[5]), keys[6])
    ir = augment.channel_adaptive_grey(ir, *augment.draw_adaptive_grey(keys[7], n))
    labels = jnp.concatenate([batch['labels']] * 3)
    return jnp.concatenate([view0, view1]), ir, labels

  def loss(self, out, labels):
    g = self.group
    ce = losses.cross_entropy(out['logits'], labels)
    triplet = losses.adaptive_triplet(
        out['pool'], labels, alpha=g.alpha, gamma=g.gamma, square=bool(g.square)
    )
    accuracy = jnp.mean(jnp.argmax(out['logits'], -1) == labels)
    return ce + triplet, {
        'caj/loss': ce + triplet,
        'caj/ce': ce,
        'caj/triplet': triplet,
        'caj/accuracy': accuracy,
    }

  def test_features(self, state, images, *, modality):
    """testa.py: normalised outputs of the image and its mirror, averaged,
    normalised again."""
    plain = self._eval_outputs(state, images, modality)
    mirrored = self._eval_outputs(state, images[:, :, ::-1], modality)
    return {
        **{k: agw.unit(plain[k] + mirrored[k]) for k in plain},
        **{f'{k}_noflip': v for k, v in plain.items()},
    }
