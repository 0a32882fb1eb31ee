"""Test setup: two host devices (so sharding is exercised on CPU), set before
JAX is imported; quiet TensorFlow; what the whole session shares: the tiny
synthetic dataset, the tiny AlignGAN run, the diverged IDE run, the tiny IDE
config and networks."""

import os
import shutil
import tempfile

import run_files  # (imports no JAX: the flags below are set before JAX loads)

os.environ['XLA_FLAGS'] = ' '.join(
    [os.environ.get('XLA_FLAGS', ''), *run_files.xla_flags_for_tests()]
).strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# One persistent compilation cache for the session (and the main.py
# subprocesses it starts): the same step compiled again, by another test or
# a resumed run, is read back instead of recompiled.
os.environ.setdefault(
    'JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='aligngan-jax-test-cache-')
)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

# Faster compiles for tiny test models (run_files.TEST_ENV). Set in the
# environment so that the main.py subprocesses compile the same way (and
# so share the cache with in-process tests).
for _key, _value in run_files.TEST_ENV.items():
  os.environ.setdefault(_key, _value)

import jax  # noqa: E402,F401  (after XLA_FLAGS on purpose)
import pytest  # noqa: E402

import shared_runs  # noqa: E402

# The tests of the shared runs, which wait for them.
_SHARED_RUN_FIXTURES = {'aligngan_run', 'copy_run', 'tools_workdir', 'diverged'}


def pytest_collection_modifyitems(items):
  """The tests of the shared runs first (a stable sort; within them and
  among the others, pytest's order). With ``--dist worksteal`` the first
  worker's half then starts with them: it makes the runs while the other
  worker runs the rest, and a worker that steals takes from the end of a
  queue, where no test waits for a run."""
  items.sort(key=lambda item: not _SHARED_RUN_FIXTURES & set(item.fixturenames))


def _shared(tmp_path_factory, worker_id):
  """The folder every process of this session shares (one process: its own)."""
  if worker_id == 'master':
    return tmp_path_factory.getbasetemp()
  return tmp_path_factory.getbasetemp().parent


@pytest.fixture(scope='session')
def tfds_data_dir(tmp_path_factory, worker_id):
  """A TFDS data_dir holding the tiny synthetic_vireid dataset."""
  return shared_runs.made_once(
      _shared(tmp_path_factory, worker_id), 'tfds', shared_runs.build_dataset
  )


@pytest.fixture(scope='session')
def tiny_records(tfds_data_dir):
  """(train, test) Records of the tiny synthetic dataset."""
  from aligngan_jax import input_pipeline

  builder = input_pipeline.get_builder('synthetic_vireid/tiny', data_dir=tfds_data_dir)
  return (input_pipeline.load_split(builder, 'train'), input_pipeline.load_split(builder, 'test'))


@pytest.fixture(scope='session')
def aligngan_run(tfds_data_dir, tmp_path_factory, worker_id):
  """The session's one trained AlignGAN: main.py on the demo config at
  ``:tiny`` (64 px: the joint discriminator's last maps are then 2x2), 2 + 2
  + 2 iterations, every checkpoint kept, made once for all workers
  (shared_runs.py). It is the smoke run and the workdir of the resume, eval,
  visualize, search and export tests; tests that write into a workdir work
  on a copy (`copy_run`, `tools_workdir`).

  Returns (workdir, main.py's stderr)."""

  return tuple(
      shared_runs.made_once(
          _shared(tmp_path_factory, worker_id),
          'aligngan',
          lambda folder: shared_runs.train_aligngan(folder, tfds_data_dir),
      )
  )


@pytest.fixture
def copy_run(aligngan_run, tmp_path):
  """A private copy of the shared AlignGAN workdir, for tests that write."""
  path = str(tmp_path / 'run')
  shutil.copytree(aligngan_run[0], path)
  return path


@pytest.fixture(scope='session')
def tools_workdir(aligngan_run, tmp_path_factory):
  """A copy of the shared AlignGAN workdir for this worker's visualize,
  search and export tests (they write sheets and caches into it)."""
  path = str(tmp_path_factory.mktemp('tools') / 'run')
  shutil.copytree(aligngan_run[0], path)
  return path


@pytest.fixture(scope='session')
def diverged(tfds_data_dir, tmp_path_factory, worker_id):
  """The diverged tiny IDE run, resumed to the end (shared_runs.train_diverged).
  Tests that write use a copy.

  Returns (workdir, the error's message, the resumed run's evaluated
  settings, the step the error named)."""
  return tuple(
      shared_runs.made_once(
          _shared(tmp_path_factory, worker_id),
          'diverged',
          lambda folder: shared_runs.train_diverged(folder, tfds_data_dir),
      )
  )


@pytest.fixture(scope='session')
def ide_config():
  """The tiny IDE config of the step, checkpoint and weights tests."""
  from configs import synthetic

  return synthetic.get_config('ide,tiny')


@pytest.fixture(scope='session')
def ide_models(ide_config):
  """The tiny IDE trainer's networks (ide_steps.NUM_CLASSES classes)."""
  from aligngan_jax import players
  import ide_steps

  return players.create_models(ide_config, ide_steps.NUM_CLASSES, players.FEATURE)
