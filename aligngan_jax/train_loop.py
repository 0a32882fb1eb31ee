"""The training loop of every trainer (`aligngan_jax.trainers`): the IDE
baseline's one stage and AlignGAN's three run here alike, and so does any
registered trainer; nothing here is specific to one model.

One global iteration counter runs through the trainer's stages; each stage
is one jitted step over the data mesh, state replicated and donated, that
takes a dict of batches keyed by the trainer's sampler names. Samplers are
step-indexed and randomness comes from ``fold_in(rng, step)``, so a run
resumed from its checkpoint continues exactly as an uninterrupted one. The
caller may supply the data (`data.Data`, in memory) and the metric writer;
main.py passes the TFDS data and clu's writer. What happens between steps
(log, translation grid, checkpoint, evaluation) is decided by one `Cadence`.
"""

import dataclasses
import functools
import json
import os
import time

from absl import logging
import jax

from aligngan_jax import checkpointing
from aligngan_jax import config_checks
from aligngan_jax import data as data_lib
from aligngan_jax import divergence
from aligngan_jax import reporting
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
    return cls(
        log=config.log_every_steps,
        checkpoint=config.checkpoint_every_steps,
        image=config.image_every_steps,
        eval=config.eval_every_steps,
        eval_at_stage_end=bool(config.eval.stage_end),
    )

  def due(self, done: int, *, stage_end: bool, last: bool) -> frozenset:
    """Subset of {'log', 'image', 'checkpoint', 'eval'} after ``done``
    iterations."""
    edge = stage_end or last
    out = {
        name
        for name, every in (
            ('log', self.log),
            ('image', self.image),
            ('checkpoint', self.checkpoint),
        )
        if done % every == 0 or edge
    }
    if 'checkpoint' in out:
      out.add('log')
    if done % self.eval == 0 or last or (stage_end and self.eval_at_stage_end):
      out.add('eval')
    return frozenset(out)


def evaluate(state, trainer, extractors, data, config, mesh, truth=None):
  """(protocol result, extra) of ``state`` on the test split of ``data``:
  one feature extraction for the protocols, the diagnostics and every named
  test feature of the trainer (None, None on processes other than 0).
  ``extra``: {'diagnostics': ..., 'features': {name: protocol summary} of
  the trainer's other features}; ``truth`` (a `translation.Truth` and the
  jitted translator) adds diagnostic (e), the translation error against the
  true infrared images."""
  records = data.test
  extract = {k: (lambda images, f=f: f(state, images)) for k, f in extractors.items()}
  feats = driver.features_by_modality(
      extract,
      records,
      config,
      mesh,
      image_size=trainer.load_size(config),
      batches=data.eval_batches,
  )
  error = None
  if truth is not None and config.eval.diagnostics:
    # Every process runs the generator (a jitted call); process 0 reports.
    pairs, translator = truth
    error = pairs.measure(lambda rgb: translator(state, rgb)[0], config.eval_batch_size)
  primary, *others = trainer.feature_names
  result = driver.score(feats[primary], records, config)
  if result is None:
    return None, None
  extra = {}
  if others:
    extra['features'] = {
        name: diagnostics_lib.protocol_summary(driver.score(feats[name], records, config))
        for name in others
    }
  if config.eval.diagnostics:
    extra['diagnostics'] = diagnostics_lib.diagnose(
        feats[primary], records.person_id, records.camera, records.modality
    )
    if error is not None:
      extra['diagnostics']['translation'] = error
  return result, extra


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

  def add(self, stage: int, step: int, result, extra, timing=None):
    """``extra``: `evaluate`'s; ``timing``: the stage's, at its end."""
    extra = dict(extra or {})
    diagnostics = extra.pop('diagnostics', None)
    driver.write_eval(
        self.workdir,
        self.writer,
        step,
        result,
        extra={'stage': stage, 'diagnostics': diagnostics, **extra},
    )
    if result is None or diagnostics is None:
      return
    self.rows = [r for r in self.rows if r['step'] != step]
    self.rows.append(
        {
            'stage': stage,
            'step': step,
            'protocol': diagnostics_lib.protocol_summary(result),
            'diagnostics': diagnostics,
            **({'timing': timing} if timing else {}),
        }
    )
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
    picture = visualize.translation_grid(self.rgb, fake_ir, self.ir, reconstructed, self.true_ir)
    self.writer.write_images(step, {'translation': picture[None]})
    if jax.process_index() == 0:
      visualize.save_png(
          os.path.join(self.workdir, 'images', f'translation_{step:06d}.png'), picture
      )


