"""ImageNet weights fetched on demand (aligngan_jax/weights.py), against a
local HTTP server on 127.0.0.1 serving a small generated file whose SHA-256
stands in for the table's."""

import hashlib
import http.server
import os
import threading

import jax
import numpy as np
import pytest

from aligngan_jax import config_checks
from aligngan_jax import convert
from aligngan_jax import players
from aligngan_jax import pretrained
from aligngan_jax import sharding
from aligngan_jax import weights
from configs import sysu

PAYLOAD = os.urandom(3 * 2**20 + 17)  # three blocks and a bit
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
  """/good: the payload; /etag: the payload with Hugging Face's digest
  header; /cut: announces the whole payload, sends half, closes."""

  def do_GET(self):
    self.server.requests.append(self.path)
    self.send_response(200)
    self.send_header('Content-Length', str(len(PAYLOAD)))
    if self.path == '/etag':
      self.send_header('X-Linked-Etag', f'"{DIGEST}"')
    self.end_headers()
    self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2] if self.path == '/cut' else PAYLOAD)

  def log_message(self, *args):
    del args


@pytest.fixture
def server():
  httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
  httpd.requests = []
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield httpd
  httpd.shutdown()
  httpd.server_close()


def _source(monkeypatch, url, sha256=DIGEST, name='torchvision'):
  monkeypatch.setitem(
      weights.SOURCES,
      name,
      weights.Source(url=url, filename='resnet50-test.pth', sha256=sha256, about='test weights'),
  )


def _left(directory):
  return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def test_download_then_cache_hit_without_the_server(server, monkeypatch, tmp_path):
  url = f'http://127.0.0.1:{server.server_port}/good'
  _source(monkeypatch, url)
  cache = str(tmp_path / 'cache')
  path = weights.fetch('torchvision', cache)
  with open(path, 'rb') as f:
    assert f.read() == PAYLOAD
  assert _left(cache) == ['resnet50-test.pth'] and server.requests == ['/good']
  # The server gone: the second use reads the verified cache.
  server.shutdown()
  server.server_close()
  assert weights.fetch('torchvision', cache) == path
  # Through the config, as a run resolves it (config.weights_dir).
  config = sysu.get_config()
  assert config.pretrained_backbone == 'torchvision'
  config.weights_dir = cache
  assert pretrained.backbone_file(config) == path


def test_a_hash_mismatch_deletes_the_file_and_says_so(server, monkeypatch, tmp_path):
  _source(monkeypatch, f'http://127.0.0.1:{server.server_port}/good', sha256='0' * 64)
  cache = str(tmp_path / 'cache')
  with pytest.raises(weights.WeightsError) as error:
    weights.fetch('torchvision', cache)
  message = str(error.value)
  assert f'has SHA-256 {DIGEST}, not the published {"0" * 64}; it was deleted' in message
  assert '\n' not in message and _left(cache) == []
  # A damaged cached file is deleted and fetched again.
  _source(monkeypatch, f'http://127.0.0.1:{server.server_port}/good')
  os.makedirs(cache, exist_ok=True)
  with open(os.path.join(cache, 'resnet50-test.pth'), 'wb') as f:
    f.write(PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 1]))  # the last byte flipped (b'x' could equal it)
  path = weights.fetch('torchvision', cache)
  assert weights.sha256_of(path) == DIGEST and len(server.requests) == 2


def test_an_interrupted_download_leaves_nothing_under_the_final_name(server, monkeypatch, tmp_path):
  _source(monkeypatch, f'http://127.0.0.1:{server.server_port}/cut')
  cache = str(tmp_path / 'cache')
  with pytest.raises(weights.WeightsError, match='Cannot download .*/cut'):
    weights.fetch('torchvision', cache)
  assert _left(cache) == []  # neither the file nor a .partial


def test_offline_names_the_url_the_cache_path_and_the_digest(monkeypatch, tmp_path):
  with socket_closed() as port:
    url = f'http://127.0.0.1:{port}/resnet50.pth'
  _source(monkeypatch, url)
  cache = str(tmp_path / 'cache')
  with pytest.raises(weights.WeightsError) as error:
    weights.fetch('torchvision', cache)
  message = str(error.value)
  assert message.startswith(f'Cannot download {url} (')
  assert f'copy the file to {cache}/resnet50-test.pth (SHA-256 {DIGEST})' in message
  assert 'python -m aligngan_jax.convert --fetch torchvision --out DIR' in message
  assert '\n' not in message and _left(cache) == []


class socket_closed:
  """A localhost port with nothing listening on it."""

  def __enter__(self):
    import socket

    self.s = socket.socket()
    self.s.bind(('127.0.0.1', 0))
    return self.s.getsockname()[1]

  def __exit__(self, *args):
    self.s.close()


def test_the_servers_digest_is_checked_and_kept_where_the_table_has_none(
    server, monkeypatch, tmp_path
):
  _source(monkeypatch, f'http://127.0.0.1:{server.server_port}/etag', sha256=None, name='timm')
  cache = str(tmp_path / 'cache')
  path = weights.fetch('timm', cache)
  with open(path + '.sha256') as f:
    assert f.read().strip() == DIGEST
  assert weights.fetch('timm', cache) == path and len(server.requests) == 1
  # Without a stated digest there is nothing to check against: refused.
  _source(monkeypatch, f'http://127.0.0.1:{server.server_port}/good', sha256=None, name='timm')
  with pytest.raises(weights.WeightsError, match=r'not the published \(none stated\)'):
    weights.fetch('timm', str(tmp_path / 'other'))


