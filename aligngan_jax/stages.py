"""The training stages, each one pure step: the three of AlignGAN (spec §2)
and the IDE baseline's one.

``ide_step(state, batch)``: the feature module alone on a feature batch:
CE on both modalities + the cross-modal triplets; SGD on encoder and
embedder (the baseline AlignGAN builds on).

``stage1_step(state, batch)``: feature warm-up on the IR half of a feature
batch: CE + tri(ir, ir, ir); SGD on encoder and embedder.

``stage2_step(state, batch)``: pixel warm-up (CycleGAN-like) on a pixel
batch: the generator update (gan + 10 cyc + 5 idt + 0.1 tri + 0.1 cls, the
encoder and embedder in train mode but not stepped), then both warm-up
discriminators on the fakes made before that update.

``stage3_step(state, batch)``: the joint iteration: the feature iteration on
``batch['feature']`` (fake IR from G_rgb2ir without gradient; CE + tri +
0.1 x the joint discriminator's verdict on (real IR image, fake-IR feature
map)), then the pixel iteration on ``batch['pixel']`` with the updated
encoder: generators, D_rgb, then D_ir with its four fake pairs including the
identity-shifted "wrong pair".

Batches: {'rgb', 'ir': [B, S, S, 3] in [-1, 1], 'labels': [B]}, the same
identities in the same order in both modalities. Every player's gradient is
taken with respect to its own parameters only; other players enter as
constants. Running statistics (generator InstanceNorms, encoder and
embedder BatchNorms) update at every training-mode call, in the official
order. Randomness: dropout keys from ``fold_in(rng, step)``.
"""

import functools

import jax
import jax.numpy as jnp

from aligngan_jax import losses
from aligngan_jax import players
from aligngan_jax.models import layers
from aligngan_jax.models import resnet


def lsgan(prediction, target: float):
  """MSELoss against a constant target (LSGAN)."""
  return jnp.mean(jnp.square(prediction.astype(jnp.float32) - target))


def l1(a, b):
  return jnp.mean(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32)))


def call_groups(apply, groups, batched: bool):
  """``[apply(*group) for group in groups]``, as one call on the
  `layers.interleave`d groups when ``batched`` (exact for networks whose
  outputs depend on their own sample only, such as the discriminators)."""
  if not batched or len(groups) == 1:
    return [apply(*group) for group in groups]
  joined = [layers.interleave(list(parts)) for parts in zip(*groups)]
  return layers.deinterleave(apply(*joined), len(groups))


class _Nets:
  """Training-mode calls that thread running statistics through a dict.

  ``generator`` and ``encode`` take one or more same-sized inputs and return
  one output per input, with running statistics updated once per input, in
  order. With ``config.batch_network_calls`` the inputs run as one call of
  a ``stat_groups`` clone (each input keeps its own statistics); otherwise
  as separate calls, as the official code makes them.
  """

  def __init__(self, models, config, stats):
    self.models, self.config, self.stats = models, config, dict(stats)
    self.batched = config.batch_network_calls

  def _stateful(self, name, params, inputs):
    groups = len(inputs) if self.batched else 1
    model = self.models[name].clone(stat_groups=groups) if groups > 1 else self.models[name]

    def apply(x):
      y, new = model.apply(
          {'params': params, 'batch_stats': self.stats[name]},
          x,
          train=True,
          mutable=['batch_stats'],
      )
      self.stats[name] = new['batch_stats']
      return y

    return call_groups(apply, [(x,) for x in inputs], self.batched)

  def generator(self, name, params, *inputs):
    return self._stateful(name, params, inputs)

  def encode(self, params, *images):
    size = tuple(self.config.encoder_input_size)
    return self._stateful(
        'encoder', params, [resnet.prepare_encoder_input(x, size) for x in images]
    )

  def embed(self, params, fmap, key):
    out, new = self.models['embedder'].apply(
        {'params': params, 'batch_stats': self.stats['embedder']},
        fmap,
        train=True,
        mutable=['batch_stats'],
        rngs={'dropout': key},
    )
    self.stats['embedder'] = new['batch_stats']
    return out

  def discriminate(self, name, params, *inputs):
    return self.models[name].apply({'params': params}, *inputs, train=True)


def _keys(state, n):
  return jax.random.split(jax.random.fold_in(state.rng, state.step), n)


def _triplet(config):
  return functools.partial(losses.cross_modal_triplet, margin=config.triplet_margin)


