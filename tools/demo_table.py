"""Reruns the demo per model and seed and writes its tables, or checks them.

  python tools/demo_table.py                        # every model and seed (about 45 min on 2 cores)
  python tools/demo_table.py --models=agw --seeds=0,1,2
  python tools/demo_table.py --models=aligngan --seeds=0 --check   # does seed 0 reproduce?

Each run is the README's demo command, `python main.py
--config=configs/synthetic.py[:model] --workdir=<runs>/<model>_seed<N>
--config.seed=N`, in a fresh workdir; its all-search single-shot Rank-1 and
mAP are read from ``eval/latest.json``.

Writing (the default) replaces two marked blocks: the per-seed rows in
docs/demo.md (between ``<!-- demo-seeds:begin ... -->`` and
``<!-- demo-seeds:end -->``) and the per-model mean +- sd rows in README.md
(``<!-- demo-table:begin ... -->`` .. ``<!-- demo-table:end -->``), each
naming the commit, machine and date it was measured at. Rows of models not
rerun are kept. So every demo figure in those blocks comes from this script
at the commit it names.

``--check`` writes nothing; it compares each seed with its docs/demo.md row.
On the machine kind that wrote the rows (x86_64, the pinned requirements),
training is deterministic and a seed reproduces its row to the table's 0.1.
Elsewhere float rounding differs in the last bit and the demo's hundreds of
iterations amplify it: one seed can move by several points (docs/decisions.md,
the demo's seeds). There, judge the mean of all seeds: the check then allows
two standard errors of the table's mean. The exit status is non-zero when a
seed differs from its row and the mean check is not met, so the script can
gate a change that touches training.
"""

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTING = 'sysu all single'
# model -> (row label, config file suffix, default seeds).
MODELS = {
    'aligngan': ('AlignGAN', '', (0, 1, 2, 3, 4)),
    'ide': ('IDE', ':ide', (0,)),
    'agw': ('AGW', ':agw', (0, 1, 2)),
    'caj': ('CAJ', ':caj', (0, 1, 2)),
}
SEED_BLOCK = (
    '<!-- demo-seeds:begin (written by tools/demo_table.py) -->',
    '<!-- demo-seeds:end -->',
)
STAGES_BLOCK = (
    '<!-- demo-stages:begin (written by tools/demo_table.py) -->',
    '<!-- demo-stages:end -->',
)
OTHER_BLOCK = (
    '<!-- demo-other:begin (written by tools/demo_table.py) -->',
    '<!-- demo-other:end -->',
)
PIXELS_BLOCK = (
    '<!-- demo-pixels:begin (written by tools/demo_table.py) -->',
    '<!-- demo-pixels:end -->',
)
MEAN_BLOCK = (
    '<!-- demo-table:begin (written by tools/demo_table.py) -->',
    '<!-- demo-table:end -->',
)
# '| AlignGAN, seed 0 | `--config=configs/synthetic.py --config.seed=0` | **18.4** | 22.3 | 4.1 min |'
_SEED_ROW = re.compile(
    r'^\| (\S+), seed (\d+) \| `([^`]*)` \| \*\*([\d.]+)\*\* \| ([\d.]+) \|'
    r'(?: ([\d.]+) min \|)?'
)
# '- AlignGAN rows: commit 1234567, 2-core x86_64 CPU, 2026-12-03': where they come from.
_STAMP_ROW = re.compile(r'^- (\S+) rows: (.+)$')


def command(model: str, seed: int) -> str:
  """The main.py flags of one demo run, as the tables print them."""
  return f'--config=configs/synthetic.py{MODELS[model][1]} --config.seed={seed}'


def block(path: str, markers: tuple[str, str]) -> tuple[str, str, str]:
  """(text before, inside, after) the marked block of ``path``."""
  with open(path, encoding='utf-8') as f:
    text = f.read()
  begin, end = text.find(markers[0]), text.find(markers[1])
  if begin < 0 or end < begin:
    raise SystemExit(f'error: {path} lacks the lines {markers[0]} ... {markers[1]}')
  begin += len(markers[0])
  return text[:begin], text[begin:end], text[end:]


