"""The AlignGAN training loop (``config.trainer='aligngan'``).

One global iteration counter runs through stage 1 (feature warm-up), stage 2
(pixel warm-up) and stage 3 (joint) with ``config.gan.stage_iterations``
iterations each; each stage is one jitted step (``stages.py``) over the data
mesh, state replicated and donated. Feature batches (P x K =
``ids_per_batch`` x ``instances_per_id``) and pixel batches
(``gan.pixel_ids_per_batch`` x ``gan.pixel_instances_per_id``) come from two
step-indexed samplers, so a resumed run sees exactly the batches an
uninterrupted one would. Evaluation follows spec §5: RGB test images are
translated by G_rgb2ir in eval mode first.
"""

import functools
import json
import os

from absl import logging
import jax
import numpy as np

from aligngan_jax import checkpointing
from aligngan_jax import config_checks
from aligngan_jax import players
from aligngan_jax import pretrained
from aligngan_jax import reporting
from aligngan_jax import sampler as sampler_lib
from aligngan_jax import sharding
from aligngan_jax import stages
from aligngan_jax import visualize
from aligngan_jax.evaluation import diagnostics as diagnostics_lib
from aligngan_jax.evaluation import driver
from aligngan_jax.evaluation import features as features_lib


def stage_bounds(config) -> dict[int, tuple[int, int]]:
  """stage -> [first, end) global iterations."""
  bounds, start = {}, 0
  for stage, n in zip((1, 2, 3), config.gan.stage_iterations):
    bounds[stage] = (start, start + n)
    start += n
  return bounds


def make_stage_steps(models, config, mesh) -> dict:
  repl, data = sharding.replicated(mesh), sharding.data_sharded(mesh)
  batch_sharding = {1: data, 2: data, 3: {'feature': data, 'pixel': data}}
  return {stage: jax.jit(functools.partial(fn, models=models, config=config),
                         in_shardings=(repl, batch_sharding[stage]),
                         out_shardings=(repl, repl), donate_argnums=0)
          for stage, fn in stages.STAGES.items()}


def make_extractors(models, config, mesh) -> dict:
  """{'rgb', 'ir'}: jitted (state, images) -> unit-norm test features."""
  size = tuple(config.encoder_input_size)

  def features(state, images, translate):
    variables = {name: {'params': state.params[name],
                        'batch_stats': state.batch_stats[name]}
                 for name in ('G_rgb2ir', 'encoder')}
    return features_lib.translated_test_features(
        models['G_rgb2ir'], variables['G_rgb2ir'], models['encoder'],
        variables['encoder'], images, translate=translate,
        encoder_input_size=size)
  repl = sharding.replicated(mesh)
  return {name: jax.jit(functools.partial(features, translate=translate),
                        in_shardings=(repl, sharding.data_sharded(mesh)),
                        out_shardings=repl)
          for name, translate in (('rgb', bool(config.gan.pixel_alignment)),
                                  ('ir', False))}


def grid_pairs(records, num_people: int):
  """Record indices (rgb [n], ir [n]) of the first RGB and the first IR image
  of up to ``num_people`` identities seen in both modalities (test split:
  people the generators never saw), for the translation grid."""
  from aligngan_jax import input_pipeline
  rgb, ir = [], []
  for pid in np.unique(records.person_id):
    of_id = records.person_id == pid
    r = np.flatnonzero(of_id & (records.modality == input_pipeline.RGB))
    i = np.flatnonzero(of_id & (records.modality == input_pipeline.IR))
    if len(r) and len(i):
      rgb.append(r[0])
      ir.append(i[0])
    if len(rgb) == num_people:
      break
  return np.asarray(rgb, np.int64), np.asarray(ir, np.int64)


def load_images(records, config) -> np.ndarray:
  """All images of ``records`` ([n, S, S, 3] in [-1, 1]) in one batch."""
  from aligngan_jax import input_pipeline
  batch = next(input_pipeline.create_eval_iterator(
      records, image_size=config.image_size, batch_size=len(records),
      process_index=0, process_count=1))
  return batch['image']


