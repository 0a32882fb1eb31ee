"""The per-stage diagnostics on a hand-computed case (issue 14)."""

import numpy as np
import pytest

from aligngan_jax.evaluation import diagnostics

RGB, IR = diagnostics.RGB, diagnostics.IR


def _case():
  """Two people A (1) and B (2): fake IR from RGB camera 1, real IR from
  cameras 3 and 6. Person A's camera-6 image looks like B."""
  e1, e2 = np.eye(3)[0], np.eye(3)[1]
  features = np.stack(
      [e1, e2, e1, e2, e2, e2]  # fake IR of A, B (camera 1)  # IR of A, B (camera 3)
  )  # IR of A, B (camera 6)
  ids = np.array([1, 2, 1, 2, 1, 2])
  cams = np.array([1, 1, 3, 3, 6, 6])
  modality = np.array([RGB, RGB, IR, IR, IR, IR])
  return features, ids, cams, modality


def test_diagnose_matches_a_hand_computed_case():
  out = diagnostics.diagnose(*_case())
  # (b) A's fake IR ranks [A3 (cos 1); B3, A6, B6 tied at 0, gallery order]:
  # hit at 1, second match at 3; B's: [B3, A6, B6 tied at 1; A3]: hit at 1,
  # second match at 3. AP = (1/1 + 2/3) / 2 for both.
  b = out['fake_ir_to_ir']
  assert b['rank1'] == 1.0
  assert b['mAP'] == pytest.approx((1 + 2 / 3) / 2)
  assert b['chance_rank1'] == pytest.approx(0.5)
  # (c) camera 3 -> 6: A3 ties A6/B6, A6 first (hit); B3 ties too, A6 first
  # (miss). Camera 6 -> 3: A6 is closest to B3 (miss), B6 to B3 (hit).
  c = out['ir_to_ir']
  assert c['rank1'] == pytest.approx(0.5)
  assert c['num_query'] == 4
  # (d) cos(fake, real) same person: A-A3 1, A-A6 0, B-B3 1, B-B6 1;
  # different: A-B3 0, A-B6 0, B-A3 0, B-A6 1.
  cos = out['cosine']
  assert cos['same_mean'] == pytest.approx(0.75)
  assert cos['same_std'] == pytest.approx(np.std([1, 0, 1, 1]))
  assert cos['different_mean'] == pytest.approx(0.25)
  assert cos['gap'] == pytest.approx(0.5)


def test_one_ir_camera_skips_ir_to_ir_and_scalars_skip_it_too():
  features, ids, cams, modality = _case()
  cams = np.where(cams == 6, 3, cams)
  out = diagnostics.diagnose(features, ids, cams, modality)
  assert 'skipped' in out['ir_to_ir']
  tags = diagnostics.scalars(out)
  assert 'diagnostics/fake_ir_to_ir/rank1' in tags
  assert not any(t.startswith('diagnostics/ir_to_ir/') for t in tags)


def test_format_table_shows_every_measure():
  out = diagnostics.diagnose(*_case())
  row = {
      'stage': 1,
      'step': 10,
      'diagnostics': out,
      'protocol': {'rank1': 0.25, 'mAP': 0.5, 'chance_rank1': 0.1},
  }
  table = diagnostics.format_table([row])
  assert '25.0/50.0 (10.0)' in table  # (a)
  assert '100.0/83.3 (50.0)' in table  # (b)
  assert '0.750/0.250 (+0.500)' in table  # (d)
  assert '(e)' not in table  # no infrared twins: no column
  with_e = dict(
      row,
      diagnostics={
          **out,
          'translation': {
              'l1': 0.1234,
              'luminance_l1': 0.25,
              'linear_l1': 0.125,
              'ssim': 0.5,
              'luminance_ssim': -0.25,
              'linear_ssim': 0.75,
              'num_images': 3,
          },
      },
  )
  table = diagnostics.format_table([row, with_e])
  assert '(e) L1 G/luma/lin' in table
  assert '0.123/0.250/0.125' in table and '0.50/-0.25/0.75' in table
  assert table.splitlines()[2].endswith('n/a')  # the row without (e)
  assert diagnostics.scalars(with_e['diagnostics'])['diagnostics/translation/l1'] == 0.1234
