"""The training loop of every trainer (``trainers.py``): the IDE baseline's
one stage and AlignGAN's three run here alike.

One global iteration counter runs through the trainer's stages; each stage
is one jitted step over the data mesh, state replicated and donated. Batches
come from step-indexed samplers (feature batches P x K = ``ids_per_batch`` x
``instances_per_id``; pixel batches ``gan.pixel_ids_per_batch`` x
``gan.pixel_instances_per_id``), and randomness from ``fold_in(rng,
step)``, so a run resumed from its checkpoint continues exactly as an
uninterrupted one. What happens between steps (log, translation grid,
checkpoint, evaluation) is decided by one `Cadence`.
"""

import dataclasses
import functools
import json
import os

from absl import logging
import jax

from aligngan_jax import checkpointing
from aligngan_jax import config_checks
from aligngan_jax import players
from aligngan_jax import pretrained
from aligngan_jax import reporting
from aligngan_jax import sampler as sampler_lib
from aligngan_jax import sharding
from aligngan_jax import trainers
from aligngan_jax import visualize
from aligngan_jax.evaluation import diagnostics as diagnostics_lib
from aligngan_jax.evaluation import driver
from aligngan_jax.evaluation import translation as translation_lib


@dataclasses.dataclass(frozen=True)
class Cadence:
  """Which periodic actions are due after an iteration. Every action also
  runs at the end of each stage (evaluation there only with
  ``eval_at_stage_end``) and at the end of the run; metrics are always
  logged, i.e. checked to be finite, before a checkpoint is written."""
  log: int
  checkpoint: int
  image: int
  eval: int
  eval_at_stage_end: bool

  @classmethod
  def from_config(cls, config) -> 'Cadence':
    return cls(log=config.log_every_steps, checkpoint=config.checkpoint_every_steps,
               image=config.image_every_steps, eval=config.eval_every_steps,
               eval_at_stage_end=bool(config.eval.stage_end))

  def due(self, done: int, *, stage_end: bool, last: bool) -> frozenset:
    """Subset of {'log', 'image', 'checkpoint', 'eval'} after ``done``
    iterations."""
    edge = stage_end or last
    out = {name for name, every in (('log', self.log), ('image', self.image),
                                     ('checkpoint', self.checkpoint))
           if done % every == 0 or edge}
    if 'checkpoint' in out:
      out.add('log')
    if done % self.eval == 0 or last or (stage_end and self.eval_at_stage_end):
      out.add('eval')
    return frozenset(out)


def evaluate(state, extractors, records, config, mesh, truth=None):
  """(protocol result, diagnostics) of ``state`` on the test ``records``:
  one feature extraction for both (None, None on processes other than 0).
  ``truth`` (a `translation.Truth` and the jitted translator) adds
  diagnostic (e), the translation error against the true infrared images."""
  extract = {k: (lambda images, f=f: f(state, images)) for k, f in extractors.items()}
  feats = driver.features_by_modality(extract, records, config, mesh)
  error = None
  if truth is not None and config.eval.diagnostics:
    # Every process runs the generator (a jitted call); process 0 reports.
    pairs, translator = truth
    error = pairs.measure(lambda rgb: translator(state, rgb)[0], config.eval_batch_size)
  result = driver.score(feats, records, config)
  if result is None or not config.eval.diagnostics:
    return result, None
  diagnostics = diagnostics_lib.diagnose(feats, records.person_id,
                                         records.camera, records.modality)
  if error is not None:
    diagnostics['translation'] = error
  return result, diagnostics


class StageReport:
  """Every evaluation of a run: ``<workdir>/eval/step_N.json``, and with
  diagnostics one row per evaluation logged as a console table, kept in
  ``<workdir>/eval/stages.json`` (rows of an interrupted run are read back
  on resume) and written to TensorBoard."""

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