def _feature_update(state, loss_fn, config):
  """One optimizer step of the feature module on ``loss_fn(feature params)
  -> (loss, (running statistics, metrics))``."""
  grads, (stats, metrics) = jax.grad(loss_fn, has_aux=True)(
      {k: state.params[k] for k in players.FEATURE}
  )
  state = players.apply_updates(state.replace(batch_stats=stats), grads, config)
  return state, metrics


def stage1_step(state, batch, *, models, config):
  """Feature warm-up: CE(IR) + tri(ir, ir, ir) on the IR images."""
  (key,) = _keys(state, 1)
  labels = batch['labels']
  tri = _triplet(config)

  def loss_fn(feature_params):
    nets = _Nets(models, config, state.batch_stats)
    (ir_map,) = nets.encode(feature_params['encoder'], batch['ir'])
    out = nets.embed(feature_params['embedder'], ir_map, key)
    ce = losses.cross_entropy(out['logits'], labels)
    triplet = tri(out['embedding'], out['embedding'], out['embedding'], labels, labels, labels)
    loss = config.lambda_cls * ce + config.lambda_triplet * triplet
    return loss, (
        nets.stats,
        {'feature/loss': loss, 'feature/ce_ir': ce, 'feature/triplet_ir': triplet},
    )

  state, metrics = _feature_update(state, loss_fn, config)
  return state.replace(step=state.step + 1), metrics


def ide_step(state, batch, *, models, config):
  """The IDE baseline: lambda_cls * (CE_rgb + CE_ir)
  + lambda_triplet * (tri(rgb, ir, ir) + tri(ir, rgb, rgb)).

  The two modalities run through the networks separately, so BatchNorm
  statistics are per modality (as the official feature iteration), unless
  ``config.joint_modality_forward`` (one forward of both).
  """
  key_rgb, key_ir = _keys(state, 2)
  labels = batch['labels']
  tri = _triplet(config)

  def loss_fn(feature_params):
    nets = _Nets(models, config, state.batch_stats)
    if config.joint_modality_forward:
      # One forward of [RGB; IR]: BatchNorm statistics shared by the two
      # modalities, as the running statistics used at test time are.
      (fmap,) = nets.encode(feature_params['encoder'], jnp.concatenate([batch['rgb'], batch['ir']]))
      out = nets.embed(feature_params['embedder'], fmap, key_rgb)
      halves = {k: jnp.split(v, 2) for k, v in out.items()}
      rgb, ir = ({k: v[i] for k, v in halves.items()} for i in (0, 1))
    else:
      rgb_map, ir_map = nets.encode(feature_params['encoder'], batch['rgb'], batch['ir'])
      rgb = nets.embed(feature_params['embedder'], rgb_map, key_rgb)
      ir = nets.embed(feature_params['embedder'], ir_map, key_ir)
    ce_rgb = losses.cross_entropy(rgb['logits'], labels)
    ce_ir = losses.cross_entropy(ir['logits'], labels)
    triplet = tri(rgb['embedding'], ir['embedding'], ir['embedding'], labels, labels, labels) + tri(
        ir['embedding'], rgb['embedding'], rgb['embedding'], labels, labels, labels
    )
    loss = config.lambda_cls * (ce_rgb + ce_ir) + config.lambda_triplet * triplet
    return loss, (
        nets.stats,
        {
            'feature/loss': loss,
            'feature/ce_rgb': ce_rgb,
            'feature/ce_ir': ce_ir,
            'feature/triplet': triplet,
            'feature/accuracy_rgb': jnp.mean(jnp.argmax(rgb['logits'], -1) == labels),
            'feature/accuracy_ir': jnp.mean(jnp.argmax(ir['logits'], -1) == labels),
        },
    )

  state, metrics = _feature_update(state, loss_fn, config)
  return state.replace(step=state.step + 1), metrics


