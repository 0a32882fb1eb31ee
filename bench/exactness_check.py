"""Do two checkouts train the demo bit for bit alike? The check behind
issue 25's diagnosis, for any change meant to leave the arithmetic alone.

  git worktree add /tmp/before <commit>
  python bench/exactness_check.py --before=/tmp/before --after=.   # ~4 min, 2 CPU cores

Each checkout, in its own process, builds the demo (configs/synthetic.py,
its pretrained trunk, the synthetic_vireid/demo data), then records:
the eval-mode generators and the test features of 64 test images at
initialisation; stage 1 for 150 iterations (losses at every iteration,
every parameter and statistic after 1, 10 and 150); stages 2 and 3 for 3
iterations each from the initial state. ``--perturb=1e-7`` multiplies
every parameter of the ``--after`` run by (1 +- 1e-7) first: how a
last-bit difference grows under training. The table gives, per group, the
arrays that differ and the largest relative difference (Frobenius norm),
and the losses' relative difference by iteration. Works with checkouts
from 6d3fa2d on (before and after the trainer layout of issue 16).
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dump(root: str, out: str, data_dir: str, perturb: float) -> None:
  """Runs in a subprocess whose imports come from ``root``."""
  sys.path.insert(0, root)
  os.chdir(root)
  import jax

  from aligngan_jax import input_pipeline
  from aligngan_jax import players
  from aligngan_jax import pretrained
  from aligngan_jax import sharding
  from configs import synthetic
  import datasets  # noqa: F401

  config = synthetic.get_config()
  config.data_dir = data_dir
  if 'batch_network_calls' not in config:  # f499be8 read it without a default
    config.batch_network_calls = False
  mesh = sharding.create_mesh()
  if os.path.exists(os.path.join(root, 'aligngan_jax', 'aligngan_train.py')):
    from aligngan_jax import aligngan_train as old
    from aligngan_jax import train_lib

    train, test = train_lib.load_data(config)
    rgb = train.select(train.modality == input_pipeline.RGB)
    ir = train.select(train.modality == input_pipeline.IR)
    models = players.create_models(config, int(train.label.max()) + 1)
    load_images = lambda records: old.load_images(records, config)
    translator = old.make_translator(models)
    extract = old.make_extractors(models, config, mesh)
    steps = old.make_stage_steps(models, config, mesh)

    def batches(stage, end):
      iterators = old._batches(rgb, ir, config, start=0, end=end)
      while True:
        yield old._stage_batch(stage, iterators, mesh)

  elif os.path.isdir(os.path.join(root, 'aligngan_jax', 'trainers')):
    # Since the trainer modules (issue 27).
    from aligngan_jax import train_loop
    from aligngan_jax import trainers

    data = input_pipeline.TFDSData.load(config)
    train, test = data.train, data.test
    rgb, ir = data.training_split(config.image_size, config.decode_once)
    trainer = trainers.trainer_for(config, trainers.DataInfo(int(train.label.max()) + 1))
    models = trainer.networks
    load_images = lambda records: data.load_images(records, config.image_size)
    translator = trainer.translator()
    extract = {
        k: (lambda state, x, f=f: f(state, x)[trainer.feature_names[0]])
        for k, f in trainer.extractors(mesh).items()
    }
    steps = trainers.make_steps(trainer, mesh)
    samplers = trainer.samplers(rgb.label, ir.label)

    def batches(stage, end):
      iterators = {
          name: data.train_batches(
              rgb, ir, samplers[name], image_size=config.image_size, start_step=0, num_steps=end
          )
          for name in trainer.schedule[stage - 1].samplers
      }
      while True:
        yield train_loop._next_batch(iterators, mesh)

  else:
    from aligngan_jax import train_loop
    from aligngan_jax import trainers

    train, test = input_pipeline.load_data(config)
    rgb, ir = input_pipeline.training_records(
        train.select(train.modality == input_pipeline.RGB),
        train.select(train.modality == input_pipeline.IR),
        image_size=config.image_size,
        decode_once=config.decode_once,
    )
    trainer = trainers.trainer_for(config)
    models = players.create_models(config, int(train.label.max()) + 1, trainer.networks)
    load_images = lambda records: input_pipeline.load_images(records, config.image_size)
    translator = trainers.make_translator(models)
    extract = trainers.make_extractors(models, config, mesh)
    steps = trainers.make_steps(trainer, models, config, mesh)

    def batches(stage, end):
      iterators = train_loop._iterators(
          trainer.stages[stage - 1],
          rgb,
          ir,
          config,
          start=0,
          end=end,
      )
      while True:
        yield train_loop._next_batch(iterators, mesh)

  def fresh():
    state = pretrained.load_backbone(players.create_state(config, models, mesh), config, mesh)
    if perturb:
      leaves, tree = jax.tree.flatten(state.params)
      keys = jax.random.split(jax.random.key(123), len(leaves))
      leaves = [
          p * (1 + perturb * jax.random.rademacher(k, p.shape, p.dtype))
          for p, k in zip(leaves, keys)
      ]
      state = state.replace(params=jax.tree.unflatten(tree, leaves))
    return state

  res = {}
  state = fresh()
  images = load_images(test.select(np.arange(0, len(test), max(1, len(test) // 64))[:64]))
  res['init/fake_ir'], res['init/reconstructed_rgb'] = map(
      np.asarray, jax.device_get(translator(state, images))
  )
  res['init/features_rgb'] = np.asarray(extract['rgb'](state, images))
  res['init/features_ir'] = np.asarray(extract['ir'](state, images))

  def run(stage, n, marks):
    nonlocal state
    it, losses = batches(stage, n), []
    for i in range(n):
      state, metrics = steps[stage](state, next(it))
      losses.append([float(metrics[k]) for k in sorted(metrics)])
      if i + 1 in marks:
        leaves = jax.tree_util.tree_flatten_with_path(
            {'params': state.params, 'stats': state.batch_stats}
        )[0]
        for path, value in leaves:
          res[f'stage{stage}/{i + 1}/{jax.tree_util.keystr(path)}'] = np.asarray(value)
    res[f'stage{stage}/losses'] = np.asarray(losses)

  run(1, 150, (1, 10, 150))
  for stage in (2, 3):
    state = fresh()
    run(stage, 3, (1, 3))
  np.savez(out, **res)


def _group(key: str) -> str:
  parts = key.split('/')
  return parts[0] if parts[0] == 'init' else '/'.join(parts[:2])


def compare(before: str, after: str) -> bool:
  a, b = np.load(before), np.load(after)
  print('| group | arrays that differ | largest relative difference |\n|---|---|---|')
  identical = True
  for group in sorted({_group(k) for k in a.files if not k.endswith('losses')}):
    keys = [k for k in a.files if _group(k) == group and not k.endswith('losses')]
    differ = [k for k in keys if not np.array_equal(a[k], b[k])]
    # Biases ahead of a norm layer have no gradient but float noise: skip
    # them in the size (they are counted).
    sizes = [
        np.linalg.norm(a[k] - b[k]) / max(np.linalg.norm(a[k]), 1e-30)
        for k in differ
        if np.abs(a[k]).max() > 1e-6
    ]
    identical &= not differ
    print(f'| {group} | {len(differ)} / {len(keys)} | {max(sizes, default=0.0):.2g} |')
  print('\n| stage | loss relative difference at iteration 1 / 2 / 3 / 10 / 50 / last |\n|---|---|')
  for stage in (1, 2, 3):
    la, lb = a[f'stage{stage}/losses'], b[f'stage{stage}/losses']
    d = np.abs(la - lb).max(1) / np.abs(la).max(1)
    picks = [d[min(i, len(d) - 1)] for i in (0, 1, 2, 9, 49, len(d) - 1)]
    identical &= not d.any()
    print(f'| {stage} | ' + ' / '.join(f'{v:.2g}' for v in picks) + ' |')
  print('\nverdict:', 'bit-identical' if identical else 'DIFFERENT')
  return identical


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--before', help='checkout of the reference commit (required)')
  parser.add_argument('--after', default=ROOT, help='checkout to compare (default: this one)')
  parser.add_argument('--data_dir', default=None, help="TFDS data_dir (default: TFDS's)")
  parser.add_argument(
      '--perturb',
      type=float,
      default=0.0,
      help="relative noise on the --after run's initial parameters",
  )
  parser.add_argument('--dump', nargs=2, metavar=('ROOT', 'OUT'), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.dump:
    return dump(args.dump[0], args.dump[1], args.data_dir, args.perturb)
  if not args.before:
    parser.error('--before is required: a checkout of the reference commit.')
  tmp = tempfile.mkdtemp(prefix='exactness-')
  outs = []
  for name, root, perturb in (('before', args.before, 0.0), ('after', args.after, args.perturb)):
    out = os.path.join(tmp, f'{name}.npz')
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        '--dump',
        os.path.abspath(root),
        out,
        f'--perturb={perturb}',
    ] + ([f'--data_dir={args.data_dir}'] if args.data_dir else [])
    print(f'{name}: {root}', flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    outs.append(out)
  sys.exit(0 if compare(*outs) else 1)


if __name__ == '__main__':
  main()