class TranslationGrid:
  """Real RGB | fake IR | (true IR) | real IR | reconstructed RGB of the
  first test people: TensorBoard image ``translation`` and
  ``<workdir>/images/translation_<step>.png``."""

  def __init__(self, translator, rgb, ir, true_ir, workdir, writer):
    self.translator = translator
    self.rgb, self.ir, self.true_ir = rgb, ir, true_ir
    self.workdir, self.writer = workdir, writer

  def write(self, step, state):
    fake_ir, reconstructed = jax.device_get(self.translator(state, self.rgb))
    picture = visualize.translation_grid(self.rgb, fake_ir, self.ir, reconstructed,
                                         self.true_ir)
    self.writer.write_images(step, {'translation': picture[None]})
    if jax.process_index() == 0:
      visualize.save_png(os.path.join(self.workdir, 'images',
                                      f'translation_{step:06d}.png'), picture)


def _iterators(stage, rgb, ir, config, *, start, end) -> dict:
  """The stage's step-indexed batch iterators, by sampler name."""
  from aligngan_jax import input_pipeline  # TensorFlow: only when training.
  samplers = {
      'feature': lambda: sampler_lib.PKSampler(
          rgb.label, ir.label, ids_per_batch=config.ids_per_batch,
          instances_per_id=config.instances_per_id, seed=config.seed,
          rgb_grey_prob=config.rgb_grey_prob, rgb_channel_prob=config.rgb_channel_prob),
      'pixel': lambda: sampler_lib.PKSampler(
          rgb.label, ir.label, ids_per_batch=config.gan.pixel_ids_per_batch,
          instances_per_id=config.gan.pixel_instances_per_id, seed=config.seed + 1),
  }
  return {name: input_pipeline.create_train_iterator(
      rgb, ir, samplers[name](), image_size=config.image_size, start_step=start,
      num_steps=end) for name in stage.samplers}


def _next_batch(iterators, mesh):
  batch = {name: sharding.shard_batch(next(it), mesh) for name, it in iterators.items()}
  return next(iter(batch.values())) if len(batch) == 1 else batch


