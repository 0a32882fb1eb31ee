"""Export a trained model's features of a dataset split, for analysis elsewhere.

  python -m aligngan_jax.export --workdir=runs/demo --split=test --out=features.npz

Writes ``features`` [n, D] (unit-norm test features, as the evaluation uses
them), ``person_id``, ``label``, ``camera``, ``modality`` (0 RGB, 1 IR),
``index``, ``path`` and ``step`` (the checkpoint's). The dataset is the
one the run was trained on (its saved config), read from the TFDS
``data_dir`` (``--data_dir``/``--manual_dir`` override the saved ones).

Every argument is checked before the dataset is read and the model is
restored, so a mistake is one ``error:`` line within seconds, not after
the extraction: the workdir (config.json and a checkpoint), ``--split``,
``--manual_dir`` and ``--out``. A missing folder of ``--out`` is created
then, as ``mkdir -p`` would (as search does for its sheet); one that
cannot be created or written is an error then. The dataset is read before
the model is restored, so that its errors too come before the compile. The
file is written whole or not at all (through a temporary file renamed
into place), so an interrupted export never leaves a truncated one.
"""

import os
import sys

from absl import app
from absl import flags
import numpy as np

from aligngan_jax import cli

FLAGS = flags.FLAGS


def export(
    workdir: str, split: str, out: str, *, data_dir=None, manual_dir=None, step: int = -1
) -> str:
  """Writes the features of ``split`` by checkpoint ``step`` (-1: the
  newest) to ``out`` (.npz); returns the path. Features holding NaN or inf
  are a one-line error naming the checkpoint: nothing is written."""
  from aligngan_jax import config_checks
  from aligngan_jax import search
  from aligngan_jax import trained
  # The checks: seconds, before anything is read, built or compiled.
  trained.require_trained_workdir(workdir, step, '--step')
  config = trained.load_config(workdir)
  if split not in ('train', 'test'):
    raise config_checks.ConfigError(f'--split={split!r} is not one of train, test.')
  if manual_dir and not os.path.isdir(manual_dir):
    raise config_checks.ConfigError(f'--manual_dir={manual_dir} is not a folder.')
  if data_dir and os.path.isfile(data_dir):
    raise config_checks.ConfigError(f'--data_dir={data_dir} is a file, not a folder.')
  for key, value in (('data_dir', data_dir), ('manual_dir', manual_dir)):
    if value:
      config[key] = value
  # A folder given as --out is refused as such, not written as 'runs.npz'
  # beside it or 'runs/.npz' inside it.
  path = out if out.endswith('.npz') or search.names_a_folder(out) else out + '.npz'
  if problem := search.prepare_output(path):
    raise config_checks.ConfigError(f'--out={out}: {problem}.')
  # TensorFlow (5 s to import) only now, with the GPUs hidden from it.
  trained.hide_gpus_from_tensorflow()
  from aligngan_jax import input_pipeline
  import datasets  # noqa: F401

  records = dict(zip(('train', 'test'), input_pipeline.load_data(config)))[split]
  opened = trained.open_workdir(workdir, config, step=step)
  feats = opened.features(records)
  search.write_whole(
      path,
      lambda f: np.savez(
          f,
          features=feats,
          person_id=records.person_id,
          label=records.label,
          camera=records.camera,
          modality=records.modality,
          index=records.index,
          path=records.path,
          step=opened.step,
      ),
  )
  return path


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from aligngan_jax import errors

  try:
    path = export(
        FLAGS.workdir,
        FLAGS.split,
        FLAGS.out,
        data_dir=FLAGS.data_dir,
        manual_dir=FLAGS.manual_dir,
        step=FLAGS.step,
    )
  except (errors.UserError, NotImplementedError) as e:
    sys.exit('error: ' + ' '.join(str(e).splitlines()))  # One line, always.
  print(f'Wrote {path}')


def define_flags():
  """The command-line flags (defined only when run as a program, so that
  importing this module defines no global flags)."""
  flags.DEFINE_string('workdir', None, 'A trained workdir (main.py --workdir).')
  flags.DEFINE_enum('split', 'test', ['test', 'train'], 'Dataset split.')
  flags.DEFINE_string('out', None, 'Output .npz file.')
  flags.DEFINE_string('data_dir', None, "TFDS data_dir (default: the run's).")
  flags.DEFINE_string('manual_dir', None, "Manual download folder (default: the run's).")
  flags.DEFINE_integer('step', -1, 'Checkpoint step to export (-1: the newest).')


if __name__ == '__main__':
  define_flags()
  flags.mark_flags_as_required(['workdir', 'out'])
  cli.run(main)
