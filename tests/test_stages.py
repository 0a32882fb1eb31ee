"""The three AlignGAN stage steps: who moves, the loss formulas, no leakage."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aligngan_jax import losses
from aligngan_jax import players
from aligngan_jax import sharding
from aligngan_jax import stages
from aligngan_jax.models import resnet
from configs import default

NUM_CLASSES = 6


@pytest.fixture(scope='module')
def config():
  c = default.get_config('tiny')
  # 64 px: the joint discriminator's last InstanceNorm then sees 2x2 maps
  # (at 32 px it would normalise 1x1 maps to zero and learn nothing).
  c.image_size = 64
  return c


@pytest.fixture(scope='module')
def setup(config):
  mesh = sharding.create_mesh()
  models = players.create_models(config, NUM_CLASSES)
  return mesh, models, players.create_state(config, models, mesh)


def _batch(config, ids, k, seed):
  rng = np.random.default_rng(seed)
  s = config.image_size
  labels = np.repeat(rng.choice(NUM_CLASSES, ids, replace=False), k).astype(np.int32)
  return {
      'rgb': rng.uniform(-1, 1, (ids * k, s, s, 3)).astype(np.float32),
      'ir': rng.uniform(-1, 1, (ids * k, s, s, 3)).astype(np.float32),
      'labels': labels,
  }


def _feature_batch(config, seed=0):
  return _batch(config, config.ids_per_batch, config.instances_per_id, seed)


def _pixel_batch(config, seed=1):
  return _batch(config, config.gan.pixel_ids_per_batch, config.gan.pixel_instances_per_id, seed)


def _stage_batch(stage, config):
  if stage == 1:
    return _feature_batch(config)
  if stage == 2:
    return _pixel_batch(config)
  return {'feature': _feature_batch(config), 'pixel': _pixel_batch(config)}


def _sharded(batch, mesh):
  """``batch`` split over ``mesh`` as the training loop feeds it (so that
  every jitted call sees the same input shardings: one compile)."""
  return jax.tree.map(lambda x: sharding.shard_batch(x, mesh), batch)


_STEPS, _RUNS = {}, {}
STAGE_STEPS = {1: stages.stage1_step, 2: stages.stage2_step, 3: stages.stage3_step}


def _run(stage, state, config, models, mesh):
  """One step of ``stage`` on its fixed batch. Each (stage, config, models)
  is jitted once per module and each result computed once: several tests
  read the same step (results are immutable arrays). The memo keeps
  ``state`` alive, so its id cannot be reused by another state."""
  run_key = (stage, id(models), config.to_json(), id(state), id(mesh))
  if run_key not in _RUNS:
    batch = _sharded(_stage_batch(stage, config), mesh)
    _RUNS[run_key] = (state, mesh, _step(stage, config, models)(state, batch))
  return _RUNS[run_key][2]


def _step(stage, config, models):
  """The jitted step of ``stage``, one per (stage, config, models)."""
  key = (stage, id(models), config.to_json())
  if key not in _STEPS:  # keeps ``models`` alive, so its id is not reused
    _STEPS[key] = (
        models,
        jax.jit(functools.partial(STAGE_STEPS[stage], models=models, config=config)),
    )
  return _STEPS[key][1]


def _feature_iteration(config, models):
  """Stage 3's feature iteration jitted, once per (config, models)."""
  key = ('feature iteration', id(models), config.to_json())
  if key not in _STEPS:
    _STEPS[key] = (
        models,
        jax.jit(functools.partial(stages._feature_iteration, models=models, config=config)),
    )
  return _STEPS[key][1]


_ONE_DEVICE = {}


def _on_one_device(state, mesh):
  """``state`` replicated on ``mesh`` (one copy per module, kept alive)."""
  if id(state) not in _ONE_DEVICE:
    _ONE_DEVICE[id(state)] = (state, jax.device_put(state, sharding.replicated(mesh)))
  return _ONE_DEVICE[id(state)][1]


def _changed(before, after):
  return {
      k
      for k in before
      if not all(
          np.array_equal(a, b)
          for a, b in zip(jax.tree.leaves(before[k]), jax.tree.leaves(after[k]))
      )
  }


