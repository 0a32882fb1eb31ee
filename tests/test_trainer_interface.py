"""A model is one module: a toy trainer defined here alone (a linear
classifier on pooled pixels), registered, then trained, checkpointed,
resumed bit for bit and evaluated by the real loop on in-memory data with a
writer of the test's own (issue 27). No package file knows of it."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from aligngan_jax import checkpointing
from aligngan_jax import data as data_lib
from aligngan_jax import losses
from aligngan_jax import sampler as sampler_lib
from aligngan_jax import sharding
from aligngan_jax import train_loop
from aligngan_jax import trained
from aligngan_jax import trainers
from configs import default

SIZE = 16
RGB_CAMERAS, IR_CAMERAS = (1, 2, 4, 5), (3, 6)  # SYSU-MM01's


def _pooled(images):
  """[n, S, S, 3] -> [n, 48]: 4 x 4 average pools of each channel."""
  n = images.shape[0]
  return images.reshape(n, 4, SIZE // 4, 4, SIZE // 4, 3).mean(axis=(2, 4)).reshape(n, -1)


def _unit(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class ToyTrainer(trainers.Trainer):
  name = 'toy_linear'
  config_group = 'toy'
  feature_names = ('logits', 'pooled')

  @classmethod
  def default_config(cls):
    group = ml_collections.ConfigDict()
    group.learning_rate = 0.5
    group.num_steps = 6
    return group

  @classmethod
  def validate(cls, config, *, num_devices):
    del num_devices
    if config.toy.num_steps < 1:
      raise ValueError('config.toy.num_steps must be positive.')

  def build_networks(self):
    return {'linear': nn.Dense(self.info.num_classes)}

  def init_variables(self, key):
    return {'linear': self.networks['linear'].init(key, jnp.zeros((1, 48)))}

  def optimizers(self):
    return {'linear': optax.sgd(self.config.toy.learning_rate, momentum=0.9)}

  def learning_rates(self, step):
    return {'linear': self.config.toy.learning_rate}

  def samplers(self, rgb_labels, ir_labels):
    return {
        'pairs': sampler_lib.PKSampler(
            rgb_labels, ir_labels, ids_per_batch=2, instances_per_id=2, seed=self.config.seed
        )
    }

  def stages(self):
    linear = self.networks['linear']

    def step(state, batches):
      batch = batches['pairs']
      x = _pooled(jnp.concatenate([batch['rgb'], batch['ir']]))
      labels = jnp.concatenate([batch['labels'], batch['labels']])

      def loss_fn(params):
        return losses.cross_entropy(linear.apply({'params': params}, x), labels)

      loss, grad = jax.value_and_grad(loss_fn)(state.params['linear'])
      updates, opt = state.tx['linear'].update(grad, state.opt_state['linear'])
      return state.replace(
          step=state.step + 1,
          params={'linear': optax.apply_updates(state.params['linear'], updates)},
          opt_state={'linear': opt},
      ), {'toy/ce': loss}

    return (trainers.Stage(1, 'toy', step, ('pairs',), int(self.config.toy.num_steps), 8),)

  def test_features(self, state, images, *, modality):
    del modality
    x = _pooled(images)
    return {
        'logits': _unit(self.networks['linear'].apply({'params': state.params['linear']}, x)),
        'pooled': _unit(x),
    }


class ListWriter:
  """A clu-style writer that keeps what it is given; ``fail_at``: raises
  when scalars of that step arrive (a crash after the step's checkpoint)."""

  def __init__(self, fail_at=None):
    self.scalars, self.fail_at = {}, fail_at

  def write_scalars(self, step, scalars):
    if step == self.fail_at:
      raise KeyboardInterrupt(f'killed at step {step}')
    self.scalars.setdefault(step, {}).update(scalars)

  def write_images(self, step, images):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    pass

  def close(self):
    pass


def _records(rng, ids, *, train: bool, size=(SIZE, SIZE)) -> data_lib.Records:
  """Two images per (camera, person) of a SYSU-MM01-like layout; a person's
  images share a colour in RGB and a brightness in IR, plus noise."""
  rows = []
  for pid in ids:
    colour = rng.uniform(40, 215, 3)
    for camera in RGB_CAMERAS + IR_CAMERAS:
      ir = camera in IR_CAMERAS
      for index in range(2):
        base = np.full(3, colour.mean() * 0.8 + 20) if ir else colour
        image = np.clip(base + rng.normal(0, 12, (*size, 3)), 0, 255).astype(np.uint8)
        rows.append((image, pid, camera, int(ir), index))
  label_of = {pid: i for i, pid in enumerate(ids)}
  return data_lib.Records(
      images=np.stack([r[0] for r in rows]),
      person_id=np.array([r[1] for r in rows]),
      label=np.array([label_of[r[1]] if train else -1 for r in rows]),
      camera=np.array([r[2] for r in rows]),
      modality=np.array([r[3] for r in rows]),
      index=np.array([r[4] for r in rows]),
      path=np.array([f'cam{r[2]}/{r[1]:04d}/{r[4]:04d}.jpg' for r in rows]),
  )


def memory_run(trainer: str, seed: int = 0, size=(SIZE, SIZE)):
  """(config, data) of a run on in-memory data: ``trainer``'s defaults with
  images of ``size`` (height, width), 6 training and 8 test people
  (`_records`), evaluation at the end over 2 gallery trials."""
  config = default.get_config()  # with the group of every registered trainer
  config.trainer = trainer
  config.dataset = 'toy in memory'
  config.image_size = SIZE
  config.eval_batch_size = 16
  config.checkpoint_every_steps = 1_000
  config.eval_every_steps = 1_000
  config.eval.num_trials = 2
  rng = np.random.default_rng(seed)
  data = data_lib.Data(
      _records(rng, list(range(10, 16)), train=True, size=size),
      _records(rng, list(range(20, 28)), train=False, size=size),
  )
  return config, data


@pytest.fixture(scope='module')
def toy():
  trainers.register(ToyTrainer)
  config, data = memory_run('toy_linear')
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.max_checkpoints_to_keep = 5
  yield config, data
  trainers.unregister(ToyTrainer.name)


def _final_state(workdir, config):
  opened = trained.restore(config, workdir, trained.num_classes(workdir))
  return jax.device_get(opened.state), opened


def test_a_toy_trainer_trains_checkpoints_resumes_and_evaluates(toy, tmp_path):
  config, data = toy
  assert config.toy.num_steps == 6
  whole = ListWriter()
  result = train_loop.train_and_evaluate(config, str(tmp_path / 'whole'), data=data, writer=whole)
  losses_logged = [whole.scalars[s]['train/toy/ce'] for s in range(1, 7)]
  assert losses_logged[-1] < losses_logged[0]  # it learns
  assert whole.scalars[3]['lr/linear'] == pytest.approx(0.5)
  single = result['results']['sysu all single']['rank1']['mean']
  assert single > result['results']['sysu all single']['chance_rank1']['mean'] + 0.1
  with open(tmp_path / 'whole' / 'eval' / 'latest.json') as f:
    written = json.load(f)
  # The second named feature is scored too; the first is the protocol's.
  assert set(written['features']) == {'pooled'}
  pooled = written['features']['pooled']
  assert pooled['setting'] == 'all-search single-shot' and 0 < pooled['rank1'] <= 1
  assert written['diagnostics']['ir_to_ir']['rank1'] >= 0.0
  assert checkpointing.steps_in(str(tmp_path / 'whole'))[-1] == 6

  # Killed after step 4's checkpoint (at step 5's log), then run again: it
  # resumes from step 4 and ends bit for bit where the whole run did.
  broken = str(tmp_path / 'broken')
  with pytest.raises(KeyboardInterrupt):
    train_loop.train_and_evaluate(config, broken, data=data, writer=ListWriter(fail_at=5))
  assert checkpointing.steps_in(broken)[-1] == 4
  again = ListWriter()
  train_loop.train_and_evaluate(config, broken, data=data, writer=again)
  assert sorted(again.scalars) == [5, 6]
  assert again.scalars[6]['train/toy/ce'] == whole.scalars[6]['train/toy/ce']
  want, opened = _final_state(str(tmp_path / 'whole'), config)
  got, _ = _final_state(broken, config)
  assert int(got.step) == 6 and opened.trainer.name == 'toy_linear'
  for a, b in zip(
      jax.tree.leaves((want.params, want.opt_state)), jax.tree.leaves((got.params, got.opt_state))
  ):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The tools' view: the first named feature, unit norm.
  feats = np.asarray(
      opened.extract['ir'](
          sharding.shard_batch(data.load_images(data.test.select(np.arange(16)), SIZE), opened.mesh)
      )
  )
  np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
  assert trained.num_classes(broken) == 6
  # The caller's writer was used: clu wrote no event file.
  assert not any(name.startswith('events.out') for name in os.listdir(broken))
