"""Where does the pixel alignment help? The demo recipe swept in two worlds
(issue 26; results in docs/decisions.md, "The pixel alignment, measured").

  python bench/pixel_sweep.py --runs=/tmp/sweep                       # every point, seed 0
  python bench/pixel_sweep.py --runs=/tmp/sweep --points=demo,ablation --seeds=0,1,2

Each point trains `python main.py --config=configs/synthetic.py` with the
point's overrides in ``<runs>/<point>_seed<N>`` (a finished workdir is
read, not retrained), then evaluates the final checkpoint again with the
official test-time InstanceNorm (``gan.test_instance_norm='running'``; the
demo trains with 'instance' at test time). The table gives, per point and
seed, at the end of training:

* (e): the generator's L1 against the true infrared twins (beside the
  luminance and the linear-map references; lower is better) and SSIM;
* fake IR -> IR Rank-1 (diagnostic (b));
* the protocol's Rank-1 (IR queries, all-search single-shot), with
  per-image ('instance') and running ('running') test-time InstanceNorm.

An ``ablation`` point trains with ``gan.pixel_alignment=False``: its
protocol Rank-1 is the number AlignGAN must reach. Every other point also
runs bench/translation_curve.py: the same trained feature module with the
RGB gallery translated by G moved part of the way to the true infrared
twins, and by the twins themselves; the table gives the Rank-1 of the
true-IR gallery and the L1 at which the curve reaches the ablation's Rank-1
of the same seed (when the ablation point ran). About 4-5 minutes per
demo-size point on a 2-core CPU; the wider generators take longer.
"""

import argparse
import json
import os
import sys

import common  # bench/common.py: puts the repository root on sys.path

ROOT = common.ROOT
LEARNABLE, INDEPENDENT = 'synthetic_vireid/demo_learnable', 'synthetic_vireid/demo'


def _long(stage2: int, stage3: int) -> list[str]:
  """Longer stages 2 and 3; the x0.1 decay stays halfway through stage 3."""
  return [
      f'--config.gan.stage_iterations=(150,{stage2},{stage3})',
      f'--config.gan.lr_milestones=({150 + stage2 + stage3 // 2},)',
  ]


# Point -> overrides of configs/synthetic.py.
POINTS = {
    'demo': [f'--config.dataset={LEARNABLE}'],
    'ablation': [f'--config.dataset={LEARNABLE}', '--config.gan.pixel_alignment=False'],
    'g16r2': [
        f'--config.dataset={LEARNABLE}',
        '--config.gan.conv_dim=16',
        '--config.gan.num_residual=2',
    ],
    'long': [f'--config.dataset={LEARNABLE}', *_long(600, 900)],
    # The pixel module's identity losses on the fake IR x10 (official 0.1).
    'pixel_id1': [
        f'--config.dataset={LEARNABLE}',
        '--config.gan.lambda_pixel_cls=1.0',
        '--config.gan.lambda_pixel_tri=1.0',
    ],
    'g16r2_long': [
        f'--config.dataset={LEARNABLE}',
        '--config.gan.conv_dim=16',
        '--config.gan.num_residual=2',
        *_long(600, 900),
    ],
    # The same with pixel_alignment=False: "its own ablation" of each point.
    'ablation_g16r2': [
        f'--config.dataset={LEARNABLE}',
        '--config.gan.conv_dim=16',
        '--config.gan.num_residual=2',
        '--config.gan.pixel_alignment=False',
    ],
    'ablation_long': [
        f'--config.dataset={LEARNABLE}',
        *_long(600, 900),
        '--config.gan.pixel_alignment=False',
    ],
    'ablation_g16r2_long': [
        f'--config.dataset={LEARNABLE}',
        '--config.gan.conv_dim=16',
        '--config.gan.num_residual=2',
        *_long(600, 900),
        '--config.gan.pixel_alignment=False',
    ],
    'g16r2_pixel_id1': [
        f'--config.dataset={LEARNABLE}',
        '--config.gan.conv_dim=16',
        '--config.gan.num_residual=2',
        '--config.gan.lambda_pixel_cls=1.0',
        '--config.gan.lambda_pixel_tri=1.0',
    ],
    'independent': [f'--config.dataset={INDEPENDENT}'],
    'independent_g16r2': [
        f'--config.dataset={INDEPENDENT}',
        '--config.gan.conv_dim=16',
        '--config.gan.num_residual=2',
    ],
    'independent_ablation': [
        f'--config.dataset={INDEPENDENT}',
        '--config.gan.pixel_alignment=False',
    ],
}
SETTING = 'sysu all single'


_run = common.run_logged


