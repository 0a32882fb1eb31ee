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
import json
import os
import tempfile

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aligngan_jax import checkpointing
from aligngan_jax import convert
from aligngan_jax import losses
from aligngan_jax import players
from aligngan_jax import pretrained
from aligngan_jax import reporting
from aligngan_jax import sampler as sampler_lib
from aligngan_jax import sharding
from aligngan_jax import train_state as train_state_lib
from aligngan_jax.evaluation import features as features_lib
from aligngan_jax.evaluation import engine
from aligngan_jax.models import gan
from aligngan_jax.models import resnet

FEATURE_NETS = ('encoder', 'embedder')
_MODES = ('train', 'eval', 'visualize')
_TRAINERS = ('ide', 'aligngan')
_OPTIMIZERS = ('sgd', 'adam')


class ConfigError(ValueError):
  """An invalid config value or path; the message names the key or path."""


def validate_config(config: ml_collections.ConfigDict, *, num_devices: int):
  """Checks the values a run depends on before any work is done."""
  if config.mode not in _MODES:
    raise ConfigError(f'config.mode={config.mode!r} is not one of {_MODES}.')
  if config.trainer not in _TRAINERS:
    raise ConfigError(f'config.trainer={config.trainer!r} is not one of {_TRAINERS}.')
  if config.compute_dtype not in players.COMPUTE_DTYPES:
    raise ConfigError(f'config.compute_dtype={config.compute_dtype!r} is not one '
                      f'of {players.COMPUTE_DTYPES}.')
  for key in ('image_size', 'ids_per_batch', 'instances_per_id',
              'eval_batch_size', 'num_train_steps', 'log_every_steps',
              'checkpoint_every_steps', 'max_checkpoints_to_keep',
              'eval_every_steps', 'image_every_steps', 'grid_people',
              'eval.max_rank', 'eval.num_trials'):
    value = config[key.split('.')[0]][key.split('.')[1]] if '.' in key else config[key]
    if not isinstance(value, int) or value <= 0:
      raise ConfigError(f'config.{key}={value!r} must be a positive integer.')
  _validate_eval(config.eval)
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
  if config.optimizer not in _OPTIMIZERS:
    raise ConfigError(f'config.optimizer={config.optimizer!r} is not one of '
                      f'{_OPTIMIZERS}.')
  if list(config.lr_milestones) != sorted(config.lr_milestones):
    raise ConfigError(f'config.lr_milestones={config.lr_milestones} must be '
                      'ascending.')
  if config.model.depth not in (18, 34, 50, 101):
    raise ConfigError(f'config.model.depth={config.model.depth} must be one of '
                      '18, 34, 50, 101.')


def _validate_eval(ev):
  # pylint: disable=g-import-not-at-top
  from aligngan_jax.evaluation import protocols
  from aligngan_jax.evaluation import ranking
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


def ensure_writable(workdir: str):
  """Creates ``workdir`` and proves it is writable, or raises ConfigError."""
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.TemporaryFile(dir=workdir):
      pass
  except OSError as e:
    raise ConfigError(f'--workdir={workdir} is not writable: '
                      f'{e.strerror or e}.') from e


# ----------------------------------------------------------------------------
# Models, optimizer, state.


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


# ----------------------------------------------------------------------------
# The step.


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


# ----------------------------------------------------------------------------
# Evaluation.


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


def eval_settings(config) -> engine.EvalSettings:
  return engine.EvalSettings.from_config(config.eval,
                                         regdb_trial=config.get('trial', 1))


