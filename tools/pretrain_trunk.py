"""Pretrains the demo's trunk: the synthetic world's counterpart of the
official ImageNet start (docs/decisions.md, "Why AlignGAN ended at chance").

The official AlignGAN fine-tunes an ImageNet ResNet-50: a trunk that already
knows visible-light images of things, but has never seen the re-id data, its
people or an infrared image. This script makes the same kind of starting
point for the demo's ResNet-18 (width 16): identity classification of
*visible* images (half of them turned into random grey projections of
their colours, `random_grey`) of people from another synthetic world (render seed
``--world``, person ids from ``--first_id``, cameras of that world), so no
demo identity, camera or infrared image is seen. It writes the trunk's
parameters and BatchNorm statistics to one msgpack file that
``config.pretrained_backbone`` reads:

  python -m tools.pretrain_trunk \
      --out=weights/synthetic_trunk_r18w16.msgpack

About 6 minutes on a 2-core CPU; the file the demo uses is committed, so
the demo itself does not pay for this.
"""

import functools
import time

from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from aligngan_jax import cli
from aligngan_jax import losses
from aligngan_jax import players
from aligngan_jax import pretrained
from aligngan_jax.models import resnet
from configs import synthetic
from datasets.synthetic_vireid import render

_OUT = flags.DEFINE_string(
    'out', 'weights/synthetic_trunk_r18w16.msgpack', 'Where to write the trunk.'
)
_WORLD = flags.DEFINE_integer(
    'world', 1_000, 'Render seed of the pretraining world (the demo dataset is seed 0).'
)
_FIRST_ID = flags.DEFINE_integer('first_id', 10_001, 'First person id (the demo uses 1..160).')
_NUM_IDS = flags.DEFINE_integer('num_ids', 500, 'Identities to classify.')
_STEPS = flags.DEFINE_integer('steps', 3_000, 'SGD steps.')
_BATCH = flags.DEFINE_integer('batch', 64, 'Images per step.')
_LR = flags.DEFINE_float('learning_rate', 0.05, 'Peak SGD learning rate (cosine decay to 0).')
_SEED = flags.DEFINE_integer('seed', 0, 'Initialisation and batch seed.')
_MODALITIES = flags.DEFINE_enum(
    'modalities',
    'visible',
    ['visible', 'both'],
    "'visible': visible images "
    "only (the ImageNet counterpart); 'both': visible and infrared images of "
    'the same people, one identity label across modalities (pretraining on '
    'another visible-infrared dataset).',
)
_INIT = flags.DEFINE_string('init', '', 'A trunk (.msgpack) to start from.')
_GREY_PROB = flags.DEFINE_float(
    'random_grey_prob',
    0.5,
    'Probability of replacing an image by a random '
    'grey projection of its colours (see `random_grey`).',
)


def render_people(world: int, person_ids, image_size: int, cameras):
  """[n, S, S, 3] images in [-1, 1], [n] labels and [n] is-infrared flags:
  every image of ``person_ids`` in ``world`` seen by ``cameras``."""
  images, labels, infrared = [], [], []
  label_of = {int(p): i for i, p in enumerate(person_ids)}
  for pid, cam, _, image in render.examples(
      world, person_ids, image_height=96, max_images=6, min_images=2, cameras=cameras
  ):
    images.append(render.to_square(image, image_size))
    labels.append(label_of[pid])
    infrared.append(cam in render.IR_CAMERAS)
  images = np.stack(images).astype(np.float32) / 127.5 - 1.0
  return images, np.asarray(labels, np.int32), np.asarray(infrared)


def random_grey(images, rng, prob: float):
  """With probability ``prob`` per image: all three channels replaced by
  sum_c w_c x_c with w ~ Dirichlet(1, 1, 1), a grey image in which the
  order of colour brightnesses is random. The trunk thus learns people by
  shape and pattern, not by which colour is brighter: the kind of
  invariance ImageNet's colour augmentations (random greyscale, colour
  jitter) give a pretrained trunk, and the one an infrared camera needs.
  ``images`` in [-1, 1], changed in place."""
  chosen = np.flatnonzero(rng.random(len(images)) < prob)
  weights = rng.dirichlet(np.ones(3), size=len(chosen)).astype(np.float32)
  grey = np.einsum('nhwc,nc->nhw', images[chosen], weights)
  images[chosen] = grey[..., None]
  return images


