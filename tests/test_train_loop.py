"""The one training loop: its cadence, the IDE trainer and the shared tiny
AlignGAN run (main.py) trained through it, and their golden numbers."""

import os

from configs import synthetic
import golden
import run_files


def test_ide_trainer_runs_in_the_one_loop_and_keeps_its_golden_numbers(
    tfds_data_dir, tmp_path, caplog
):
  """The IDE baseline through train_lib, as main.py runs it: checkpoints,
  evaluation, the shared tag scheme, then config.mode='eval'."""
  import logging

  from aligngan_jax import train_lib
  import run_files

  workdir = str(tmp_path / 'run')
  config = run_files.override(synthetic.get_config('ide,tiny'), run_files.IDE_TINY_OVERRIDES)
  config.data_dir = tfds_data_dir
  with caplog.at_level(logging.INFO):
    train_lib.train_and_evaluate(config, workdir)
  # What it learned is what it learned when tests/golden/ide_tiny.json was
  # written (tests/golden.py: losses at every step, final metrics).
  golden.check('ide_tiny', workdir)
  assert 'ide step 2/2' in caplog.text
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['1', '2']
  result = run_files.latest_eval(workdir)
  assert result['step'] == 2 and result['stage'] == 1 and result['protocol'] == 'sysu'
  tags = run_files.tensorboard_tags(workdir)
  assert {
      'train/feature/loss',
      'train/feature/accuracy_ir',
      'train/stage',
      'lr/encoder',
      'lr/embedder',
  } <= tags
  assert not any(t.startswith('lr/G') or t == 'translation' for t in tags)
  # Resuming (also with a longer schedule) is tested in test_multihost.py,
  # where the same IDE run resumes in-process from other topologies.
  config.mode = 'eval'
  caplog.clear()
  with caplog.at_level(logging.INFO):
    train_lib.evaluate_checkpoint(config, workdir)
  assert 'Evaluation at step 2' in caplog.text
  assert run_files.latest_eval(workdir)['step'] == 2


def test_cadence_says_which_periodic_actions_are_due():
  from aligngan_jax import train_loop

  cadence = train_loop.Cadence(log=2, checkpoint=3, image=4, eval=5, eval_at_stage_end=True)
  due = lambda done, stage_end=False, last=False: set(
      cadence.due(done, stage_end=stage_end, last=last)
  )
  assert due(1) == set()
  assert due(2) == {'log'}
  assert due(3) == {'log', 'checkpoint'}  # a save always follows a checked log
  assert due(4) == {'log', 'image'}
  assert due(5) == {'eval'}
  assert due(12) == {'log', 'checkpoint', 'image'}
  everything = {'log', 'image', 'checkpoint', 'eval'}
  assert due(7, stage_end=True) == due(7, last=True) == everything
  quiet = train_loop.Cadence(log=2, checkpoint=3, image=4, eval=5, eval_at_stage_end=False)
  assert set(quiet.due(7, stage_end=True, last=False)) == everything - {'eval'}
  assert set(quiet.due(7, stage_end=False, last=True)) == everything


def test_smoke_run_trains_the_demo_aligngan_with_the_compilation_cache(aligngan_run):
  # The demo's default trainer is the full model: three stages, translation
  # grids, an evaluation, every checkpoint (checkpoint_every_steps=1).
  workdir, stderr = aligngan_run
  for stage in (1, 2, 3):
    assert f'Stage {stage}:' in stderr
  assert 'step 6/6' in stderr and 'Traceback' not in stderr
  assert sorted(os.listdir(os.path.join(workdir, 'images'))) == [
      'translation_000002.png',
      'translation_000004.png',
      'translation_000006.png',
  ]
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints')), key=int) == [
      str(i) for i in range(1, 7)
  ]
  assert os.path.exists(os.path.join(workdir, 'config.json'))
  # The persistent compilation cache is on, in the folder the flag names.
  cache = os.environ['JAX_COMPILATION_CACHE_DIR']
  assert f'Persistent compilation cache: {cache}' in stderr and os.listdir(cache)
  result = run_files.latest_eval(workdir)
  assert result['step'] == 6 and result['protocol'] == 'sysu'
  scored = [r for r in result['results'].values() if 'skipped' not in r]
  assert scored and all(len(r['cmc']) == 20 and 0 <= r['mAP']['mean'] <= 1 for r in scored)


def test_the_shared_run_computes_its_golden_numbers(aligngan_run):
  # Losses at all six iterations and the final metrics, against the numbers
  # recorded in tests/golden/aligngan_tiny.json (tests/golden.py): a change that
  # moves what AlignGAN learns must update them and say why.
  golden.check('aligngan_tiny', aligngan_run[0])


def test_golden_differences_flag_moved_missing_and_extra_numbers():
  want = {
      'losses': {'train/G/loss': {'1': 2.0, '2': 1.5}},
      'metrics': {'sysu all single': {'rank1': 0.25}},
  }
  # Within the tolerance: float noise of another machine (tests/golden.py).
  same = {
      'losses': {'train/G/loss': {'1': 2.0 * (1 + 1e-4), '2': 1.5}},
      'metrics': {'sysu all single': {'rank1': 0.25 + 0.01}},
  }
  assert golden.differences(want, same) == []
  moved = {
      'losses': {'train/G/loss': {'1': 2.0 * (1 + 1e-2), '3': 1.0}},
      'metrics': {'sysu all single': {'rank1': 0.25 + 1 / 6}},
  }
  found = golden.differences(want, moved)
  assert len(found) == 4, found
  assert found[0].startswith('losses train/G/loss 1: golden 2.0, now 2.02')
  assert 'train/G/loss 2: only in the golden file' in found[1]
  assert 'train/G/loss 3: only in the fresh run' in found[2]
  assert found[3].startswith('metrics sysu all single rank1:')
