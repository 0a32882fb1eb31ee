"""Test setup: two host devices (so sharding is exercised on CPU), set before
JAX is imported; quiet TensorFlow; a session-wide tiny synthetic dataset."""

import os
import tempfile

import run_files  # (imports no JAX: the flags below are set before JAX loads)

os.environ['XLA_FLAGS'] = ' '.join(
    [os.environ.get('XLA_FLAGS', ''), *run_files.xla_flags_for_tests()]).strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# One persistent compilation cache for the session (and the main.py
# subprocesses it starts): the same step compiled again, by another test or
# a resumed run, is read back instead of recompiled.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      tempfile.mkdtemp(prefix='aligngan-jax-test-cache-'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

# Faster compiles for tiny test models (run_files.TEST_ENV). Set in the
# environment so that the main.py subprocesses compile the same way (and
# so share the cache with in-process tests).
for _key, _value in run_files.TEST_ENV.items():
  os.environ.setdefault(_key, _value)

import jax  # noqa: E402,F401  (after XLA_FLAGS on purpose)
import pytest  # noqa: E402


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
  + 2 iterations, every checkpoint kept. It is the smoke run and the
  workdir of the resume, eval, visualize, search and export tests, all in
  test_trained_run.py (its only user, so that pytest-xdist trains it once);
  tests that write into a workdir work on a copy (`copy_run`).

  Returns (workdir, main.py's stderr)."""
  workdir = str(tmp_path_factory.mktemp('aligngan') / 'run')
  run = run_files.run_main(*run_files.ALIGNGAN_TINY_FLAGS, f'--workdir={workdir}',
                           f'--config.data_dir={tfds_data_dir}',
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



# Test files by the time they take, longest first (measured with
# --durations=0 on two cores: issue 16, re-measured in issue 29). The suite's
# command (README, .ci/run) runs two workers with ``--dist loadfile
# --no-loadscope-reorder``: files are
# handed out in collection order, so the longest start first and the two
# workers finish together (xdist's own order, by number of tests, started
# the shared AlignGAN run last).
_LONG_FILES = ('test_stages', 'test_trained_run', 'test_multihost', 'test_reliability',
               'test_torch_parity', 'test_train', 'test_sysu_mm01', 'test_ranking',
               'test_models', 'test_agw_trainer', 'test_agw_parity', 'test_main',
               'test_engine')


def pytest_collection_modifyitems(config, items):
  """Long files first; the order within a file is kept. A file's tests
  share one worker, so module- and file-level setups (the shared AlignGAN
  run is used by test_trained_run.py alone) happen once."""
  del config
  rank = {name: i for i, name in enumerate(_LONG_FILES)}
  items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))
