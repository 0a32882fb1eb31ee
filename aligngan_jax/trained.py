"""A trained workdir reopened for the tools that look at a model (evaluation,
``mode=visualize``, ``search``, ``export``): its config, its newest
checkpoint and its feature extractors."""

import contextlib
import dataclasses
import functools
import json
import os
from typing import Callable

import jax
import ml_collections
import numpy as np

from aligngan_jax import checkpointing
from aligngan_jax import config_checks
from aligngan_jax import sharding
from aligngan_jax import trainers
from aligngan_jax.evaluation import driver

# How each program names the checkpoint to use: main.py (eval, visualize)
# reads config.resume_step, search and export their --step flag.
MAIN_STEP_FLAG = '--config.resume_step'


@dataclasses.dataclass(frozen=True)
class Opened:
  config: ml_collections.ConfigDict
  step: int
  state: object
  # {'rgb', 'ir'}: sharded images [n, H, W, 3] in [-1, 1] -> unit features.
  extract: dict[str, Callable]
  # rgb -> (fake IR, reconstructed RGB), eval mode; None for the IDE trainer.
  translate: Callable | None
  mesh: jax.sharding.Mesh
  trainer: object = None  # the `trainers.Trainer` it was built with
  # The trainer's jitted {'rgb', 'ir'}: (state, images) -> {feature name:
  # features}, and its translator (or None): what the training loop uses.
  extractors: dict | None = None
  translator: Callable | None = None
  workdir: str = ''
  # The option that picks a checkpoint in the program at hand (its advice).
  step_flag: str = MAIN_STEP_FLAG

  @property
  def load_size(self) -> tuple[int, int]:
    """(height, width) the trainer's images are loaded at."""
    return self.trainer.load_size(self.config)

  def features(self, records) -> np.ndarray:
    """The primary test features of ``records`` (`driver.features_by_modality`),
    finite, or a one-line error naming this checkpoint (`finite_features`)."""
    with self.finite_features():
      return driver.features_by_modality(
          self.extract, records, self.config, self.mesh, image_size=self.load_size
      )

  @contextlib.contextmanager
  def finite_features(self):
    """Turns `driver.NonFiniteFeatures` raised inside into one line naming
    this checkpoint and the newest older one whose features are finite."""
    try:
      yield
    except driver.NonFiniteFeatures as e:
      where = os.path.join(checkpointing.checkpoint_dir(self.workdir), str(self.step))
      good = self.last_good_step()
      advice = (
          f'Step {good} gives finite features: rerun with {self.step_flag}={good}.'
          if good is not None
          else 'No older checkpoint gives finite features: train again in a new '
          '--workdir with a lower learning rate.'
      )
      raise driver.NonFiniteFeatures(
          f'Checkpoint {where} gives non-finite features ({e}): a diverged state; '
          f'nothing was ranked, written or drawn. {advice}'
      ) from None

  def last_good_step(self) -> int | None:
    """The newest checkpoint older than this one that training kept as good
    (its metadata says the probe passed: `divergence.Probe`) or, for one
    written before the probe existed, that restores intact and gives
    finite features, in both modalities, for a fixed probe batch (uniform
    noise images, seed 0: no dataset needed); None if none does."""
    manager = checkpointing.create_manager(self.workdir, save_every=1, max_to_keep=1, create=False)
    template = images = None
    try:
      for step in sorted((s for s in manager.all_steps() if s < self.step), reverse=True):
        if checkpointing.custom_metadata(manager, step).get('probed'):
          return step
        if template is None:
          height, width = self.load_size
          noise = np.random.default_rng(0).uniform(
              -1, 1, (self.config.eval_batch_size, height, width, 3)
          )
          images = sharding.shard_batch(noise.astype(np.float32), self.mesh)
          template = trainers.create_state(self.trainer, self.mesh, abstract=True)
        try:
          state = checkpointing.restore(manager, template, self.config, step=step)
        except checkpointing.CheckpointError:
          continue
        feats = jax.device_get({m: f(state, images) for m, f in self.extractors.items()})
        if all(np.isfinite(x).all() for x in jax.tree.leaves(feats)):
          return step
    finally:
      manager.close()
    return None


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config, as training saved it in ``<workdir>/config.json``.

  A truncated or hand-broken file is a `ConfigError` naming it (one line,
  as the tools print it), not a JSON traceback.
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise config_checks.ConfigError(
        f'--workdir={workdir} has no config.json: not a workdir written by '
        'main.py (train first, or pass the folder given to --workdir).'
    )
  # main.py writes it only when a run starts; resuming does not repair it.
  fix = "copy it from a backup, or save the run's --config there as JSON (ConfigDict.to_json)"
  try:
    with open(path, encoding='utf-8') as f:
      raw = json.load(f)
  except json.JSONDecodeError as e:
    raise config_checks.ConfigError(
        f'{path} is truncated or not valid JSON ({e.msg} at line {e.lineno} '
        f'column {e.colno}); {fix}.'
    ) from e
  except (OSError, UnicodeDecodeError) as e:
    raise config_checks.ConfigError(f'{path} cannot be read ({e}); {fix}.') from e
  if not isinstance(raw, dict):
    raise config_checks.ConfigError(
        f'{path} holds a JSON {type(raw).__name__}, not the config object main.py '
        f'writes; {fix}.'
    )
  if not config_checks.is_run_config(raw):
    raise config_checks.ConfigError(
        f'{path} is not a run config (it lacks dataset, model or image_size): not '
        'a workdir written by main.py; pass the folder given to main.py --workdir.'
    )
  return ml_collections.ConfigDict(raw)