def test_a_local_file_named_with_a_hash_prefix_is_checked(tmp_path):
  good = tmp_path / f'resnet50-{DIGEST[:8]}.pth'
  good.write_bytes(PAYLOAD)
  assert weights.resolve(str(good)) == str(good)
  bad = tmp_path / 'resnet50-0676ba61.pth'
  bad.write_bytes(PAYLOAD)
  with pytest.raises(weights.WeightsError, match='does not start with 0676ba61'):
    weights.resolve(str(bad))


def test_the_prefetch_command(server, monkeypatch, tmp_path, capsys):
  _source(monkeypatch, f'http://127.0.0.1:{server.server_port}/good')
  out = str(tmp_path / 'out')
  assert convert.main(['--fetch', 'torchvision', '--out', out]) == 0
  assert capsys.readouterr().out.strip() == (f'{out}/resnet50-test.pth (SHA-256 {DIGEST})')
  _source(monkeypatch, f'http://127.0.0.1:{server.server_port}/good', sha256='1' * 64)
  assert convert.main(['--fetch', 'torchvision', '--out', str(tmp_path / 'o2')]) == 1
  assert capsys.readouterr().err.startswith('error: http://127.0.0.1:')


def test_the_cache_folder_follows_the_config_then_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv('ALIGNGAN_WEIGHTS_DIR', str(tmp_path / 'env'))
  assert weights.cache_dir(str(tmp_path / 'cfg')) == str(tmp_path / 'cfg')
  assert weights.cache_dir('') == str(tmp_path / 'env')
  monkeypatch.delenv('ALIGNGAN_WEIGHTS_DIR')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert weights.cache_dir('') == str(tmp_path / 'xdg' / 'aligngan_jax' / 'weights')


def test_a_new_run_fetches_before_reading_the_data_and_a_resumed_one_does_not(
    monkeypatch, tmp_path
):
  from aligngan_jax import input_pipeline
  from aligngan_jax import train_loop

  with socket_closed() as port:
    _source(monkeypatch, f'http://127.0.0.1:{port}/resnet50.pth')

  def too_early(*args, **kwargs):
    raise AssertionError('the data was read before the weights were fetched')

  monkeypatch.setattr(input_pipeline, 'load_data', too_early)
  config = sysu.get_config()
  config.weights_dir = str(tmp_path / 'cache')
  with pytest.raises(weights.WeightsError, match='Cannot download'):
    train_loop.train_and_evaluate(config, str(tmp_path / 'run'))
  # A workdir with a checkpoint resumes: no fetch (so no network needed).
  os.makedirs(tmp_path / 'run' / 'checkpoints' / '5')
  with pytest.raises(AssertionError, match='data was read'):
    train_loop.train_and_evaluate(config, str(tmp_path / 'run'))


def test_pretrained_backbone_errors_name_the_key(ide_config, tmp_path):
  bad = ide_config.copy_and_resolve_references()
  bad.pretrained_backbone = str(tmp_path / 'resnet50.pth')
  with pytest.raises(config_checks.ConfigError, match='config.model.depth=10'):
    config_checks.validate_config(bad, num_devices=2)
  bad.model.depth, bad.model.width = 50, 64
  with pytest.raises(
      config_checks.ConfigError, match=r"pretrained_backbone=.*does not exist.*'torchvision'"
  ):
    config_checks.validate_config(bad, num_devices=2)
  bad.mode, bad.init_from = 'eval', str(tmp_path)
  # The IDE baseline has no official release; AlignGAN's names its files.
  with pytest.raises(NotImplementedError, match="trainer 'ide' cannot evaluate"):
    config_checks.validate_config(bad, num_devices=2)
  bad.trainer = 'aligngan'
  with pytest.raises(config_checks.ConfigError, match='model-0_250.pkl'):
    config_checks.validate_config(bad, num_devices=2)


def test_a_saved_trunk_starts_a_new_state_and_a_wrong_one_is_named(
    ide_config, ide_models, tmp_path
):
  from aligngan_jax import pretrained

  mesh = sharding.create_mesh()
  other = ide_config.copy_and_resolve_references()
  other.seed = 7
  source = jax.device_get(players.create_state(other, ide_models, mesh))
  path = str(tmp_path / 'trunk.msgpack')
  pretrained.save_trunk(
      path, source.params['encoder'], source.batch_stats['encoder'], ide_config, source='test'
  )
  run = ide_config.copy_and_resolve_references()
  run.pretrained_backbone = path
  assert pretrained.check_backbone_config(run) is None
  state = players.create_state(run, ide_models, mesh)
  loaded = jax.device_get(pretrained.load_backbone(state, run, mesh))
  for got, want in zip(
      jax.tree.leaves((loaded.params['encoder'], loaded.batch_stats['encoder'])),
      jax.tree.leaves((source.params['encoder'], source.batch_stats['encoder'])),
  ):
    np.testing.assert_array_equal(got, want)
  # The heads stay as initialised.
  for got, want in zip(
      jax.tree.leaves(loaded.params['embedder']),
      jax.tree.leaves(jax.device_get(state.params['embedder'])),
  ):
    np.testing.assert_array_equal(got, want)
  wider = run.copy_and_resolve_references()
  wider.model.width = 8
  with pytest.raises(config_checks.ConfigError, match=r'trunk.msgpack.*width 4.*width=8'):
    config_checks.validate_config(wider, num_devices=2)
  with open(path, 'wb') as f:
    f.write(b'not a trunk')
  with pytest.raises(config_checks.ConfigError, match=r'trunk.msgpack.*not a trunk file'):
    config_checks.validate_config(run, num_devices=2)