def _generator_loss(g_params, state, batch, key, *, models, config, joint):
  """The generators' loss of stages 2 and 3 (they differ in the GAN term)."""
  p, g = state.params, config.gan
  nets = _Nets(models, config, state.batch_stats)
  real_rgb, real_ir, labels = batch['rgb'], batch['ir'], batch['labels']
  (fake_rgb,) = nets.generator('G_ir2rgb', g_params['G_ir2rgb'], real_ir)
  (fake_ir,) = nets.generator('G_rgb2ir', g_params['G_rgb2ir'], real_rgb)
  # The encoder is not stepped here, but gradients flow through it into G
  # from fake IR. Real IR has no gradient path, so it is not batched with
  # fake IR: one call would keep its activations and run its backward pass
  # (+4.7 GiB planned, +5% FLOPs at stage 2). Official order of every
  # network's calls (its running statistics): real IR before fake IR; the
  # generators' translation, cycle, then identity call.
  (real_ir_map,) = nets.encode(p['encoder'], real_ir)
  (fake_ir_map,) = nets.encode(p['encoder'], fake_ir)
  if joint:
    gan = 0.5 * (
        lsgan(nets.discriminate('D_rgb', p['D_rgb'], fake_rgb), 1.0)
        + lsgan(
            nets.discriminate('D_ir', p['D_ir'], fake_ir, jax.lax.stop_gradient(real_ir_map)), 1.0
        )
    )
  else:
    gan = 0.5 * (
        lsgan(nets.discriminate('D_rgb_warmup', p['D_rgb_warmup'], fake_rgb), 1.0)
        + lsgan(nets.discriminate('D_ir_warmup', p['D_ir_warmup'], fake_ir), 1.0)
    )
  cyc_rgb, idt_rgb = nets.generator('G_ir2rgb', g_params['G_ir2rgb'], fake_ir, real_rgb)
  cyc_ir, idt_ir = nets.generator('G_rgb2ir', g_params['G_rgb2ir'], fake_rgb, real_ir)
  cyc = 0.5 * (l1(cyc_rgb, real_rgb) + l1(cyc_ir, real_ir))
  idt = 0.5 * (l1(idt_rgb, real_rgb) + l1(idt_ir, real_ir))
  real_key, fake_key = jax.random.split(key)
  real_out = nets.embed(p['embedder'], real_ir_map, real_key)
  fake_out = nets.embed(p['embedder'], fake_ir_map, fake_key)
  tri = _triplet(config)
  tri1 = tri(
      fake_out['embedding'], real_out['embedding'], real_out['embedding'], labels, labels, labels
  )
  tri2 = tri(
      real_out['embedding'], fake_out['embedding'], fake_out['embedding'], labels, labels, labels
  )
  cls = losses.cross_entropy(fake_out['logits'], labels)
  loss = (
      gan
      + g.lambda_cyc * cyc
      + g.lambda_idt * idt
      + g.lambda_pixel_tri * (tri1 + tri2)
      + g.lambda_pixel_cls * cls
  )
  aux = {
      'fake_rgb': fake_rgb,
      'fake_ir': fake_ir,
      'real_ir_map': real_ir_map,
      'fake_ir_map': fake_ir_map,
      'stats': nets.stats,
  }
  metrics = {
      'G/loss': loss,
      'G/gan': gan,
      'G/cycle': cyc,
      'G/identity': idt,
      'G/triplet': tri1 + tri2,
      'G/ce': cls,
  }
  return loss, (aux, metrics)


def _patch_d_loss(name, models, batched, params, real, fake):
  d = lambda x: models[name].apply({'params': params}, x, train=True)
  on_real, on_fake = call_groups(d, [(real,), (jax.lax.stop_gradient(fake),)], batched)
  return 0.5 * (lsgan(on_real, 1.0) + lsgan(on_fake, 0.0))


def _pixel_iteration(state, batch, key, *, models, config, joint):
  """Generators, then the discriminators on fakes made before their update."""
  g_params = {k: state.params[k] for k in players.GENERATORS}
  g_grads, (aux, metrics) = jax.grad(
      functools.partial(_generator_loss, models=models, config=config, joint=joint), has_aux=True
  )(g_params, state, batch, key)
  rgb_d, ir_d = ('D_rgb', 'D_ir') if joint else ('D_rgb_warmup', 'D_ir_warmup')
  batched = config.batch_network_calls
  d_rgb_loss, d_rgb_grad = jax.value_and_grad(
      functools.partial(_patch_d_loss, rgb_d, models, batched)
  )(state.params[rgb_d], batch['rgb'], aux['fake_rgb'])
  if joint:
    d_ir_loss, d_ir_grad = jax.value_and_grad(
        functools.partial(_joint_d_loss, models=models, config=config)
    )(state.params['D_ir'], batch['ir'], aux)
  else:
    d_ir_loss, d_ir_grad = jax.value_and_grad(
        functools.partial(_patch_d_loss, 'D_ir_warmup', models, batched)
    )(state.params['D_ir_warmup'], batch['ir'], aux['fake_ir'])
  state = state.replace(batch_stats=aux['stats'])
  state = players.apply_updates(state, {**g_grads, rgb_d: d_rgb_grad, ir_d: d_ir_grad}, config)
  metrics.update({f'{rgb_d}/loss': d_rgb_loss, f'{ir_d}/loss': d_ir_loss})
  return state, metrics


