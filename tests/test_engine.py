"""The evaluation driver: every setting and trial from one set of features."""

import types

import numpy as np
import pytest

from aligngan_jax.evaluation import engine


def _records(num_ids=12, seed=0):
  """A SYSU-like test split: every id in cams 3, 6 and most RGB cameras."""
  rng = np.random.default_rng(seed)
  rows = []
  for pid in range(1, num_ids + 1):
    for cam in (1, 2, 3, 4, 5, 6):
      if cam in (1, 2) and pid % 3 == 0:
        continue  # some ids never seen indoors
      for i in range(int(rng.integers(2, 13))):
        rows.append((pid, cam, i, f'cam{cam}/{pid:04d}/{i + 1:04d}.jpg'))
  pid, cam, index, path = map(np.array, zip(*rows))
  return types.SimpleNamespace(
      person_id=pid, camera=cam, index=index, path=path, modality=np.isin(cam, (3, 6)).astype(int)
  )


def _identity_features(records, noise, seed=0):
  rng = np.random.default_rng(seed)
  f = np.eye(64)[records.person_id] + noise * rng.normal(size=(len(records.person_id), 64))
  return f / np.linalg.norm(f, axis=1, keepdims=True)


def test_perfect_features_score_100_and_noise_scores_near_chance():
  records = _records()
  settings = engine.EvalSettings(num_trials=3)
  perfect = engine.evaluate_features(_identity_features(records, 0.0), records, settings)
  assert set(perfect['results']) == {
      'sysu all single',
      'sysu all multi',
      'sysu indoor single',
      'sysu indoor multi',
  }
  for row in perfect['results'].values():
    assert row['rank1']['mean'] == pytest.approx(1.0)
    assert row['mAP']['mean'] == pytest.approx(1.0)
    assert row['num_trials'] == 3
  rng = np.random.default_rng(1)
  noise = rng.normal(size=(len(records.person_id), 64))
  noise /= np.linalg.norm(noise, axis=1, keepdims=True)
  random = engine.evaluate_features(noise, records, settings)
  for row in random['results'].values():
    assert row['rank1']['mean'] < 4 * row['chance_rank1']['mean']


def test_setting_sizes_follow_the_protocol():
  records = _records()
  result = engine.evaluate_features(
      _identity_features(records, 0.5), records, engine.EvalSettings(num_trials=2)
  )
  folders = {(p, c) for p, c in zip(records.person_id, records.camera)}
  rgb_all = sum(c in (1, 2, 4, 5) for _, c in folders)
  rgb_indoor = sum(c in (1, 2) for _, c in folders)
  num_ir = int(np.isin(records.camera, (3, 6)).sum())
  res = result['results']
  assert res['sysu all single']['num_gallery'] == rgb_all
  assert res['sysu indoor single']['num_gallery'] == rgb_indoor
  assert res['sysu all single']['num_query'] == num_ir
  # Indoor: only queries of ids seen by cams 1/2 are valid.
  indoor_ids = {p for p, c in folders if c in (1, 2)}
  assert res['sysu indoor single']['num_valid_queries'] == sum(
      p in indoor_ids for p, c in zip(records.person_id, records.camera) if c in (3, 6)
  )


def test_chance_rank1_matches_brute_force():
  rng = np.random.default_rng(0)
  q_ids, g_ids = rng.integers(0, 6, 30), rng.integers(0, 6, 40)
  for protocol in ('sysu', 'regdb', 'llcm'):
    if protocol == 'llcm':  # cameras shared by query and gallery
      q_cams, g_cams = rng.integers(1, 4, 30), rng.integers(1, 4, 40)
      keep = ~((q_ids[:, None] == g_ids[None, :]) & (q_cams[:, None] == g_cams[None, :]))
    else:
      q_cams, g_cams = rng.choice([3, 6], 30), rng.choice([1, 2, 4, 5], 40)
      keep = ~((q_cams[:, None] == 3) & (g_cams[None, :] == 2) & (protocol == 'sysu'))
    match = (q_ids[:, None] == g_ids[None, :]) & keep
    valid = match.any(1)
    want = (match.sum(1) / keep.sum(1))[valid].mean()
    assert engine.chance_rank1(q_ids, g_ids, q_cams, g_cams, protocol) == pytest.approx(want)