def run_point(point: str, seed: int, runs: str, data_dir: str | None) -> dict:
  """Trains (unless finished) and re-evaluates one point; its numbers."""
  workdir = os.path.join(runs, f'{point}_seed{seed}')
  base = [
      sys.executable,
      'main.py',
      '--config=configs/synthetic.py',
      f'--workdir={workdir}',
      f'--config.seed={seed}',
      *POINTS[point],
  ]
  if data_dir:
    base.append(f'--config.data_dir={data_dir}')
  stages_json = os.path.join(workdir, 'eval', 'stages.json')
  running_json = os.path.join(workdir, 'eval', 'running.json')
  os.makedirs(workdir, exist_ok=True)
  log = os.path.join(workdir, 'sweep.log')
  if not os.path.isfile(running_json):
    _run(base, log)
    _run([*base, '--config.mode=eval', '--config.gan.test_instance_norm=running'], log)
    with open(os.path.join(workdir, 'eval', 'latest.json')) as f:
      latest = json.load(f)
    with open(running_json, 'w') as f:
      json.dump(latest, f, indent=2)
  curve_json = os.path.join(workdir, 'eval', 'translation_curve.json')
  if not POINTS[point][-1].endswith('pixel_alignment=False') and not os.path.isfile(curve_json):
    _run(
        [
            sys.executable,
            'bench/translation_curve.py',
            f'--workdir={workdir}',
            *([f'--data_dir={data_dir}'] if data_dir else []),
        ],
        log,
    )
  curve = None
  if os.path.isfile(curve_json):
    with open(curve_json) as f:
      curve = json.load(f)['rows']
  with open(stages_json) as f:
    last = json.load(f)[-1]
  with open(running_json) as f:
    running = json.load(f)
  d, e = last['diagnostics'], last['diagnostics'].get('translation', {})
  return {
      'point': point,
      'seed': seed,
      'rank1': 100 * last['protocol']['rank1'],
      'mAP': 100 * last['protocol']['mAP'],
      'rank1_running': 100 * running['results'][SETTING]['rank1']['mean'],
      'fake_ir_to_ir': 100 * d['fake_ir_to_ir']['rank1'],
      'fake_ir_to_ir_running': 100 * running['diagnostics']['fake_ir_to_ir']['rank1'],
      'ir_to_ir': 100 * d['ir_to_ir']['rank1'],
      **{
          k: e.get(k, float('nan'))
          for k in ('l1', 'luminance_l1', 'linear_l1', 'ssim', 'luminance_ssim', 'linear_ssim')
      },
      'l1_running': running['diagnostics'].get('translation', {}).get('l1', float('nan')),
      'curve': curve,
  }


def ablation_of(point: str) -> str:
  """The point's own ablation: the same overrides with pixel_alignment=False."""
  if point.startswith('independent'):
    return 'independent_ablation' + point[len('independent') :]
  return 'ablation' if point == 'demo' else f'ablation_{point}'


def add_crossings(rows: list[dict]) -> None:
  """Each row's true-IR gallery Rank-1 and the L1 at which its curve
  reaches the Rank-1 of its own ablation (same seed), where that ran."""
  from translation_curve import BLENDS  # bench/, beside this file
  from translation_curve import crossing_l1  # bench/, beside this file

  rank1 = {(r['point'], r['seed']): r['rank1'] for r in rows}
  for r in rows:
    r['true_ir_rank1'] = r['crossing_l1'] = r['ablation_rank1'] = float('nan')
    if r['curve']:
      by_name = {c['translator']: c for c in r['curve']}
      r['true_ir_rank1'] = by_name['true IR']['rank1']
      target = rank1.get((ablation_of(r['point']), r['seed']))
      if target is not None:
        r['ablation_rank1'] = target
        line = [(c['l1'], c['rank1']) for c in r['curve'][: len(BLENDS) + 2]]
        found = crossing_l1(line, target)
        r['crossing_l1'] = float('nan') if found is None else found


def table(rows: list[dict]) -> str:
  head = (
      '| point | seed | (e) L1 G / luma / linear | L1 G, running IN | SSIM G / luma / linear '
      '| fake IR->IR R1 (inst / run) | IR->IR R1 | Rank-1 (inst / run) | mAP '
      "| its ablation's Rank-1 | Rank-1, true-IR gallery | L1 to match the ablation |"
  )
  lines = [head, '|' + '---|' * 12]
  for r in rows:
    lines.append(
        f'| {r["point"]} | {r["seed"]} | {r["l1"]:.3f} / {r["luminance_l1"]:.3f} / '
        f'{r["linear_l1"]:.3f} | {r["l1_running"]:.3f} | {r["ssim"]:.2f} / '
        f'{r["luminance_ssim"]:.2f} / {r["linear_ssim"]:.2f} | '
        f'{r["fake_ir_to_ir"]:.1f} / {r["fake_ir_to_ir_running"]:.1f} | {r["ir_to_ir"]:.1f} | '
        f'**{r["rank1"]:.1f}** / {r["rank1_running"]:.1f} | {r["mAP"]:.1f} | '
        f'{r["ablation_rank1"]:.1f} | {r["true_ir_rank1"]:.1f} | {r["crossing_l1"]:.3f} |'
    )
  return '\n'.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--runs', required=True, help='folder of the workdirs')
  parser.add_argument(
      '--points', default=','.join(POINTS), help=f'comma-separated, of {sorted(POINTS)}'
  )
  parser.add_argument('--seeds', default='0')
  parser.add_argument('--data_dir', default=None, help='TFDS data_dir')
  args = parser.parse_args(argv)
  points = [p for p in args.points.split(',') if p]
  unknown = sorted(set(points) - set(POINTS))
  if unknown:
    parser.error(f'unknown points {unknown}; known: {sorted(POINTS)}')
  rows = []
  for seed in [int(s) for s in args.seeds.split(',')]:
    for point in points:
      rows.append(run_point(point, seed, args.runs, args.data_dir))
      print(f'{point} seed {seed}: done', flush=True)
  add_crossings(rows)
  print(table(rows))
  with open(os.path.join(args.runs, 'sweep.json'), 'w') as f:
    json.dump(rows, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