def read_seed_rows(doc: str) -> tuple[dict[tuple[str, int], dict], dict[str, str]]:
  """From docs/demo.md's block: (label, seed) -> {'rank1', 'mAP', 'minutes'},
  and label -> where its rows were measured."""
  rows, stamps = {}, {}
  for line in block(doc, SEED_BLOCK)[1].splitlines():
    m = _SEED_ROW.match(line)
    if m:
      rows[m[1], int(m[2])] = {
          'rank1': float(m[4]),
          'mAP': float(m[5]),
          'minutes': float(m[6]) if m[6] else None,
      }
    m = _STAMP_ROW.match(line)
    if m:
      stamps[m[1]] = m[2]
  return rows, stamps


def run_one(
    model: str, seed: int, runs: str, data_dir: str | None, extra: list[str], name: str = ''
) -> dict:
  """Trains and evaluates one demo run; its Rank-1 and mAP (%), minutes and
  workdir."""
  workdir = os.path.join(runs, name or f'{model}_seed{seed}')
  if os.path.exists(os.path.join(workdir, 'checkpoints')):
    raise SystemExit(f'error: {workdir} already holds a run; pass another --runs folder.')
  cmd = [sys.executable, 'main.py', *command(model, seed).split(), f'--workdir={workdir}', *extra]
  if data_dir:
    cmd.append(f'--config.data_dir={data_dir}')
  print('$', ' '.join(cmd), flush=True)
  start = time.perf_counter()
  with open(f'{workdir}.log', 'w', encoding='utf-8') as log:
    code = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
  if code:
    raise SystemExit(f'error: {model} seed {seed} failed (exit {code}); see {log.name}.')
  with open(os.path.join(workdir, 'eval', 'latest.json'), encoding='utf-8') as f:
    result = json.load(f)['results'][SETTING]
  return {
      'rank1': 100 * result['rank1']['mean'],
      'mAP': 100 * result['mAP']['mean'],
      'minutes': (time.perf_counter() - start) / 60,
      'workdir': workdir,
  }


