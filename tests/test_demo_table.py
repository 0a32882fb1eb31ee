"""tools/demo_table.py: the demo tables it writes, merges and checks (the
runs themselves are replaced by fixed measurements; training them is the
script's job, not the suite's)."""

import pytest

from tools import demo_table


def _files(tmp_path):
  readme, doc = tmp_path / 'README.md', tmp_path / 'demo.md'
  readme.write_text(f'# x\n{demo_table.MEAN_BLOCK[0]}\nold\n{demo_table.MEAN_BLOCK[1]}\nafter\n')
  doc.write_text(f'intro\n{demo_table.SEED_BLOCK[0]}\n{demo_table.SEED_BLOCK[1]}\nend\n')
  return str(readme), str(doc)


def _fake_runs(monkeypatch, results):
  def run_one(model, seed, runs, data_dir, extra):
    del runs, data_dir, extra
    return {'rank1': results[model, seed][0], 'mAP': results[model, seed][1], 'minutes': 2.0}

  monkeypatch.setattr(demo_table, 'run_one', run_one)


def test_writes_seed_rows_and_means_merges_and_checks(tmp_path, monkeypatch):
  readme, doc = _files(tmp_path)
  _fake_runs(
      monkeypatch,
      {('aligngan', 0): (10.0, 20.0), ('aligngan', 1): (14.0, 22.0), ('agw', 0): (30.04, 35.0)},
  )
  common = ['--runs', str(tmp_path / 'runs'), '--readme', readme, '--doc', doc]
  assert demo_table.main(['--models=aligngan', '--seeds=0,1', '--no-others', *common]) == 0
  assert demo_table.main(['--models=agw', '--seeds=0', *common]) == 0
  rows, stamps = demo_table.read_seed_rows(doc)
  # Both models' rows are there (the second run kept the first model's).
  assert rows == {
      ('AlignGAN', 0): {'rank1': 10.0, 'mAP': 20.0, 'minutes': 2.0},
      ('AlignGAN', 1): {'rank1': 14.0, 'mAP': 22.0, 'minutes': 2.0},
      ('AGW', 0): {'rank1': 30.0, 'mAP': 35.0, 'minutes': 2.0},
  }
  assert set(stamps) == {'AlignGAN', 'AGW'} and 'commit ' in stamps['AGW']
  text = open(readme).read()
  # Mean 12.0, sample sd sqrt(8) = 2.83; one seed: no sd.
  assert (
      '| AlignGAN | `python main.py --config=configs/synthetic.py --workdir=runs/demo` | 0,1 '
      '| 12.0 ± 2.8 | 21.0 ± 1.4 |'
  ) in text
  assert (
      '| AGW | `python main.py --config=configs/synthetic.py:agw --workdir=runs/agw` | 0 | '
      '30.0 | 35.0 |'
  ) in text
  assert demo_table.seeds_text([0, 1, 2, 3, 4]) == '0-4'
  assert demo_table.seeds_text([0, 2]) == '0,2'
  assert 'old' not in text and text.startswith('# x\n') and text.endswith('after\n')
  assert 'intro' in open(doc).read() and open(doc).read().endswith('end\n')

  # --check: the same numbers reproduce; a moved seed with an agreeing mean
  # passes; a moved mean fails.
  def check(name):
    runs = str(tmp_path / name)
    return demo_table.main(
        ['--models=aligngan', '--seeds=0,1', '--check', '--runs', runs, *common[2:]]
    )

  assert check('again') == 0
  _fake_runs(monkeypatch, {('aligngan', 0): (11.0, 20.0), ('aligngan', 1): (13.0, 22.0)})
  assert check('moved') == 0
  _fake_runs(monkeypatch, {('aligngan', 0): (20.0, 20.0), ('aligngan', 1): (24.0, 22.0)})
  assert check('far') == 1


def test_a_file_without_its_block_is_refused_before_any_run(tmp_path, monkeypatch):
  readme, doc = _files(tmp_path)
  open(doc, 'w').write('no block\n')
  monkeypatch.setattr(demo_table, 'run_one', lambda *a: pytest.fail('ran'))
  with pytest.raises(SystemExit, match='lacks the lines <!-- demo-seeds:begin'):
    demo_table.main(['--readme', readme, '--doc', doc, '--runs', str(tmp_path / 'r')])


def test_the_other_blocks_come_from_the_runs_just_made(tmp_path, monkeypatch):
  """Stage table, official-norm evaluations, ablation, trunk alone and the
  pixel baseline, each from its run (fakes stand in for main.py)."""
  import json
  import os
  import subprocess

  def stages(workdir, rank1):
    os.makedirs(os.path.join(workdir, 'eval'), exist_ok=True)
    row = {'rank1': rank1, 'mAP': rank1 / 2, 'chance_rank1': 0.025}
    diag = {
        'fake_ir_to_ir': row,
        'ir_to_ir': row,
        'cosine': {'same_mean': 0.5, 'different_mean': 0.25, 'gap': 0.25},
    }
    with open(os.path.join(workdir, 'eval', 'stages.json'), 'w') as f:
      json.dump([{'stage': 0, 'step': 0, 'protocol': row, 'diagnostics': diag}], f)

  def main_py(flags, log_path):
    del log_path
    workdir = next(f.split('=', 1)[1] for f in flags if f.startswith('--workdir='))
    seed = int(next(f.split('=')[1] for f in flags if f.startswith('--config.seed=')))
    result = {'rank1': {'mean': 0.1 + seed / 100}, 'mAP': {'mean': 0.2}}
    with open(os.path.join(workdir, 'eval', 'latest.json'), 'w') as f:
      json.dump({'results': {demo_table.SETTING: result}}, f)

  def run_one(model, seed, runs, data_dir, extra, name=''):
    assert (model, seed, name) == ('aligngan', 0, 'aligngan_no_pixel_alignment_seed0')
    assert extra == ['--config.gan.pixel_alignment=False']
    stages(str(tmp_path / name), 0.3)
    return {'rank1': 25.0, 'mAP': 33.0, 'workdir': str(tmp_path / name)}

  monkeypatch.setattr(demo_table, '_main_py', main_py)
  monkeypatch.setattr(demo_table, 'run_one', run_one)
  monkeypatch.setattr(
      subprocess,
      'run',
      lambda *a, **k: subprocess.CompletedProcess(
          a, 0, stdout='Raw-pixel table\nIR -> RGB 1.81\n(2.0 s)\n'
      ),
  )
  runs = {}
  for seed in (0, 1):
    runs[seed] = {'workdir': str(tmp_path / f'aligngan_seed{seed}')}
    stages(runs[seed]['workdir'], 0.2)
  blocks = demo_table.other_blocks(runs, str(tmp_path), None, [], 'commit abc')
  assert '20.0/10.0 (2.5)' in blocks[demo_table.STAGES_BLOCK]  # stage 0 of seed 0
  other = blocks[demo_table.OTHER_BLOCK]
  # Official norm: 10.0 and 11.0 -> mean 10.5, sd 0.7; mAP 20.0 twice.
  assert '| 10.0 / 11.0 (mean 10.5 ± 0.7) | 20.0 / 20.0 (mean 20.0 ± 0.0) |' in other
  assert '| 25.0 | 33.0 |' in other and '| - | 30.0 | 15.0 |' in other  # ablation; trunk
  pixels = blocks[demo_table.PIXELS_BLOCK]
  assert 'IR -> RGB 1.81' in pixels and '(2.0 s)' not in pixels
