"""Times the jnp ranking kernel against the per-query NumPy loop.

  python bench/eval_bench.py            # CPU (and the default JAX backend)
  python bench/eval_bench.py --repeats=5 --loop_repeats=1

Shapes are the real ones: SYSU-MM01 (3,803 IR queries of 96 ids; galleries
of 1 or 10 images per (id, camera): all-search 301 / 3,010, indoor 112 /
1,120) and RegDB (2,060 x 2,060). Distances come from noisy identity
features, so rankings look like a trained model's. Both implementations run
in the same process on the same matrices; the kernel is timed after
compilation. Finally the whole SYSU evaluation from features (4 settings x
10 trials: sampling, distances, kernel) is timed as `evaluate_features`.
No TensorFlow needed.
"""

import functools
import types

from absl import flags
import common  # bench/common.py: puts the repository root on sys.path
import jax
import numpy as np

from aligngan_jax import cli
from aligngan_jax.evaluation import engine
from aligngan_jax.evaluation import numpy_reference
from aligngan_jax.evaluation import ranking

FLAGS = flags.FLAGS
flags.DEFINE_integer('repeats', 5, 'Timed kernel runs (median reported).')
flags.DEFINE_integer('loop_repeats', 1, 'Timed NumPy-loop runs (median).')
flags.DEFINE_float('noise', 1.5, 'Feature noise: higher is a weaker model.')

# Identities per gallery camera in SYSU-MM01's test set (all-search 301).
_SYSU_IDS_PER_CAM = {1: 56, 2: 56, 4: 94, 5: 95}
_SYSU_QUERIES = {3: (93, 1883), 6: (96, 1920)}  # cam: (ids, images)


def _features(ids, rng, dim=256):
  centres = np.random.default_rng(0).normal(size=(int(ids.max()) + 1, dim))
  f = centres[ids] + FLAGS.noise * rng.normal(size=(len(ids), dim))
  return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)


def _sysu_case(mode, shots, rng):
  test_ids = np.arange(96)
  q_ids, q_cams = [], []
  for cam, (n_ids, n_images) in _SYSU_QUERIES.items():
    ids = rng.choice(test_ids, n_ids, replace=False)
    q_ids.append(np.sort(rng.choice(ids, n_images)))
    q_cams.append(np.full(n_images, cam))
  cams = (1, 2) if mode == 'indoor' else (1, 2, 4, 5)
  indoor_ids = rng.choice(test_ids, 56, replace=False)
  g_ids, g_cams = [], []
  for cam in cams:
    ids = (
        indoor_ids if cam in (1, 2) else rng.choice(test_ids, _SYSU_IDS_PER_CAM[cam], replace=False)
    )
    g_ids.append(np.repeat(np.sort(ids), shots))
    g_cams.append(np.full(len(ids) * shots, cam))
  return tuple(map(np.concatenate, (q_ids, g_ids, q_cams, g_cams)))


def _regdb_case(rng):
  ids = np.repeat(np.arange(206), 10)
  return ids, ids.copy(), np.full(2060, 1), np.full(2060, 2)


_time = common.median_seconds


def _sysu_records(rng):
  """A SYSU-like test split: 96 ids, about 20 images per (id, RGB camera)."""
  rows = []
  q_ids = {cam: rng.choice(96, n, replace=False) for cam, (n, _) in _SYSU_QUERIES.items()}
  indoor = rng.choice(96, 56, replace=False)
  g_ids = {
      1: indoor,
      2: indoor,
      4: rng.choice(96, 94, replace=False),
      5: rng.choice(96, 95, replace=False),
  }
  for cam, ids in {**g_ids, **q_ids}.items():
    per_id = 20 if cam not in q_ids else int(round(_SYSU_QUERIES[cam][1] / _SYSU_QUERIES[cam][0]))
    for pid in ids:
      rows += [(pid, cam, i, f'cam{cam}/{pid:04d}/{i + 1:04d}.jpg') for i in range(per_id)]
  pid, cam, index, path = map(np.array, zip(*rows))
  return types.SimpleNamespace(
      person_id=pid, camera=cam, index=index, path=path, modality=np.isin(cam, (3, 6)).astype(int)
  )


def main(_):
  rng = np.random.default_rng(0)
  cases = [
      ('SYSU all single', 'sysu', _sysu_case('all', 1, rng)),
      ('SYSU all multi', 'sysu', _sysu_case('all', 10, rng)),
      ('SYSU indoor single', 'sysu', _sysu_case('indoor', 1, rng)),
      ('SYSU indoor multi', 'sysu', _sysu_case('indoor', 10, rng)),
      ('RegDB v2t', 'regdb', _regdb_case(rng)),
  ]
  device = jax.devices()[0]
  print(
      common.machine_header(
          f'JAX {jax.__version__} backend={jax.default_backend()} ({device.device_kind})'
      )
  )
  print(
      f'{"setting":<20}{"shape":>12}{"NumPy loop ms":>15}{"jnp kernel ms":>15}'
      f'{"speed-up":>10}{"from NumPy ms":>15}{"max |dRank-1|":>15}'
  )
  for name, protocol, (q_ids, g_ids, q_cams, g_cams) in cases:
    distmat = -(_features(q_ids, rng) @ _features(g_ids, rng).T)
    args = (distmat, q_ids, g_ids, q_cams, g_cams)
    got = ranking.rank_metrics(*args, protocol=protocol)  # compiles
    loop_s = _time(
        functools.partial(numpy_reference.rank_metrics_loop, *args, protocol=protocol),
        FLAGS.loop_repeats,
    )
    want = numpy_reference.rank_metrics_loop(*args, protocol=protocol)
    # The evaluation engine hands the kernel a device array (its distances
    # are a jnp matmul); "from NumPy" adds the host-to-device copy.
    on_device = (jax.device_put(distmat),) + args[1:]
    kernel_s = _time(
        functools.partial(ranking.rank_metrics, *on_device, protocol=protocol), FLAGS.repeats
    )
    host_s = _time(functools.partial(ranking.rank_metrics, *args, protocol=protocol), FLAGS.repeats)
    diff = abs(float(got['cmc'][0]) - float(want['cmc'][0]))
    print(
        f'{name:<20}{f"{distmat.shape[0]}x{distmat.shape[1]}":>12}'
        f'{1e3 * loop_s:>15.1f}{1e3 * kernel_s:>15.2f}{loop_s / kernel_s:>9.0f}x'
        f'{1e3 * host_s:>15.2f}{diff:>15.1e}'
    )

  records = _sysu_records(rng)
  feats = _features(records.person_id, rng, dim=2048)
  settings = engine.EvalSettings()
  engine.evaluate_features(feats, records, settings)  # compiles
  full_s = _time(lambda: engine.evaluate_features(feats, records, settings), FLAGS.repeats)
  print(
      f'\nFull SYSU-MM01 evaluation from {len(records.person_id)} features '
      f'(2048-d): 4 settings x 10 trials in {1e3 * full_s:.0f} ms '
      '(gallery sampling + distances + kernel).'
  )


if __name__ == '__main__':
  cli.run(main)
