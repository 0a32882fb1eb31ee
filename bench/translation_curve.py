"""How good must the translation be? One trained AlignGAN, its RGB gallery
translated by other translators (issue 26).

  python bench/translation_curve.py --workdir=runs/learnable [--data_dir=D]

Needs a workdir trained on a dataset with infrared twins (synthetic_vireid
worlds). The trained feature module is kept fixed; only what turns the RGB
test images into IR-like ones changes:

* ``G``: the trained G_rgb2ir in eval mode (the protocol's own number);
* ``luminance`` and ``linear``: the references of diagnostic (e);
* ``G + a (true - G)`` for a = 0.25, 0.5, 0.75: the translation moved part
  of the way to the truth;
* ``true IR``: the rendered infrared twins, a perfect translation.

For each: (e) L1 and SSIM against the truth, and the protocol's all-search
single-shot Rank-1 / mAP (IR queries; the twins are never in the protocol
otherwise). Along the G -> truth line, Rank-1 against L1 says what
translation error the generator must reach for the fixed feature module to
retrieve as well as a given number (``--target``, e.g. the
pixel_alignment=False ablation's Rank-1), by linear interpolation between
the measured points. Writes ``<workdir>/eval/translation_curve.json``.
"""

import argparse
import dataclasses
import json
import os
import sys

import common  # bench/common.py: puts the repository root on sys.path

ROOT = common.ROOT

import numpy as np  # noqa: E402

BLENDS = (0.25, 0.5, 0.75)


def _features(extract, images, batch_size, mesh):
  """Unit features of [n, S, S, 3] images, in padded batches."""
  from aligngan_jax import sharding

  out = []
  for start in range(0, len(images), batch_size):
    batch = images[start : start + batch_size]
    pad = batch_size - len(batch)
    if pad:
      batch = np.concatenate([batch, np.repeat(batch[-1:], pad, axis=0)])
    out.append(np.asarray(extract(sharding.shard_batch(batch, mesh)))[: len(batch) - pad])
  return np.concatenate(out)


def crossing_l1(points: list[tuple[float, float]], target: float) -> float | None:
  """The L1 at which Rank-1 reaches ``target`` along (L1, Rank-1) points
  sorted by falling L1, by linear interpolation; None when never reached."""
  for (l1_a, r_a), (l1_b, r_b) in zip(points, points[1:]):
    if min(r_a, r_b) <= target <= max(r_a, r_b) and r_a != r_b:
      return l1_a + (target - r_a) * (l1_b - l1_a) / (r_b - r_a)
  return None


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--data_dir', default=None)
  parser.add_argument(
      '--target', type=float, default=None, help='a Rank-1 in %% to place on the curve'
  )
  args = parser.parse_args(argv)
  from aligngan_jax import data as data_lib
  from aligngan_jax import input_pipeline
  from aligngan_jax import trained
  from aligngan_jax.evaluation import driver
  from aligngan_jax.evaluation import engine
  from aligngan_jax.evaluation import translation
  import datasets  # noqa: F401

  config = trained.load_config(args.workdir)
  if args.data_dir:
    config.data_dir = args.data_dir
  data = input_pipeline.TFDSData.load(config)
  test = data.test
  pairs = data.paired_images(config.image_size)
  if pairs is None:
    raise SystemExit(
        f'error: {config.dataset} has no infrared twins; train on a synthetic_vireid world.'
    )
  train_rgb, train_true, test_rgb, test_true = pairs
  opened = trained.open_workdir(args.workdir, config)
  batch = config.eval_batch_size
  fake = np.concatenate(
      [
          np.asarray(opened.translate(test_rgb[i : i + batch])[0])
          for i in range(0, len(test_rgb), batch)
      ]
  )
  translators = {
      'G': fake,
      **{f'G + {a} (true - G)': fake + a * (test_true - fake) for a in BLENDS},
      'true IR': test_true,
      'luminance': translation.luminance(test_rgb),
      'linear': translation.apply_linear_map(
          test_rgb, translation.fit_linear_map(train_rgb, train_true)
      ),
  }
  is_rgb = test.modality == data_lib.RGB
  ir_feats = driver.extract_features(
      opened.extract['ir'], test.select(~is_rgb), config, opened.mesh, image_size=opened.load_size
  )
  settings = dataclasses.replace(
      driver.eval_settings(config), sysu_modes=('all',), sysu_shots=('single',)
  )
  rows = []
  for name, images in translators.items():
    feats = np.zeros((len(test), ir_feats.shape[1]), np.float32)
    feats[~is_rgb] = ir_feats
    feats[is_rgb] = _features(
        opened.extract['ir'], np.asarray(images, np.float32), batch, opened.mesh
    )
    result = engine.evaluate_features(feats, test, settings)
    row = result['results']['sysu all single']
    rows.append(
        {
            'translator': name,
            **translation.scores(images, test_true),
            'rank1': 100 * row['rank1']['mean'],
            'mAP': 100 * row['mAP']['mean'],
        }
    )
  print(f'{config.dataset}, {args.workdir}, step {opened.step}; fixed feature module')
  print('| RGB gallery translated by | (e) L1 | SSIM | Rank-1 | mAP |')
  print('|---|---|---|---|---|')
  for r in rows:
    print(
        f'| {r["translator"]} | {r["l1"]:.3f} | {r["ssim"]:.2f} | {r["rank1"]:.1f} | '
        f'{r["mAP"]:.1f} |'
    )
  out = {'rows': rows}
  if args.target is not None:
    line = [(r['l1'], r['rank1']) for r in rows[: len(BLENDS) + 2]]
    out['target'], out['crossing_l1'] = args.target, crossing_l1(line, args.target)
    print(
        f'Rank-1 {args.target:.1f} reached along G -> true IR at L1 '
        f'{out["crossing_l1"] if out["crossing_l1"] is None else round(out["crossing_l1"], 3)}'
    )
  with open(os.path.join(args.workdir, 'eval', 'translation_curve.json'), 'w') as f:
    json.dump(out, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
