"""Entry point: python main.py --config=configs/synthetic.py --workdir=runs/demo

Intentionally thin: everything testable lives in `aligngan_jax.train_lib`.
"""

import logging as std_logging
import os
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from aligngan_jax import cli

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and results.')
flags.DEFINE_bool(
    'jax_distributed',
    False,
    'Call jax.distributed.initialize() first (multi-host runs; on '
    'Cloud TPU and SLURM the cluster is detected).',
)
flags.DEFINE_string(
    'coordinator_address',
    None,
    'host:port of process 0 (explicit multi-process runs; implies --jax_distributed).',
)
flags.DEFINE_integer('num_processes', None, 'Processes in an explicit multi-process run.')
flags.DEFINE_integer('process_id', None, 'This process (0..num_processes-1).')
flags.DEFINE_integer(
    'heartbeat_timeout_seconds',
    100,
    'Multi-process runs: a process that stops answering for this '
    'long makes the others fail instead of hang.',
)
flags.DEFINE_bool(
    'compilation_cache',
    True,
    "Keep XLA's compiled steps in --compilation_cache_dir, so a "
    'resumed or repeated run skips recompiling them '
    '(--nocompilation_cache: off).',
)
flags.DEFINE_string(
    'compilation_cache_dir',
    None,
    "JAX's persistent compilation cache (default: "
    '$JAX_COMPILATION_CACHE_DIR, else '
    '$XDG_CACHE_HOME/aligngan_jax/xla, else ~/.cache/aligngan_jax/xla).',
)
flags.DEFINE_bool(
    'verbose',
    False,
    'Show the traceback of a user error (a bad config value, '
    'path or checkpoint) after its one-line message.',
)
config_flags.DEFINE_config_file(
    'config',
    None,
    'Config file, optionally with an argument: configs/sysu.py or configs/sysu.py:tiny.',
    lock_config=True,
)
flags.mark_flags_as_required(['config', 'workdir'])


def _parse_flags(argv):
  """absl parsing, with unknown ``--config.KEY`` overrides reported in one line
  (ml_collections raises a bare AttributeError/KeyError for them)."""
  try:
    return FLAGS(argv)
  except flags.IllegalFlagValueError as e:
    # A wrong-type override (--config.ids_per_batch=abc) or a config file
    # that is missing or fails to load: absl's message, on one line.
    text = str(e)
    if 'Traceback' in text:  # the config file's own error, with its traceback
      lines = [l.strip() for l in text.splitlines() if l.strip()]
      text = f'{text.split(": Error whilst")[0]}: {lines[-1]}'
    sys.exit(f'error: {" ".join(text.split())}')
  except SyntaxError as e:
    sys.exit(f'error: config file {e.filename}, line {e.lineno}: {e.msg}.')
  except (ImportError, NameError, TypeError, ValueError, OSError) as e:
    # Raised by the config file's own code (e.g. an unknown ':arg').
    sys.exit(f'error: --config: {type(e).__name__}: {" ".join(str(e).split())}')
  except (AttributeError, KeyError) as e:
    overrides = [a.split('=')[0] for a in argv[1:] if a.startswith('--config.')]
    sys.exit(
        f'error: unknown config key in {" ".join(overrides) or "--config"}:'
        f' {str(e).strip(chr(34) + chr(39))}. See configs/default.py for '
        'the keys.'
    )


def _quiet_orbax(record) -> bool:
  # Orbax logs every checkpoint phase at INFO; keep its warnings only.
  return '/orbax/' not in record.pathname or record.levelno >= 30  # WARNING


def compilation_cache_dir() -> str:
  """The persistent compilation cache folder --compilation_cache_dir names."""
  if FLAGS.compilation_cache_dir:
    return FLAGS.compilation_cache_dir
  if os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    return os.environ['JAX_COMPILATION_CACHE_DIR']
  cache_home = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
  return os.path.join(cache_home, 'aligngan_jax', 'xla')


def _enable_compilation_cache(jax) -> None:
  """On by default: the three stage steps take minutes to compile at the
  official sizes, and a resume would otherwise pay that again."""
  if not FLAGS.compilation_cache:
    return
  path = os.path.abspath(os.path.expanduser(compilation_cache_dir()))
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    logging.warning(
        'Compilation cache off: cannot create %s (%s); pass '
        '--compilation_cache_dir=DIR or --nocompilation_cache.',
        path,
        e,
    )
    return
  jax.config.update('jax_compilation_cache_dir', path)
  logging.info('Persistent compilation cache: %s', path)