@pytest.mark.parametrize(
    'stage,moved',
    [
        (1, {'encoder', 'embedder'}),
        (2, {'G_rgb2ir', 'G_ir2rgb', 'D_rgb_warmup', 'D_ir_warmup'}),
        (3, {'G_rgb2ir', 'G_ir2rgb', 'D_rgb', 'D_ir', 'encoder', 'embedder'}),
    ],
)
def test_each_stage_moves_exactly_its_players(stage, moved, config, setup):
  mesh, models, state = setup
  before = jax.device_get(state)
  new, metrics = _run(stage, state, config, models, mesh)
  assert int(new.step) == 1
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert _changed(before.params, jax.device_get(new.params)) == moved
  stats_moved = _changed(before.batch_stats, jax.device_get(new.batch_stats))
  # Training-mode calls update running statistics even of networks that
  # are not stepped (stage 2 runs the encoder and embedder on the fakes).
  expected_stats = {
      1: {'encoder', 'embedder'},
      2: {'G_rgb2ir', 'G_ir2rgb', 'encoder', 'embedder'},
      3: {'G_rgb2ir', 'G_ir2rgb', 'encoder', 'embedder'},
  }[stage]
  assert stats_moved == expected_stats


def _assert_adam_first_step(before, grads, after, lr=2e-4):
  """Adam's first step with bias correction (m_hat = g, v_hat = g^2) moves
  each weight by lr * g / (|g| + eps). Biases right before an InstanceNorm
  have zero gradient up to rounding, where the step's direction is noise:
  there only the bound |move| <= lr is checked."""
  for p0, g, p1 in zip(jax.tree.leaves(before), jax.tree.leaves(grads), jax.tree.leaves(after)):
    p0, g, p1 = map(np.asarray, (p0, g, p1))
    want = p0 - lr * g / (np.abs(g) + 1e-8)
    clear = np.abs(g) > 1e-5
    np.testing.assert_allclose(p1[clear], want[clear], atol=2e-6)
    assert np.all(np.abs(p1 - p0) <= lr * 1.001)


def test_stage2_losses_and_discriminator_updates_match_a_reference(config, setup):
  mesh, models, state = setup
  batch = _pixel_batch(config)
  new, metrics = _run(2, state, config, models, mesh)
  p, stats = jax.device_get(state.params), jax.device_get(state.batch_stats)

  def g(name, x):
    return models[name].apply(
        {'params': p[name], 'batch_stats': stats[name]}, x, train=True, mutable=['batch_stats']
    )[0]

  def d(name, x):
    return models[name].apply({'params': p[name]}, x)

  mse = lambda x, t: np.mean((np.asarray(x) - t) ** 2)
  l1 = lambda a, b: np.mean(np.abs(np.asarray(a) - np.asarray(b)))
  rgb, ir = batch['rgb'], batch['ir']
  fake_rgb, fake_ir = g('G_ir2rgb', ir), g('G_rgb2ir', rgb)
  gan = 0.5 * (mse(d('D_rgb_warmup', fake_rgb), 1) + mse(d('D_ir_warmup', fake_ir), 1))
  cyc = 0.5 * (l1(g('G_ir2rgb', fake_ir), rgb) + l1(g('G_rgb2ir', fake_rgb), ir))
  idt = 0.5 * (l1(g('G_ir2rgb', rgb), rgb) + l1(g('G_rgb2ir', ir), ir))
  # Training-mode norms use batch/instance statistics, so the running
  # statistics threaded through the step do not change these values.
  np.testing.assert_allclose(float(metrics['G/gan']), gan, rtol=1e-4)
  np.testing.assert_allclose(float(metrics['G/cycle']), cyc, rtol=1e-4)
  np.testing.assert_allclose(float(metrics['G/identity']), idt, rtol=1e-4)
  total = (
      metrics['G/gan']
      + 10 * metrics['G/cycle']
      + 5 * metrics['G/identity']
      + 0.1 * metrics['G/triplet']
      + 0.1 * metrics['G/ce']
  )
  np.testing.assert_allclose(float(metrics['G/loss']), float(total), rtol=1e-5)

  # D_rgb_warmup: its own loss on the pre-update fakes, one Adam step.
  def d_loss(params):
    dd = lambda x: models['D_rgb_warmup'].apply({'params': params}, x)
    return 0.5 * (jnp.mean((dd(rgb) - 1) ** 2) + jnp.mean(dd(fake_rgb) ** 2))

  loss, grad = jax.value_and_grad(d_loss)(p['D_rgb_warmup'])
  np.testing.assert_allclose(float(metrics['D_rgb_warmup/loss']), float(loss), rtol=1e-4)
  _assert_adam_first_step(p['D_rgb_warmup'], grad, jax.device_get(new.params['D_rgb_warmup']))


