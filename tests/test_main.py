"""main.py as a process: flag parsing and the one-line error paths. The
smoke run is the session's shared AlignGAN run (test_trained_run.py);
everything else about a run is tested in-process."""

import run_files


def test_unknown_or_moved_config_key_is_one_clear_line(tmp_path):
  run = run_files.run_main('--config=configs/synthetic.py:tiny', f'--workdir={tmp_path}',
                           '--config.model.deptth=3')
  assert run.returncode != 0
  last = run.stderr.strip().splitlines()[-1]
  assert last.startswith('error: unknown config key') and 'deptth' in last
  assert 'Traceback' not in run.stderr
  # A key that moved into a trainer's group names its new place.
  run = run_files.run_main('--config=configs/synthetic.py:ide,tiny',
                           f'--workdir={tmp_path}', '--config.num_train_steps=3')
  assert run.returncode != 0 and 'Traceback' not in run.stderr
  assert run.stderr.strip().splitlines()[-1] == (
      'error: config.num_train_steps moved to config.ide.num_train_steps: it is '
      'read by one trainer only (configs/default.py).')


def test_unwritable_workdir_names_the_path_and_the_cache_can_be_off(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  run = run_files.run_main('--config=configs/synthetic.py:tiny',
                           f'--workdir={blocker}/run', '--nocompilation_cache')
  assert run.returncode != 0
  assert f'--workdir={blocker}/run is not writable' in run.stderr.strip().splitlines()[-1]
  assert 'Persistent compilation cache' not in run.stderr