def extract_features(extract, records, config, mesh) -> np.ndarray:
  """Unit-norm features (``extract``: sharded images -> features) of every
  record, in record order, with a progress line."""
  from aligngan_jax import input_pipeline  # TensorFlow: only when evaluating data.
  batches = input_pipeline.create_eval_iterator(
      records, image_size=config.image_size, batch_size=config.eval_batch_size)
  num_batches = -(-len(records) // config.eval_batch_size)
  progress = reporting.Progress(start_step=0, num_steps=num_batches,
                                images_per_step=config.eval_batch_size)
  feats = []
  for i, batch in enumerate(batches, start=1):
    feats.append(np.asarray(extract(sharding.shard_batch(batch['image'], mesh))))
    if i % max(1, num_batches // 5) == 0 or i == num_batches:
      logging.info('features: %s', progress.short_line(i, progress.update(i)))
  return np.concatenate(feats)[:len(records)]


def evaluate(state, extract, test_records, config, mesh) -> dict:
  """Features once, then every configured protocol setting and trial."""
  feats = extract_features(lambda images: extract(state, images), test_records,
                           config, mesh)
  return score(feats, test_records, config)


def evaluate_official(config, test_records, mesh) -> dict:
  """The converted official release (``config.init_from``), spec §5: RGB
  images translated by G_rgb2ir, then the same protocols."""
  variables = convert.load_official_checkpoint(config.init_from,
                                               step=config.init_from_step)
  extractors = pretrained.official_extractors(variables, config, mesh)
  feats = features_by_modality(extractors, test_records, config, mesh)
  return score(feats, test_records, config)


def features_by_modality(extractors: dict, records, config, mesh) -> np.ndarray:
  """Features of every record: RGB ones by ``extractors['rgb']`` (which may
  translate them first), IR ones by ``extractors['ir']``, in record order."""
  from aligngan_jax import input_pipeline
  is_rgb = records.modality == input_pipeline.RGB
  feats = None
  for modality, mask in (('rgb', is_rgb), ('ir', ~is_rgb)):
    if not mask.any():
      continue
    part = extract_features(extractors[modality], records.select(mask), config, mesh)
    if feats is None:
      feats = np.zeros((len(records), part.shape[1]), np.float32)
    feats[mask] = part
  return feats


def score(feats, records, config) -> dict | None:
  """Every configured setting scored from the features (which every process
  holds: extraction is sharded, the output replicated). Computed once, by
  process 0, which alone reports; the other processes get None."""
  if jax.process_index() != 0:
    return None
  return engine.evaluate_features(feats, records, eval_settings(config))


def write_eval(workdir, writer, step, result, extra: dict | None = None):
  """The evaluation table to the console, scalars to TensorBoard, and
  ``<workdir>/eval/step_<step>.json`` and ``latest.json`` (``result`` plus
  ``extra``, e.g. the stage and its diagnostics)."""
  if result is None:            # not process 0
    return
  logging.info('Evaluation at step %d:\n%s', step, engine.format_report(result))
  writer.write_scalars(step, engine.scalars(result))
  if jax.process_index() == 0:
    os.makedirs(os.path.join(workdir, 'eval'), exist_ok=True)
    payload = {'step': step, **(extra or {}), **result}
    for name in (f'step_{step}.json', 'latest.json'):
      with open(os.path.join(workdir, 'eval', name), 'w') as f:
        json.dump(payload, f, indent=2)


# ----------------------------------------------------------------------------
# The job.


def resume_or_start(config, workdir, fresh):
  """(checkpoint manager, state, resumed): the newest checkpoint in
  ``workdir`` restored like ``fresh``, or ``fresh`` itself."""
  manager = checkpointing.create_manager(
      workdir, save_every=config.checkpoint_every_steps,
      max_to_keep=config.max_checkpoints_to_keep)
  restored = checkpointing.restore_latest(manager, fresh)
  if restored is None:
    return manager, fresh, False
  logging.info('Resumed from %s at step %d.', manager.directory, int(restored.step))
  return manager, restored, True


def dataset_name(config) -> str:
  """The TFDS name to build: RegDB has one builder config per trial
  (``--config.trial=N`` picks ``regdb/trialN``)."""
  if config.dataset == 'regdb':
    return f'regdb/trial{config.get("trial", 1)}'
  return config.dataset


def load_data(config):
  """(train, test) Records. With several processes, process 0 prepares the
  TFDS dataset first and the others then read it (no two builds racing in a
  shared data_dir)."""
  from aligngan_jax import distributed  # pylint: disable=g-import-not-at-top
  from aligngan_jax import input_pipeline  # pylint: disable=g-import-not-at-top

  def prepare():
    return input_pipeline.get_builder(dataset_name(config), data_dir=config.data_dir,
                                      manual_dir=config.manual_dir)
  if jax.process_index() == 0:
    builder = prepare()
  distributed.barrier('dataset prepared')
  if jax.process_index() != 0:
    builder = prepare()
  train = input_pipeline.load_split(builder, 'train')
  test = input_pipeline.load_split(builder, 'test')
  return train, test


def write_run_config(config, workdir, writer):
  """The run's config: TensorBoard hparams and ``<workdir>/config.json``."""
  writer.write_hparams(_flat(config))
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))