def make_translator(models):
  """Jitted (state, rgb) -> (fake IR, reconstructed RGB), eval mode: what
  the generators do at test time."""
  def translate(state, rgb):
    apply = lambda name, x: models[name].apply(
        {'params': state.params[name], 'batch_stats': state.batch_stats[name]},
        x, train=False)
    fake_ir = apply('G_rgb2ir', rgb)
    return fake_ir, apply('G_ir2rgb', fake_ir)
  return jax.jit(translate)


def write_translation_grid(workdir, writer, step, translator, state, images):
  """Real RGB | fake IR | real IR | reconstructed RGB: TensorBoard image
  ``translation`` and ``<workdir>/images/translation_<step>.png``."""
  fake_ir, reconstructed = jax.device_get(translator(state, images['rgb']))
  picture = visualize.translation_grid(images['rgb'], fake_ir, images['ir'],
                                       reconstructed)
  writer.write_images(step, {'translation': picture[None]})
  if jax.process_index() == 0:
    visualize.save_png(os.path.join(workdir, 'images',
                                    f'translation_{step:06d}.png'), picture)


def evaluate(state, extractors, records, config, mesh):
  """(protocol result, diagnostics) of ``state`` on the test ``records``:
  one feature extraction for both (None, None on processes other than 0)."""
  extract = {k: functools.partial(f, state) for k, f in extractors.items()}
  feats = driver.features_by_modality(extract, records, config, mesh)
  result = driver.score(feats, records, config)
  if result is None or not config.eval.diagnostics:
    return result, None
  return result, diagnostics_lib.diagnose(feats, records.person_id,
                                          records.camera, records.modality)


class StageReport:
  """The per-stage diagnostics table (issue 14): one row per evaluation,
  logged as a console table, kept in ``<workdir>/eval/stages.json`` (rows of
  an interrupted run are read back on resume) and written to TensorBoard."""

  def __init__(self, workdir, writer, start_step: int):
    self.workdir, self.writer, self.rows = workdir, writer, []
    self.path = os.path.join(workdir, 'eval', 'stages.json')
    if os.path.isfile(self.path):
      with open(self.path) as f:
        self.rows = [r for r in json.load(f) if r['step'] <= start_step]

  def add(self, stage: int, step: int, result, diagnostics):
    driver.write_eval(self.workdir, self.writer, step, result,
                      extra={'stage': stage, 'diagnostics': diagnostics})
    if result is None or diagnostics is None:
      return
    self.rows = [r for r in self.rows if r['step'] != step]
    self.rows.append({'stage': stage, 'step': step,
                      'protocol': diagnostics_lib.protocol_summary(result),
                      'diagnostics': diagnostics})
    self.writer.write_scalars(step, diagnostics_lib.scalars(diagnostics))
    logging.info('%s', diagnostics_lib.format_table(self.rows))
    if jax.process_index() == 0:
      with open(self.path, 'w') as f:
        json.dump(self.rows, f, indent=2)


def stage_images(config, stage: int) -> int:
  """Images one iteration of ``stage`` consumes (for images/s): stage 1 the
  IR half of a feature batch, stage 2 a pixel batch, stage 3 both batches."""
  feature = config.ids_per_batch * config.instances_per_id
  pixel = config.gan.pixel_ids_per_batch * config.gan.pixel_instances_per_id
  return {1: feature, 2: 2 * pixel, 3: 2 * (feature + pixel)}[stage]


def _batches(rgb, ir, config, *, start, end):
  """Step-indexed iterators: {'feature': ..., 'pixel': ...} per iteration."""
  from aligngan_jax import input_pipeline  # TensorFlow: only here.
  samplers = {
      'feature': sampler_lib.PKSampler(
          rgb.label, ir.label, ids_per_batch=config.ids_per_batch,
          instances_per_id=config.instances_per_id, seed=config.seed,
          rgb_grey_prob=config.rgb_grey_prob, rgb_channel_prob=config.rgb_channel_prob),
      'pixel': sampler_lib.PKSampler(
          rgb.label, ir.label, ids_per_batch=config.gan.pixel_ids_per_batch,
          instances_per_id=config.gan.pixel_instances_per_id, seed=config.seed + 1),
  }
  return {name: input_pipeline.create_train_iterator(
      rgb, ir, s, image_size=config.image_size, start_step=start, num_steps=end)
          for name, s in samplers.items()}


