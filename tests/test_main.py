"""main.py as a process: the smoke run (the session's shared AlignGAN run,
see conftest.py), flag parsing and the one-line error paths. Everything
else about a run is tested in-process."""

import logging
import os

from aligngan_jax import train_lib
from aligngan_jax import trained
import run_files


def test_smoke_run_trains_the_demo_aligngan_with_the_compilation_cache(aligngan_run):
  # The demo's default trainer is the full model: three stages, translation
  # grids, an evaluation, every checkpoint (checkpoint_every_steps=1).
  workdir, stderr = aligngan_run
  for stage in (1, 2, 3):
    assert f'Stage {stage}:' in stderr
  assert 'step 6/6' in stderr and 'Traceback' not in stderr
  assert sorted(os.listdir(os.path.join(workdir, 'images'))) == [
      'translation_000002.png', 'translation_000004.png', 'translation_000006.png']
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints')), key=int) == [
      str(i) for i in range(1, 7)]
  assert os.path.exists(os.path.join(workdir, 'config.json'))
  # The persistent compilation cache is on, in the folder the flag names.
  cache = os.environ['JAX_COMPILATION_CACHE_DIR']
  assert f'Persistent compilation cache: {cache}' in stderr and os.listdir(cache)
  result = run_files.latest_eval(workdir)
  assert result['step'] == 6 and result['protocol'] == 'sysu'
  scored = [r for r in result['results'].values() if 'skipped' not in r]
  assert scored and all(len(r['cmc']) == 20 and 0 <= r['mAP']['mean'] <= 1
                        for r in scored)


def test_eval_mode_reads_the_newest_checkpoint(copy_run, caplog):
  config = trained.load_config(copy_run)
  config.mode = 'eval'
  with caplog.at_level(logging.INFO):
    train_lib.evaluate_checkpoint(config, copy_run)
  # The protocol table, naming the variant.
  for phrase in ('SYSU-MM01', 'all-search single-shot', 'indoor-search multi-shot',
                 'identity-level CMC', "AGW's random.seed(trial)"):
    assert phrase in caplog.text
  assert run_files.latest_eval(copy_run)['step'] == 6


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
