"""AGWNet and load_official_agw against a PyTorch twin of the official
``embed_net`` (baselines_reference.md §1, §6): random weights everywhere,
the non-local BatchNorms included (zero-initialised ones would never
exercise the block), saved as the official trainers save, then outputs and
running statistics compared in eval and in training mode."""

import copy

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch')
nn = torch.nn
F = torch.nn.functional

from aligngan_jax import convert  # noqa: E402
from aligngan_jax.models import agw  # noqa: E402
from test_losses import torch_official_triplet  # noqa: E402
from test_torch_parity import TorchResNet50  # noqa: E402
from test_torch_parity import _nhwc  # noqa: E402
from test_torch_parity import _randomise  # noqa: E402


def _close(got, want, name=''):
  """Float32 through 50 layers of random weights: activations span 1e-1 to
  1e3, so the absolute tolerance scales with the largest value."""
  want = np.asarray(want)
  np.testing.assert_allclose(
      np.asarray(got), want, rtol=2e-4, atol=1e-4 * float(np.max(np.abs(want))), err_msg=name
  )


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


class TorchBasicBlock(nn.Module):
  """torchvision's BasicBlock (for the small twins)."""

  def __init__(self, cin, width, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.downsample = None
    if stride != 1 or cin != width:
      self.downsample = nn.Sequential(
          nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width)
      )

  def forward(self, x):
    y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchResNet10(nn.Module):
  """One basic block per layer, width ``w`` (AGWNet(depth=10, width=w))."""

  def __init__(self, w):
    super().__init__()
    self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(w)
    self.relu, self.maxpool = nn.ReLU(), nn.MaxPool2d(3, 2, 1)
    cin = w
    for i, stride in enumerate((1, 2, 2, 1)):
      setattr(self, f'layer{i + 1}', nn.Sequential(TorchBasicBlock(cin, w * 2**i, stride)))
      cin = w * 2**i


class TorchEmbedNet(nn.Module):
  """embed_net(class_num, no_local='on', gm_pool='on'), modal 0/1/2;
  ``width``: the official ResNet-50 (None), or ResNet-10 copies of that
  width, with non-local blocks after the one block of layer2 and layer3."""

  def __init__(self, class_num, width=None):
    super().__init__()
    make = TorchResNet50 if width is None else (lambda: TorchResNet10(width))
    self.visible_module = nn.Module()
    self.visible_module.visible = make()
    self.thermal_module = nn.Module()
    self.thermal_module.thermal = make()
    self.base_resnet = nn.Module()
    self.base_resnet.base = make()
    for trunk in (self.visible_module.visible, self.thermal_module.thermal, self.base_resnet.base):
      if hasattr(trunk, 'fc'):
        del trunk.fc  # the official resnet50 copies have no classifier (318 keys each)
    c2, c3, c4 = (512, 1024, 2048) if width is None else (2 * width, 4 * width, 8 * width)
    self.nl2_at = (2, 3) if width is None else (0,)
    self.nl3_at = (3, 4, 5) if width is None else (0,)
    self.NL_2 = nn.ModuleList([TorchNonLocal(c2) for _ in self.nl2_at])
    self.NL_3 = nn.ModuleList([TorchNonLocal(c3) for _ in self.nl3_at])
    self.bottleneck = nn.BatchNorm1d(c4)
    self.bottleneck.bias.requires_grad_(False)
    self.classifier = nn.Linear(c4, class_num, bias=False)

  @staticmethod
  def _stem(r, x):
    return r.maxpool(r.relu(r.bn1(r.conv1(x))))

  def forward(self, x1, x2, modal=0):
    if modal == 0:
      x = torch.cat(
          (
              self._stem(self.visible_module.visible, x1),
              self._stem(self.thermal_module.thermal, x2),
          ),
          0,
      )
    elif modal == 1:
      x = self._stem(self.visible_module.visible, x1)
    else:
      x = self._stem(self.thermal_module.thermal, x2)
    base = self.base_resnet.base
    x = base.layer1(x)
    for i, block in enumerate(base.layer2):
      x = block(x)
      if i in self.nl2_at:
        x = self.NL_2[self.nl2_at.index(i)](x)
    for i, block in enumerate(base.layer3):
      x = block(x)
      if i in self.nl3_at:
        x = self.NL_3[self.nl3_at.index(i)](x)
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
  _save_official(net, path)
  return net, path


def _save_official(net, path):
  """As the official trainers save: NumPy objects beside the weights."""
  torch.save(
      {
          'net': net.state_dict(),
          'cmc': np.zeros(20, np.float32),
          'mAP': np.float64(0.5),
          'mINP': np.float64(0.3),
          'epoch': 3,
      },
      path,
  )


