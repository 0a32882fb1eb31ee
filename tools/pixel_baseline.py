"""Raw-pixel nearest-neighbour retrieval on a dataset's test split.

Shows how large the modality gap is: pixels find the same person across RGB
cameras (and across IR cameras) far better than across modalities.

  python -m tools.pixel_baseline [--dataset=synthetic_vireid/demo] [--data_dir=...]

Features are the test images resized to 32x16 (bicubic), grey-scaled or not,
mean-centred per image and L2-normalised; ranking is by cosine similarity with
the project's kernel (image-level CMC, mAP). Queries are matched against a
gallery from *other* cameras only, so no query meets its own camera.
"""

import time

from absl import flags
import numpy as np

from aligngan_jax import cli

flags.DEFINE_string('dataset', 'synthetic_vireid/demo', 'TFDS dataset name.')
flags.DEFINE_string('data_dir', None, 'TFDS data_dir.')
FLAGS = flags.FLAGS

RGB_CAMS, IR_CAMS = (1, 2, 4, 5), (3, 6)


def _pixels(records, *, grey):
  import tensorflow as tf

  out = []
  for encoded in records.images:
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.resize(image, (32, 16), method='bicubic', antialias=True).numpy()
    if grey:
      image = image.mean(axis=-1, keepdims=True)
    x = image.reshape(-1)
    x = x - x.mean()
    out.append(x / max(np.linalg.norm(x), 1e-6))
  return np.stack(out)


def _score(feats, records, query_cams, gallery_cams):
  from aligngan_jax.evaluation import ranking

  q = np.isin(records.camera, query_cams)
  g = np.isin(records.camera, gallery_cams)
  pid = records.person_id
  matches = pid[q][:, None] == pid[g][None, :]
  chance = matches.mean(axis=1)[matches.any(axis=1)].mean()
  cam = records.camera
  r = ranking.rank_metrics(
      -feats[q] @ feats[g].T, pid[q], pid[g], cam[q], cam[g], protocol='regdb', max_rank=10
  )
  return r['cmc'][0], r['cmc'][4], r['mAP'], chance, int(q.sum()), int(g.sum())


def main(_):
  from aligngan_jax import input_pipeline
  import datasets  # noqa: F401  (registers the builders)

  start = time.time()
  builder = input_pipeline.get_builder(FLAGS.dataset, data_dir=FLAGS.data_dir)
  test = input_pipeline.load_split(builder, 'test')
  colour, grey = _pixels(test, grey=False), _pixels(test, grey=True)
  settings = [
      ('RGB -> RGB (other RGB cams)', colour, None, RGB_CAMS),
      ('IR -> IR (cam 3 <-> cam 6)', grey, None, IR_CAMS),
      ('IR -> RGB (colour pixels)', colour, IR_CAMS, RGB_CAMS),
      ('IR -> RGB (grey pixels)', grey, IR_CAMS, RGB_CAMS),
  ]
  print(
      f'Raw-pixel nearest neighbour on {FLAGS.dataset} test split '
      f'({len(test)} images, {len(set(test.person_id))} ids)'
  )
  print(
      f'{"setting":<30}{"Rank-1":>8}{"Rank-5":>8}{"mAP":>8}{"chance":>8}'
      f'{"queries":>9}{"gallery":>9}'
  )
  for name, feats, qcams, gcams in settings:
    if qcams is None:  # within a modality: each camera against the others
      rows = [_score(feats, test, (c,), tuple(x for x in gcams if x != c)) for c in gcams]
      n = np.array([r[4] for r in rows], float)
      vals = [float(np.average([r[i] for r in rows], weights=n)) for i in range(4)]
      nq, ng = int(n.sum()), int(np.mean([r[5] for r in rows]))
    else:
      *vals, nq, ng = _score(feats, test, qcams, gcams)
    r1, r5, m_ap, chance = vals
    print(
        f'{name:<30}{100 * r1:>8.2f}{100 * r5:>8.2f}{100 * m_ap:>8.2f}'
        f'{100 * chance:>8.2f}{nq:>9}{ng:>9}'
    )
  print(f'({time.time() - start:.1f} s)')


if __name__ == '__main__':
  cli.run(main)
