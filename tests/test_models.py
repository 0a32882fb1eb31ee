"""Model shapes and parameter counts (official counts from spec §1)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aligngan_jax.models import Embedder
from aligngan_jax.models import ResNetEncoder
from aligngan_jax.models import layers
from aligngan_jax.models import prepare_encoder_input


def _num_params(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_resnet50_trunk_has_the_official_parameter_count_and_shape():
  enc = ResNetEncoder(depth=50)
  x = jax.ShapeDtypeStruct((1, 384, 192, 3), jnp.float32)
  variables = jax.eval_shape(lambda: enc.init(jax.random.key(0), jnp.zeros(x.shape), train=False))
  assert _num_params(variables['params']) == 23_508_032
  out = jax.eval_shape(lambda v: enc.apply(v, jnp.zeros(x.shape), train=False), variables)
  assert out.shape == (1, 24, 12, 2048)  # last stride 1


@pytest.mark.parametrize(
    'depth,count',
    [
        # torchvision's resnet18 without its fc layer (11,689,512 - 513,000).
        (18, 11_176_512),
        # The tiny models' trunk: ResNet-18 less the second block of each stage
        # (73,984 + 295,424 + 1,180,672 + 4,720,640 parameters at width 64).
        (10, 11_176_512 - 6_270_720),
    ],
)
def test_basic_block_trunks_have_the_torchvision_layout(depth, count):
  enc = ResNetEncoder(depth=depth)
  variables = jax.eval_shape(
      lambda: enc.init(jax.random.key(0), jnp.zeros((1, 64, 32, 3)), train=False)
  )
  assert _num_params(variables['params']) == count
  assert {name.split('_')[0] for name in variables['params']} == {
      'conv1',
      'bn1',
      'layer1',
      'layer2',
      'layer3',
      'layer4',
  }


def test_embedder_has_the_official_parameter_count():
  emb = Embedder(num_classes=395)
  fmap = jnp.zeros((2, 24, 12, 2048))
  variables = jax.eval_shape(lambda: emb.init(jax.random.key(0), fmap, train=False))
  assert _num_params(variables['params']) == 1_151_115


@pytest.mark.parametrize('last_stride,expected', [(1, (4, 2)), (2, (2, 1))])
def test_tiny_resnet18_output_shape(last_stride, expected):
  enc = ResNetEncoder(depth=18, width=4, last_stride=last_stride)
  x = jnp.ones((2, 64, 32, 3))
  variables = enc.init(jax.random.key(0), x, train=False)
  out, updates = enc.apply(variables, x, train=True, mutable=['batch_stats'])
  assert out.shape == (2, *expected, 32)
  assert (np.asarray(out) >= 0).all()  # layer4 after ReLU
  assert jax.tree.structure(updates['batch_stats']) == jax.tree.structure(variables['batch_stats'])


def test_embedder_outputs_and_dropout_only_in_training():
  emb = Embedder(num_classes=5, bottle_dim=8, embed_dim=6)
  fmap = jax.random.normal(jax.random.key(1), (4, 3, 2, 16))
  variables = emb.init(jax.random.key(0), fmap, train=False)
  out = emb.apply(variables, fmap, train=False)
  np.testing.assert_allclose(out['pooled'], fmap.mean(axis=(1, 2)), rtol=1e-6)
  assert out['logits'].shape == (4, 5) and out['embedding'].shape == (4, 6)

  def train_out(seed):
    return emb.apply(
        variables, fmap, train=True, mutable=['batch_stats'], rngs={'dropout': jax.random.key(seed)}
    )[0]

  a, b = train_out(2), train_out(3)
  # Dropout acts on the classifier's input only: logits depend on the key,
  # the embedding and the pooled feature do not.
  assert not np.allclose(a['logits'], b['logits'])
  np.testing.assert_allclose(a['embedding'], b['embedding'], rtol=1e-6)
  np.testing.assert_allclose(a['embedding'], out['embedding'], rtol=1e-5)


def test_prepare_encoder_input_resizes_and_normalises():
  # A constant image stays constant under bilinear resampling, so each channel
  # must equal ((v + 1) / 2 - mean) / std exactly.
  x = jnp.full((1, 8, 8, 3), 0.5)
  y = prepare_encoder_input(x, (24, 12))
  assert y.shape == (1, 24, 12, 3)
  want = (0.75 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(np.asarray(y)[0, 5, 5], want, rtol=1e-5)
  # Half-pixel-centre bilinear (PyTorch align_corners=False): upsampling a
  # 1x2 row [a, b] by 2 gives [a, .75a+.25b, .25a+.75b, b].
  row = jnp.array([[[[-1.0] * 3], [[1.0] * 3]]]).reshape(1, 1, 2, 3)
  up = prepare_encoder_input(row, (1, 4))[0, 0, :, 0] * 0.229 + 0.485
  np.testing.assert_allclose(up, [0.0, 0.25, 0.75, 1.0], atol=1e-6)


@pytest.mark.parametrize('k,s,p', [(4, 2, 1), (3, 1, 1), (6, 2, 2), (5, 3, 1), (3, 2, 1)])
def test_conv_transpose_equals_the_input_dilated_convolution(k, s, p):
  # The sub-pixel form (k - 2p == s) and the fallback must both equal
  # PyTorch's definition: an input-dilated conv with the flipped kernel.
  from aligngan_jax.models import layers

  rng = np.random.default_rng(k * 10 + s)
  x = jnp.asarray(rng.normal(size=(2, 5, 7, 3)), jnp.float32)
  layer = layers.ConvTranspose(4, kernel_size=k, strides=s, padding=p)
  variables = layer.init(jax.random.key(0), x)
  kernel = variables['params']['kernel']
  want = jax.lax.conv_general_dilated(
      x,
      kernel[::-1, ::-1],
      (1, 1),
      [(k - 1 - p, k - 1 - p)] * 2,
      lhs_dilation=(s, s),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      precision='highest',
  )
  got = layer.apply(variables, x)
  assert got.shape == want.shape == (2, (5 - 1) * s - 2 * p + k, (7 - 1) * s - 2 * p + k, 4)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_batchnorm_variance_is_accurate_under_a_large_common_mode():
  """Train-mode BatchNorm against a float64 two-pass reference on inputs whose
  mean is 300x their spread (the embedder's bottleneck sees mean/std near 11,
  up to 137). The one-pass E[x^2] - E[x]^2 loses about (mean/std)^2 x 6e-8 of
  relative variance here (percents); two passes keep float32 precision."""
  from aligngan_jax.models import layers

  rng = np.random.default_rng(0)
  x = (300.0 + rng.standard_normal((64, 8))).astype(np.float32)
  bn = layers.BatchNorm()
  variables = bn.init(jax.random.key(0), x, train=False)
  y, updates = bn.apply(variables, x, train=True, mutable=['batch_stats'])
  x64 = x.astype(np.float64)
  var64 = ((x64 - x64.mean(0)) ** 2).mean(0)
  want = (x64 - x64.mean(0)) / np.sqrt(var64 + 1e-5)
  np.testing.assert_allclose(np.asarray(y), want, atol=2e-4)
  # Running variance: momentum 0.1 of the unbiased batch variance.
  np.testing.assert_allclose(
      np.asarray(updates['batch_stats']['var']), 0.9 + 0.1 * var64 * 64 / 63, rtol=1e-5
  )


@pytest.mark.parametrize('norm', ['batch', 'instance'])
def test_stat_groups_equal_separate_calls_in_order(norm):
  """A stat_groups=3 call on interleaved batches normalises each with its own
  statistics and leaves the running statistics as three calls in order."""
  rng = np.random.default_rng(0)
  xs = [
      jnp.asarray(rng.normal(shift, 1 + abs(shift), (4, 5, 3, 6)), jnp.float32)
      for shift in (0.0, 2.0, -1.0)
  ]
  make = {'batch': layers.BatchNorm, 'instance': layers.InstanceNorm}[norm]
  variables = make().init(jax.random.key(0), xs[0], train=True)
  stats, separate = variables['batch_stats'], []
  for x in xs:
    y, new = make().apply(
        {**variables, 'batch_stats': stats}, x, train=True, mutable=['batch_stats']
    )
    separate.append(y)
    stats = new['batch_stats']
  y, joined = make(stat_groups=3).apply(
      variables, layers.interleave(xs), train=True, mutable=['batch_stats']
  )
  for got, want in zip(layers.deinterleave(y, 3), separate):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  for key in ('mean', 'var'):
    np.testing.assert_allclose(joined['batch_stats'][key], stats[key], rtol=1e-6)
  # The order matters: the same three calls in reverse end elsewhere.
  reverse = variables['batch_stats']
  for x in xs[::-1]:
    reverse = make().apply(
        {**variables, 'batch_stats': reverse}, x, train=True, mutable=['batch_stats']
    )[1]['batch_stats']
  assert not np.allclose(reverse['mean'], stats['mean'], rtol=1e-3)


def test_instance_test_norm_normalises_each_image_as_training_does():
  """config.gan.test_instance_norm='instance': the eval-mode generator uses each
  image's own InstanceNorm statistics (the training-mode arithmetic), not
  the running ones, and training is unchanged by the switch."""
  from aligngan_jax.models import gan

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)
  official = gan.Generator(conv_dim=4, num_residual=1)
  per_image = gan.Generator(conv_dim=4, num_residual=1, test_instance_norm='instance')
  variables = official.init(jax.random.key(0), x, train=False)
  # Running statistics away from their (0, 1) start: one training call on
  # other images.
  other = jnp.asarray(rng.normal(0.5, 2.0, (2, 16, 16, 3)), jnp.float32)
  variables = {
      **variables,
      **official.apply(variables, other, train=True, mutable=['batch_stats'])[1],
  }
  trained, stats = official.apply(variables, x, train=True, mutable=['batch_stats'])
  trained_switch, stats_switch = per_image.apply(variables, x, train=True, mutable=['batch_stats'])
  np.testing.assert_array_equal(trained_switch, trained)
  jax.tree.map(np.testing.assert_array_equal, stats_switch, stats)
  evaluated = per_image.apply(variables, x, train=False)
  np.testing.assert_allclose(evaluated, trained, atol=1e-6)
  # Each image alone: no statistic is shared across the batch.
  np.testing.assert_allclose(
      per_image.apply(variables, x[:1], train=False), evaluated[:1], atol=1e-6
  )
  # The official eval mode reads the running statistics: another output.
  assert np.abs(official.apply(variables, x, train=False) - evaluated).max() > 1e-2


@functools.cache
def _encoder_input_and_variables():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 16, 3)), jnp.float32)
  init = functools.partial(ResNetEncoder(depth=10, width=4).init, train=False)
  return x, jax.jit(init)(jax.random.key(0), x)


@functools.cache
def _encoder_loss_and_grads(remat):
  """(jaxpr text, ((loss, batch stats), grads)) of a train-mode ResNet
  loss, once per policy and module: depth 10 (width 4), the tiny models'
  trunk; `nn.remat` wraps every `Block` alike, basic or bottleneck, and the
  ResNet-50 compiles took 11 s of the suite's 6 minutes. One jitted init
  serves every policy (remat changes how gradients are computed, not the
  variables) and one trace gives both the jaxpr and the program."""
  x, variables = _encoder_input_and_variables()
  model = ResNetEncoder(depth=10, width=4, remat=remat)

  def loss(params):
    y, new = model.apply(
        {'params': params, 'batch_stats': variables['batch_stats']},
        x,
        train=True,
        mutable=['batch_stats'],
    )
    return jnp.sum(jnp.square(y)), new['batch_stats']

  traced = jax.jit(jax.value_and_grad(loss, has_aux=True)).trace(variables['params'])
  return str(traced.jaxpr), traced.lower().compile()(variables['params'])


@pytest.mark.parametrize('remat', ['convs', 'blocks'])
def test_encoder_remat_changes_memory_not_results(remat):
  (plain_jaxpr, want), (remat_jaxpr, got) = map(_encoder_loss_and_grads, ('none', remat))
  # The blocks really are rematerialised (and only with the switch on).
  assert 'remat' not in plain_jaxpr and 'remat' in remat_jaxpr
  (want_loss, want_stats), want_grads = want
  (got_loss, got_stats), got_grads = got
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
  for got, want in zip(
      jax.tree.leaves((got_grads, got_stats)), jax.tree.leaves((want_grads, want_stats))
  ):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


def test_readme_library_examples_run():
  """The README's "Use the modules in your own Flax code" blocks, as written,
  under `jax.eval_shape`: every line runs, on abstract arrays (eagerly, the
  full-size ResNet-50 compiles op by op: 18 s against 1 s). What the test
  asserts is shapes and collections; the modules' numbers are checked
  against PyTorch in test_torch_parity.py."""
  import os
  import re

  readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')
  with open(readme) as f:
    text = f.read()
  section = text.split('## Use the modules in your own Flax code')[1].split('\n## ')[0]
  blocks = re.findall(r'```python\n(.*?)```', section, re.S)
  assert len(blocks) == 2

  def run(block, *names):
    def example():
      namespace = {}
      exec(block, namespace)
      return {name: namespace[name] for name in names}

    return jax.eval_shape(example)

  first = run(blocks[0], 'fmap', 'score')
  assert first['fmap'].shape == (2, 24, 12, 2048)
  assert first['score'].shape == (2, 4, 4, 1)
  second = run(blocks[1], 'out', 'updates')
  out, updates = second['out'], second['updates']
  assert out['pooled'].shape == (2, 2048) and out['logits'].shape == (2, 395)
  # The training call returns the running statistics of all three networks.
  assert set(updates['batch_stats']) == {'G_rgb2ir', 'encoder', 'embedder'}