@pytest.fixture(scope='module')
def small(tmp_path_factory):
  """A ResNet-10 (width 4) AGW twin in the official checkpoint format."""
  net = _randomise(TorchEmbedNet(class_num=6, width=4), seed=11)
  with torch.no_grad():
    net.bottleneck.bias.zero_()
  path = str(tmp_path_factory.mktemp('agw_small') / 'small_agw_best.t')
  _save_official(net, path)
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
      net.NL_3[2].W[1].weight.detach().numpy(),
  )


def test_agw_net_equals_the_official_network_in_eval_and_training(small):
  """On the small twin (ResNet-10 of width 4, a non-local block after
  layer2 and layer3): the same code paths as at ResNet-50 (whose names and
  conversion the test above checks), at a tenth of the compile time."""
  net, path = small
  net = copy.deepcopy(net)
  variables = convert.load_official_agw(path)
  model = agw.AGWNet(num_classes=6, depth=10, width=4)
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
  got, new = model.apply(
      variables, rgb=_nhwc(x1), ir=_nhwc(x2), train=True, mutable=['batch_stats']
  )
  _close(got['logits'], want[2].numpy(), 'logits (training)')
  stats = new['batch_stats']
  for path, layer in (
      (('bottleneck',), net.bottleneck),
      (('trunk', 'nl3_0', 'W_bn'), net.NL_3[0].W[1]),
      (('visible_stem', 'bn1'), net.visible_module.visible.bn1),
      (('trunk', 'layer4_0', 'bn2'), net.base_resnet.base.layer4[0].bn2),
  ):
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


def test_eval_mode_evaluates_an_official_agw_checkpoint(small, tfds_data_dir, tmp_path):
  """config.mode='eval' with config.trainer='agw' and config.init_from=<.t>:
  the network at the checkpoint's own sizes (here a small twin, read as
  depth 10 and width 4) evaluates on the protocols."""
  assert agw.architecture(convert.load_official_agw(small[1])) == dict(
      num_classes=6, non_local=True, gem=True, depth=10, width=4
  )
  from aligngan_jax import train_lib
  from configs import synthetic

  _, path = small
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


