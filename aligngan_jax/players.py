"""AlignGAN's eight players: modules, optimizers and one train state.

Optimizers follow the official mapping (spec §2-§3): SGD (nesterov, coupled
weight decay) over the encoder (x ``encoder_lr_multiplier``) and the
embedder; Adam (lr 2e-4, betas (0.5, 0.999)) for each pixel-module network.
Every network has its own optimizer state, which is what PyTorch keeps per
parameter: a network without a gradient in a stage is not stepped at all
(so D_rgb and D_ir enter stage 3 untouched, as in the official code). The
learning rate is applied outside the optax chains, from the *global*
iteration (``lr_at``), so the one x0.1 milestone hits every optimizer at the
same iteration as the official ``MultiStepLR`` calls do.
"""

import jax
import jax.numpy as jnp
import optax

from aligngan_jax import train_state as train_state_lib
from aligngan_jax.models import embedder as embedder_lib
from aligngan_jax.models import gan
from aligngan_jax.models import resnet

GENERATORS = ('G_rgb2ir', 'G_ir2rgb')
DISCRIMINATORS = ('D_rgb', 'D_ir', 'D_rgb_warmup', 'D_ir_warmup')
FEATURE = ('encoder', 'embedder')
ALL = GENERATORS + DISCRIMINATORS + FEATURE


COMPUTE_DTYPES = ('float32', 'bfloat16')


def compute_dtype(config):
  """``config.compute_dtype``: what convolutions compute in. Parameters,
  optimizer states, norm statistics and loss reductions stay float32."""
  return jnp.dtype(config.compute_dtype)


def feature_models(config, num_classes: int) -> dict:
  """The feature module: the ResNet trunk and the heads (the heads always
  compute in float32)."""
  m = config.model
  return {
      'encoder': resnet.ResNetEncoder(
          depth=m.depth,
          width=m.width,
          last_stride=m.last_stride,
          dtype=compute_dtype(config),
          remat=m.remat,
      ),
      'embedder': embedder_lib.Embedder(
          num_classes=num_classes,
          bottle_dim=m.bottle_dim,
          embed_dim=m.embed_dim,
          dropout_rate=m.dropout_rate,
          embed_bn=m.embed_bn,
          classifier_init_std=m.classifier_init_std,
      ),
  }


def create_models(config, num_classes: int, networks=ALL) -> dict:
  """The named networks (default: all eight), sized by ``config.model`` and
  ``config.gan``."""
  m, g, dtype = config.model, config.gan, compute_dtype(config)
  scale_init = gan.NORM_SCALE_INITS[m.gan_norm_scale_init]
  generator = gan.Generator(
      conv_dim=g.conv_dim,
      num_residual=g.num_residual,
      norm_scale_init=scale_init,
      dtype=dtype,
      test_instance_norm=g.test_instance_norm,
  )
  patch = gan.PatchDiscriminator(conv_dim=g.conv_dim, num_layers=g.d_layers, dtype=dtype)
  models = {
      'G_rgb2ir': generator,
      'G_ir2rgb': generator,
      'D_rgb': patch,
      'D_rgb_warmup': patch,
      'D_ir_warmup': patch,
      'D_ir': gan.JointDiscriminator(
          conv_dim=g.conv_dim, feature_grid=config.image_size // 8, dtype=dtype
      ),
      **feature_models(config, num_classes),
  }
  return {name: models[name] for name in networks}


def feature_optimizer(config, kind: str = 'sgd') -> optax.GradientTransformation:
  """PyTorch-style SGD (official: nesterov momentum, coupled weight decay),
  or ``kind='adam'`` (torch.optim.Adam with weight_decay; the IDE trainer's
  ``config.ide.optimizer``; docs/decisions.md)."""
  if kind == 'adam':
    update = optax.scale_by_adam()
  else:
    update = optax.trace(decay=config.momentum, nesterov=config.nesterov)
  return optax.chain(optax.add_decayed_weights(config.weight_decay), update)


def create_optimizers(config, networks=ALL) -> dict:
  """network -> optax transformation *without* the learning rate."""
  feature = feature_optimizer(config, config.ide.optimizer if config.trainer == 'ide' else 'sgd')
  adam = optax.scale_by_adam(b1=config.gan.adam_b1, b2=config.gan.adam_b2, eps=1e-8)
  return {name: (feature if name in FEATURE else adam) for name in networks}


def lr_milestones(config) -> tuple[int, ...]:
  """The running trainer's global iterations of the x``lr_decay_factor``
  decays: ``config.gan.lr_milestones`` or ``config.ide.lr_milestones``."""
  group = config.ide if config.trainer == 'ide' else config.gan
  return tuple(int(m) for m in group.lr_milestones)


def lr_at(config, step) -> dict:
  """network -> learning rate at global iteration ``step`` (traceable): the
  one learning-rate path of both trainers."""
  decays = sum(jnp.asarray(step >= m, jnp.float32) for m in lr_milestones(config))
  factor = config.lr_decay_factor**decays
  rates = {
      'encoder': config.learning_rate * config.encoder_lr_multiplier,
      'embedder': config.learning_rate,
  }
  return {name: factor * rates.get(name, config.gan.learning_rate) for name in ALL}


def apply_updates(state, grads: dict, config) -> train_state_lib.TrainState:
  """One optimizer step for every network in ``grads`` (others untouched)."""
  rates = lr_at(config, state.step)
  params, opt_state = dict(state.params), dict(state.opt_state)
  for name, grad in grads.items():
    updates, opt_state[name] = state.tx[name].update(
        grad, state.opt_state[name], state.params[name]
    )
    params[name] = jax.tree.map(lambda p, u, r=rates[name]: p - r * u, state.params[name], updates)
  return state.replace(params=params, opt_state=opt_state)


def init_variables(config, models: dict, key) -> dict:
  """network name -> initial variables of the players in ``models`` (the
  feature module always). Each network's key depends on its name only
  (``key`` split over `ALL`), so the feature module starts the same under
  either trainer."""
  networks = tuple(name for name in ALL if name in models)
  keys = dict(zip(ALL, jax.random.split(key, len(ALL))))
  size = config.image_size
  image = jnp.zeros((2, size, size, 3))
  x = resnet.prepare_encoder_input(image, tuple(config.encoder_input_size))
  variables = {'encoder': models['encoder'].init(keys['encoder'], x, train=False)}
  fmap = models['encoder'].apply(variables['encoder'], x, train=False)
  variables['embedder'] = models['embedder'].init(keys['embedder'], fmap, train=False)
  for name in networks:
    if name == 'D_ir':
      variables[name] = models[name].init(keys[name], image, fmap, train=False)
    elif name not in FEATURE:
      variables[name] = models[name].init(keys[name], image, train=False)
  return {name: variables[name] for name in networks}


def create_state(
    config, models: dict, mesh, *, abstract: bool = False
) -> train_state_lib.TrainState:
  """A fresh state holding the players in ``models``, replicated over
  ``mesh`` (``abstract``: shapes only; `train_state.create`)."""
  networks = tuple(name for name in ALL if name in models)
  return train_state_lib.create(
      lambda key: init_variables(config, models, key),
      create_optimizers(config, networks),
      seed=config.seed,
      mesh=mesh,
      abstract=abstract,
  )
