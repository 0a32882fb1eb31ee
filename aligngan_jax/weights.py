"""ImageNet weights fetched on first use, verified, and cached.

``config.pretrained_backbone`` may name a source of `SOURCES` instead of a
path: ``'torchvision'`` (the official starting point: torchvision's ImageNet
ResNet-50 v1, ``resnet50-0676ba61.pth``, the file the official code loads)
or ``'timm'`` (the same torchvision weights as timm's ``resnet50.tv_in1k``
safetensors, which load without torch). The first run downloads the file
into the cache folder (`cache_dir`) under a temporary name, with progress
lines, checks its SHA-256 and renames it into place; later runs use the
cached file without network access.

What is checked: ``SOURCES[name].sha256`` is what the publisher states.
torchvision states the first 8 hex digits of the SHA-256 in its file names
(what ``torch.hub`` checks), so that is what is pinned for it; a local file
whose name carries such a prefix (``resnet50-<8 hex>.pth``) is checked the
same way. Hugging Face states the full SHA-256 of a stored file in the
``X-Linked-Etag`` header of the download; where the table has no digest
(timm) that one is checked and kept next to the cached file (``.sha256``),
against which the cache is then checked. A mismatch deletes the file.

Offline machines (TPU pods often have none): the error names the URL, the
cache path and the digest, so the file can be copied there by hand, or
fetched elsewhere with ``python -m aligngan_jax.convert --fetch torchvision
--out DIR``.
"""

import dataclasses
import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request

from absl import logging

from aligngan_jax import errors

ENV_DIR = 'ALIGNGAN_WEIGHTS_DIR'


class WeightsError(errors.UserError, ValueError):
  """Weights that cannot be fetched or do not match their digest; the
  message names the URL or file and what to do."""


@dataclasses.dataclass(frozen=True)
class Source:
  url: str
  filename: str
  sha256: str | None  # hex digest or published prefix; None: the server's
  about: str


SOURCES = {
    'torchvision': Source(
        url='https://download.pytorch.org/models/resnet50-0676ba61.pth',
        filename='resnet50-0676ba61.pth',
        sha256='0676ba61',
        about="torchvision's ImageNet ResNet-50 v1 (IMAGENET1K_V1), the official starting point",
    ),
    'timm': Source(
        url='https://huggingface.co/timm/resnet50.tv_in1k/resolve/main/model.safetensors',
        filename='resnet50.tv_in1k.safetensors',
        sha256=None,
        about="timm's resnet50.tv_in1k: torchvision's weights as safetensors (no torch needed)",
    ),
}
_HASH_IN_NAME = re.compile(r'-([0-9a-f]{8,64})\.(pth|pt|safetensors)$')


def cache_dir(configured: str = '') -> str:
  """``config.weights_dir``, else $ALIGNGAN_WEIGHTS_DIR, else
  $XDG_CACHE_HOME/aligngan_jax/weights, else ~/.cache/aligngan_jax/weights."""
  if configured:
    return os.path.expanduser(configured)
  if os.environ.get(ENV_DIR):
    return os.path.expanduser(os.environ[ENV_DIR])
  home = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
  return os.path.join(home, 'aligngan_jax', 'weights')


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def _matches(digest: str, expected: str) -> bool:
  return digest.startswith(expected.lower())


def verify_file(path: str) -> None:
  """A local file whose name carries a hash prefix (torchvision's naming)
  must match it; WeightsError naming the file otherwise."""
  found = _HASH_IN_NAME.search(os.path.basename(path))
  if found and not _matches(sha256_of(path), found.group(1)):
    raise WeightsError(
        f'{path}: its SHA-256 does not start with {found.group(1)}, the digest its '
        'name states: the file is damaged or not the published one; download it '
        'again.'
    )


def resolve(name_or_path: str, directory: str = '') -> str:
  """The local file of a source name (fetched and verified on first use,
  the cache verified after) or of a path (verified when its name carries a
  hash prefix)."""
  if name_or_path not in SOURCES:
    if os.path.isfile(name_or_path):
      verify_file(name_or_path)
    return name_or_path
  return fetch(name_or_path, cache_dir(directory))