def _one_iteration(name, small, monkeypatch, official_inputs, loss_kind):
  """The ``name`` trainer's step against the official iteration on the
  twin (CE + the trainer's triplet on the pooled features of the shared
  forward, SGD nesterov with momentum 0.9 and coupled weight decay 5e-4 in
  the official groups: everything before the BNNeck at 0.1 x the epoch-0
  warm-up rate 0.01, the BNNeck weight and the classifier at 0.01, the
  BNNeck bias frozen): parameters, running statistics and momentum buffers
  after one step. The crop and flip draws are the identity on both sides;
  ``official_inputs(rgb, ir, norm)`` builds the official network's (x1, x2)
  from the same [-1, 1] batch, with whatever draws the test fixed."""
  import copy

  from aligngan_jax import augment
  from aligngan_jax import sharding
  from aligngan_jax import trainers
  from configs import default

  net, path = small
  net = copy.deepcopy(net).train()
  config = default.get_config()
  config.trainer = name
  config.model.depth, config.model.width = 10, 4
  config[name].update(dict(ids_per_batch=2, instances_per_id=2, input_size=(32, 16)))
  trainer = trainers.trainer_for(config, trainers.DataInfo(6, 40, 20))
  variables = convert.load_official_agw(path)
  mesh = sharding.create_mesh()
  state = trainers.create_state(trainer, mesh)
  split = lambda tree: (
      {k: v for k, v in tree.items() if k in ('visible_stem', 'thermal_stem', 'trunk')},
      {k: v for k, v in tree.items() if k in ('bottleneck', 'classifier')},
  )
  (bp, hp), (bs, hs) = split(variables['params']), split(variables['batch_stats'])
  state = state.replace(
      params={'backbone': bp, 'head': hp}, batch_stats={'backbone': bs, 'head': hs}
  )
  monkeypatch.setattr(
      augment,
      'draw_pad_crop_flip',
      lambda key, n, pad=10: (
          jax.numpy.full((n, 2), pad, jax.numpy.int32),
          jax.numpy.zeros((n,), bool),
      ),
  )
  g = torch.Generator().manual_seed(4)
  rgb = torch.rand(4, 3, 32, 16, generator=g) * 2 - 1
  ir = torch.rand(4, 3, 32, 16, generator=g) * 2 - 1
  labels = torch.tensor([1, 1, 4, 4])
  batch = {
      'identity': sharding.shard_batch(
          {
              'rgb': np.asarray(_nhwc(rgb)),
              'ir': np.asarray(_nhwc(ir)),
              'labels': labels.numpy().astype(np.int32),
          },
          mesh,
      )
  }
  new_state, metrics = trainers.make_steps(trainer, mesh)[1](state, batch)
  # The official iteration.
  mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
  std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
  norm = lambda x: ((x + 1) / 2 - mean) / std
  head = list(net.bottleneck.parameters()) + list(net.classifier.parameters())
  backbone = [p for p in net.parameters() if all(p is not q for q in head)]
  lr = 0.1 * 1 / 10  # epoch 0 of the warm-up
  optimizer = torch.optim.SGD(
      [
          {'params': backbone, 'lr': 0.1 * lr},
          {'params': [net.bottleneck.weight], 'lr': lr},
          {'params': net.classifier.parameters(), 'lr': lr},
      ],
      lr=lr,
      momentum=0.9,
      weight_decay=5e-4,
      nesterov=True,
  )
  x1, x2 = official_inputs(rgb, ir, norm)
  x_pool, _, logits = net(x1, x2, 0)
  targets = torch.cat([labels] * (len(x_pool) // len(labels)))
  loss = F.cross_entropy(logits, targets) + torch_official_triplet(x_pool, targets, loss_kind)
  optimizer.zero_grad()
  loss.backward()
  optimizer.step()
  np.testing.assert_allclose(float(metrics[f'{name}/loss']), loss.item(), rtol=1e-4)
  got = convert.load_official_agw(_saved_again(net, path))
  params = {
      **jax.device_get(new_state.params['backbone']),
      **jax.device_get(new_state.params['head']),
  }
  stats = {
      **jax.device_get(new_state.batch_stats['backbone']),
      **jax.device_get(new_state.batch_stats['head']),
  }
  for a, b in zip(
      jax.tree.leaves((params, stats)), jax.tree.leaves((got['params'], got['batch_stats']))
  ):
    _close(a, b)
  # Momentum: torch's buffer of the classifier and of a trunk conv.
  trace = lambda group: jax.device_get(new_state.opt_state[group])[1].trace
  _close(
      trace('head')['classifier']['kernel'],
      optimizer.state[net.classifier.weight]['momentum_buffer'].numpy().T,
  )
  _close(
      trace('backbone')['trunk']['layer3_0']['conv1']['kernel'],
      optimizer.state[net.base_resnet.base.layer3[0].conv1.weight]['momentum_buffer']
      .numpy()
      .transpose(2, 3, 1, 0),
  )


def test_one_agw_training_iteration_equals_the_official_one(small, monkeypatch):
  """AGW: CE + WRT on [rgb; ir] through the shared part."""
  _one_iteration('agw', small, monkeypatch, lambda rgb, ir, norm: (norm(rgb), norm(ir)), 'wrt')


def test_one_caj_training_iteration_equals_the_official_one(small, monkeypatch):
  """CAJ: CE + ADP on [view 0; view 1; ir] with labels [l; l; l]. The
  channel draws are fixed on both sides: erasing of one rectangle in the
  second image of every view, view 1 replicating channels G, B, R, G, the IR
  images turned grey, kept, replicating R and B; the official transforms
  are written here in torch, on the normalised tensors."""
  from aligngan_jax import augment

  jnp = jax.numpy
  top, left, height, width = 3, 2, 5, 4
  monkeypatch.setattr(
      augment,
      'draw_erasing',
      lambda key, n, size, p=0.5: (
          jnp.arange(n) % 4 == 1,
          jnp.full((n,), top),
          jnp.full((n,), left),
          jnp.full((n,), height),
          jnp.full((n,), width),
      ),
  )
  exchange, grey_choice, grey_keep = [1, 2, 0, 1], [3, 3, 0, 2], [False, True, False, False]
  monkeypatch.setattr(augment, 'draw_channel_exchange', lambda key, n: jnp.asarray(exchange[:n]))
  monkeypatch.setattr(
      augment,
      'draw_adaptive_grey',
      lambda key, n: (jnp.asarray(grey_choice[:n]), jnp.asarray(grey_keep[:n])),
  )

  def erase(x):  # ChannelRandomErasing: x[c, top:top+h, left:left+w] = mean[c]
    x = x.clone()
    for c, value in enumerate((0.4914, 0.4822, 0.4465)):
      x[1, c, top : top + height, left : left + width] = value
    return x

  def official_inputs(rgb, ir, norm):
    view0 = erase(norm(rgb))
    view1 = erase(norm(rgb))
    view1 = torch.stack([view1[i, [k, k, k]] for i, k in enumerate(exchange)])  # ChannelExchange
    ir = erase(norm(ir))
    grey = [0.2989 * ir[i, 0] + 0.5870 * ir[i, 1] + 0.1140 * ir[i, 2] for i in range(4)]
    ir = torch.stack(
        [  # ChannelAdapGray
            ir[i] if keep else (torch.stack([grey[i]] * 3) if k == 3 else ir[i, [k, k, k]])
            for i, (k, keep) in enumerate(zip(grey_choice, grey_keep))
        ]
    )
    return torch.cat([view0, view1]), ir

  _one_iteration('caj', small, monkeypatch, official_inputs, 'adp')


def _saved_again(net, path):
  again = path.replace('.t', '_after.t')
  _save_official(net, again)
  return again