def writer_for(workdir):
  from clu import metric_writers  # imports TensorFlow
  return metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0, asynchronous=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from ``workdir`` if it holds a checkpoint) and
  evaluates; returns the final evaluation result. ``config.trainer``:
  'ide' (the feature module alone, below) or 'aligngan' (the three stages,
  aligngan_train.py)."""
  jax.config.update('jax_debug_nans', bool(config.debug_nans))
  if config.trainer == 'aligngan':
    from aligngan_jax import aligngan_train  # pylint: disable=g-import-not-at-top
    return aligngan_train.train_and_evaluate(config, workdir)
  from aligngan_jax import input_pipeline
  validate_config(config, num_devices=jax.device_count())
  ensure_writable(workdir)
  mesh = sharding.create_mesh()
  train, test = load_data(config)
  rgb = train.select(train.modality == input_pipeline.RGB)
  ir = train.select(train.modality == input_pipeline.IR)
  num_classes = int(train.label.max()) + 1
  models = create_models(config, num_classes)
  sampler = sampler_lib.PKSampler(
      rgb.label, ir.label, ids_per_batch=config.ids_per_batch,
      instances_per_id=config.instances_per_id, seed=config.seed,
      rgb_grey_prob=config.rgb_grey_prob, rgb_channel_prob=config.rgb_channel_prob)

  manager, state, resumed = resume_or_start(
      config, workdir, create_train_state(config, models, mesh))
  if not resumed and config.pretrained_backbone:
    state = pretrained.load_backbone(state, config, mesh)
    logging.info('Trunk initialised from %s.', config.pretrained_backbone)
  start_step = int(state.step)

  writer = writer_for(workdir)
  if start_step == 0:
    write_run_config(config, workdir, writer)
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
        result, evaluated = evaluate(state, extract, test, config, mesh), True
        write_eval(workdir, writer, done, result)
    if not evaluated:  # Resumed at the end: evaluate the final state.
      result = evaluate(state, extract, test, config, mesh)
      write_eval(workdir, writer, int(state.step), result)
  finally:
    manager.wait_until_finished()
    manager.close()
    writer.close()  # flushes, and ends the asynchronous writer's thread
  return result


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """``config.mode='eval'``: evaluates the newest checkpoint in ``workdir``,
  or the official release in ``config.init_from``."""
  validate_config(config, num_devices=jax.device_count())
  mesh = sharding.create_mesh()
  train, test = load_data(config)
  if config.init_from:
    ensure_writable(workdir)
    writer = writer_for(workdir)
    result = evaluate_official(config, test, mesh)
    write_eval(workdir, writer, 0, result)
    writer.close()  # flushes, and ends the asynchronous writer's thread
    return result
  from aligngan_jax import trained  # pylint: disable=g-import-not-at-top
  opened = trained.restore(config, workdir, int(train.label.max()) + 1, mesh)
  ensure_writable(workdir)
  writer = writer_for(workdir)
  feats = features_by_modality(opened.extract, test, config, mesh)
  result = score(feats, test, config)
  write_eval(workdir, writer, opened.step, result)
  writer.close()  # flushes, and ends the asynchronous writer's thread
  return result


def _flat(config) -> dict:
  """Config as flat hparams for TensorBoard (sequences as strings)."""
  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update({f'{key}.{k}': v for k, v in _flat(value).items()})
    elif isinstance(value, (int, float, str, bool)):
      out[key] = value
    else:
      out[key] = str(value)
  return out