def _next_batch(iterators, mesh) -> dict:
  return {name: sharding.shard_batch(next(it), mesh) for name, it in iterators.items()}


def probe_images(data, config, image_size, mesh) -> dict:
  """{'rgb', 'ir'}: the first evaluation batch of each modality of the test
  split, sharded: the images `divergence.Probe` extracts features of."""
  out = {}
  for modality, mask in data_lib.modality_masks(data.test):
    if mask.any():
      batch = next(
          iter(
              data.eval_batches(
                  data.test.select(mask), image_size=image_size, batch_size=config.eval_batch_size
              )
          )
      )
      out[modality] = sharding.shard_batch(batch['image'], mesh)
  return out


def train_and_evaluate(config, workdir: str, *, data=None, writer=None) -> dict:
  """Trains ``config.trainer``'s stages (resuming from ``workdir`` if it
  holds a checkpoint) and evaluates; returns the final evaluation.

  ``data``: a `data.Data` (train and test records in memory, and their
  batches); None reads ``config.dataset`` through TFDS
  (`input_pipeline.TFDSData`, TensorFlow). ``writer``: a clu-style metric
  writer (write_scalars, write_images, write_hparams, flush, close); None
  makes clu's default writer in ``workdir`` (and closes it at the end). With
  both given, neither TensorFlow nor clu is imported.
  """
  config_checks.validate_config(config, num_devices=jax.device_count())
  config_checks.ensure_workdir(workdir)
  trainer_class = trainers.get(config.trainer)
  fetched = None
  if not checkpointing.steps_in(workdir):
    # A new run: fetch (or find in the cache) and verify pretrained weights
    # before the data is read; a resumed run does not need them.
    fetched = trainer_class.fetch_pretrained(config)
  mesh = sharding.create_mesh()
  if data is None:
    from aligngan_jax import input_pipeline  # TensorFlow: only here.

    data = input_pipeline.TFDSData.load(config)
  size = trainer_class.load_size(config)
  rgb, ir = data.training_split(size, config.decode_once)
  num_classes = int(data.train.label.max()) + 1
  trainer = trainer_class(config, trainers.DataInfo(num_classes, len(rgb), len(ir)))
  samplers = trainer.samplers(rgb.label, ir.label)  # checks the batch layouts
  trainer.before_training()
  manager, state, resumed = checkpointing.resume_or_start(
      config, workdir, functools.partial(trainers.create_state, trainer, mesh)
  )
  if not resumed:
    state = trainer.load_pretrained(state, mesh, fetched)
  start = int(state.step)
  bounds, total = trainer.bounds(), trainer.total_iterations
  own_writer = writer is None
  if own_writer:
    writer = reporting.writer_for(workdir)
  if start == 0:
    reporting.write_run_config(config, workdir, writer)
  logging.info(
      'Training %s (%s): %d classes, %d RGB + %d IR train images, iterations %d..%d.',
      config.dataset,
      trainer.name,
      num_classes,
      len(rgb),
      len(ir),
      start,
      total,
  )
  steps = trainers.make_steps(trainer, mesh)
  extractors = trainer.extractors(mesh)
  # A checkpoint is kept only if training can go on from it (divergence.Probe);
  # each stage adds its probe batches when it starts.
  probe = divergence.Probe(
      steps, {}, extractors, probe_images(data, config, size, mesh), config.checkpoint_max_abs
  )
  refuse = divergence.refuse_diverged(manager, max_abs=config.checkpoint_max_abs, probe=probe)
  grid, truth = None, None
  translator = trainer.translator()
  if translator is not None:
    grid = TranslationGrid(translator, *data.grid_images(config.grid_people, size), workdir, writer)
    pairs = data.paired_images(size) if config.eval.diagnostics else None
    if pairs is not None:
      truth = (translation_lib.Truth.from_pairs(*pairs), translator)

  def run_eval():
    try:
      return evaluate(state, trainer, extractors, data, config, mesh, truth)
    except driver.NonFiniteFeatures as e:
      # The probe saw finite features on its batch; the whole test split
      # did not: that state is no step to go on from either.
      step = int(state.step)
      raise divergence.DivergenceError(
          f'Evaluation at step {step}: {e}; training stopped. '
          + divergence.resume_advice(manager, failed_step=step, max_abs=config.checkpoint_max_abs)
      ) from None

  cadence = Cadence.from_config(config)
  progress = reporting.Progress(start_step=start, num_steps=total, images_per_step=0)
  report = StageReport(workdir, writer, start)
  result, history, first, evaluated = None, [], start, False
  try:
    if start == 0 and config.eval.stage_end:
      # Row "stage 0": the starting point (random or pretrained trunk,
      # untrained generator), against which each stage's gain is read.
      report.add(0, 0, *run_eval())
    for stage in trainer.schedule:
      lo, hi = bounds[stage.number]
      if start >= hi:
        continue
      logging.info('%s: iterations %d..%d.', stage.name.capitalize(), max(lo, start), hi)
      progress.images_per_step = stage.images
      iterators = {
          name: data.train_batches(
              rgb, ir, samplers[name], image_size=size, start_step=max(lo, start), num_steps=hi
          )
          for name in stage.samplers
      }
      probe.batches[stage.number] = _next_batch(
          {
              name: data.train_batches(
                  rgb, ir, samplers[name], image_size=size, start_step=lo, num_steps=lo + 1
              )
              for name in stage.samplers
          },
          mesh,
      )
      timing = {'iterations': hi - max(lo, start)}
      began = time.perf_counter()
      for it in range(max(lo, start), hi):
        state, metrics = steps[stage.number](state, _next_batch(iterators, mesh))
        if it == max(lo, start):
          # Compilation (or the cache) plus one step: the stage's start-up.
          timing['first_step_seconds'] = _seconds_since(began, metrics)
        history.append(metrics)
        done = it + 1
        last = done == total
        due = cadence.due(done, stage_end=done == hi, last=last)
        if 'log' in due:
          # Every step's losses, checked before any save (and the state
          # itself is audited by checkpointing.save).
          history = jax.device_get(history)
          divergence.stop_if_non_finite(
              history, first, stage.name, manager, config.checkpoint_max_abs
          )
          means = reporting.mean_metrics(history)
          pace = progress.update(done)
          logging.info('%s %s', stage.name, progress.line(done, means, pace))
          rates = {f'lr/{k}': float(v) for k, v in trainer.learning_rates(it).items()}
          writer.write_scalars(
              done,
              {
                  **{f'train/{k}': v for k, v in {**means, **pace}.items()},
                  **rates,
                  'train/stage': stage.number,
              },
          )
          history, first = [], done
          if done == hi:
            timing['seconds'] = time.perf_counter() - began
        if 'image' in due and grid is not None:
          grid.write(done, state)
        if 'checkpoint' in due:
          checkpointing.save(
              manager,
              state,
              force=last or done == hi,
              metadata={'num_classes': num_classes, 'probed': True},
              check=functools.partial(refuse, state=state, stage=stage.number),
              config=config,
          )
        if 'eval' in due:
          if 'checkpoint' in due:  # no evaluation of a step whose save failed
            checkpointing.wait(manager, state)
          result, extra = run_eval()
          report.add(stage.number, done, result, extra, timing=timing if done == hi else None)
          evaluated = True
    if not evaluated:  # Resumed at the end: evaluate the final state.
      result, extra = run_eval()
      report.add(trainer.schedule[-1].number, int(state.step), result, extra)
    checkpointing.wait(manager, state)
  finally:
    try:
      manager.wait_until_finished()
      manager.close()
    except Exception as e:
      # Raised above already when the loop ended normally: do not hide
      # the error that ended it.
      logging.warning('Checkpoint manager: %s', str(e).splitlines()[0] if str(e) else e)
    if own_writer:
      writer.close()  # flushes, and ends the asynchronous writer's thread
    else:
      writer.flush()
  return result


def _seconds_since(began: float, metrics) -> float:
  jax.block_until_ready(metrics)
  return time.perf_counter() - began
