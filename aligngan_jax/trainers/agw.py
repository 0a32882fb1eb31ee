"""AGW (Ye et al., TPAMI 2021; mangye16/Cross-Modal-Re-ID-baseline), as a
trainer (``config.trainer='agw'``): `models.agw.AGWNet` trained with CE on
the BNNeck logits + the weighted regularized triplet on the pooled features
(``config.agw.method='base'``: no non-local blocks, mean pooling and the
batch-hard triplet with margin 0.3, the official ablation), the official
identity sampler (8 ids x 4 images per modality, epoch length set by the
larger modality), SGD nesterov with coupled weight decay, the trunk at 0.1x,
and the epoch-indexed warm-up + step learning rate. Test features: the
BNNeck feature ('bn', what the README numbers report) and the pooled one
('pool'), both L2-normalised. Reference: baselines_reference.md §1-§5.

The ImageNet start (``config.pretrained_backbone``) goes into both stems
and the shared trunk, as in the official code. Images are loaded at
``agw.input_size`` (288 x 144, height x width; `load_size`) with the
project's antialiased bicubic resize (the official code resizes with PIL's
LANCZOS; both are antialiasing filters). Not official (README): the crop and
flip draws come from ``fold_in(rng, step)`` (the official ones come from
PyTorch's generators and cannot be replayed).
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import optax

from aligngan_jax import augment
from aligngan_jax import config_checks
from aligngan_jax import convert
from aligngan_jax import errors
from aligngan_jax import losses
from aligngan_jax import pretrained
from aligngan_jax import sampler as sampler_lib
from aligngan_jax import sharding
from aligngan_jax import train_state as train_state_lib
from aligngan_jax.models import agw as agw_lib
from aligngan_jax.trainers import base

# The parameter groups: everything before the BNNeck trains at 0.1x.
BACKBONE = ('visible_stem', 'thermal_stem', 'trunk')
HEAD = ('bottleneck', 'classifier')
METHODS = ('agw', 'base')


def learning_rate(epoch, base_lr: float, warmup_epochs: int = 10, milestones=(20, 50)):
  """The official ``adjust_learning_rate`` (traceable): base_lr (e + 1) /
  warmup during the warm-up, then base_lr x 0.1 per milestone passed."""
  epoch = jnp.asarray(epoch)
  warm = base_lr * (epoch + 1) / warmup_epochs
  decayed = base_lr * 0.1 ** sum(jnp.asarray(epoch >= m, jnp.float32) for m in milestones)
  return jnp.where(epoch < warmup_epochs, warm, decayed)


def _split(tree):
  return (
      {k: v for k, v in tree.items() if k in BACKBONE},
      {k: v for k, v in tree.items() if k in HEAD},
  )


def unit(x):
  """x / ||x||, without an epsilon, as the official ``Normalize``."""
  return x / jnp.linalg.norm(x, axis=1, keepdims=True)


@base.register
class AGWTrainer(base.Trainer):
  name = 'agw'
  config_group = 'agw'
  feature_names = ('bn', 'pool')

  @classmethod
  def default_config(cls):
    g = ml_collections.ConfigDict()
    g.method = 'agw'  # 'agw' | 'base' (no non-local, mean pooling)
    g.epochs = 81  # official range(0, 81)
    g.learning_rate = 0.1
    g.warmup_epochs = 10
    g.lr_milestones = (20, 50)  # epochs
    # 0: the official epoch, int(max(N_rgb, N_ir) / (P K)) + 1 steps. A
    # number fixes it (the demo: the same budget on any tree).
    g.steps_per_epoch = 0
    g.ids_per_batch = 8
    g.instances_per_id = 4
    g.input_size = (288, 144)  # (height, width) images are loaded at
    g.pad = 10
    g.momentum = 0.9
    g.weight_decay = 5e-4
    return g

  @property
  def group(self):
    """This trainer's config group (``config.agw``; CAJ's ``config.caj``)."""
    return self.config[self.config_group]

  @classmethod
  def validate(cls, config, *, num_devices):
    name = cls.config_group
    g = config[name]
    if g.method not in METHODS:
      raise config_checks.ConfigError(f'config.{name}.method={g.method!r} is not one of {METHODS}.')
    config_checks.check_ints(
        config,
        tuple(
            f'{name}.{k}' for k in ('epochs', 'warmup_epochs', 'ids_per_batch', 'instances_per_id')
        ),
    )
    config_checks.check_milestones(config, f'{name}.lr_milestones')
    config_checks.check_ints(config, (f'{name}.pad', f'{name}.steps_per_epoch'), minimum=0)
    size = tuple(g.input_size)
    # The trunk downsamples by 16 (last stride 1): at least one feature cell.
    if len(size) != 2 or not all(config_checks.is_count(v, 16) for v in size):
      raise config_checks.ConfigError(
          f'config.{name}.input_size={size} must be (height, width), each an integer '
          '>= 16 (official (288, 144)).'
      )
    if (g.ids_per_batch * g.instances_per_id) % num_devices:
      raise config_checks.ConfigError(
          f'config.{name}.ids_per_batch * config.{name}.instances_per_id = '
          f'{g.ids_per_batch * g.instances_per_id} is not divisible by the {num_devices} devices.'
      )

  @classmethod
  def load_size(cls, config):
    """``config.<group>.input_size``: AGW's images are 288 x 144, not square."""
    height, width = config[cls.config_group].input_size
    return int(height), int(width)

  @classmethod
  def check_release(cls, config):
    if not os.path.isfile(config.init_from):
      raise config_checks.ConfigError(
          f'config.init_from={config.init_from!r} is not a file: it must be an official '
          f'{cls.name.upper()} checkpoint (e.g. sysu_agw_p4_n8_lr_0.1_seed_0_best.t).'
      )

  @classmethod
  def release_extractors(cls, config, mesh):
    """An official ``.t`` checkpoint (`convert.load_official_agw`): its
    variant and class count from the file, the official sizes."""
    variables = convert.load_official_agw(config.init_from)
    shape = agw_lib.architecture(variables)
    release = config.copy_and_resolve_references()
    release[cls.config_group].method = 'agw' if shape['non_local'] else 'base'
    release.model.depth, release.model.width = shape['depth'], shape['width']
    release.model.last_stride = 1
    trainer = cls(release, base.DataInfo(shape['num_classes']))
    (bp, hp), (bs, hs) = _split(variables['params']), _split(variables['batch_stats'])
    state = jax.device_put(
        train_state_lib.TrainState(
            step=jnp.zeros((), jnp.int32),
            params={'backbone': bp, 'head': hp},
            batch_stats={'backbone': bs, 'head': hs},
            opt_state={},
            rng=jax.random.key(0),
            tx={},
        ),
        sharding.replicated(mesh),
    )
    return {m: (lambda images, f=f: f(state, images)) for m, f in trainer.extractors(mesh).items()}

  @classmethod
  def fetch_pretrained(cls, config):
    """The ImageNet ResNet-50 (or ``.msgpack`` trunk) file, fetched and
    verified before the data is read."""
    return pretrained.backbone_file(config) if config.pretrained_backbone else None

  def load_pretrained(self, state, mesh, fetched):
    """As the official code: the ImageNet ``conv1``/``bn1`` (running
    statistics included) into both stems, ``layer1``-``layer4`` into the
    shared trunk; the non-local blocks and the head keep their init."""
    if not self.config.pretrained_backbone:
      return state
    resnet = pretrained.encoder_variables(self.config, fetched)
    params, stats = dict(state.params['backbone']), dict(state.batch_stats['backbone'])
    for stem in ('visible_stem', 'thermal_stem'):
      params[stem] = {'conv1': resnet['params']['conv1'], 'bn1': resnet['params']['bn1']}
      stats[stem] = {'bn1': resnet['batch_stats']['bn1']}
    layers = lambda tree: {k: v for k, v in tree.items() if k.startswith('layer')}
    params['trunk'] = {**params['trunk'], **layers(resnet['params'])}
    stats['trunk'] = {**stats['trunk'], **layers(resnet['batch_stats'])}
    want = jax.tree.map(jnp.shape, (state.params['backbone'], state.batch_stats['backbone']))
    if jax.tree.map(jnp.shape, (params, stats)) != want:
      raise ValueError(
          f'config.pretrained_backbone={self.config.pretrained_backbone!r}: its '
          'trunk does not fit config.model (names or shapes differ).'
      )
    placed = jax.device_put((params, stats), sharding.replicated(mesh))
    return state.replace(
        params={**state.params, 'backbone': placed[0]},
        batch_stats={**state.batch_stats, 'backbone': placed[1]},
    )

  @property
  def steps_per_epoch(self) -> int:
    """int(max(N_rgb, N_ir) / (P K)) + 1, the official epoch (1 when the
    split sizes are unknown, e.g. a workdir reopened for evaluation), or
    ``steps_per_epoch`` where the config fixes it (the demo's budget)."""
    g = self.group
    if g.steps_per_epoch:
      return int(g.steps_per_epoch)
    return (
        int(max(self.info.rgb_images, self.info.ir_images) / (g.ids_per_batch * g.instances_per_id))
        + 1
    )

  # --- networks and optimisation --------------------------------------------
  def build_networks(self):
    m, agw = self.config.model, self.group.method == 'agw'
    return {
        'agw': agw_lib.AGWNet(
            num_classes=self.info.num_classes,
            non_local=agw,
            gem=agw,
            depth=m.depth,
            width=m.width,
            last_stride=m.last_stride,
        )
    }

  def init_variables(self, key):
    x = jnp.zeros((1, *self.group.input_size, 3))
    variables = self.networks['agw'].init(key, rgb=x, ir=x, train=False)
    (bp, hp), (bs, hs) = _split(variables['params']), _split(variables['batch_stats'])
    return {
        'backbone': {'params': bp, 'batch_stats': bs},
        'head': {'params': hp, 'batch_stats': hs},
    }

  def optimizers(self):
    g = self.group
    sgd = optax.chain(
        optax.add_decayed_weights(g.weight_decay), optax.trace(decay=g.momentum, nesterov=True)
    )
    return {'backbone': sgd, 'head': sgd}

  def learning_rates(self, step):
    g = self.group
    lr = learning_rate(
        step // self.steps_per_epoch, g.learning_rate, g.warmup_epochs, tuple(g.lr_milestones)
    )
    return {'backbone': 0.1 * lr, 'head': lr}

  # --- data and stages ---------------------------------------------------------
  def samplers(self, rgb_labels, ir_labels):
    g = self.group
    self.check_data(rgb_labels, ir_labels, (f'{self.config_group}.ids_per_batch',))
    missing = sorted(set(rgb_labels.tolist()) - set(ir_labels.tolist()))
    if missing:
      raise errors.UserError(
          f'{self.config.dataset}: {len(missing)} training identities (labels '
          f'{missing[:5]}) have RGB but no IR images; the official identity sampler '
          f'(config.trainer={self.name!r}) draws both modalities for every identity.'
      )
    return {
        'identity': sampler_lib.IdentitySampler(
            rgb_labels,
            ir_labels,
            ids_per_batch=g.ids_per_batch,
            instances_per_id=g.instances_per_id,
            seed=self.config.seed,
        )
    }

  def _augmented(self, images, key):
    """Pad-crop-flip, ImageNet normalisation."""
    g = self.group
    offsets, flips = augment.draw_pad_crop_flip(key, images.shape[0], g.pad)
    return augment.imagenet_normalise(augment.pad_crop_flip(images, offsets, flips, pad=g.pad))

  def train_inputs(self, batch, key):
    """(visible-stem images, thermal-stem images, labels of [visible; thermal])."""
    key_rgb, key_ir = jax.random.split(key)
    labels = jnp.concatenate([batch['labels'], batch['labels']])
    return self._augmented(batch['rgb'], key_rgb), self._augmented(batch['ir'], key_ir), labels

  def loss(self, out, labels):
    """(loss, metrics): CE on the BNNeck logits + WRT on the pooled features."""
    ce = losses.cross_entropy(out['logits'], labels)
    if self.group.method == 'base':
      triplet = losses.batch_hard_triplet(out['pool'], labels)
    else:
      triplet = losses.weighted_regularized_triplet(out['pool'], labels)
    accuracy = jnp.mean(jnp.argmax(out['logits'], -1) == labels)
    prefix = self.name
    return ce + triplet, {
        f'{prefix}/loss': ce + triplet,
        f'{prefix}/ce': ce,
        f'{prefix}/triplet': triplet,
        f'{prefix}/accuracy': accuracy,
    }

  def _step(self, state, batches):
    model = self.networks['agw']
    rgb, ir, labels = self.train_inputs(
        batches['identity'], jax.random.fold_in(state.rng, state.step)
    )
    stats = {**state.batch_stats['backbone'], **state.batch_stats['head']}

    def loss_fn(params):
      out, new = model.apply(
          {'params': {**params['backbone'], **params['head']}, 'batch_stats': stats},
          rgb=rgb,
          ir=ir,
          train=True,
          mutable=['batch_stats'],
      )
      loss, metrics = self.loss(out, labels)
      return loss, (new['batch_stats'], metrics)

    grads, (new_stats, metrics) = jax.grad(loss_fn, has_aux=True)(state.params)
    rates = self.learning_rates(state.step)
    params, opt_state = {}, {}
    for name in ('backbone', 'head'):
      updates, opt_state[name] = state.tx[name].update(
          grads[name], state.opt_state[name], state.params[name]
      )
      params[name] = jax.tree.map(
          lambda p, u, r=rates[name]: p - r * u, state.params[name], updates
      )
    backbone_stats, head_stats = _split(new_stats)
    return (
        state.replace(
            step=state.step + 1,
            params=params,
            opt_state=opt_state,
            batch_stats={'backbone': backbone_stats, 'head': head_stats},
        ),
        metrics,
    )

  def stages(self):
    g = self.group
    views = 3 if self.name == 'caj' else 2  # CAJ: two RGB views and IR
    return (
        base.Stage(
            1,
            self.name,
            self._step,
            ('identity',),
            int(g.epochs) * self.steps_per_epoch,
            views * g.ids_per_batch * g.instances_per_id,
        ),
    )

  # --- test time --------------------------------------------------------------------
  def _eval_outputs(self, state, images, modality):
    x = augment.imagenet_normalise(images)
    variables = {
        'params': {**state.params['backbone'], **state.params['head']},
        'batch_stats': {**state.batch_stats['backbone'], **state.batch_stats['head']},
    }
    out = self.networks['agw'].apply(variables, **{modality: x}, train=False)
    return {'bn': unit(out['bn']), 'pool': unit(out['pool'])}

  def test_features(self, state, images, *, modality):
    """The official test.py: eval mode, no flip, L2-normalised outputs."""
    return self._eval_outputs(state, images, modality)