def test_stage3_discriminator_updates_see_only_their_own_losses(config, setup):
  """D_ir's update equals one Adam step on its own loss (the four fake pairs
  and the identity-shifted wrong pair): no generator or feature gradient
  leaks into it, and the generators' update does not read D's update."""
  mesh, models, state = setup
  new, metrics = _run(3, state, config, models, mesh)
  # Re-run the pixel iteration's D_ir loss from the post-feature-iteration
  # state with the fakes and maps the step used.
  mid, _ = _feature_iteration(config, models)(
      state,
      _sharded(_feature_batch(config), mesh),
      jax.random.split(jax.random.fold_in(state.rng, state.step), 2)[0],
  )
  batch = _pixel_batch(config)
  p, stats = jax.device_get(mid.params), jax.device_get(mid.batch_stats)

  def g(name, x):
    return models[name].apply(
        {'params': p[name], 'batch_stats': stats[name]}, x, train=True, mutable=['batch_stats']
    )[0]

  fake_ir = g('G_rgb2ir', batch['rgb'])

  def enc(x, enc_stats):
    return models['encoder'].apply(
        {'params': p['encoder'], 'batch_stats': enc_stats},
        resnet.prepare_encoder_input(x, tuple(config.encoder_input_size)),
        train=True,
        mutable=['batch_stats'],
    )

  real_map, updated = enc(batch['ir'], stats['encoder'])
  fake_map, _ = enc(fake_ir, updated['batch_stats'])
  k = config.gan.pixel_instances_per_id
  wrong = np.roll(batch['ir'], -k, axis=0)
  # The shift pairs every image with another identity's map.
  assert not np.any(np.roll(batch['labels'], -k) == batch['labels'])

  def d_loss(params):
    d = lambda im, f: models['D_ir'].apply({'params': params}, im, f)
    mse = lambda x, t: jnp.mean((x - t) ** 2)
    real = mse(d(batch['ir'], real_map), 1)
    fake = (
        mse(d(wrong, real_map), 0)
        + mse(d(batch['ir'], fake_map), 0)
        + mse(d(fake_ir, real_map), 0)
        + mse(d(fake_ir, fake_map), 0)
    ) / 4
    return 0.5 * (real + fake)

  loss, grad = jax.value_and_grad(d_loss)(p['D_ir'])
  np.testing.assert_allclose(float(metrics['D_ir/loss']), float(loss), rtol=1e-4)
  _assert_adam_first_step(p['D_ir'], grad, jax.device_get(new.params['D_ir']))


def test_stage1_loss_is_ce_plus_triplet_on_ir(config, setup):
  mesh, models, state = setup
  batch = _feature_batch(config)
  _, metrics = _run(1, state, config, models, mesh)
  p, stats = jax.device_get(state.params), jax.device_get(state.batch_stats)
  x = resnet.prepare_encoder_input(batch['ir'], tuple(config.encoder_input_size))
  fmap = models['encoder'].apply(
      {'params': p['encoder'], 'batch_stats': stats['encoder']},
      x,
      train=True,
      mutable=['batch_stats'],
  )[0]
  out = models['embedder'].apply(
      {'params': p['embedder'], 'batch_stats': stats['embedder']},
      fmap,
      train=True,
      mutable=['batch_stats'],
      rngs={'dropout': jax.random.key(0)},
  )[0]
  labels = batch['labels']
  triplet = losses.cross_modal_triplet(
      out['embedding'], out['embedding'], out['embedding'], labels, labels, labels
  )
  np.testing.assert_allclose(float(metrics['feature/triplet_ir']), float(triplet), rtol=1e-4)
  np.testing.assert_allclose(
      float(metrics['feature/loss']), float(metrics['feature/ce_ir'] + triplet), rtol=1e-4
  )