def fetch(name: str, directory: str) -> str:
  """``SOURCES[name]`` in ``directory``: the verified cached file, or a
  fresh download (temporary name, digest check, rename)."""
  source = SOURCES[name]
  path = os.path.join(directory, source.filename)
  if os.path.isfile(path):
    expected = source.sha256 or _read_sidecar(path)
    if expected and _matches(sha256_of(path), expected):
      return path
    logging.warning(
        '%s does not match its SHA-256 (%s): deleted, downloading it again.',
        path,
        expected or 'unknown',
    )
    os.remove(path)
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise WeightsError(
        f'Cannot create the weights folder {directory} ({e.strerror}); '
        'set config.weights_dir or $ALIGNGAN_WEIGHTS_DIR.'
    ) from e
  digest, published = _download(name, source, path)
  expected = source.sha256 or published
  if not expected or not _matches(digest, expected):
    os.remove(path)
    raise WeightsError(
        f'{source.url}: the downloaded file has SHA-256 {digest}, not the published '
        f'{expected or "(none stated)"}; it was deleted. Try again, or fetch it by '
        f'hand and copy it to {path}.'
    )
  if not source.sha256:
    with open(path + '.sha256', 'w') as f:
      f.write(digest + '\n')
  return path


def _read_sidecar(path: str) -> str | None:
  try:
    with open(path + '.sha256') as f:
      return f.read().strip() or None
  except OSError:
    return None


def _offline_error(name, source, path, reason) -> WeightsError:
  if not source.sha256:
    digest = 'SHA-256 as stated in the X-Linked-Etag header of the URL'
  elif len(source.sha256) < 64:
    digest = f'SHA-256 starting with {source.sha256}'
  else:
    digest = f'SHA-256 {source.sha256}'
  return WeightsError(
      f'Cannot download {source.url} ({reason}). Without network access, copy '
      f'the file to {path} ({digest}), e.g. fetched on another machine '
      f'with: python -m aligngan_jax.convert --fetch {name} --out DIR; or pass '
      'a local path as config.pretrained_backbone.'
  )


def _download(name, source, path) -> tuple[str, str | None]:
  """Streams the URL to ``path``; (SHA-256, the digest the server states).
  Nothing is left under ``path`` unless the download completed."""
  partial = f'{path}.partial-{os.getpid()}'
  digest = hashlib.sha256()
  try:
    try:
      response = urllib.request.urlopen(source.url, timeout=60)
    except (urllib.error.URLError, OSError) as e:
      raise _offline_error(name, source, path, getattr(e, 'reason', e)) from e
    with response, open(partial, 'wb') as out:
      published = (response.headers.get('X-Linked-Etag') or '').strip('"') or None
      total = int(response.headers.get('Content-Length') or 0)
      logging.info('Downloading %s (%s) to %s.', source.url, source.about, path)
      done, start, shown = 0, time.monotonic(), 0.0
      while block := response.read(1 << 20):
        out.write(block)
        digest.update(block)
        done += len(block)
        now = time.monotonic()
        if now - shown > 2 or (total and done == total):
          shown = now
          rate = done / max(now - start, 1e-9)
          left = (total - done) / rate if total else 0
          logging.info(
              '  %s: %.1f of %s MiB, %.1f MiB/s, ETA %ds',
              name,
              done / 2**20,
              f'{total / 2**20:.1f}' if total else '?',
              rate / 2**20,
              left,
          )
      if total and done != total:
        raise _offline_error(
            name, source, path, f'the connection ended after {done} of {total} bytes'
        )
    os.replace(partial, path)
    return digest.hexdigest(), published
  except (OSError, http.client.HTTPException) as e:  # URLError is an OSError
    raise _offline_error(name, source, path, e) from e
  finally:
    if os.path.exists(partial):
      os.remove(partial)