def mean_sd(values: list[float]) -> tuple[float, float]:
  return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def provenance() -> str:
  """The commit (and whether the tree had uncommitted changes), machine, date."""

  def git(*args):
    return subprocess.run(['git', *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

  commit = git('rev-parse', '--short', 'HEAD') or 'unknown commit'
  if git('status', '--porcelain', '--untracked-files=no'):
    commit += ' + uncommitted changes'
  machine = f'{os.cpu_count()}-core {platform.machine()} CPU'
  return f'commit {commit}, {machine}, {datetime.date.today().isoformat()}'


def seed_rows_text(rows: dict[tuple[str, int], dict], stamps: dict[str, str]) -> str:
  lines = [
      '\nAll-search single-shot; wall: minutes per run, the dataset already built (other work on the machine lengthens them).\n',
      '| run | flags after `python main.py --workdir=...` | Rank-1 | mAP | wall |',
      '|---|---|---|---|---|',
  ]
  order = [MODELS[m][0] for m in MODELS]
  for (label, seed), row in sorted(rows.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
    model = next(m for m in MODELS if MODELS[m][0] == label)
    wall = f' {row["minutes"]:.1f} min |' if row.get('minutes') else ' - |'
    lines.append(
        f'| {label}, seed {seed} | `{command(model, seed)}` | '
        f'**{row["rank1"]:.1f}** | {row["mAP"]:.1f} |{wall}'
    )
  lines.append('\nMeasured by `python tools/demo_table.py` at:\n')
  lines += [f'- {label} rows: {stamps[label]}' for label in order if label in stamps]
  return '\n'.join(lines) + '\n'


def seeds_text(seeds: list[int]) -> str:
  """'0-4' for a run of seeds, else '0,2'."""
  if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
    return f'{seeds[0]}-{seeds[-1]}'
  return ','.join(map(str, seeds))


def mean_rows_text(rows: dict[tuple[str, int], dict], stamps: dict[str, str]) -> str:
  lines = ['\n| model | command | seeds | Rank-1 | mAP |', '|---|---|---|---|---|']
  for model, (label, suffix, _) in MODELS.items():
    seeds = sorted(s for (name, s) in rows if name == label)
    if not seeds:
      continue
    rank1 = mean_sd([rows[label, s]['rank1'] for s in seeds])
    mean_ap = mean_sd([rows[label, s]['mAP'] for s in seeds])
    workdir = 'demo' if model == 'aligngan' else model

    def fmt(value, n=len(seeds)):
      return f'{value[0]:.1f} ± {value[1]:.1f}' if n > 1 else f'{value[0]:.1f}'

    lines.append(
        f'| {label} | `python main.py --config=configs/synthetic.py{suffix} '
        f'--workdir=runs/{workdir}` | {seeds_text(seeds)} | {fmt(rank1)} | {fmt(mean_ap)} |'
    )
  where = '; '.join(
      f'{", ".join(name for name in stamps if stamps[name] == stamp)} at {stamp}'
      for stamp in dict.fromkeys(stamps.values())
  )
  lines.append(f'\nWritten by `python tools/demo_table.py`: {where}.\n')
  return '\n'.join(lines)


def _main_py(flags: list[str], log_path: str) -> None:
  cmd = [sys.executable, 'main.py', *flags]
  print('$', ' '.join(cmd), flush=True)
  with open(log_path, 'w', encoding='utf-8') as log:
    code = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
  if code:
    raise SystemExit(f'error: {" ".join(flags)} failed (exit {code}); see {log_path}.')


def _percent(result: dict) -> tuple[float, float]:
  return 100 * result['rank1'], 100 * result['mAP']


def other_blocks(
    aligngan: dict[int, dict], runs: str, data_dir: str | None, extra: list[str], stamp: str
) -> dict[tuple[str, str], str]:
  """docs/demo.md's other measured blocks, from the AlignGAN runs just made:
  the per-stage table of the first seed; the same checkpoints evaluated with
  the official test-time normalisation; the ablation without pixel alignment
  (seed 0) and the pretrained trunk alone (its stage-0 row); the raw-pixel
  baseline. Block markers -> text."""
  from aligngan_jax.evaluation import diagnostics  # (imports JAX: only when writing)

  data_flags = [f'--config.data_dir={data_dir}'] if data_dir else []
  first = min(aligngan)
  with open(os.path.join(aligngan[first]['workdir'], 'eval', 'stages.json'), encoding='utf-8') as f:
    stages = json.load(f)
  stages_text = (
      f'\n```\n{diagnostics.format_table(stages)}\n```\n\nAlignGAN seed {first}, '
      f'`python tools/demo_table.py` at {stamp}.\n'
  )

  official = {}
  for seed, run in sorted(aligngan.items()):
    flags = [
        '--config=configs/synthetic.py',
        f'--workdir={run["workdir"]}',
        f'--config.seed={seed}',
        '--config.mode=eval',
        '--config.gan.test_instance_norm=running',
        *data_flags,
        *extra,
    ]
    _main_py(flags, f'{run["workdir"]}_official_norm.log')
    with open(os.path.join(run['workdir'], 'eval', 'latest.json'), encoding='utf-8') as f:
      result = json.load(f)['results'][SETTING]
    official[seed] = (100 * result['rank1']['mean'], 100 * result['mAP']['mean'])
  ablation = run_one(
      'aligngan',
      0,
      runs,
      data_dir,
      [*extra, '--config.gan.pixel_alignment=False'],
      name='aligngan_no_pixel_alignment_seed0',
  )
  with open(os.path.join(ablation['workdir'], 'eval', 'stages.json'), encoding='utf-8') as f:
    trunk = _percent(json.load(f)[0]['protocol'])

  def values(index):
    parts = ' / '.join(f'{official[s][index]:.1f}' for s in sorted(official))
    mean, sd = mean_sd([official[s][index] for s in official])
    return f'{parts} (mean {mean:.1f} ± {sd:.1f})' if len(official) > 1 else parts

  seeds = seeds_text(sorted(official))
  other_text = '\n'.join(
      [
          '',
          '| run | flags after `python main.py --config=configs/synthetic.py --workdir=...` '
          '| Rank-1 | mAP |',
          '|---|---|---|---|',
          f'| the AlignGAN runs above, seeds {seeds}, evaluated with the official test-time '
          f'normalisation | `--config.seed=N --config.mode=eval '
          f'--config.gan.test_instance_norm=running` | {values(0)} | {values(1)} |',
          f'| AlignGAN without pixel alignment (real RGB where fake IR was), seed 0 | '
          f'`--config.gan.pixel_alignment=False --config.seed=0` | {ablation["rank1"]:.1f} | '
          f'{ablation["mAP"]:.1f} |',
          f'| the pretrained trunk alone, before any demo training (the stage-0 row of the run '
          f'above; RGB untranslated) | - | {trunk[0]:.1f} | {trunk[1]:.1f} |',
          '',
          f'All-search single-shot; `python tools/demo_table.py` at {stamp}.',
          '',
      ]
  )

  cmd = [sys.executable, '-m', 'tools.pixel_baseline']
  if data_dir:
    cmd.append(f'--data_dir={data_dir}')
  print('$', ' '.join(cmd), flush=True)
  pixels = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
  pixels = '\n'.join(line for line in pixels.splitlines() if not line.startswith('('))
  pixels_text = (
      f'\n```\n{pixels}\n```\n\n`python tools/demo_table.py` (`python -m '
      f'tools.pixel_baseline`) at {stamp}.\n'
  )
  return {STAGES_BLOCK: stages_text, OTHER_BLOCK: other_text, PIXELS_BLOCK: pixels_text}


def check(measured: dict, table: dict) -> bool:
  """Prints measured against the table; True when they agree (see the module doc)."""
  print('\n| run | Rank-1 | table | mAP | table |\n|---|---|---|---|---|')
  exact = bool(measured)
  for key, m in measured.items():
    ref = table.get(key)
    same = ref is not None and abs(m['rank1'] - ref['rank1']) <= 0.051
    exact &= same
    ref_txt = (
        f'{ref["rank1"]:.1f} | {m["mAP"]:.1f} | {ref["mAP"]:.1f}'
        if ref
        else f'(no row) | {m["mAP"]:.1f} | -'
    )
    print(f'| {key[0]}, seed {key[1]} | {m["rank1"]:.1f}{"" if same else " *"} | {ref_txt} |')
  if exact:
    print('\nverdict: every run reproduces its row')
    return True
  ok = False
  for label in {k[0] for k in measured}:
    keys = [k for k in measured if k[0] == label and k in table]
    if len(keys) < 2:
      continue
    ours = mean_sd([measured[k]['rank1'] for k in keys])
    theirs = mean_sd([table[k]['rank1'] for k in keys])
    # Two standard errors of the table's mean: what another machine's float
    # rounding alone should stay within.
    bound = 2 * theirs[1] / len(keys) ** 0.5
    ok = abs(ours[0] - theirs[0]) <= bound
    print(
        f'{label} mean over {len(keys)} seeds: {ours[0]:.1f} ± {ours[1]:.1f} (table '
        f'{theirs[0]:.1f} ± {theirs[1]:.1f}; allowed difference {bound:.1f}): '
        f'{"agrees" if ok else "DIFFERS"}'
    )
  print(
      '\nverdict:',
      'the seed mean agrees with the table'
      if ok
      else 'DIFFERS from the table (a run marked * and no agreeing mean)',
  )
  return ok


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument(
      '--models',
      default=','.join(MODELS),
      help=f'comma-separated, of {", ".join(MODELS)} (default: all)',
  )
  parser.add_argument(
      '--seeds',
      default=None,
      help="comma-separated seeds (default: each model's own: "
      + '; '.join(f'{m} {",".join(map(str, s))}' for m, (_, _, s) in MODELS.items())
      + ')',
  )
  parser.add_argument(
      '--check', action='store_true', help='compare with docs/demo.md instead of writing the tables'
  )
  parser.add_argument(
      '--runs',
      default=os.path.join(ROOT, 'runs', 'demo_table'),
      help='folder for the workdirs and logs (one per run)',
  )
  parser.add_argument('--data_dir', default=None, help="TFDS data_dir (default: TFDS's)")
  parser.add_argument('--readme', default=os.path.join(ROOT, 'README.md'))
  parser.add_argument('--doc', default=os.path.join(ROOT, 'docs', 'demo.md'))
  parser.add_argument(
      '--others',
      default=True,
      action=argparse.BooleanOptionalAction,
      help="with AlignGAN's runs, also rewrite docs/demo.md's other blocks (stages, "
      'official test-time norm, ablation, trunk alone, pixel baseline; default: yes)',
  )
  parser.add_argument('extra', nargs='*', help='more main.py flags, after --')
  args = parser.parse_args(argv)
  models = [m for m in args.models.split(',') if m]
  unknown = [m for m in models if m not in MODELS]
  if unknown:
    parser.error(f'--models: unknown {unknown}; choose from {", ".join(MODELS)}')
  table, stamps = read_seed_rows(args.doc)  # before any run: a missing block fails now
  others = args.others and 'aligngan' in models and not args.check
  if not args.check:
    block(args.readme, MEAN_BLOCK)
  for markers in (STAGES_BLOCK, OTHER_BLOCK, PIXELS_BLOCK) if others else ():
    block(args.doc, markers)
  os.makedirs(args.runs, exist_ok=True)
  measured = {}
  for model in models:
    seeds = [int(s) for s in args.seeds.split(',')] if args.seeds else MODELS[model][2]
    for seed in seeds:
      m = measured[MODELS[model][0], seed] = run_one(
          model, seed, args.runs, args.data_dir, args.extra
      )
      print(
          f'{model} seed {seed}: Rank-1 {m["rank1"]:.2f}, mAP {m["mAP"]:.2f} '
          f'({m["minutes"]:.1f} min)',
          flush=True,
      )
      with open(os.path.join(args.runs, 'measured.json'), 'w', encoding='utf-8') as f:
        json.dump({f'{k[0]}, seed {k[1]}': v for k, v in measured.items()}, f, indent=1)
  if args.check:
    return 0 if check(measured, table) else 1
  stamp = provenance()
  rerun = {label for label, _ in measured}
  # A rerun model's rows are replaced whole (old seeds not rerun go too).
  rows = {k: v for k, v in table.items() if k[0] not in rerun} | measured
  stamps = {label: s for label, s in stamps.items() if label not in rerun}
  stamps.update({label: stamp for label in rerun})
  before, _, after = block(args.doc, SEED_BLOCK)
  with open(args.doc, 'w', encoding='utf-8') as f:
    f.write(before + seed_rows_text(rows, stamps) + after)
  before, _, after = block(args.readme, MEAN_BLOCK)
  with open(args.readme, 'w', encoding='utf-8') as f:
    f.write(before + mean_rows_text(rows, stamps) + after)
  if others:
    aligngan = {seed: run for (label, seed), run in measured.items() if label == 'AlignGAN'}
    for markers, text in other_blocks(
        aligngan, args.runs, args.data_dir, args.extra, stamp
    ).items():
      before, _, after = block(args.doc, markers)
      with open(args.doc, 'w', encoding='utf-8') as f:
        f.write(before + text + after)
  print(f'wrote {args.doc} and {args.readme} ({stamp})')
  return 0


if __name__ == '__main__':
  sys.exit(main())
