"""What each AlignGAN stage contributes, from the test features (issue 14).

The protocol's number (IR queries against the RGB gallery translated to
fake IR) says whether the model works, not why it does not. Three cheap
side measures, computed from the same features (RGB rows: flip-pooled
features of G_rgb2ir(RGB); IR rows: of the real IR image), locate a
failure:

* ``fake_ir_to_ir``: fake-IR queries against every real-IR image of the
  test people. Low while IR->IR is high: the generator loses identity (or
  the encoder does not read it in fake IR).
* ``ir_to_ir``: IR queries of one IR camera against the IR images of the
  other IR cameras. Low: the encoder does not know IR identities at all.
* ``cosine``: mean and spread of the cosine similarity between fake-IR and
  real-IR features of the same person and of different people. Both means
  near 1 with a small gap is a collapsed feature space (every image looks
  alike to the encoder).

Where the dataset holds the true infrared twin of every RGB test image
(synthetic worlds only), the training loop adds ``translation``
(`translation.Truth.measure`): diagnostic (e), the generator's L1 and SSIM
against the truth beside the luminance and linear-map references.

Rank-1 and mAP follow the ranking kernel with nothing removed (images are
counted, as RegDB's CMC); chance Rank-1 is the expected Rank-1 of a random
ranking. No TensorFlow.
"""

import jax.numpy as jnp
import numpy as np

from aligngan_jax.evaluation import engine
from aligngan_jax.evaluation import ranking

RGB, IR = 0, 1  # the `modality` values of input_pipeline.Records
_MAX_COSINE_ROWS = 2048  # per modality: the cosine statistics subsample


def _retrieval(features, query, gallery, ids, cams) -> dict:
  dist = -(features[query] @ features[gallery].T)
  metrics = ranking.rank_metrics(
      dist, ids[query], ids[gallery], cams[query], cams[gallery], protocol='regdb', max_rank=1
  )
  return {
      'rank1': float(metrics['cmc'][0]),
      'mAP': metrics['mAP'],
      'chance_rank1': engine.chance_rank1(
          ids[query], ids[gallery], cams[query], cams[gallery], 'regdb'
      ),
      'num_query': len(query),
      'num_gallery': len(gallery),
  }


def _skipped(why):
  return {'skipped': why}


def cosine_statistics(features, ids, rgb, ir, seed: int = 0) -> dict:
  """Mean and std of cos(fake IR, real IR) over same-person and
  different-person pairs (at most 2,048 rows of each modality, seeded)."""
  rng = np.random.default_rng(seed)
  rgb = (
      rgb
      if len(rgb) <= _MAX_COSINE_ROWS
      else np.sort(rng.choice(rgb, _MAX_COSINE_ROWS, replace=False))
  )
  ir = (
      ir
      if len(ir) <= _MAX_COSINE_ROWS
      else np.sort(rng.choice(ir, _MAX_COSINE_ROWS, replace=False))
  )
  cos = np.asarray(features[rgb] @ features[ir].T, np.float64)
  same = ids[rgb][:, None] == ids[ir][None, :]
  out = {}
  for name, mask in (('same', same), ('different', ~same)):
    values = cos[mask]
    out[f'{name}_mean'] = float(values.mean()) if values.size else float('nan')
    out[f'{name}_std'] = float(values.std()) if values.size else float('nan')
  out['gap'] = out['same_mean'] - out['different_mean']
  return out


