"""The tiny IDE trainer's jitted step on random batches: the train-step,
checkpointing and weights tests run it without any data or loop."""

import jax
import numpy as np

from aligngan_jax import players
from aligngan_jax import sharding
from aligngan_jax import trainers

NUM_CLASSES = 6


def batch(config, seed=0):
  rng = np.random.default_rng(seed)
  b = config.ids_per_batch * config.instances_per_id
  s = config.image_size
  labels = np.repeat(
      rng.choice(NUM_CLASSES, config.ids_per_batch, replace=False), config.instances_per_id
  ).astype(np.int32)
  return {
      'rgb': rng.uniform(-1, 1, (b, s, s, 3)).astype(np.float32),
      'ir': rng.uniform(-1, 1, (b, s, s, 3)).astype(np.float32),
      'labels': labels,
  }


def host(tree):
  return jax.tree.map(np.asarray, tree)


_STEPS = {}


def step(config, models, mesh):
  """The IDE trainer's one jitted stage step, once per (config, models, mesh)
  in this process (kept alive with ``models``, so ids are not reused)."""
  key = (config.to_json(), id(models), tuple(d.id for d in mesh.devices.flat))
  if key not in _STEPS:
    trainer = trainers.trainer_for(config, trainers.DataInfo(NUM_CLASSES))
    _STEPS[key] = (models, trainers.make_steps(trainer, mesh)[1])
  return _STEPS[key][1]


def run(config, models, mesh, steps):
  state = players.create_state(config, models, mesh)
  step_fn = step(config, models, mesh)
  for i in range(steps):
    state, metrics = step_fn(state, {'feature': sharding.shard_batch(batch(config, i), mesh)})
  return state, metrics
