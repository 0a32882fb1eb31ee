"""What the whole test session shares, made once for every pytest-xdist
worker: the tiny synthetic dataset, the tiny AlignGAN run (main.py) and the
diverged tiny IDE run (the fixtures in conftest.py).

`made_once` is pytest-xdist's FileLock recipe: the first worker to take a
run's lock makes it in the folder all workers share and records its JSON
result; the others wait for the lock and read the record."""

import json
import os
import pathlib

import filelock

import run_files


def made_once(shared: pathlib.Path, name: str, make):
  """``make(folder)`` once for everyone sharing ``shared``; its JSON result."""
  record = shared / f'{name}.json'
  with filelock.FileLock(str(record) + '.lock'):
    if record.is_file():
      return json.loads(record.read_text())
    folder = shared / name
    folder.mkdir(exist_ok=True)
    result = make(folder)
    record.write_text(json.dumps(result))
  return result


def build_dataset(folder: pathlib.Path) -> str:
  """A TFDS data_dir holding synthetic_vireid/tiny."""
  import tensorflow as tf

  tf.config.set_visible_devices([], 'GPU')
  import tensorflow_datasets as tfds

  import datasets  # noqa: F401  (registers the builders)

  tfds.builder('synthetic_vireid/tiny', data_dir=str(folder)).download_and_prepare()
  return str(folder)


def train_aligngan(folder: pathlib.Path, data_dir: str) -> tuple[str, str]:
  """main.py on the demo config at ``:tiny`` (64 px: the joint
  discriminator's last maps are then 2x2), 2 + 2 + 2 iterations, every
  checkpoint kept. (workdir, main.py's stderr)."""
  workdir = str(folder / 'run')
  run = run_files.run_main(
      *run_files.ALIGNGAN_TINY_FLAGS,
      f'--workdir={workdir}',
      f'--config.data_dir={data_dir}',
      f'--compilation_cache_dir={os.environ["JAX_COMPILATION_CACHE_DIR"]}',
  )
  if run.returncode:
    raise RuntimeError(f'the shared AlignGAN run failed:\n{run.stderr[-3000:]}')
  return workdir, run.stderr


def train_diverged(folder: pathlib.Path, data_dir: str) -> tuple[str, str, list[str], int]:
  """The tiny IDE run at learning rate 10 (parameters and BatchNorm running
  variances grow ~10x a step while the losses stay finite: the state after
  step 3 passes 1e6), then the same workdir resumed from the step the error
  names with a sane rate, to the end. (workdir, the error's message, the
  resumed run's evaluated settings, the step the error named)."""
  from aligngan_jax import divergence
  from aligngan_jax import train_loop
  import workdirs

  workdir = str(folder / 'run')
  try:
    train_loop.train_and_evaluate(
        workdirs.ide_config(data_dir, learning_rate=10.0, max_checkpoints_to_keep=10), workdir
    )
  except divergence.DivergenceError as error:
    message = str(error)
  else:
    raise RuntimeError('the run at learning rate 10 did not diverge')
  step = int(message.split('--config.resume_step=')[1].split()[0])
  result = train_loop.train_and_evaluate(
      workdirs.ide_config(data_dir, learning_rate=0.01, resume_step=step), workdir
  )
  return workdir, message, sorted(result['results']), step
