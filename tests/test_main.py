"""main.py end to end in a temporary workdir, and its command-line errors."""

import json
import os
import subprocess
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args, timeout=600):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, 'main.py', *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_trains_two_steps_evaluates_and_resumes(tfds_data_dir, tmp_path):
  workdir = str(tmp_path / 'run')
  common = ['--config=configs/synthetic.py:ide,tiny', f'--workdir={workdir}',
            f'--config.data_dir={tfds_data_dir}', '--config.checkpoint_every_steps=1']
  cache = str(tmp_path / 'xla')
  first = _main(*common, '--config.num_train_steps=2', f'--compilation_cache_dir={cache}')
  assert first.returncode == 0, first.stderr[-3000:]
  assert 'step 2/2' in first.stderr
  # The persistent compilation cache is on by default, in the named folder.
  assert f'Persistent compilation cache: {cache}' in first.stderr
  assert os.listdir(cache)
  with open(os.path.join(workdir, 'eval', 'latest.json')) as f:
    result = json.load(f)
  assert result['step'] == 2 and result['protocol'] == 'sysu'
  scored = [r for r in result['results'].values() if 'skipped' not in r]
  assert scored and all(len(r['cmc']) == 20 and 0 <= r['mAP']['mean'] <= 1
                        for r in scored)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['1', '2']
  assert os.path.exists(os.path.join(workdir, 'config.json'))
  # Restarting with a longer schedule resumes from the step-2 checkpoint.
  second = _main(*common, '--config.num_train_steps=3')
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'Resumed from' in second.stderr and 'at step 2' in second.stderr
  assert 'step 3/3' in second.stderr and 'step 1/3' not in second.stderr
  # Evaluation mode reads the newest checkpoint.
  third = _main(*common, '--config.num_train_steps=3', '--config.mode=eval',
                '--nocompilation_cache')
  assert third.returncode == 0, third.stderr[-3000:]
  assert 'Persistent compilation cache' not in third.stderr
  # The protocol table, naming the variant.
  for phrase in ('SYSU-MM01', 'all-search single-shot', 'indoor-search multi-shot',
                 'identity-level CMC', "AGW's random.seed(trial)"):
    assert phrase in third.stderr
  with open(os.path.join(workdir, 'eval', 'latest.json')) as f:
    assert json.load(f)['step'] == 3


def test_unknown_config_key_is_one_clear_line(tmp_path):
  run = _main('--config=configs/synthetic.py:tiny', f'--workdir={tmp_path}',
              '--config.model.deptth=3')
  assert run.returncode != 0
  last = run.stderr.strip().splitlines()[-1]
  assert last.startswith('error: unknown config key') and 'deptth' in last
  assert 'Traceback' not in run.stderr


def test_unwritable_workdir_names_the_path(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('')
  run = _main('--config=configs/synthetic.py:tiny', f'--workdir={blocker}/run')
  assert run.returncode != 0
  assert f'--workdir={blocker}/run is not writable' in run.stderr.strip().splitlines()[-1]


def test_demo_config_trains_aligngan_and_evaluates_its_checkpoint(tfds_data_dir, tmp_path):
  # The demo's default trainer is the full model: three stages, translation
  # grids, then config.mode=eval on the trained workdir.
  workdir = str(tmp_path / 'run')
  common = ['--config=configs/synthetic.py:tiny', f'--workdir={workdir}',
            f'--config.data_dir={tfds_data_dir}', '--config.image_size=64']
  train = _main(*common)
  assert train.returncode == 0, train.stderr[-3000:]
  for stage in (1, 2, 3):
    assert f'Stage {stage}:' in train.stderr
  assert 'step 6/6' in train.stderr
  assert sorted(os.listdir(os.path.join(workdir, 'images'))) == [
      'translation_000002.png', 'translation_000004.png', 'translation_000006.png']
  evaluate = _main(*common, '--config.mode=eval')
  assert evaluate.returncode == 0, evaluate.stderr[-3000:]
  assert 'all-search single-shot' in evaluate.stderr
  with open(os.path.join(workdir, 'eval', 'latest.json')) as f:
    assert json.load(f)['step'] == 6
  pictures = _main(*common, '--config.mode=visualize')
  assert pictures.returncode == 0, pictures.stderr[-3000:]
  assert sorted(os.listdir(os.path.join(workdir, 'visualize'))) == [
      'cmc.png', 'retrieval_sysu_all_single.png', 'translation.png']
