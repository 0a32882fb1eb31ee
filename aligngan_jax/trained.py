"""A trained workdir reopened for the tools that look at a model (evaluation,
``mode=visualize``, ``search``, ``export``): its config, its newest
checkpoint and its feature extractors."""

import dataclasses
import functools
import json
import os
from typing import Callable

import jax
import ml_collections

from aligngan_jax import checkpointing
from aligngan_jax import config_checks
from aligngan_jax import sharding
from aligngan_jax import trainers


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
  trainer: object = None   # the `trainers.Trainer` it was built with
  # The trainer's jitted {'rgb', 'ir'}: (state, images) -> {feature name:
  # features}, and its translator (or None): what the training loop uses.
  extractors: dict | None = None
  translator: Callable | None = None

  @property
  def load_size(self) -> tuple[int, int]:
    """(height, width) the trainer's images are loaded at."""
    return self.trainer.load_size(self.config)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config, as training saved it in ``<workdir>/config.json``.

  A truncated or hand-broken file is a `ConfigError` naming it (one line,
  as the tools print it), not a JSON traceback.
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise config_checks.ConfigError(
        f'--workdir={workdir} has no config.json: not a workdir written by '
        'main.py (train first, or pass the folder given to --workdir).')
  # main.py writes it only when a run starts; resuming does not repair it.
  fix = ("copy it from a backup, or save the run's --config there as JSON "
         '(ConfigDict.to_json)')
  try:
    with open(path, encoding='utf-8') as f:
      raw = json.load(f)
  except json.JSONDecodeError as e:
    raise config_checks.ConfigError(
        f'{path} is truncated or not valid JSON ({e.msg} at line {e.lineno} '
        f'column {e.colno}); {fix}.') from e
  except (OSError, UnicodeDecodeError) as e:
    raise config_checks.ConfigError(f'{path} cannot be read ({e}); {fix}.') from e
  if not isinstance(raw, dict):
    raise config_checks.ConfigError(
        f'{path} holds a JSON {type(raw).__name__}, not the config object main.py '
        f'writes; {fix}.')
  return ml_collections.ConfigDict(raw)


def require_trained_workdir(workdir: str) -> None:
  """Raises `ConfigError` unless ``workdir`` holds a config.json and at least
  one finished checkpoint.

  Only looks (it never creates a folder: a mistyped --workdir stays
  absent), so that the tools name a wrong workdir in a second, before they
  build and restore a model. A step folder is finished once Orbax renamed
  it to its bare number; ``<step>.orbax-checkpoint-tmp-*`` ones are
  interrupted saves.
  """
  if not os.path.isdir(workdir):
    what = 'is not a folder' if os.path.exists(workdir) else 'does not exist'
    raise config_checks.ConfigError(
        f'--workdir={workdir} {what}: pass the folder given to main.py --workdir.')
  if not os.path.isfile(os.path.join(workdir, 'config.json')):
    load_config(workdir)  # Raises, naming what is missing.
  if not checkpointing.steps_in(workdir):
    raise config_checks.ConfigError(_no_checkpoint(workdir))


def num_classes(workdir: str) -> int:
  """Classes of the identity classifier, read from the newest checkpoint's
  metadata (no dataset needed)."""
  folder = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(folder):
    raise config_checks.ConfigError(_no_checkpoint(workdir))
  # create=False: reading must not leave a checkpoints/ folder behind.
  manager = checkpointing.create_manager(workdir, save_every=1, max_to_keep=1,
                                         create=False)
  steps = sorted(manager.all_steps(), reverse=True)
  if not steps:
    raise config_checks.ConfigError(_no_checkpoint(workdir))
  # Every step has the same classifier: the newest readable metadata tells
  # (a damaged newest checkpoint is named by the restore that follows).
  for step in steps:
    try:
      recorded = (manager.metadata(step).custom_metadata or {}).get('num_classes')
      tree = manager.item_metadata(step)[checkpointing.STATE]
      params = getattr(tree, 'tree', tree)['params']
    except Exception:  # pylint: disable=broad-except
      continue
    manager.close()
    if recorded is not None:   # the training loop records it with every save
      return int(recorded)
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
      keys = [getattr(k, 'key', None) for k in path]
      if 'classifier' in keys and keys[-1] == 'bias':
        return int(leaf.shape[0])
    raise config_checks.ConfigError(f'{workdir}: the checkpoint holds no classifier.')
  manager.close()
  raise config_checks.ConfigError(
      f'--workdir={workdir}: no checkpoint in {folder} has readable metadata '
      '(all damaged); train again in a new --workdir.')


def _no_checkpoint(workdir):
  return (f'--workdir={workdir} holds no checkpoint ({os.path.join(workdir, "checkpoints")} '
          "is empty or missing); train first (config.mode='train').")


def restore(config, workdir: str, num_classes_: int, mesh=None) -> Opened:
  """The newest checkpoint of ``workdir`` with extractors bound to it."""
  mesh = mesh or sharding.create_mesh()
  trainer = trainers.trainer_for(config, trainers.DataInfo(num_classes_))
  template = trainers.create_state(trainer, mesh, abstract=True)
  extractors = trainer.extractors(mesh)
  primary = trainer.feature_names[0]
  if not os.path.isdir(checkpointing.checkpoint_dir(workdir)):
    raise config_checks.ConfigError(_no_checkpoint(workdir))
  manager = checkpointing.create_manager(workdir, save_every=1, max_to_keep=1,
                                         create=False)
  state = checkpointing.restore(manager, template, config)
  manager.close()
  if state is None:
    raise config_checks.ConfigError(_no_checkpoint(workdir))
  translator = trainer.translator()
  translate = None if translator is None else functools.partial(translator, state)
  return Opened(config=config, step=int(state.step), state=state,
                extract={k: (lambda images, f=f: f(state, images)[primary])
                         for k, f in extractors.items()},
                translate=translate, mesh=mesh, trainer=trainer, extractors=extractors,
                translator=translator)


def open_workdir(workdir: str, config=None) -> Opened:
  """``restore`` with the config saved in the workdir (or ``config``) and the
  classifier size read from the checkpoint."""
  require_trained_workdir(workdir)
  config = config or load_config(workdir)
  return restore(config, workdir, num_classes(workdir))


def hide_gpus_from_tensorflow():
  """tf.data needs only the CPU; a TensorFlow that sees a GPU may reserve
  memory JAX needs. Call before any TensorFlow op."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
