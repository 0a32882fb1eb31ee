"""Training and evaluation of the feature module (the IDE baseline).

The feature module is AlignGAN's ResNet trunk plus heads, trained with
cross-entropy on both modalities and the cross-modal batch-hard triplets
(spec §2-§3). One pure step function, jitted over the 1-D ``data`` mesh with
the batch sharded, the state replicated and donated. Everything a run needs
to continue lives in the train state and the step number: the data stream is
a function of (seed, step) and randomness of ``fold_in(rng, step)``, so a run
resumed from its checkpoint continues exactly.
"""

import functools

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import optax

from aligngan_jax import checkpointing
from aligngan_jax import config_checks
from aligngan_jax import losses
from aligngan_jax import players
from aligngan_jax import pretrained
from aligngan_jax import reporting
from aligngan_jax import sampler as sampler_lib
from aligngan_jax import sharding
from aligngan_jax import train_state as train_state_lib
from aligngan_jax.evaluation import driver
from aligngan_jax.evaluation import features as features_lib
from aligngan_jax.models import resnet

FEATURE_NETS = ('encoder', 'embedder')


def create_models(config, num_classes: int) -> dict:
  """The feature module's networks, keyed as in the train state."""
  return players.feature_models(config, num_classes)


def learning_rates(config) -> dict:
  """Per parameter group: step -> learning rate (x decay at milestones)."""
  def schedule(base):
    return optax.piecewise_constant_schedule(
        base, {int(m): config.lr_decay_factor for m in config.lr_milestones})
  return {'encoder': schedule(config.learning_rate * config.encoder_lr_multiplier),
          'embedder': schedule(config.learning_rate)}


def create_feature_optimizer(config) -> optax.GradientTransformation:
  """PyTorch-style optimizer: coupled weight decay on every parameter, and
  the trunk at ``encoder_lr_multiplier`` x the head's lr.

  ``config.optimizer``: 'sgd' (official: nesterov momentum) or 'adam'
  (torch.optim.Adam with weight_decay; for training from scratch, see
  docs/decisions.md).
  """
  def make(schedule):
    if config.optimizer == 'sgd':
      update = optax.sgd(schedule, momentum=config.momentum,
                         nesterov=config.nesterov)
    else:
      update = optax.adam(schedule)
    return optax.chain(optax.add_decayed_weights(config.weight_decay), update)
  rates = learning_rates(config)
  return optax.multi_transform(
      {name: make(rates[name]) for name in FEATURE_NETS},
      lambda params: {k: jax.tree.map(lambda _: k, v) for k, v in params.items()})


def create_train_state(config, models: dict, mesh) -> train_state_lib.TrainState:
  """A fresh state, initialised directly with the replicated sharding."""
  tx = {'feature': create_feature_optimizer(config)}
  size = config.image_size

  def init():
    base = jax.random.key(config.seed)
    enc_key, emb_key = jax.random.split(jax.random.fold_in(base, 0))
    x = resnet.prepare_encoder_input(jnp.zeros((2, size, size, 3)),
                                     tuple(config.encoder_input_size))
    enc = models['encoder'].init(enc_key, x, train=False)
    fmap = models['encoder'].apply(enc, x, train=False)
    emb = models['embedder'].init({'params': emb_key}, fmap, train=False)
    params = {'encoder': enc['params'], 'embedder': emb['params']}
    return train_state_lib.TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats={'encoder': enc['batch_stats'], 'embedder': emb['batch_stats']},
        opt_state={'feature': tx['feature'].init(params)},
        rng=jax.random.fold_in(base, 1),
        tx=tx)

  return jax.jit(init, out_shardings=sharding.replicated(mesh))()