def _joint_d_loss(params, real_ir, aux, *, models, config):
  """D_ir: real pairs -> 1; the wrong-identity pair and the three pairs with
  a fake image or a fake feature map -> 0 (all inputs constant)."""
  d = lambda image, fmap: models['D_ir'].apply({'params': params}, image, fmap, train=True)
  sg = jax.lax.stop_gradient
  fake_ir, real_map, fake_map = sg(aux['fake_ir']), sg(aux['real_ir_map']), sg(aux['fake_ir_map'])
  # The batch holds K images per identity in runs; shifting by K pairs every
  # image with the feature map of another identity (official: 4 = K).
  wrong = jnp.roll(real_ir, -config.gan.pixel_instances_per_id, axis=0)
  real, *fakes = call_groups(
      d,
      [
          (real_ir, real_map),
          (wrong, real_map),
          (real_ir, fake_map),
          (fake_ir, real_map),
          (fake_ir, fake_map),
      ],
      config.batch_network_calls,
  )
  fake = 0.25 * sum(lsgan(verdict, 0.0) for verdict in fakes)
  return 0.5 * (lsgan(real, 1.0) + fake)


def stage2_step(state, batch, *, models, config):
  """Pixel warm-up: generators, then D_rgb_warmup and D_ir_warmup."""
  (key,) = _keys(state, 1)
  state, metrics = _pixel_iteration(state, batch, key, models=models, config=config, joint=False)
  return state.replace(step=state.step + 1), metrics


def _feature_iteration(state, batch, key, *, models, config):
  p, tri = state.params, _triplet(config)
  labels = batch['labels']
  nets = _Nets(models, config, state.batch_stats)
  if config.gan.pixel_alignment:
    # No gradient into G; it still runs in training mode (its InstanceNorm
    # running statistics update, as in the official code).
    (fake_ir,) = nets.generator('G_rgb2ir', p['G_rgb2ir'], batch['rgb'])
    fake_ir = jax.lax.stop_gradient(fake_ir)
  else:
    # Ablation (not official): the feature module sees the real RGB image
    # where AlignGAN feeds its fake IR; test RGB images stay untranslated.
    fake_ir = batch['rgb']
  stats_after_g = nets.stats
  fake_key, real_key = jax.random.split(key)

  def loss_fn(feature_params):
    nets = _Nets(models, config, stats_after_g)
    # Two forwards in the official code: each modality keeps its own batch
    # statistics (fake IR first).
    fake_map, real_map = nets.encode(feature_params['encoder'], fake_ir, batch['ir'])
    fake = nets.embed(feature_params['embedder'], fake_map, fake_key)
    real = nets.embed(feature_params['embedder'], real_map, real_key)
    ce = losses.cross_entropy(fake['logits'], labels) + losses.cross_entropy(real['logits'], labels)
    triplet = tri(
        fake['embedding'], real['embedding'], real['embedding'], labels, labels, labels
    ) + tri(real['embedding'], fake['embedding'], fake['embedding'], labels, labels, labels)
    # The joint discriminator judges (real IR image, fake-IR feature map) of
    # the same identity; it is a constant here (not stepped).
    gan = lsgan(nets.discriminate('D_ir', p['D_ir'], batch['ir'], fake_map), 1.0)
    loss = (
        config.lambda_cls * ce
        + config.lambda_triplet * triplet
        + config.gan.lambda_feature_gan * gan
    )
    return loss, (
        nets.stats,
        {'feature/loss': loss, 'feature/ce': ce, 'feature/triplet': triplet, 'feature/gan': gan},
    )

  return _feature_update(state, loss_fn, config)


def stage3_step(state, batch, *, models, config):
  """Joint: the feature iteration, then the pixel iteration."""
  feature_key, pixel_key = _keys(state, 2)
  state, feature_metrics = _feature_iteration(
      state, batch['feature'], feature_key, models=models, config=config
  )
  state, pixel_metrics = _pixel_iteration(
      state, batch['pixel'], pixel_key, models=models, config=config, joint=True
  )
  return state.replace(step=state.step + 1), {**feature_metrics, **pixel_metrics}
