"""AGW's network (models/agw.py) against the official code's measured
counts and arithmetic (baselines_reference.md §1)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aligngan_jax.models import agw


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize(
    'non_local,gem,want',
    [
        # The official counts of the parameters the network uses (SYSU, 395
        # classes), less the BNNeck's frozen bias (2,048), which here is a
        # constant: 24,359,311 and, for the 'base' variant, 24,330,624.
        (True, True, 24_357_263),
        (False, False, 24_328_576),
    ],
)
def test_parameter_count_equals_the_official_network(non_local, gem, want):
  model = agw.AGWNet(num_classes=395, non_local=non_local, gem=gem)
  x = jnp.zeros((1, 64, 32, 3))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), rgb=x, ir=x, train=False))
  assert _count(shapes['params']) == want
  nl = {k: v for k, v in shapes['params']['trunk'].items() if k.startswith('nl')}
  assert sorted(nl) == (['nl2_0', 'nl2_1', 'nl3_0', 'nl3_1', 'nl3_2'] if non_local else [])
  if non_local:  # 2 x 3,587 (C = 512) + 3 x 7,171 (C = 1024)
    assert _count(nl) == 28_687 and _count(nl['nl2_0']) == 3_587


def test_two_streams_one_shared_batch_and_the_outputs():
  """Small net: both inputs run as one batch through the shared part (the
  same outputs as each alone in eval mode), the stems are per modality, a
  fresh non-local block is the identity, GeM is the cube root of the mean
  cube plus 1e-12."""
  model = agw.AGWNet(num_classes=7, depth=10, width=4)
  rng = np.random.default_rng(0)
  rgb = jnp.asarray(rng.normal(size=(2, 32, 16, 3)), jnp.float32)
  ir = jnp.asarray(rng.normal(size=(3, 32, 16, 3)), jnp.float32)
  variables = model.init(jax.random.key(1), rgb=rgb, ir=ir, train=False)
  both = model.apply(variables, rgb=rgb, ir=ir, train=False)
  assert both['pool'].shape == both['bn'].shape == (5, 32) and both['logits'].shape == (5, 7)
  alone = model.apply(variables, rgb=rgb, train=False)
  np.testing.assert_allclose(both['pool'][:2], alone['pool'], rtol=1e-5)
  thermal = model.apply(variables, ir=ir, train=False)
  np.testing.assert_allclose(both['bn'][2:], thermal['bn'], rtol=1e-5)
  # The visible stem differs from the thermal one (separate weights).
  swapped = model.apply(variables, ir=rgb, train=False)
  assert not np.allclose(swapped['pool'], alone['pool'])
  # Fresh non-local blocks (BN scale and bias 0) change nothing.
  plain = agw.AGWNet(num_classes=7, depth=10, width=4, non_local=False)
  params = {k: v for k, v in variables['params'].items()}
  params['trunk'] = {k: v for k, v in params['trunk'].items() if not k.startswith('nl')}
  stats = dict(variables['batch_stats'])
  stats['trunk'] = {k: v for k, v in stats['trunk'].items() if not k.startswith('nl')}
  np.testing.assert_allclose(
      plain.apply({'params': params, 'batch_stats': stats}, rgb=rgb, ir=ir, train=False)['pool'],
      both['pool'],
      rtol=1e-6,
  )
  # Training mode: one forward, batch statistics over all five images.
  out, new = model.apply(variables, rgb=rgb, ir=ir, train=True, mutable=['batch_stats'])
  assert out['logits'].shape == (5, 7) and 'bottleneck' in new['batch_stats']
  assert agw.non_local_positions(4, 2) == (2, 3) and agw.non_local_positions(6, 3) == (3, 4, 5)
  assert agw.non_local_positions(1, 3) == (0,)


def test_gem_of_a_zero_map_is_the_epsilon_cube_root():
  # The official value in float32 (baselines_reference.md §1: 9.99999756e-05).
  pooled = agw.gem(jnp.zeros((1, 4, 2, 8)))
  np.testing.assert_array_equal(np.asarray(pooled), np.full((1, 8), 9.99999756e-05, np.float32))
  # A hand case: one map of values 1 and 2: ((1 + 8) / 2 + 1e-12)^(1/3).
  x = jnp.asarray([1.0, 2.0]).reshape(1, 2, 1, 1)
  np.testing.assert_allclose(np.asarray(agw.gem(x)), [[4.5 ** (1 / 3)]], rtol=1e-6)
