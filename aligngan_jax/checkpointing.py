"""Orbax checkpoints in ``workdir/checkpoints``: save every N steps, resume
from the newest one automatically, restore onto the replicated sharding."""

import os

from absl import logging

import jax
import orbax.checkpoint as ocp

from aligngan_jax import config_checks
from aligngan_jax import train_state as train_state_lib


def create_manager(workdir: str, *, save_every: int, max_to_keep: int
                   ) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      options=ocp.CheckpointManagerOptions(
          save_interval_steps=save_every, max_to_keep=max_to_keep, create=True,
          enable_async_checkpointing=True))


def _saved_tree(state: train_state_lib.TrainState) -> dict:
  # The static optax transformations are code, not data: save the rest.
  return {'step': state.step, 'params': state.params,
          'batch_stats': state.batch_stats, 'opt_state': state.opt_state,
          'rng': state.rng}


def save(manager: ocp.CheckpointManager, state: train_state_lib.TrainState, *,
         force: bool = False) -> bool:
  """Saves ``state`` under its step if the save interval (or ``force``) says so."""
  return manager.save(int(state.step), args=ocp.args.StandardSave(_saved_tree(state)),
                      force=force)


def restore_latest(manager: ocp.CheckpointManager,
                   template: train_state_lib.TrainState):
  """The newest checkpoint restored like ``template`` (same shapes, dtypes and
  shardings; arrays or `jax.ShapeDtypeStruct`s, e.g.
  ``players.create_state(..., abstract=True)``), or None when there is none."""
  step = manager.latest_step()
  if step is None:
    return None
  _check_networks(manager, step, template)
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
      _saved_tree(template))
  tree = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  return template.replace(**tree)


def _check_networks(manager, step, template):
  """Refuses, in one line, a checkpoint whose networks or optimizer states
  are not the ones ``template`` holds (another trainer, or the IDE layout
  from before the trainers shared one state builder)."""
  saved = manager.item_metadata(step)
  saved = getattr(saved, 'tree', saved)
  if not isinstance(saved, dict) or 'opt_state' not in saved:
    return
  where = os.path.join(manager.directory, str(step))
  if set(saved['opt_state']) == {'feature'}:
    raise config_checks.ConfigError(
        f'{where} is an IDE checkpoint from before the trainers shared one loop: '
        "its optimizer state is one 'feature' tree, now one per network "
        "('encoder', 'embedder'), so it cannot be resumed or evaluated by this "
        'version; train again in a new --workdir, or use the commit that wrote '
        'it (see docs/decisions.md, "One loop").')
  want, have = sorted(template.params), sorted(saved['params'])
  if want != have:
    raise config_checks.ConfigError(
        f'{where} holds the networks {have}, but this config builds {want} '
        '(another config.trainer?); pass the config the workdir was trained '
        'with, or a new --workdir.')


def resume_or_start(config, workdir, create_state):
  """(checkpoint manager, state, resumed): the newest checkpoint in
  ``workdir`` restored into ``create_state(abstract=True)``, or
  ``create_state()`` when there is none (initialisers run only then)."""
  manager = create_manager(
      workdir, save_every=config.checkpoint_every_steps,
      max_to_keep=config.max_checkpoints_to_keep)
  if manager.latest_step() is None:
    return manager, create_state(), False
  restored = restore_latest(manager, create_state(abstract=True))
  logging.info('Resumed from %s at step %d.', manager.directory, int(restored.step))
  return manager, restored, True