def require_trained_workdir(workdir: str, step: int = -1, step_flag: str = MAIN_STEP_FLAG) -> None:
  """Raises `ConfigError` unless ``workdir`` holds a config.json and at least
  one finished checkpoint (and checkpoint ``step``, unless it is -1; the
  error names it as ``step_flag``).

  Only looks (it never creates a folder: a mistyped --workdir stays
  absent), so that the tools name a wrong workdir in a second, before they
  build and restore a model. A step folder is finished once Orbax renamed
  it to its bare number; ``<step>.orbax-checkpoint-tmp-*`` ones are
  interrupted saves.
  """
  if not os.path.isdir(workdir):
    what = 'is not a folder' if os.path.exists(workdir) else 'does not exist'
    raise config_checks.ConfigError(
        f'--workdir={workdir} {what}: pass the folder given to main.py --workdir.'
    )
  if not os.path.isfile(os.path.join(workdir, 'config.json')):
    load_config(workdir)  # Raises, naming what is missing.
  steps = checkpointing.steps_in(workdir)
  if not steps:
    raise config_checks.ConfigError(_no_checkpoint(workdir))
  checkpointing.check_step(step, steps, checkpointing.checkpoint_dir(workdir), _option(step_flag))


def num_classes(workdir: str) -> int:
  """Classes of the identity classifier, read from the newest checkpoint's
  metadata (no dataset needed)."""
  folder = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(folder):
    raise config_checks.ConfigError(_no_checkpoint(workdir))
  # create=False: reading must not leave a checkpoints/ folder behind.
  manager = checkpointing.create_manager(workdir, save_every=1, max_to_keep=1, create=False)
  steps = sorted(manager.all_steps(), reverse=True)
  if not steps:
    raise config_checks.ConfigError(_no_checkpoint(workdir))
  # Every step has the same classifier: the newest readable metadata tells
  # (a damaged newest checkpoint is named by the restore that follows).
  for step in steps:
    recorded = checkpointing.custom_metadata(manager, step).get('num_classes')
    if recorded is not None:  # the training loop records it with every save
      manager.close()
      return int(recorded)
    try:  # an older checkpoint: the classifier's shape tells
      tree = manager.item_metadata(step)[checkpointing.STATE]
      params = getattr(tree, 'tree', tree)['params']
    except Exception:
      continue
    manager.close()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
      keys = [getattr(k, 'key', None) for k in path]
      if 'classifier' in keys and keys[-1] == 'bias':
        return int(leaf.shape[0])
    raise config_checks.ConfigError(f'{workdir}: the checkpoint holds no classifier.')
  manager.close()
  raise config_checks.ConfigError(
      f'--workdir={workdir}: no checkpoint in {folder} has readable metadata '
      '(all damaged); train again in a new --workdir.'
  )


def _option(step_flag: str) -> str:
  """How an error names the step option: 'config.resume_step' as main.py's
  config errors do, '--step' as the tools' flag errors do."""
  return step_flag.removeprefix('--') if step_flag == MAIN_STEP_FLAG else step_flag


def _no_checkpoint(workdir):
  return (
      f'--workdir={workdir} holds no checkpoint ({os.path.join(workdir, "checkpoints")} '
      "is empty or missing); train first (config.mode='train')."
  )


def restore(
    config,
    workdir: str,
    num_classes_: int,
    mesh=None,
    *,
    step=None,
    step_flag: str = MAIN_STEP_FLAG,
) -> Opened:
  """Checkpoint ``step`` of ``workdir`` (None: ``config.resume_step``; -1:
  the newest) with extractors bound to it. ``step_flag``: the option that
  picks the step in the calling program, named in its advice."""
  mesh = mesh or sharding.create_mesh()
  trainer = trainers.trainer_for(config, trainers.DataInfo(num_classes_))
  template = trainers.create_state(trainer, mesh, abstract=True)
  extractors = trainer.extractors(mesh)
  primary = trainer.feature_names[0]
  if not os.path.isdir(checkpointing.checkpoint_dir(workdir)):
    raise config_checks.ConfigError(_no_checkpoint(workdir))
  manager = checkpointing.create_manager(workdir, save_every=1, max_to_keep=1, create=False)
  try:
    if not manager.all_steps():
      raise config_checks.ConfigError(_no_checkpoint(workdir))
    step = config.get('resume_step', -1) if step is None else step
    step = checkpointing.chosen_step(manager, step, _option(step_flag))
    state = checkpointing.restore(
        manager, template, config, step=step, step_flag=step_flag, training=False
    )
  finally:
    manager.close()
  translator = trainer.translator()
  translate = None if translator is None else functools.partial(translator, state)
  return Opened(
      config=config,
      step=int(state.step),
      state=state,
      extract={k: (lambda images, f=f: f(state, images)[primary]) for k, f in extractors.items()},
      translate=translate,
      mesh=mesh,
      trainer=trainer,
      extractors=extractors,
      translator=translator,
      workdir=workdir,
      step_flag=step_flag,
  )


def open_workdir(workdir: str, config=None, *, step: int = -1, step_flag: str = '--step') -> Opened:
  """``restore`` of checkpoint ``step`` (-1: the newest) with the config
  saved in the workdir (or ``config``) and the classifier size read from
  the checkpoint: what search and export open."""
  require_trained_workdir(workdir, step, step_flag)
  config = config or load_config(workdir)
  return restore(config, workdir, num_classes(workdir), step=step, step_flag=step_flag)


def hide_gpus_from_tensorflow():
  """tf.data needs only the CPU; a TensorFlow that sees a GPU may reserve
  memory JAX needs. Call before any TensorFlow op (a second call, once
  TensorFlow has started, changes nothing and is not an error)."""
  import tensorflow as tf

  try:
    tf.config.set_visible_devices([], 'GPU')
  except RuntimeError:  # "cannot be modified after being initialized"
    pass