def _stop_if_diverged(history, first, stage, manager, max_abs):
  """A one-line `DivergenceError` at the first step of ``history`` (the
  steps after ``first``) with a NaN or infinite loss."""
  found = reporting.first_non_finite(history, first_step=first)
  if found:
    step, terms = found
    raise checkpointing.DivergenceError(
        f'Non-finite {", ".join(terms)} at step {step} ({stage.name}); training '
        f'stopped. {checkpointing.resume_advice(manager, max_abs=max_abs)}')


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains ``config.trainer``'s stages (resuming from ``workdir`` if it
  holds a checkpoint) and evaluates; returns the final evaluation."""
  from aligngan_jax import input_pipeline  # TensorFlow: only when training.
  config_checks.validate_config(config, num_devices=jax.device_count())
  config_checks.ensure_writable(workdir)
  backbone = None
  if config.pretrained_backbone and not checkpointing.steps_in(workdir):
    # A new run: fetch (or find in the cache) and verify the trunk's weights
    # before the data is read; a resumed run does not need them.
    backbone = pretrained.backbone_file(config)
  trainer = trainers.trainer_for(config)
  if trainer.translates:
    config_checks.warn_about_image_size(config)
  mesh = sharding.create_mesh()
  train, test = input_pipeline.load_data(config)
  rgb, ir = input_pipeline.training_records(
      train.select(train.modality == input_pipeline.RGB),
      train.select(train.modality == input_pipeline.IR),
      image_size=config.image_size, decode_once=config.decode_once)
  config_checks.check_data(config, rgb.label, ir.label)
  num_classes = int(train.label.max()) + 1
  models = players.create_models(config, num_classes, trainer.networks)
  manager, state, resumed = checkpointing.resume_or_start(
      config, workdir, functools.partial(players.create_state, config, models, mesh))
  if not resumed and config.pretrained_backbone:
    state = pretrained.load_backbone(state, config, mesh, resolved=backbone)
    logging.info('Trunk initialised from %s.', config.pretrained_backbone)
  start = int(state.step)
  bounds, total = trainer.bounds(), trainer.total_iterations
  writer = reporting.writer_for(workdir)
  if start == 0:
    reporting.write_run_config(config, workdir, writer)
  logging.info('Training %s (%s): %d classes, %d RGB + %d IR train images, '
               'iterations %d..%d.', config.dataset, trainer.name, num_classes,
               len(rgb), len(ir), start, total)
  steps = trainers.make_steps(trainer, models, config, mesh)
  extractors = trainers.make_extractors(models, config, mesh)
  grid, truth = None, None
  if trainer.translates:
    translator = trainers.make_translator(models)
    paired = input_pipeline.load_paired_ir(config, train, test)
    grid = TranslationGrid(
        translator, *input_pipeline.grid_images(test, config.grid_people,
                                                config.image_size,
                                                paired and paired['test']),
        workdir, writer)
    if paired is not None and config.eval.diagnostics:
      truth = (translation_lib.Truth.from_pairs(
          *input_pipeline.paired_images(paired, config.image_size)), translator)
  cadence = Cadence.from_config(config)
  progress = reporting.Progress(start_step=start, num_steps=total, images_per_step=0)
  report = StageReport(workdir, writer, start)
  result, history, first, evaluated = None, [], start, False
  try:
    if start == 0 and config.eval.stage_end:
      # Row "stage 0": the starting point (random or pretrained trunk,
      # untrained generator), against which each stage's gain is read.
      report.add(0, 0, *evaluate(state, extractors, test, config, mesh, truth))
    for stage in trainer.stages:
      lo, hi = bounds[stage.number]
      if start >= hi:
        continue
      logging.info('%s: iterations %d..%d.', stage.name.capitalize(), max(lo, start), hi)
      progress.images_per_step = stage.images
      iterators = _iterators(stage, rgb, ir, config, start=max(lo, start), end=hi)
      for it in range(max(lo, start), hi):
        state, metrics = steps[stage.number](state, _next_batch(iterators, mesh))
        history.append(metrics)
        done = it + 1
        last = done == total
        due = cadence.due(done, stage_end=done == hi, last=last)
        if 'log' in due:
          # Every step's losses, checked before any save (and the state
          # itself is audited by checkpointing.save).
          history = jax.device_get(history)
          _stop_if_diverged(history, first, stage, manager, config.checkpoint_max_abs)
          means = reporting.mean_metrics(history)
          pace = progress.update(done)
          logging.info('%s %s', stage.name, progress.line(done, means, pace))
          rates = {f'lr/{k}': float(v) for k, v in players.lr_at(config, it).items()
                   if k in trainer.networks}
          writer.write_scalars(done, {**{f'train/{k}': v for k, v in {**means, **pace}.items()},
                                      **rates, 'train/stage': stage.number})
          history, first = [], done
        if 'image' in due and grid is not None:
          grid.write(done, state)
        if 'checkpoint' in due:
          checkpointing.save(manager, state, force=last or done == hi,
                             max_abs=config.checkpoint_max_abs)
        if 'eval' in due:
          if 'checkpoint' in due:   # no evaluation of a step whose save failed
            checkpointing.wait(manager, state)
          result, diagnostics = evaluate(state, extractors, test, config, mesh, truth)
          report.add(stage.number, done, result, diagnostics)
          evaluated = True
    if not evaluated:  # Resumed at the end: evaluate the final state.
      result, diagnostics = evaluate(state, extractors, test, config, mesh, truth)
      report.add(trainer.stages[-1].number, int(state.step), result, diagnostics)
    checkpointing.wait(manager, state)
  finally:
    try:
      manager.wait_until_finished()
      manager.close()
    except Exception as e:  # pylint: disable=broad-except
      # Raised above already when the loop ended normally: do not hide
      # the error that ended it.
      logging.warning('Checkpoint manager: %s', str(e).splitlines()[0] if str(e) else e)
    writer.close()  # flushes, and ends the asynchronous writer's thread
  return result
