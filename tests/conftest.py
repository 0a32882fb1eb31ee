"""Test setup: two host devices (so sharding is exercised on CPU), set before
JAX is imported; quiet TensorFlow; what the whole session shares: the tiny
synthetic dataset, the tiny AlignGAN run, the diverged IDE run, the tiny IDE
config and networks."""

import json
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

import filelock  # noqa: E402
import jax  # noqa: E402,F401  (after XLA_FLAGS on purpose)
import pytest  # noqa: E402


def made_once(name, make, tmp_path_factory, worker_id):
  """``make(folder)`` once per test session, however many pytest-xdist
  workers ask: xdist's FileLock recipe. The first worker to take the lock
  makes it in a folder every worker sees and records its JSON result; the
  others wait for the lock and read the result. Without xdist
  (``worker_id == 'master'``) it is made in this session's own folder."""
  if worker_id == 'master':
    return make(tmp_path_factory.mktemp(name))
  shared = tmp_path_factory.getbasetemp().parent
  record = shared / f'{name}.json'
  with filelock.FileLock(str(record) + '.lock'):
    if record.is_file():
      return json.loads(record.read_text())
    folder = shared / name
    folder.mkdir()
    result = make(folder)
    record.write_text(json.dumps(result))
  return result


@pytest.fixture(scope='session')
def tfds_data_dir(tmp_path_factory, worker_id):
  """A TFDS data_dir holding the tiny synthetic_vireid dataset."""
  import tensorflow as tf

  tf.config.set_visible_devices([], 'GPU')

  def build(folder):
    import tensorflow_datasets as tfds

    import datasets  # noqa: F401  (registers the builders)

    tfds.builder('synthetic_vireid/tiny', data_dir=str(folder)).download_and_prepare()
    return str(folder)

  return made_once('tfds', build, tmp_path_factory, worker_id)


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
  (`made_once`). It is the smoke run and the workdir of the resume, eval,
  visualize, search and export tests; tests that write into a workdir work
  on a copy (`copy_run`, `tools_workdir`).

  Returns (workdir, main.py's stderr)."""

  def train(folder):
    workdir = str(folder / 'run')
    run = run_files.run_main(
        *run_files.ALIGNGAN_TINY_FLAGS,
        f'--workdir={workdir}',
        f'--config.data_dir={tfds_data_dir}',
        f'--compilation_cache_dir={os.environ["JAX_COMPILATION_CACHE_DIR"]}',
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return workdir, run.stderr

  return tuple(made_once('aligngan', train, tmp_path_factory, worker_id))


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
  """The tiny IDE run at learning rate 10 (parameters and BatchNorm running
  variances grow ~10x a step while the losses stay finite: the state after
  step 3 passes 1e6), then the same workdir resumed from the step the error
  names with a sane rate, to the end. Tests that write use a copy.

  Returns (workdir, the error's message, the resumed run's evaluated
  settings, the step the error named)."""
  from aligngan_jax import divergence
  from aligngan_jax import train_loop
  import workdirs

  def train(folder):
    workdir = str(folder / 'run')
    with pytest.raises(divergence.DivergenceError) as error:
      train_loop.train_and_evaluate(
          workdirs.ide_config(tfds_data_dir, learning_rate=10.0, max_checkpoints_to_keep=10),
          workdir,
      )
    message = str(error.value)
    step = int(message.split('--config.resume_step=')[1].split()[0])
    result = train_loop.train_and_evaluate(
        workdirs.ide_config(tfds_data_dir, learning_rate=0.01, resume_step=step), workdir
    )
    return workdir, message, sorted(result['results']), step

  return tuple(made_once('diverged', train, tmp_path_factory, worker_id))


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
