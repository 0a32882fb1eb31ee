"""Golden numbers: what the tests' tiny training runs computed when their
files in ``tests/golden/`` (``<name>.json``, one per run) were last written.

A run's numbers are the mean losses logged at every step (TensorBoard
``train/*`` scalars; the tiny configs log every step) and its final
evaluation (Rank-1, mAP and mINP of every scored setting, from
``eval/latest.json``). `check` compares a fresh run with its entry, so a
change that moves what the model learns fails the suite instead of landing
silently (issue 25).

A change that moves them on purpose rewrites the files in the same commit,
and says why in the commit message:

  ALIGNGAN_UPDATE_GOLDEN=1 pytest -q tests/test_train_loop.py -k golden

Tolerances, measured with ``python bench/golden_spread.py`` (both tiny
runs through main.py with the tests' XLA settings, against these files;
2-core x86_64 CPU with AVX-512, 2026-12-02; bench/RESULTS.md):

| XLA variant (a stand-in for another x86 machine) | losses, max relative | metrics, max absolute |
|---|---|---|
| the same machine and settings, run again | 0 (bit-identical) | 0 |
| AVX2 only (``--xla_cpu_max_isa=AVX2``) | 0 | 0 |
| one core instead of two | 0 | 0.007 (mAP) |
| XLA's fusion emitters on | 8.7e-5 (step 6's GAN term) | 0.016 (mAP) |

Differences grow with the step (the fusion emitters: under 1.5e-7 up to
step 4, 2.4e-6 at step 5, 8.7e-5 at step 6), as the demo's do
(docs/decisions.md, issue 25). So:
- ``LOSS_RTOL = 1e-3``: 11x the largest spread measured, and below what a
  small deliberate change does: ``lambda_triplet`` 1.0 -> 1.01 moves the
  IDE run's first loss by 3.8e-3; ``gan.lambda_cyc`` 10 -> 11 and other
  sampler seeds move dozens of numbers by more (bench/RESULTS.md).
- ``METRIC_ATOL = 0.05`` (fractions, not %): 3x the spread measured.
  Rank-1 never moved; mAP moves when a near-tie of distances orders the
  other way. The losses carry the sensitive check; the metrics catch a
  broken evaluation.
"""

import json
import math
import os

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'golden')
UPDATE = os.environ.get('ALIGNGAN_UPDATE_GOLDEN') == '1'
LOSS_RTOL = 1e-3
METRIC_ATOL = 0.05
# Logged per step but not computed by the model: the pace of the run and
# the stage counter.
_NOT_NUMBERS = ('train/steps_per_sec', 'train/images_per_sec', 'train/eta_seconds', 'train/stage')
_METRICS = ('rank1', 'mAP', 'mINP')


def numbers(workdir: str) -> dict:
  """{'losses': {tag: {step: value}}, 'metrics': {setting: {metric: mean}}}."""
  import tensorflow as tf

  losses = {}
  for name in sorted(os.listdir(workdir)):
    if not name.startswith('events.out.tfevents'):
      continue
    for event in tf.compat.v1.train.summary_iterator(os.path.join(workdir, name)):
      for value in event.summary.value:
        if value.tag.startswith('train/') and value.tag not in _NOT_NUMBERS:
          number = (
              value.simple_value
              if value.HasField('simple_value')
              else float(tf.make_ndarray(value.tensor))
          )
          losses.setdefault(value.tag, {})[str(event.step)] = float(number)
  with open(os.path.join(workdir, 'eval', 'latest.json')) as f:
    result = json.load(f)
  metrics = {
      setting: {m: r[m]['mean'] for m in _METRICS}
      for setting, r in sorted(result['results'].items())
      if 'skipped' not in r
  }
  return {'losses': losses, 'metrics': metrics}


def path(name: str) -> str:
  return os.path.join(FOLDER, f'{name}.json')


def differences(
    expected: dict, got: dict, *, loss_rtol=LOSS_RTOL, metric_atol=METRIC_ATOL
) -> list[str]:
  """Every number of ``got`` outside the tolerance of ``expected``, and
  every number present in one and not the other, one line each."""
  out = []
  for kind, close in (
      ('losses', lambda a, b: math.isclose(a, b, rel_tol=loss_rtol, abs_tol=1e-7)),
      ('metrics', lambda a, b: abs(a - b) <= metric_atol),
  ):
    want, have = expected.get(kind, {}), got.get(kind, {})
    for key in sorted(set(want) | set(have)):
      a, b = want.get(key, {}), have.get(key, {})
      for sub in sorted(set(a) | set(b), key=str):
        if sub not in a or sub not in b:
          out.append(
              f'{kind} {key} {sub}: only in the {"golden file" if sub in a else "fresh run"}'
          )
        elif not close(a[sub], b[sub]):
          out.append(
              f'{kind} {key} {sub}: golden {a[sub]!r}, now {b[sub]!r} '
              f'(relative {abs(b[sub] - a[sub]) / max(abs(a[sub]), 1e-12):.2g})'
          )
  return out


def check(name: str, workdir: str) -> None:
  """Asserts that the run in ``workdir`` computed ``name``'s golden numbers
  (with ALIGNGAN_UPDATE_GOLDEN=1: records them instead)."""
  got = numbers(workdir)
  if UPDATE:
    os.makedirs(FOLDER, exist_ok=True)
    with open(path(name), 'w') as f:
      json.dump(got, f, indent=1, sort_keys=True)
      f.write('\n')
    return
  assert os.path.exists(
      path(name)
  ), f'{path(name)} is missing: record it with ALIGNGAN_UPDATE_GOLDEN=1 (tests/golden.py).'
  with open(path(name)) as f:
    found = differences(json.load(f), got)
  assert not found, (
      f'{name}: the run no longer computes its golden numbers ({len(found)} differ).\n'
      + '\n'.join(found[:20])
      + '\nIf the change is meant to move them, rerun with '
      'ALIGNGAN_UPDATE_GOLDEN=1 and say why in the commit message (tests/golden.py).'
  )