def test_rerank_rows_are_labelled_apart_and_report_names_the_variant():
  records = _records(num_ids=8)
  settings = engine.EvalSettings(
      num_trials=1, sysu_shots=('single',), rerank=True, rerank_k1=5, rerank_k2=2
  )
  result = engine.evaluate_features(_identity_features(records, 0.8), records, settings)
  assert set(result['reranked']) == set(result['results'])
  text = engine.format_report(result)
  for phrase in (
      'SYSU-MM01',
      'seeded',
      'identity-level',
      'RE-RANKED',
      'k1=5',
      'all-search single-shot',
  ):
    assert phrase in text
  scalars = engine.scalars(result)
  assert 'eval/sysu_all_single/rank1' in scalars
  assert 'eval_rerank/sysu_all_single/rank1' in scalars


def test_regdb_settings_and_missing_cameras_are_reported_not_fatal():
  records = _records(num_ids=6)
  regdb = engine.evaluate_features(
      _identity_features(records, 0.0),
      records,
      engine.EvalSettings(protocol='regdb', regdb_trial=3),
  )
  assert set(regdb['results']) == {'regdb v2t', 'regdb t2v'}
  assert regdb['variant']['trial'] == 3
  assert regdb['results']['regdb v2t']['rank1']['mean'] == pytest.approx(1.0)
  outdoor_only = records.camera != 1
  outdoor_only &= records.camera != 2
  sub = types.SimpleNamespace(**{k: v[outdoor_only] for k, v in vars(records).items()})
  result = engine.evaluate_features(
      _identity_features(sub, 0.0), sub, engine.EvalSettings(num_trials=1)
  )
  assert 'empty gallery' in result['results']['sysu indoor single']['skipped']
  assert 'n/a (trial 0: empty gallery)' in engine.format_report(result)


def test_shared_distance_table_equals_per_trial_distances(monkeypatch):
  # One matmul for all trials (the default here) must score exactly like
  # per-trial matmuls (used when the table would be too large).
  records = _records()
  features = _identity_features(records, 1.0)
  settings = engine.EvalSettings(num_trials=2)
  shared = engine.evaluate_features(features, records, settings)
  monkeypatch.setattr(engine, '_MAX_SHARED_DISTANCES', 0)
  per_trial = engine.evaluate_features(features, records, settings)
  for name, row in shared['results'].items():
    for metric in engine.METRICS:
      assert row[metric]['mean'] == pytest.approx(
          per_trial['results'][name][metric]['mean'], abs=1e-6
      )


def test_llcm_settings_sizes_and_report():
  # Both modalities on cameras 1..3; queries lose their own camera's images.
  rows = [
      (pid, cam, m, f'{"vn"[m]}/{pid}/{pid:04d}_c{cam:02d}_{k}.jpg')
      for pid in range(1, 9)
      for m in (0, 1)
      for cam in (1, 2, 3)
      for k in range(1 + (pid + cam + m) % 3)
  ]
  pid, cam, modality, path = map(np.array, zip(*rows))
  records = types.SimpleNamespace(
      person_id=pid, camera=cam, modality=modality, path=path, index=np.zeros(len(pid), int)
  )
  settings = engine.EvalSettings(protocol='llcm', num_trials=2)
  perfect = engine.evaluate_features(_identity_features(records, 0.0), records, settings)
  assert set(perfect['results']) == {'llcm i2v', 'llcm v2i'}
  for name, query_modality in (('llcm i2v', 1), ('llcm v2i', 0)):
    row = perfect['results'][name]
    assert row['rank1']['mean'] == pytest.approx(1.0)
    assert row['num_query'] == (modality == query_modality).sum()
    assert row['num_gallery'] == 8 * 3  # one per (id, camera)
    # Each query drops 1 of 24 images (its id, its camera) and keeps its
    # id in the 2 other cameras: chance = 2/23.
    assert row['chance_rank1']['mean'] == pytest.approx(2 / 23)
  text = engine.format_report(perfect)
  for phrase in ('LLCM', 'infrared -> visible', 'visible -> infrared', 'DEEN'):
    assert phrase in text