def feature_train_step(state: train_state_lib.TrainState, batch: dict, *,
                       models: dict, config):
  """One SGD step of the feature module on an aligned RGB/IR batch.

  batch: {'rgb': [B,S,S,3], 'ir': [B,S,S,3], 'labels': [B]}, the same
  identities in the same order in both modalities. The two modalities run
  through the networks separately, so BatchNorm statistics are per modality
  (as the official feature iteration), unless
  ``config.joint_modality_forward`` (one forward of both).
  Loss = lambda_cls * (CE_rgb + CE_ir)
  + lambda_triplet * (tri(rgb, ir, ir) + tri(ir, rgb, rgb)).
  """
  encoder, embedder = models['encoder'], models['embedder']
  size = tuple(config.encoder_input_size)
  dropout_rgb, dropout_ir = jax.random.split(jax.random.fold_in(state.rng, state.step))
  labels = batch['labels']

  def forward(params, batch_stats, images, dropout_key):
    fmap, enc = encoder.apply(
        {'params': params['encoder'], 'batch_stats': batch_stats['encoder']},
        resnet.prepare_encoder_input(images, size), train=True,
        mutable=['batch_stats'])
    outputs, emb = embedder.apply(
        {'params': params['embedder'], 'batch_stats': batch_stats['embedder']},
        fmap, train=True, rngs={'dropout': dropout_key}, mutable=['batch_stats'])
    return outputs, {'encoder': enc['batch_stats'], 'embedder': emb['batch_stats']}

  def loss_fn(params):
    if config.joint_modality_forward:
      # One forward of [RGB; IR]: BatchNorm statistics shared by the two
      # modalities, as the running statistics used at test time are.
      out, stats = forward(params, state.batch_stats,
                           jnp.concatenate([batch['rgb'], batch['ir']]),
                           dropout_rgb)
      logits_rgb, logits_ir = jnp.split(out['logits'], 2)
      emb_rgb, emb_ir = jnp.split(out['embedding'], 2)
    else:
      out_rgb, stats = forward(params, state.batch_stats, batch['rgb'],
                               dropout_rgb)
      out_ir, stats = forward(params, stats, batch['ir'], dropout_ir)
      logits_rgb, emb_rgb = out_rgb['logits'], out_rgb['embedding']
      logits_ir, emb_ir = out_ir['logits'], out_ir['embedding']
    ce_rgb = losses.cross_entropy(logits_rgb, labels)
    ce_ir = losses.cross_entropy(logits_ir, labels)
    tri = functools.partial(losses.cross_modal_triplet, margin=config.triplet_margin)
    triplet = (tri(emb_rgb, emb_ir, emb_ir, labels, labels, labels)
               + tri(emb_ir, emb_rgb, emb_rgb, labels, labels, labels))
    loss = config.lambda_cls * (ce_rgb + ce_ir) + config.lambda_triplet * triplet
    metrics = {
        'loss': loss, 'ce_rgb': ce_rgb, 'ce_ir': ce_ir, 'triplet': triplet,
        'accuracy_rgb': jnp.mean(jnp.argmax(logits_rgb, -1) == labels),
        'accuracy_ir': jnp.mean(jnp.argmax(logits_ir, -1) == labels),
    }
    return loss, (stats, metrics)

  feature_params = {k: state.params[k] for k in FEATURE_NETS}
  grads, (stats, metrics) = jax.grad(loss_fn, has_aux=True)(feature_params)
  updates, opt_state = state.tx['feature'].update(
      grads, state.opt_state['feature'], feature_params)
  new_params = optax.apply_updates(feature_params, updates)
  return state.replace(
      step=state.step + 1,
      params={**state.params, **new_params},
      batch_stats={**state.batch_stats, **stats},
      opt_state={**state.opt_state, 'feature': opt_state}), metrics


def make_train_step(models: dict, config, mesh):
  """`feature_train_step` jitted over ``mesh``: state replicated and donated,
  batch sharded on ``data``, metrics replicated."""
  repl = sharding.replicated(mesh)
  return jax.jit(
      functools.partial(feature_train_step, models=models, config=config),
      in_shardings=(repl, sharding.data_sharded(mesh)),
      out_shardings=(repl, repl), donate_argnums=0)


