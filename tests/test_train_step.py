"""The jitted train step: parameters move, shardings stay replicated, one and
two devices agree, learning-rate groups and decay, shared BatchNorm statistics."""

import jax
import numpy as np
import pytest

from aligngan_jax import players
from aligngan_jax import sharding
import ide_steps


def test_step_changes_parameters_and_keeps_replicated_shardings(ide_config, ide_models):
  mesh = sharding.create_mesh()
  assert mesh.devices.size == 2  # conftest forces two host devices
  before = ide_steps.host(players.create_state(ide_config, ide_models, mesh).params)
  state, metrics = ide_steps.run(ide_config, ide_models, mesh, 1)
  assert int(state.step) == 1
  assert np.isfinite(float(metrics['feature/loss']))
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), before, state.params)
  assert all(jax.tree.leaves(changed))  # every parameter got an update
  repl = sharding.replicated(mesh)
  for leaf in jax.tree.leaves(state):
    assert leaf.sharding.is_equivalent_to(repl, leaf.ndim)


def test_one_and_two_devices_agree(ide_config, ide_models):
  one, _ = ide_steps.run(ide_config, ide_models, sharding.create_mesh(jax.devices()[:1]), 2)
  two, _ = ide_steps.run(ide_config, ide_models, sharding.create_mesh(jax.devices()[:2]), 2)
  for a, b in zip(
      jax.tree.leaves(ide_steps.host(one.params)), jax.tree.leaves(ide_steps.host(two.params))
  ):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
  for a, b in zip(
      jax.tree.leaves(ide_steps.host(one.batch_stats)),
      jax.tree.leaves(ide_steps.host(two.batch_stats)),
  ):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_learning_rate_groups_and_decay_follow_the_running_trainer(ide_config):
  base = ide_config.learning_rate
  # Each trainer decays at its own group's milestone, never at the other's.
  for trainer, milestone in (('ide', 3), ('aligngan', 5)):
    cfg = ide_config.copy_and_resolve_references()
    cfg.trainer = trainer
    cfg.ide.lr_milestones, cfg.gan.lr_milestones = (3,), (5,)
    before, after = players.lr_at(cfg, milestone - 1), players.lr_at(cfg, milestone)
    assert float(before['embedder']) == pytest.approx(base)
    assert float(before['encoder']) == pytest.approx(base * cfg.encoder_lr_multiplier)
    assert float(after['embedder']) == pytest.approx(base * cfg.lr_decay_factor)
    assert float(before['G_rgb2ir']) == pytest.approx(cfg.gan.learning_rate)


def test_joint_forward_shares_batchnorm_statistics(ide_config, ide_models):
  """Joint and separate forwards agree exactly when RGB and IR batches are the
  same images (each modality's batch statistics then equal the joint ones),
  and differ otherwise."""
  mesh = sharding.create_mesh()
  same = ide_steps.batch(ide_config)
  same['ir'] = same['rgb']
  losses = {}
  for joint in (True, False):  # one jitted step per forward, two batches each
    cfg = ide_config.copy_and_resolve_references()
    cfg.joint_modality_forward = joint
    cfg.model.dropout_rate = 0.0
    nets = players.create_models(cfg, ide_steps.NUM_CLASSES, players.FEATURE)
    step = ide_steps.step(cfg, nets, mesh)
    for name, batch in (('same', same), ('different', ide_steps.batch(ide_config))):
      _, metrics = step(
          players.create_state(cfg, nets, mesh), {'feature': sharding.shard_batch(batch, mesh)}
      )
      losses[joint, name] = {
          k: float(metrics[f'feature/{k}']) for k in ('ce_rgb', 'ce_ir', 'triplet')
      }
  for k in losses[True, 'same']:
    np.testing.assert_allclose(losses[True, 'same'][k], losses[False, 'same'][k], rtol=1e-5)
  assert abs(losses[True, 'different']['ce_rgb'] - losses[False, 'different']['ce_rgb']) > 1e-4
