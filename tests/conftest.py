"""Test setup: two host devices (so sharding is exercised on CPU), set before
JAX is imported; quiet TensorFlow; a session-wide tiny synthetic dataset."""

import os
import tempfile

os.environ['XLA_FLAGS'] = ' '.join(
    [os.environ.get('XLA_FLAGS', ''), '--xla_force_host_platform_device_count=2']).strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# One persistent compilation cache for the session (and the main.py
# subprocesses it starts): the same step compiled again, by another test or
# a resumed run, is read back instead of recompiled.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      tempfile.mkdtemp(prefix='aligngan-jax-test-cache-'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

# Faster compiles for tiny test models; numerics stay exact enough. Set in
# the environment so that the main.py subprocesses compile the same way
# (and so share the cache with in-process tests).
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', 'true')

import jax  # noqa: E402,F401  (after XLA_FLAGS on purpose)
import pytest  # noqa: E402

import run_files  # noqa: E402


@pytest.fixture(scope='session')
def tfds_data_dir(tmp_path_factory):
  """A TFDS data_dir holding the tiny synthetic_vireid dataset."""
  import tensorflow as tf
  tf.config.set_visible_devices([], 'GPU')
  import datasets  # noqa: F401  (registers the builders)
  import tensorflow_datasets as tfds
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  tfds.builder('synthetic_vireid/tiny', data_dir=data_dir).download_and_prepare()
  return data_dir


@pytest.fixture(scope='session')
def tiny_records(tfds_data_dir):
  """(train, test) Records of the tiny synthetic dataset."""
  from aligngan_jax import input_pipeline
  builder = input_pipeline.get_builder('synthetic_vireid/tiny',
                                       data_dir=tfds_data_dir)
  return (input_pipeline.load_split(builder, 'train'),
          input_pipeline.load_split(builder, 'test'))


@pytest.fixture(scope='session')
def aligngan_run(tfds_data_dir, tmp_path_factory):
  """The session's one trained AlignGAN: main.py on the demo config at
  ``:tiny`` (64 px: the joint discriminator's last maps are then 2x2), 2 + 2
  + 2 iterations, every checkpoint kept. It is the smoke run (test_main) and
  the workdir of the resume, eval, visualize, search and export tests; tests
  that write into a workdir work on a copy (`copy_run`).

  Returns (workdir, main.py's stderr)."""
  workdir = str(tmp_path_factory.mktemp('aligngan') / 'run')
  run = run_files.run_main('--config=configs/synthetic.py:tiny', f'--workdir={workdir}',
                 f'--config.data_dir={tfds_data_dir}', '--config.image_size=64',
                 '--config.checkpoint_every_steps=1',
                 '--config.max_checkpoints_to_keep=10', '--config.eval.num_trials=2',
                 f'--compilation_cache_dir={os.environ["JAX_COMPILATION_CACHE_DIR"]}')
  assert run.returncode == 0, run.stderr[-3000:]
  return workdir, run.stderr


@pytest.fixture
def copy_run(aligngan_run, tmp_path):
  """A private copy of the shared AlignGAN workdir, for tests that write."""
  import shutil
  path = str(tmp_path / 'run')
  shutil.copytree(aligngan_run[0], path)
  return path


# Groups that take longest, scheduled first so that both workers finish
# together (measured: bench/RESULTS.md, issue 16).
_LONG_GROUPS = ('aligngan_run', 'test_stages', 'test_multihost', 'test_sysu_mm01')


@pytest.hookimpl(tryfirst=True)   # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
  """For pytest-xdist (pytest.ini: ``-n 2 --dist loadgroup``): the tests of
  the shared AlignGAN run go to one worker (it is trained once), and so do
  the tests of a module with module-scoped fixtures (set up once); every
  other test is scheduled on its own. Long groups go first."""
  del config
  groups = {}
  for item in items:
    if 'aligngan_run' in item.fixturenames:
      groups[item] = 'aligngan_run'
    elif any(defs[-1].scope == 'module'
             for defs in item._fixtureinfo.name2fixturedefs.values()):  # pylint: disable=protected-access
      groups[item] = item.module.__name__
    elif item.module.__name__ in _LONG_GROUPS:
      groups[item] = None       # not grouped, but early
    if item in groups and groups[item]:
      item.add_marker(pytest.mark.xdist_group(groups[item]))
  rank = {name: i for i, name in enumerate(_LONG_GROUPS)}

  def priority(item):
    group = groups.get(item, '') or item.module.__name__
    return rank.get(group, len(rank))
  items.sort(key=priority)      # stable: the order within a group is kept