def _load_config():
  """--config, loaded (ml_collections loads the file on first access): a
  missing or broken file, or an override it rejects, is one line."""
  try:
    config = FLAGS.config
    config.keys()  # a file that failed to load raises on first use
    return config
  except (
      OSError,
      SyntaxError,
      ImportError,
      ValueError,
      TypeError,
      AttributeError,
      KeyError,
      flags.Error,
  ) as e:
    name = config_flags.get_config_filename(FLAGS['config'])
    # ml_collections nests the cause in the message's last line.
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    sys.exit(f'error: --config={name} cannot be loaded: {lines[-1] if lines else type(e).__name__}')


def _log_to_workdir(config, workdir, process_index):
  """The log, from here on, also in ``<workdir>/log.txt`` (appended, so a
  resumed run continues it), headed by the full config; the console gets
  one line pointing there instead of the dump."""
  from aligngan_jax import config_checks

  config_checks.ensure_workdir(workdir)
  if process_index > 0:
    return
  path = os.path.join(workdir, 'log.txt')
  with open(path, 'a') as f:
    f.write(f'Command: {" ".join(sys.argv)}\nConfig:\n{config}\n')
  handler = std_logging.FileHandler(path)
  handler.setFormatter(
      std_logging.Formatter('%(asctime)s %(levelname)s %(filename)s:%(lineno)d] %(message)s')
  )
  handler.addFilter(_quiet_orbax)
  logging.get_absl_logger().addHandler(handler)
  overrides = [a for a in sys.argv[1:] if a.startswith('--config')]
  logging.info('Config: %s; the full config and this log are in %s.', ' '.join(overrides), path)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.get_absl_logger().addFilter(_quiet_orbax)
  config = _load_config()
  import jax

  _enable_compilation_cache(jax)
  if FLAGS.jax_distributed or FLAGS.coordinator_address:
    from aligngan_jax import distributed

    distributed.initialize(
        coordinator_address=FLAGS.coordinator_address,
        num_processes=FLAGS.num_processes,
        process_id=FLAGS.process_id,
        heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_seconds,
    )
  from aligngan_jax import config_checks
  from aligngan_jax import errors
  from aligngan_jax import train_lib
  from aligngan_jax import trained

  logging.info(
      'JAX process %d / %d; local devices: %s; global device count %d.',
      jax.process_index(),
      jax.process_count(),
      jax.local_devices(),
      jax.device_count(),
  )
  if jax.process_index() > 0:
    logging.set_verbosity(logging.WARNING)  # process 0 reports for the run
  # Every fault of the user's input (config, data, checkpoint, weights, a
  # diverged run) is an errors.UserError: one line.
  user_errors = (errors.UserError, NotImplementedError)
  try:
    # Every key the run reads and the workdir, before any data is read or
    # step compiled, and before TensorFlow loads (5 s): errors in seconds.
    config_checks.validate_config(config, num_devices=jax.device_count())
    if config.mode == 'train':
      _log_to_workdir(config, FLAGS.workdir, jax.process_index())
    elif not config.init_from:
      trained.require_trained_workdir(FLAGS.workdir, config.resume_step)
    # Hide GPUs from TensorFlow before any TF op: otherwise TF may reserve
    # accelerator memory that JAX needs (tf.data only needs the CPU).
    trained.hide_gpus_from_tensorflow()
    import datasets  # noqa: F401

    if config.mode == 'train':
      train_lib.train_and_evaluate(config, FLAGS.workdir)
    elif config.mode == 'eval':
      train_lib.evaluate_checkpoint(config, FLAGS.workdir)
    else:
      from aligngan_jax import sheets

      for name, path in sheets.write_sheets(config, FLAGS.workdir).items():
        logging.info('Wrote the %s sheet: %s', name, path)
  except user_errors as e:
    if FLAGS.verbose:
      traceback.print_exc()
    sys.exit(f'error: {e}')
  except jax.errors.JaxRuntimeError as e:
    if jax.process_count() == 1:
      raise
    # A collective failed: another process has died or hangs. Say so in one
    # line and leave at once (JAX's exit handler would wait on the dead peer).
    first = str(e).strip().splitlines()[0]
    sys.stderr.write(
        f'error: process {jax.process_index()} of {jax.process_count()}: a '
        f'collective with the other processes failed ({first}). Another '
        'process has probably died. Restart all processes with the same '
        'command: training resumes from the newest checkpoint in '
        f'{FLAGS.workdir}/checkpoints.\n'
    )
    sys.stderr.flush()
    os._exit(1)


if __name__ == '__main__':
  cli.run(main, flags_parser=_parse_flags)