def _stage_batch(stage, iterators, mesh):
  take = lambda name: sharding.shard_batch(next(iterators[name]), mesh)
  if stage == 1:
    return take('feature')
  if stage == 2:
    return take('pixel')
  return {'feature': take('feature'), 'pixel': take('pixel')}


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains all three stages (resuming from ``workdir``) and evaluates."""
  from aligngan_jax import input_pipeline
  config_checks.validate_config(config, num_devices=jax.device_count())
  config_checks.ensure_writable(workdir)
  mesh = sharding.create_mesh()
  train, test = input_pipeline.load_data(config)
  rgb, ir = input_pipeline.training_records(
      train.select(train.modality == input_pipeline.RGB),
      train.select(train.modality == input_pipeline.IR),
      image_size=config.image_size, decode_once=config.decode_once)
  models = players.create_models(config, int(train.label.max()) + 1)
  manager, state, resumed = checkpointing.resume_or_start(
      config, workdir, players.create_state(config, models, mesh))
  if not resumed and config.pretrained_backbone:
    state = pretrained.load_backbone(state, config, mesh)
    logging.info('Trunk initialised from %s.', config.pretrained_backbone)
  start = int(state.step)
  bounds = stage_bounds(config)
  total = bounds[3][1]
  writer = reporting.writer_for(workdir)
  if start == 0:
    reporting.write_run_config(config, workdir, writer)
  steps = make_stage_steps(models, config, mesh)
  extractors = make_extractors(models, config, mesh)
  translator = make_translator(models)
  rgb_rows, ir_rows = grid_pairs(test, config.grid_people)
  grid_images = {'rgb': load_images(test.select(rgb_rows), config),
                 'ir': load_images(test.select(ir_rows), config)}
  progress = reporting.Progress(start_step=start, num_steps=total, images_per_step=0)
  report = StageReport(workdir, writer, start)
  result, history, first = None, [], start
  evaluated = False
  try:
    if start == 0 and config.eval.stage_end:
      # Row "stage 0": the starting point (random or pretrained trunk,
      # untrained generator), against which each stage's gain is read.
      report.add(0, 0, *evaluate(state, extractors, test, config, mesh))
    for stage, (lo, hi) in bounds.items():
      if start >= hi:
        continue
      logging.info('Stage %d: iterations %d..%d.', stage, max(lo, start), hi)
      progress.images_per_step = stage_images(config, stage)
      iterators = _batches(rgb, ir, config, start=max(lo, start), end=hi)
      for it in range(max(lo, start), hi):
        state, metrics = steps[stage](state, _stage_batch(stage, iterators, mesh))
        history.append(metrics)
        done = it + 1
        last = done == total
        save_now = done % config.checkpoint_every_steps == 0 or last or done == hi
        if done % config.log_every_steps == 0 or save_now:
          # Checked before any save: a non-finite state is never checkpointed.
          means = reporting.mean_metrics(history)
          reporting.check_finite(means, first_step=first, last_step=done)
          pace = progress.update(done)
          logging.info('stage %d %s', stage, progress.line(done, means, pace))
          rates = {f'lr/{k}': float(v) for k, v in players.lr_at(config, it).items()}
          writer.write_scalars(done, {**{f'train/{k}': v for k, v in {**means, **pace}.items()},
                                      **rates, 'train/stage': stage})
          history, first = [], done
        if done % config.image_every_steps == 0 or done == hi:
          write_translation_grid(workdir, writer, done, translator, state, grid_images)
        if save_now:
          checkpointing.save(manager, state, force=last or done == hi)
        stage_end = done == hi and config.eval.stage_end
        if done % config.eval_every_steps == 0 or last or stage_end:
          result, diagnostics = evaluate(state, extractors, test, config, mesh)
          report.add(stage, done, result, diagnostics)
          evaluated = True
    if not evaluated:
      result, diagnostics = evaluate(state, extractors, test, config, mesh)
      report.add(3, int(state.step), result, diagnostics)
  finally:
    manager.wait_until_finished()
    manager.close()
    writer.close()  # flushes, and ends the asynchronous writer's thread
  return result

