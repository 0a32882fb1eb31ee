"""AGWNet and load_official_agw against a PyTorch twin of the official
``embed_net`` (baselines_reference.md §1, §6): random weights everywhere,
the non-local BatchNorms included (zero-initialised ones would never
exercise the block), saved as the official trainers save, then outputs and
running statistics compared in eval and in training mode."""

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')
nn = torch.nn
F = torch.nn.functional

from aligngan_jax import convert  # noqa: E402
from aligngan_jax.models import agw  # noqa: E402
from test_torch_parity import TorchResNet50, _nhwc, _randomise  # noqa: E402



def _close(got, want, name=''):
  """Float32 through 50 layers of random weights: activations span 1e-1 to
  1e3, so the absolute tolerance scales with the largest value."""
  want = np.asarray(want)
  np.testing.assert_allclose(np.asarray(got), want, rtol=2e-4,
                             atol=1e-4 * float(np.max(np.abs(want))), err_msg=name)


class TorchNonLocal(nn.Module):
  """The official Non_local block with inter_channels = 1."""

  def __init__(self, c):
    super().__init__()
    self.g = nn.Sequential(nn.Conv2d(c, 1, 1))
    self.W = nn.Sequential(nn.Conv2d(1, c, 1), nn.BatchNorm2d(c))
    self.theta = nn.Conv2d(c, 1, 1)
    self.phi = nn.Conv2d(c, 1, 1)

  def forward(self, x):
    b = x.size(0)
    g_x = self.g(x).view(b, 1, -1).permute(0, 2, 1)
    theta_x = self.theta(x).view(b, 1, -1).permute(0, 2, 1)
    phi_x = self.phi(x).view(b, 1, -1)
    f = torch.matmul(theta_x, phi_x)
    y = torch.matmul(f / f.size(-1), g_x)
    y = y.permute(0, 2, 1).contiguous().view(b, 1, *x.size()[2:])
    return self.W(y) + x


class TorchEmbedNet(nn.Module):
  """embed_net(class_num, no_local='on', gm_pool='on'), modal 0/1/2."""

  def __init__(self, class_num):
    super().__init__()
    self.visible_module = nn.Module()
    self.visible_module.visible = TorchResNet50()
    self.thermal_module = nn.Module()
    self.thermal_module.thermal = TorchResNet50()
    self.base_resnet = nn.Module()
    self.base_resnet.base = TorchResNet50()
    for copy in (self.visible_module.visible, self.thermal_module.thermal,
                 self.base_resnet.base):
      del copy.fc      # the official resnet50 copies have no classifier (318 keys each)
    self.NL_2 = nn.ModuleList([TorchNonLocal(512) for _ in range(2)])
    self.NL_3 = nn.ModuleList([TorchNonLocal(1024) for _ in range(3)])
    self.bottleneck = nn.BatchNorm1d(2048)
    self.bottleneck.bias.requires_grad_(False)
    self.classifier = nn.Linear(2048, class_num, bias=False)

  @staticmethod
  def _stem(r, x):
    return r.maxpool(r.relu(r.bn1(r.conv1(x))))

  def forward(self, x1, x2, modal=0):
    if modal == 0:
      x = torch.cat((self._stem(self.visible_module.visible, x1),
                     self._stem(self.thermal_module.thermal, x2)), 0)
    elif modal == 1:
      x = self._stem(self.visible_module.visible, x1)
    else:
      x = self._stem(self.thermal_module.thermal, x2)
    base = self.base_resnet.base
    x = base.layer1(x)
    for i, block in enumerate(base.layer2):
      x = block(x)
      if i in (2, 3):
        x = self.NL_2[i - 2](x)
    for i, block in enumerate(base.layer3):
      x = block(x)
      if i in (3, 4, 5):
        x = self.NL_3[i - 3](x)
    x = base.layer4(x)
    b, c = x.shape[:2]
    x_pool = (torch.mean(x.view(b, c, -1) ** 3.0, dim=-1) + 1e-12) ** (1 / 3.0)
    feat = self.bottleneck(x_pool)
    return x_pool, feat, self.classifier(feat)


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  net = _randomise(TorchEmbedNet(class_num=9), seed=5)
  with torch.no_grad():
    net.bottleneck.bias.zero_()
  path = str(tmp_path_factory.mktemp('agw') / 'sysu_agw_p4_n8_lr_0.1_seed_0_best.t')
  # As the official trainers save it: NumPy objects beside the weights.
  torch.save({'net': net.state_dict(), 'cmc': np.zeros(20, np.float32),
              'mAP': np.float64(0.5), 'mINP': np.float64(0.3), 'epoch': 3}, path)
  return net, path