def diagnose(features, person_id, camera, modality) -> dict:
  """The three measures of the module docstring from unit-norm ``features``
  ([n, D], one row per test image) and the images' ids, cameras and
  modalities (RGB rows hold fake-IR features)."""
  features = jnp.asarray(features, jnp.float32)
  ids, cams, modality = (np.asarray(a) for a in (person_id, camera, modality))
  rgb, ir = np.flatnonzero(modality == RGB), np.flatnonzero(modality == IR)
  out = {}
  shared = np.intersect1d(ids[rgb], ids[ir])
  if len(rgb) and len(shared):
    query = rgb[np.isin(ids[rgb], shared)]
    out['fake_ir_to_ir'] = _retrieval(features, query, ir, ids, cams)
  else:
    out['fake_ir_to_ir'] = _skipped('no person with both RGB and IR test images')
  ir_cams = np.unique(cams[ir])
  if len(ir_cams) < 2:
    out['ir_to_ir'] = _skipped(f'one IR camera ({ir_cams.tolist()}): no pair of IR cameras')
  else:
    rows, weights = [], []
    for cam in ir_cams:
      query, gallery = ir[cams[ir] == cam], ir[cams[ir] != cam]
      query = query[np.isin(ids[query], ids[gallery])]
      if len(query):
        rows.append(_retrieval(features, query, gallery, ids, cams))
        weights.append(len(query))
    if rows:
      w = np.asarray(weights, np.float64) / sum(weights)
      out['ir_to_ir'] = {
          k: float(np.dot(w, [r[k] for r in rows])) for k in ('rank1', 'mAP', 'chance_rank1')
      }
      out['ir_to_ir'].update(
          num_query=int(sum(weights)), num_gallery=int(np.mean([r['num_gallery'] for r in rows]))
      )
    else:
      out['ir_to_ir'] = _skipped('no IR query has its person in another IR camera')
  if len(rgb) and len(ir):
    out['cosine'] = cosine_statistics(np.asarray(features), ids, rgb, ir)
  else:
    out['cosine'] = _skipped('needs RGB and IR test images')
  return out


def scalars(diagnostics: dict, prefix: str = 'diagnostics') -> dict[str, float]:
  """TensorBoard scalars: diagnostics/<measure>/<value>."""
  return {
      f'{prefix}/{name}/{key}': value
      for name, row in diagnostics.items()
      if 'skipped' not in row
      for key, value in row.items()
      if isinstance(value, float)
  }


def protocol_summary(result: dict) -> dict:
  """(setting, Rank-1, mAP, chance Rank-1) of the first scored setting of an
  ``engine.evaluate_features`` result: the protocol's headline number."""
  for name, row in result['results'].items():
    if 'skipped' not in row:
      return {
          'setting': engine.setting_title(name),
          'rank1': row['rank1']['mean'],
          'mAP': row['mAP']['mean'],
          'chance_rank1': row['chance_rank1']['mean'],
      }
  return {'setting': 'none scored'}


def format_table(rows: list[dict]) -> str:
  """The per-stage console table: one row per evaluation (``stage``,
  ``step``, ``protocol`` from `protocol_summary`, ``diagnostics`` from
  `diagnose`), Rank-1 / mAP in % and cosines; with (e), the translation
  error of the generator, the luminance and the linear map (L1 in [0, 1]
  pixel units, lower is better; SSIM, higher is better), a column that
  appears only where some row has it."""
  head = (
      f'{"stage":>5} {"step":>7} | {"(a) IR->RGB R1/mAP":>19} | '
      f'{"(b) fakeIR->IR R1/mAP":>22} | {"(c) IR->IR R1/mAP":>18} | '
      f'{"(d) cos same/diff (gap)":>24}'
  )
  with_e = any('translation' in r['diagnostics'] for r in rows)
  if with_e:
    head += f' | {"(e) L1 G/luma/lin":>20} | {"SSIM G/luma/lin":>17}'
  lines = [
      'Per-stage diagnostics (test people; Rank-1 and mAP in %, chance Rank-1 in brackets)',
      head,
  ]

  def pair(row):
    if not row or 'skipped' in row or 'rank1' not in row:
      return 'n/a'
    return f'{100 * row["rank1"]:.1f}/{100 * row["mAP"]:.1f} ({100 * row["chance_rank1"]:.1f})'

  for r in rows:
    d = r['diagnostics']
    cos = d['cosine']
    cos_text = (
        'n/a'
        if 'skipped' in cos
        else f'{cos["same_mean"]:.3f}/{cos["different_mean"]:.3f} ({cos["gap"]:+.3f})'
    )
    line = (
        f'{r["stage"]:>5} {r["step"]:>7} | {pair(r["protocol"]):>19} | '
        f'{pair(d["fake_ir_to_ir"]):>22} | {pair(d["ir_to_ir"]):>18} | '
        f'{cos_text:>24}'
    )
    if with_e:
      e = d.get('translation')
      l1_text, ssim_text = (
          ('n/a', 'n/a')
          if e is None
          else (
              f'{e["l1"]:.3f}/{e["luminance_l1"]:.3f}/{e["linear_l1"]:.3f}',
              f'{e["ssim"]:.2f}/{e["luminance_ssim"]:.2f}/{e["linear_ssim"]:.2f}',
          )
      )
      line += f' | {l1_text:>20} | {ssim_text:>17}'
    lines.append(line)
  return '\n'.join(lines)
