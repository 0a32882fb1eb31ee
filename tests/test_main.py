"""main.py as a process: flag parsing and the one-line error paths. The
smoke run is the session's shared AlignGAN run (conftest.py, aligngan_run; tested in test_train_loop.py);
everything else about a run is tested in-process."""

import os

import run_files


def test_unknown_config_key_is_one_clear_line(tmp_path):
  run = run_files.run_main(
      '--config=configs/synthetic.py:tiny', f'--workdir={tmp_path}', '--config.model.deptth=3'
  )
  assert run.returncode != 0
  last = run.stderr.strip().splitlines()[-1]
  assert last.startswith('error: unknown config key') and 'deptth' in last
  assert 'Traceback' not in run.stderr


def test_unwritable_workdir_names_the_path_and_the_cache_can_be_off(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  run = run_files.run_main(
      '--config=configs/synthetic.py:tiny', f'--workdir={blocker}/run', '--nocompilation_cache'
  )
  assert run.returncode != 0
  assert f'--workdir={blocker}/run is not writable' in run.stderr.strip().splitlines()[-1]
  assert 'Persistent compilation cache' not in run.stderr


def _one_error_line(run) -> str:
  """The last stderr line of a failed run: 'error: ...', no traceback."""
  assert run.returncode != 0
  assert 'Traceback' not in run.stderr, run.stderr[-2000:]
  last = run.stderr.strip().splitlines()[-1]
  assert last.startswith('error: '), run.stderr[-2000:]
  return last


def test_user_errors_are_one_line_before_any_work(tmp_path):
  # A wrong-type override and a missing config file: while parsing flags.
  last = _one_error_line(
      run_files.run_main(
          '--config=configs/synthetic.py:tiny',
          f'--workdir={tmp_path}/a',
          '--config.ids_per_batch=abc',
      )
  )
  assert 'ids_per_batch' in last and 'abc' in last
  last = _one_error_line(
      run_files.run_main('--config=configs/nonexistent.py', f'--workdir={tmp_path}/b')
  )
  assert 'configs/nonexistent.py' in last
  broken = tmp_path / 'broken.py'
  broken.write_text('def get_config(:\n')
  last = _one_error_line(run_files.run_main(f'--config={broken}', f'--workdir={tmp_path}/b'))
  assert last == f'error: config file {broken}, line 1: invalid syntax.'
  # A value no run can use: named before anything is read or compiled; the
  # config dump is not printed before it.
  run = run_files.run_main(
      '--config=configs/synthetic.py:tiny', f'--workdir={tmp_path}/c', '--config.image_size=16'
  )
  assert _one_error_line(run).startswith(
      'error: config.image_size=16 is too small for the JointDiscriminator'
  )
  assert 'Config:' not in run.stderr
  # eval on a mistyped workdir: named at once, and not created.
  run = run_files.run_main(
      '--config=configs/synthetic.py:tiny', f'--workdir={tmp_path}/typo', '--config.mode=eval'
  )
  assert 'typo does not exist' in _one_error_line(run)
  assert not (tmp_path / 'typo').exists()
  # --verbose shows the traceback behind the line.
  run = run_files.run_main(
      '--config=configs/synthetic.py:tiny',
      f'--workdir={tmp_path}/c',
      '--config.image_size=16',
      '--verbose',
  )
  assert 'Traceback' in run.stderr and run.returncode != 0


def test_help_exits_0_for_every_entry_point(tmp_path):
  # Fault 15: absl's --help exits 1. Every program runs through cli.run.
  import glob
  import subprocess
  import sys

  for program in (['main.py'], ['-m', 'aligngan_jax.search']):
    run = subprocess.run(
        [sys.executable, *program, '--help'],
        cwd=run_files.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'),
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert '--workdir' in run.stdout + run.stderr
  sources = [
      p
      for pattern in ('*.py', 'aligngan_jax/*.py', 'tools/*.py', 'bench/*.py')
      for p in glob.glob(os.path.join(run_files.ROOT, pattern))
  ]
  with_app_run = [
      os.path.relpath(p, run_files.ROOT)
      for p in sources
      if 'app.run(' in open(p).read() and not p.endswith('cli.py')
  ]
  assert with_app_run == []


def test_a_folder_of_the_users_files_is_not_written_into(tmp_path):
  # Fault 13: a tiny run in a folder holding someone's config.json
  # overwrote it and exited 0.
  (tmp_path / 'config.json').write_text('{"hello": 1}')
  last = _one_error_line(
      run_files.run_main('--config=configs/synthetic.py:tiny', f'--workdir={tmp_path}')
  )
  assert last.startswith(
      f'error: --workdir={tmp_path} holds a config.json that main.py did not write'
  )
  assert sorted(os.listdir(tmp_path)) == ['config.json']
  assert (tmp_path / 'config.json').read_text() == '{"hello": 1}'