def test_joint_step_agrees_on_one_and_two_devices(config, setup):
  two_device_mesh, models, two_device_state = setup
  assert two_device_mesh.size == 2
  one_device_mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ('data',))
  results = [
      # The same initial state, replicated on one device instead of two.
      jax.device_get(
          _run(
              3, _on_one_device(two_device_state, one_device_mesh), config, models, one_device_mesh
          )[0].params
      ),
      jax.device_get(_run(3, two_device_state, config, models, two_device_mesh)[0].params),
  ]
  for name in players.ALL:
    one, two = (jax.tree.leaves(r[name]) for r in results)
    for a, b in zip(one, two):
      if name in players.FEATURE:  # SGD: the update scales with the gradient
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
      else:
        # Adam's first step moves each weight by about lr * sign(g): where a
        # gradient is zero up to rounding (biases before an InstanceNorm),
        # its sign, hence the move, depends on the reduction order.
        assert np.all(np.abs(a - b) <= 2 * config.gan.learning_rate + 1e-6)
    if name not in players.FEATURE:
      diff = np.concatenate([np.abs(a - b).ravel() for a, b in zip(one, two)])
      assert np.mean(diff <= 2e-5) > 0.9, name


def test_a_nan_in_the_inputs_stops_with_the_loss_term_named(config, setup):
  from aligngan_jax import reporting

  mesh, models, state = setup
  batch = _pixel_batch(config)
  batch['ir'][0, 0, 0, 0] = np.nan
  _, metrics = _step(2, config, models)(state, _sharded(batch, mesh))
  step, terms = reporting.first_non_finite([metrics], first_step=4)
  assert step == 5 and any(t.startswith('G/') for t in terms)


def test_bfloat16_compute_keeps_float32_state_and_close_losses(config, setup):
  mesh, float32_models, float32_state = setup
  assert config.compute_dtype == 'float32'
  results = {}
  for dtype in ('float32', 'bfloat16'):
    c = config.copy_and_resolve_references()
    c.compute_dtype = dtype
    # Same initial weights in both: parameters and statistics are float32
    # under either compute dtype, so the module's shared float32 state is
    # also the bf16 run's initial state.
    models = float32_models if dtype == 'float32' else players.create_models(c, NUM_CLASSES)
    state = float32_state
    new, metrics = _run(3, state, c, models, mesh)
    host = jax.device_get(new)
    # Parameters, optimizer states and running statistics stay float32.
    for leaf in jax.tree.leaves((host.params, host.opt_state, host.batch_stats)):
      if np.issubdtype(np.asarray(leaf).dtype, np.floating):
        assert np.asarray(leaf).dtype == np.float32
    results[dtype] = {k: float(v) for k, v in metrics.items()}
  # Same initial weights: bf16 convolutions give the same losses to bf16
  # precision (8 mantissa bits; a few layers of rounding). The feature
  # iteration's losses come from the initial weights; the pixel iteration
  # runs after an SGD step taken with bf16 gradients, so it drifts more.
  for key, value in results['float32'].items():
    assert np.isfinite(results['bfloat16'][key]), key
    rtol = 0.05 if key.startswith('feature/') else 0.15
    np.testing.assert_allclose(results['bfloat16'][key], value, rtol=rtol, atol=0.02, err_msg=key)


def test_bfloat16_convolutions_really_run_in_bfloat16(config):
  c = config.copy_and_resolve_references()
  c.compute_dtype = 'bfloat16'
  models = players.create_models(c, NUM_CLASSES)
  x = jnp.zeros((1, c.image_size, c.image_size, 3))
  variables = models['G_rgb2ir'].init(jax.random.key(0), x, train=False)
  text = jax.jit(lambda v: models['G_rgb2ir'].apply(v, x, train=False)).lower(variables).as_text()
  assert 'bf16' in text and 'convolution' in text
  out = models['G_rgb2ir'].apply(variables, x, train=False)
  assert out.dtype == jnp.float32