def test_load_official_agw_reads_the_variant_and_the_classes(saved):
  net, path = saved
  variables = convert.load_official_agw(path)
  model = agw.AGWNet(num_classes=9)
  x = jax.numpy.zeros((1, 64, 32, 3))
  want = jax.eval_shape(lambda: model.init(jax.random.key(0), rgb=x, ir=x, train=False))
  assert jax.tree.map(lambda a: a.shape, variables) == jax.tree.map(lambda a: a.shape, want)
  np.testing.assert_array_equal(
      variables['params']['trunk']['nl3_2']['W_bn']['scale'],
      net.NL_3[2].W[1].weight.detach().numpy())


def test_agw_net_equals_the_official_network_in_eval_and_training(saved):
  net, path = saved
  variables = convert.load_official_agw(path)
  model = agw.AGWNet(num_classes=9)
  g = torch.Generator().manual_seed(1)
  x1 = torch.randn(2, 3, 64, 32, generator=g)
  x2 = torch.randn(2, 3, 64, 32, generator=g)
  net.eval()
  with torch.no_grad():
    want = net(x1, x2, 0)
    want_ir = net(x1, x2, 2)
  got = model.apply(variables, rgb=_nhwc(x1), ir=_nhwc(x2), train=False)
  for name, ref in zip(('pool', 'bn', 'logits'), want):
    _close(got[name], ref.numpy(), name)
  got_ir = model.apply(variables, ir=_nhwc(x2), train=False)
  _close(got_ir['bn'], want_ir[1].numpy(), 'bn (ir alone)')
  # Training mode: one forward of [rgb; ir] through the shared part, batch
  # statistics, running statistics updated once.
  net.train()
  with torch.no_grad():
    want = net(x1, x2, 0)
  got, new = model.apply(variables, rgb=_nhwc(x1), ir=_nhwc(x2), train=True,
                         mutable=['batch_stats'])
  _close(got['logits'], want[2].numpy(), 'logits (training)')
  stats = new['batch_stats']
  for path, layer in ((('bottleneck',), net.bottleneck),
                      (('trunk', 'nl2_1', 'W_bn'), net.NL_2[1].W[1]),
                      (('visible_stem', 'bn1'), net.visible_module.visible.bn1),
                      (('trunk', 'layer4_2', 'bn3'), net.base_resnet.base.layer4[2].bn3)):
    node = stats
    for p in path:
      node = node[p]
    _close(node['mean'], layer.running_mean.numpy(), '/'.join(path))
    _close(node['var'], layer.running_var.numpy(), '/'.join(path))


def test_a_file_that_is_not_an_official_checkpoint_is_one_line(tmp_path):
  path = tmp_path / 'junk.t'
  path.write_bytes(b'not a checkpoint')
  with pytest.raises(ValueError, match=r'junk\.t: not an official AGW/CAJ checkpoint') as e:
    convert.load_official_agw(str(path))
  assert '\n' not in str(e.value)
  other = tmp_path / 'other.t'
  torch.save({'net': {'fc.weight': torch.zeros(2, 2)}}, str(other))
  with pytest.raises(ValueError, match=r'other\.t: holds no AGW network'):
    convert.load_official_agw(str(other))
  # A pickle that runs code is refused, not executed (weights_only loading).
  evil = tmp_path / 'evil.t'
  torch.save({'net': {'classifier.weight': torch.zeros(2, 2)}, 'x': print}, str(evil))
  with pytest.raises(ValueError, match='not an official AGW/CAJ checkpoint'):
    convert.load_official_agw(str(evil))


def test_eval_mode_evaluates_an_official_agw_checkpoint(saved, tfds_data_dir, tmp_path):
  """config.mode='eval' with config.trainer='agw' and config.init_from=<.t>:
  the official network at its own sizes evaluates on the protocols."""
  from aligngan_jax import train_lib
  from configs import synthetic
  _, path = saved
  config = synthetic.get_config('tiny')
  config.trainer, config.mode, config.init_from = 'agw', 'eval', path
  config.data_dir, config.pretrained_backbone = tfds_data_dir, ''
  config.agw.input_size = (64, 32)
  config.eval.num_trials = 2
  result = train_lib.evaluate_checkpoint(config, str(tmp_path))
  assert 'sysu all single' in result['results']
  config.init_from = str(tmp_path)
  from aligngan_jax import config_checks
  with pytest.raises(config_checks.ConfigError, match='is not a file: it must be an official AGW'):
    config_checks.validate_config(config, num_devices=2)