def train_step(state, images, labels, key, *, models, config, tx):
  params, stats, opt_state = state

  def loss_fn(params):
    x = resnet.prepare_encoder_input(images, tuple(config.encoder_input_size))
    fmap, enc = models['encoder'].apply(
        {'params': params['encoder'], 'batch_stats': stats['encoder']},
        x,
        train=True,
        mutable=['batch_stats'],
    )
    out, emb = models['embedder'].apply(
        {'params': params['embedder'], 'batch_stats': stats['embedder']},
        fmap,
        train=True,
        mutable=['batch_stats'],
        rngs={'dropout': key},
    )
    ce = losses.cross_entropy(out['logits'], labels)
    accuracy = jnp.mean(jnp.argmax(out['logits'], -1) == labels)
    return ce, (
        {'encoder': enc['batch_stats'], 'embedder': emb['batch_stats']},
        {'ce': ce, 'accuracy': accuracy},
    )

  grads, (stats, metrics) = jax.grad(loss_fn, has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return (optax.apply_updates(params, updates), stats, opt_state), metrics


def main(argv):
  del argv
  config = synthetic.get_config()
  config.model.classifier_init_std = 0.01  # a pretraining head of our own
  ids = np.arange(_FIRST_ID.value, _FIRST_ID.value + _NUM_IDS.value)
  start = time.time()
  cameras = render.RGB_CAMERAS if _MODALITIES.value == 'visible' else render.CAMERAS
  images, labels, infrared = render_people(_WORLD.value, ids, config.image_size, cameras)
  logging.info(
      'Rendered %d images (%d infrared) of %d people (world %d) in %.0f s.',
      len(images),
      infrared.sum(),
      len(ids),
      _WORLD.value,
      time.time() - start,
  )
  models = players.feature_models(config, len(ids))
  key = jax.random.key(_SEED.value)
  x = resnet.prepare_encoder_input(
      jnp.zeros((2,) + images.shape[1:]), tuple(config.encoder_input_size)
  )
  enc = models['encoder'].init(jax.random.fold_in(key, 0), x, train=False)
  fmap = models['encoder'].apply(enc, x, train=False)
  emb = models['embedder'].init(jax.random.fold_in(key, 1), fmap, train=False)
  params = {'encoder': enc['params'], 'embedder': emb['params']}
  stats = {'encoder': enc['batch_stats'], 'embedder': emb['batch_stats']}
  if _INIT.value:
    trunk = pretrained.read_trunk(_INIT.value)
    params['encoder'], stats['encoder'] = trunk['params'], trunk['batch_stats']
  schedule = optax.cosine_decay_schedule(_LR.value, _STEPS.value)
  tx = optax.chain(
      optax.add_decayed_weights(5e-4), optax.sgd(schedule, momentum=0.9, nesterov=True)
  )
  state = (params, stats, tx.init(params))
  step_fn = jax.jit(functools.partial(train_step, models=models, config=config, tx=tx))
  rng = np.random.default_rng(_SEED.value)
  history = []
  for step in range(_STEPS.value):
    rows = rng.choice(len(images), _BATCH.value, replace=False)
    batch = images[rows]
    flip = rng.random(len(rows)) < 0.5
    batch[flip] = batch[flip, :, ::-1]
    visible = np.flatnonzero(~infrared[rows])
    batch[visible] = random_grey(batch[visible], rng, _GREY_PROB.value)
    state, metrics = step_fn(state, batch, labels[rows], jax.random.fold_in(key, step + 2))
    history.append(metrics)
    if (step + 1) % 250 == 0 or step + 1 == _STEPS.value:
      means = {k: float(np.mean([m[k] for m in history])) for k in history[0]}
      logging.info(
          'step %d/%d  ce %.3f  accuracy %.3f  %.0f s',
          step + 1,
          _STEPS.value,
          means['ce'],
          means['accuracy'],
          time.time() - start,
      )
      history = []
  params, stats, _ = jax.device_get(state)
  pretrained.save_trunk(
      _OUT.value,
      params['encoder'],
      stats['encoder'],
      config,
      source=(
          f'synthetic_vireid render world {_WORLD.value}, '
          f'{_MODALITIES.value} images of person ids {ids[0]}..{ids[-1]}, '
          f'{_STEPS.value} SGD steps of identity classification, '
          f'random grey projections p={_GREY_PROB.value}'
      ),
  )
  logging.info('Wrote %s (%.0f s).', _OUT.value, time.time() - start)


if __name__ == '__main__':
  cli.run(main)