def test_without_pixel_alignment_the_feature_iteration_sees_real_rgb(config, setup):
  """pixel_alignment=False (ablation): the feature losses no longer depend on
  G_rgb2ir, and equal those of the official iteration fed a generator whose
  output is the RGB image itself."""
  mesh, models, state = setup
  ablation = config.copy_and_resolve_references()
  ablation.gan.pixel_alignment = False
  batch = _sharded(_feature_batch(config), mesh)
  key = jax.random.key(3)

  def feature_metrics(cfg, state, models=models):
    return {k: float(v) for k, v in _feature_iteration(cfg, models)(state, batch, key)[1].items()}

  zeroed = state.replace(
      params={**state.params, 'G_rgb2ir': jax.tree.map(jnp.zeros_like, state.params['G_rgb2ir'])}
  )
  assert feature_metrics(ablation, state) == feature_metrics(ablation, zeroed)
  assert feature_metrics(config, state) != feature_metrics(config, zeroed)

  class Identity:  # G_rgb2ir(x) = x, with the generator's calling convention

    def apply(self, variables, x, train, mutable=()):
      return (x, {'batch_stats': variables['batch_stats']}) if mutable else x

  official_on_rgb = feature_metrics(config, state, models={**models, 'G_rgb2ir': Identity()})
  got = feature_metrics(ablation, state)
  assert got.keys() == official_on_rgb.keys()
  for k in got:
    assert got[k] == pytest.approx(official_on_rgb[k], rel=1e-5), k


def _assert_trees_close(got, want, tol, what, floor=1e-12):
  """Leaf by leaf, to ``tol`` relative to each leaf's largest magnitude
  (entries that cancel to near zero keep the leaf's absolute rounding),
  plus ``floor``."""
  paths = jax.tree_util.tree_flatten_with_path(want)[0]
  for (path, a), b in zip(paths, jax.tree.leaves(got)):
    a, b = np.asarray(a), np.asarray(b)
    if not np.issubdtype(a.dtype, np.floating):
      np.testing.assert_array_equal(b, a, err_msg=what)
      continue
    np.testing.assert_allclose(
        b,
        a,
        rtol=tol,
        atol=tol * np.abs(a).max() + floor,
        err_msg=f'{what} {jax.tree_util.keystr(path)}',
    )


@pytest.mark.parametrize('stage', [2, 3])
def test_batched_network_calls_are_an_exact_rewrite(stage, config, setup):
  """config.batch_network_calls joins the repeated calls of an iteration
  (cycle + identity of each generator, the encoder on fake and real IR of
  the feature iteration, the discriminators on all their pairs) into one call each. Against the
  official separate calls: the same losses, gradients (the optimizer
  moments), running statistics and parameters."""
  mesh, models, state = setup
  runs = {}
  for batched in (True, False):
    c = config.copy_and_resolve_references()
    c.batch_network_calls = batched
    runs[batched] = jax.device_get(_run(stage, state, c, models, mesh))
  (joined, joined_metrics), (separate, separate_metrics) = runs[True], runs[False]
  for key, value in separate_metrics.items():
    np.testing.assert_allclose(joined_metrics[key], value, rtol=2e-5, err_msg=key)
  # Running statistics: every generator InstanceNorm and encoder BatchNorm
  # was updated 2-3 times, in order (a wrong order moves them by ~1e-2).
  _assert_trees_close(joined.batch_stats, separate.batch_stats, 1e-5, 'stats')
  # Gradients: SGD's trace and Adam's moments hold g (and g^2) of this step.
  # Biases right before an InstanceNorm have gradients of pure rounding
  # (up to ~1e-6 with 80-image discriminator batches; their exact value is
  # 0): hence the floor.
  _assert_trees_close(joined.opt_state, separate.opt_state, 1e-4, 'optimizer', floor=2e-6)
  for name in players.ALL:
    a, b = jax.tree.leaves(joined.params[name]), jax.tree.leaves(separate.params[name])
    if name in players.FEATURE:
      _assert_trees_close(a, b, 1e-5, name, floor=1e-8)  # zero-init biases
    else:
      # Adam's first step is lr * g / (|g| + eps): where g is zero up to
      # rounding its sign is noise, so there only the step bound holds.
      for x, y in zip(a, b):
        assert np.all(np.abs(x - y) <= 2 * config.gan.learning_rate + 1e-6), name
      diff = np.concatenate([np.abs(x - y).ravel() for x, y in zip(a, b)])
      assert np.mean(diff <= 1e-6) > 0.95, name
