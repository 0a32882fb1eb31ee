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
import orbax.checkpoint as ocp

from aligngan_jax import checkpointing
from aligngan_jax import config_checks
from aligngan_jax import players
from aligngan_jax import sharding
from aligngan_jax import trainers


@dataclasses.dataclass(frozen=True)
class Opened:
  config: ml_collections.ConfigDict
  step: int
  state: object
  # {'rgb', 'ir'}: sharded images [n, S, S, 3] in [-1, 1] -> unit features.
  extract: dict[str, Callable]
  # rgb -> (fake IR, reconstructed RGB), eval mode; None for the IDE trainer.
  translate: Callable | None
  mesh: jax.sharding.Mesh


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config, as training saved it in ``<workdir>/config.json``."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise config_checks.ConfigError(
        f'--workdir={workdir} has no config.json: not a workdir written by '
        'main.py (train first, or pass the folder given to --workdir).')
  with open(path) as f:
    raw = json.load(f)
  # Runs from before the trainer groups kept the IDE-only keys at the top.
  moved = {k: raw.pop(k) for k in config_checks.MOVED_KEYS if k in raw}
  if moved:
    raw.setdefault('ide', {}).update(moved)
  return ml_collections.ConfigDict(raw)


def num_classes(workdir: str) -> int:
  """Classes of the identity classifier, read from the newest checkpoint's
  metadata (no dataset needed)."""
  manager = ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      item_handlers=ocp.StandardCheckpointHandler())
  step = manager.latest_step()
  if step is None:
    raise config_checks.ConfigError(_no_checkpoint(workdir))
  tree = manager.item_metadata(step)
  tree = getattr(tree, 'tree', tree)
  manager.close()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree['params'])[0]:
    keys = [getattr(k, 'key', None) for k in path]
    if 'classifier' in keys and keys[-1] == 'bias':
      return int(leaf.shape[0])
  raise config_checks.ConfigError(f'{workdir}: the checkpoint holds no classifier.')


def _no_checkpoint(workdir):
  return (f'--workdir={workdir} holds no checkpoint ({os.path.join(workdir, "checkpoints")} '
          "is empty or missing); train first (config.mode='train').")


def restore(config, workdir: str, num_classes_: int, mesh=None) -> Opened:
  """The newest checkpoint of ``workdir`` with extractors bound to it."""
  mesh = mesh or sharding.create_mesh()
  trainer = trainers.trainer_for(config)
  models = players.create_models(config, num_classes_, trainer.networks)
  template = players.create_state(config, models, mesh, abstract=True)
  extractors = trainers.make_extractors(models, config, mesh)
  manager = checkpointing.create_manager(workdir, save_every=1, max_to_keep=1)
  state = checkpointing.restore_latest(manager, template)
  manager.close()
  if state is None:
    raise config_checks.ConfigError(_no_checkpoint(workdir))
  translate = None
  if trainer.translates:
    translate = functools.partial(trainers.make_translator(models), state)
  return Opened(config=config, step=int(state.step), state=state,
                extract={k: functools.partial(f, state) for k, f in extractors.items()},
                translate=translate, mesh=mesh)


def open_workdir(workdir: str, config=None) -> Opened:
  """``restore`` with the config saved in the workdir (or ``config``) and the
  classifier size read from the checkpoint."""
  if not os.path.isdir(workdir):
    raise config_checks.ConfigError(f'--workdir={workdir} does not exist.')
  config = config or load_config(workdir)
  return restore(config, workdir, num_classes(workdir))


def hide_gpus_from_tensorflow():
  """tf.data needs only the CPU; a TensorFlow that sees a GPU may reserve
  memory JAX needs. Call before any TensorFlow op."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
