"""Readers of what a training run leaves in its workdir (for tests), and
the settings every test run compiles with. Imports no JAX: conftest.py
reads the XLA flags before JAX loads."""

import importlib.metadata
import json
import os
import subprocess
import sys
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# XLA aborts on a flag it does not know, so version-dependent flags are
# passed only to the jaxlib versions they were measured with.
_FASTER_COMPILES = {
    # The CPU fusion emitters (MLIR) compile the tiny test steps about 30 %
    # slower than the older LLVM IR emitters (AlignGAN stage 3 at :tiny:
    # 13.8 s against 9.4 s; bench/RESULTS.md, issue 16). Results agree to
    # float rounding (bench/golden_spread.py measures how far).
    '--xla_cpu_use_fusion_emitters=false': ('0.10',),
}
# Faster compiles for tiny test models; numerics stay exact enough.
TEST_ENV = {'JAX_DISABLE_MOST_OPTIMIZATIONS': 'true'}


def xla_flags_for_tests(*, faster_compiles: bool = True) -> list[str]:
  """XLA_FLAGS of the tests: two host devices (sharding exercised on CPU)
  and, on the jaxlib series they were measured with, the faster-compile
  flags."""
  try:
    jaxlib = '.'.join(importlib.metadata.version('jaxlib').split('.')[:2])
  except importlib.metadata.PackageNotFoundError:
    jaxlib = None  # a source build: no version-gated flags
  flags = ['--xla_force_host_platform_device_count=2']
  if faster_compiles:
    flags += [flag for flag, versions in _FASTER_COMPILES.items() if jaxlib in versions]
    skipped = [flag for flag, versions in _FASTER_COMPILES.items() if jaxlib not in versions]
    if skipped:
      # Not silent: without them the suite compiles about 30 % slower and
      # may pass its 6-minute budget; measure the flags on this jaxlib and
      # add its series to _FASTER_COMPILES (or drop them).
      warnings.warn(
          f'tests/run_files.py: jaxlib {jaxlib} is not a series the XLA '
          f'flags {skipped} were measured with; the tests run without them '
          '(slower compiles).',
          stacklevel=2,
      )
  return flags


# The session's shared AlignGAN run (conftest.aligngan_run): the demo config
# at :tiny, 64 px (the joint discriminator's last maps are then 2x2), 2 + 2
# + 2 iterations, every checkpoint kept. Its numbers are golden
# (tests/golden.py), so bench/golden_spread.py runs it with these flags too.
ALIGNGAN_TINY_FLAGS = (
    '--config=configs/synthetic.py:tiny',
    '--config.image_size=64',
    '--config.checkpoint_every_steps=1',
    '--config.max_checkpoints_to_keep=10',
    '--config.eval.num_trials=2',
)
# The IDE trainer's tiny run (test_train_loop.py, in-process): configs/synthetic.py
# at 'ide,tiny' with these keys set; its numbers are golden too.
IDE_TINY_OVERRIDES = {'checkpoint_every_steps': 1, 'eval.num_trials': 2, 'ide.num_train_steps': 2}


def override(config, overrides: dict):
  """Sets dotted ``overrides`` keys on ``config`` (as --config.KEY=VALUE would)."""
  for key, value in overrides.items():
    *groups, leaf = key.split('.')
    node = config
    for group in groups:
      node = node[group]
    node[leaf] = value
  return config


def run_main(*args, timeout=600) -> subprocess.CompletedProcess:
  """``python main.py *args`` from the repository root, on the CPU."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', JAX_PLATFORMS='cpu')
  return subprocess.run(
      [sys.executable, 'main.py', *args],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=timeout,
  )


def tensorboard_tags(workdir: str) -> set[str]:
  """Every scalar and image tag in the workdir's event files."""
  import tensorflow as tf

  tags = set()
  for name in os.listdir(workdir):
    if name.startswith('events.out.tfevents'):
      for event in tf.compat.v1.train.summary_iterator(os.path.join(workdir, name)):
        tags.update(v.tag for v in event.summary.value)
  return tags


def latest_eval(workdir: str) -> dict:
  with open(os.path.join(workdir, 'eval', 'latest.json')) as f:
    return json.load(f)
