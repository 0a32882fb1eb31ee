"""The AGW trainer (trainers/agw.py) as the next issue's consumer of the
trainer interface: its schedule against the official table, and a tiny run
through the real loop on in-memory data (train, checkpoint, evaluate both
named features)."""

import json

import numpy as np
import pytest

from aligngan_jax import data as data_lib
from aligngan_jax import train_loop
from aligngan_jax import trainers
from aligngan_jax.trainers import agw
from configs import default
from test_trainer_interface import ListWriter, _records


def test_learning_rate_follows_the_official_adjust_learning_rate():
  # baselines_reference.md §4: e < 10: lr (e + 1) / 10; 10 <= e < 20: lr;
  # 20 <= e < 50: 0.1 lr; e >= 50: 0.01 lr.
  want = {0: 0.01, 4: 0.05, 9: 0.1, 10: 0.1, 19: 0.1, 20: 0.01, 49: 0.01, 50: 0.001, 80: 0.001}
  for epoch, lr in want.items():
    assert float(agw.learning_rate(epoch, 0.1)) == pytest.approx(lr, rel=1e-6), epoch


def test_a_tiny_agw_run_trains_and_evaluates_both_features(tmp_path):
  config = default.get_config()
  config.trainer = 'agw'
  config.dataset = 'toy in memory'
  config.image_size = 16
  config.model.depth, config.model.width = 10, 4
  config.agw.update(dict(epochs=2, warmup_epochs=1, lr_milestones=(1,), ids_per_batch=2,
                         instances_per_id=2, input_size=(32, 16), pad=2))
  config.eval_batch_size = 16
  config.log_every_steps = 5
  config.checkpoint_every_steps = 1_000
  config.eval_every_steps = 1_000
  config.eval.num_trials = 2
  rng = np.random.default_rng(1)
  data = data_lib.Data(_records(rng, list(range(10, 16)), train=True),
                       _records(rng, list(range(20, 28)), train=False))
  trainer = trainers.trainer_for(config, trainers.DataInfo(6, 48, 24))
  assert trainer.steps_per_epoch == int(48 / 4) + 1 == 13
  assert trainer.total_iterations == 26
  rates = trainer.learning_rates(13)              # epoch 1: decayed once
  assert float(rates['head']) == pytest.approx(0.01) and float(rates['backbone']) == pytest.approx(0.001)
  writer = ListWriter()
  result = train_loop.train_and_evaluate(config, str(tmp_path), data=data, writer=writer)
  logged = [writer.scalars[s]['train/agw/loss'] for s in (5, 26)]
  assert all(np.isfinite(logged))
  assert writer.scalars[5]['lr/backbone'] == pytest.approx(0.1 * writer.scalars[5]['lr/head'])
  assert result['results']['sysu all single']['rank1']['mean'] >= 0
  with open(tmp_path / 'eval' / 'latest.json') as f:
    written = json.load(f)
  assert set(written['features']) == {'pool'}