def make_feature_extractor(models: dict, config, mesh):
  """jitted (state, images) -> replicated unit-norm test features."""
  def extract(state, images):
    variables = {'params': state.params['encoder'],
                 'batch_stats': state.batch_stats['encoder']}
    return features_lib.flip_pooled_features(
        models['encoder'], variables, images,
        encoder_input_size=tuple(config.encoder_input_size))
  repl = sharding.replicated(mesh)
  return jax.jit(extract, in_shardings=(repl, sharding.data_sharded(mesh)),
                 out_shardings=repl)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from ``workdir`` if it holds a checkpoint) and
  evaluates the feature module alone; returns the final evaluation."""
  from aligngan_jax import input_pipeline  # TensorFlow: only here.
  config_checks.validate_config(config, num_devices=jax.device_count())
  config_checks.ensure_writable(workdir)
  mesh = sharding.create_mesh()
  train, test = input_pipeline.load_data(config)
  rgb = train.select(train.modality == input_pipeline.RGB)
  ir = train.select(train.modality == input_pipeline.IR)
  num_classes = int(train.label.max()) + 1
  models = create_models(config, num_classes)
  sampler = sampler_lib.PKSampler(
      rgb.label, ir.label, ids_per_batch=config.ids_per_batch,
      instances_per_id=config.instances_per_id, seed=config.seed,
      rgb_grey_prob=config.rgb_grey_prob, rgb_channel_prob=config.rgb_channel_prob)

  manager, state, resumed = checkpointing.resume_or_start(
      config, workdir, create_train_state(config, models, mesh))
  if not resumed and config.pretrained_backbone:
    state = pretrained.load_backbone(state, config, mesh)
    logging.info('Trunk initialised from %s.', config.pretrained_backbone)
  start_step = int(state.step)

  writer = reporting.writer_for(workdir)
  if start_step == 0:
    reporting.write_run_config(config, workdir, writer)
  logging.info('Training %s: %d classes, %d RGB + %d IR train images, %d '
               'batches/epoch, steps %d..%d.', config.dataset, num_classes,
               len(rgb), len(ir), sampler.batches_per_epoch, start_step,
               config.num_train_steps)

  train_step = make_train_step(models, config, mesh)
  extract = make_feature_extractor(models, config, mesh)
  rgb, ir = input_pipeline.training_records(rgb, ir, image_size=config.image_size,
                                           decode_once=config.decode_once)
  batches = input_pipeline.create_train_iterator(
      rgb, ir, sampler, image_size=config.image_size, start_step=start_step,
      num_steps=config.num_train_steps)
  progress = reporting.Progress(start_step=start_step,
                                num_steps=config.num_train_steps,
                                images_per_step=2 * sampler.batch_size)
  rates = learning_rates(config)
  history, first = [], start_step
  result, evaluated = None, False
  try:
    for step in range(start_step, config.num_train_steps):
      state, metrics = train_step(state, sharding.shard_batch(next(batches), mesh))
      history.append(metrics)
      done = step + 1
      last = done == config.num_train_steps
      checkpoint_now = done % config.checkpoint_every_steps == 0 or last
      if done % config.log_every_steps == 0 or checkpoint_now:
        # Checked before any save, so a non-finite state is never checkpointed.
        means = reporting.mean_metrics(history)
        reporting.check_finite(means, first_step=first, last_step=done)
        pace = progress.update(done)
        logging.info('%s', progress.line(done, means, pace))
        lrs = {f'lr_{k}': float(fn(step)) for k, fn in rates.items()}
        writer.write_scalars(done, {f'train/{k}': v for k, v in
                                    {**means, **lrs, **pace}.items()})
        history, first = [], done
      if checkpoint_now:
        checkpointing.save(manager, state, force=last)
      if done % config.eval_every_steps == 0 or last:
        result, evaluated = driver.evaluate(state, extract, test, config, mesh), True
        driver.write_eval(workdir, writer, done, result)
    if not evaluated:  # Resumed at the end: evaluate the final state.
      result = driver.evaluate(state, extract, test, config, mesh)
      driver.write_eval(workdir, writer, int(state.step), result)
  finally:
    manager.wait_until_finished()
    manager.close()
    writer.close()  # flushes, and ends the asynchronous writer's thread
  return result

