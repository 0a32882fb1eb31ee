"""Protocol samplers on a small tree in SYSU-MM01's on-disk layout."""

import os
import random
import types

import numpy as np
import pytest
import scipy.io

from aligngan_jax.evaluation import protocols

# (person id, camera) -> number of images; id 9 has no RGB images at all,
# id 4 is outdoor only, several folders hold more than 10 images.
_TREE = {
    (2, 1): 3,
    (2, 2): 12,
    (2, 3): 4,
    (2, 5): 11,
    (2, 6): 2,
    (4, 4): 5,
    (4, 5): 1,
    (4, 6): 3,
    (7, 1): 14,
    (7, 2): 2,
    (7, 3): 6,
    (7, 4): 2,
    (7, 6): 1,
    (9, 3): 2,
    (9, 6): 2,
    (11, 2): 1,
    (11, 4): 13,
    (11, 5): 3,
    (11, 3): 1,
}


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
  root = tmp_path_factory.mktemp('SYSU-MM01')
  for (pid, cam), n in _TREE.items():
    folder = root / f'cam{cam}' / f'{pid:04d}'
    folder.mkdir(parents=True)
    for i in range(n):
      (folder / f'{i + 1:04d}.jpg').write_bytes(b'')
  return str(root)


def _records(root, seed=0):
  """Records from walking the tree, deliberately in a shuffled order."""
  rows = []
  for cam_dir in os.listdir(root):
    for pid in os.listdir(os.path.join(root, cam_dir)):
      for i, name in enumerate(sorted(os.listdir(os.path.join(root, cam_dir, pid)))):
        rows.append((int(pid), int(cam_dir[3:]), i, f'{cam_dir}/{pid}/{name}'))
  rows = [rows[i] for i in np.random.default_rng(seed).permutation(len(rows))]
  pid, cam, index, path = zip(*rows)
  return types.SimpleNamespace(
      person_id=np.array(pid),
      camera=np.array(cam),
      index=np.array(index),
      path=np.array(path),
      modality=np.isin(cam, (3, 6)).astype(int),
  )


def _agw_gallery(root, mode, trial, shots):
  """AGW's process_gallery_sysu, as the protocol doc describes it."""
  random.seed(trial)
  np.random.seed(trial)  # the multi-shot extension's global NumPy draw
  cams = ['cam1', 'cam2', 'cam4', 'cam5'] if mode == 'all' else ['cam1', 'cam2']
  ids = sorted({f'{pid:04d}' for pid, _ in _TREE})
  files = []
  for pid in sorted(ids):
    for cam in cams:
      folder = os.path.join(root, cam, pid)
      if os.path.isdir(folder):
        new = sorted(folder + '/' + f for f in os.listdir(folder))
        if shots == 1:
          files.append(random.choice(new))
        else:
          files.extend(np.random.choice(new, min(10, len(new)), replace=False))
  return [os.path.relpath(f, root) for f in files]


def _agw_queries(root):
  files = []
  for pid in sorted({f'{pid:04d}' for pid, _ in _TREE}):
    for cam in ('cam3', 'cam6'):
      folder = os.path.join(root, cam, pid)
      if os.path.isdir(folder):
        files.extend(sorted(folder + '/' + f for f in os.listdir(folder)))
  return [os.path.relpath(f, root) for f in files]


@pytest.mark.parametrize('mode', ['all', 'indoor'])
@pytest.mark.parametrize('shot', ['single', 'multi'])
def test_seeded_sampler_reproduces_agw_draws(tree, mode, shot):
  records = _records(tree)
  for trial in range(10):
    split = protocols.sysu_protocol(records, mode=mode, shot=shot, trial=trial)
    assert split.protocol == 'sysu' and split.trial == trial
    assert list(records.path[split.gallery]) == _agw_gallery(
        tree, mode, trial, protocols.SYSU_SHOTS[shot]
    )
    assert list(records.path[split.query]) == _agw_queries(tree)


def test_seeded_draws_vary_by_trial_but_not_by_record_order(tree):
  records, shuffled = _records(tree), _records(tree, seed=5)
  paths = [list(records.path[protocols.sysu_protocol(records, trial=t).gallery]) for t in range(10)]
  assert len({tuple(p) for p in paths}) > 1
  again = protocols.sysu_protocol(shuffled, trial=3)
  assert list(shuffled.path[again.gallery]) == paths[3]


def _write_rand_perm(path, trials=10, seed=0):
  """A rand_perm_cam.mat in the official layout: cell{cam}{pid} = 10 x n."""
  rng = np.random.default_rng(seed)
  max_pid = max(pid for pid, _ in _TREE)
  cams = np.empty((6, 1), dtype=object)
  perms = {}
  for cam in range(1, 7):
    cell = np.empty((max_pid, 1), dtype=object)
    for pid in range(1, max_pid + 1):
      n = _TREE.get((pid, cam), 0)
      perm = (
          np.stack([rng.permutation(n) + 1 for _ in range(trials)]).astype(float)
          if n
          else np.zeros((0, 0))
      )
      cell[pid - 1, 0] = perm
      perms[(cam, pid)] = perm
    cams[cam - 1, 0] = cell
  scipy.io.savemat(path, {'rand_perm_cam': cams})
  return perms


@pytest.mark.parametrize('mode', ['all', 'indoor'])
@pytest.mark.parametrize('shot', ['single', 'multi'])
def test_official_sampler_honours_rand_perm_cam(tree, tmp_path, mode, shot):
  mat = str(tmp_path / 'rand_perm_cam.mat')
  perms = _write_rand_perm(mat)
  records = _records(tree)
  k = protocols.SYSU_SHOTS[shot]
  cams = protocols.SYSU_GALLERY_CAMERAS[mode]
  for trial in (0, 4, 9):
    split = protocols.sysu_protocol(
        records, mode=mode, shot=shot, trial=trial, sampling='official', rand_perm_path=mat
    )
    expected = []
    for pid in sorted({p for p, _ in _TREE}):
      for cam in cams:
        n = _TREE.get((pid, cam), 0)
        if n:
          expected += [f'cam{cam}/{pid:04d}/{int(i):04d}.jpg' for i in perms[(cam, pid)][trial, :k]]
    assert list(records.path[split.gallery]) == expected


def test_official_sampler_errors_name_the_problem(tree, tmp_path):
  records = _records(tree)
  with pytest.raises(ValueError, match='rand_perm_path'):
    protocols.sysu_protocol(records, sampling='official')
  with pytest.raises(ValueError, match='missing.mat'):
    protocols.sysu_protocol(
        records, sampling='official', rand_perm_path=str(tmp_path / 'missing.mat')
    )
  mat = str(tmp_path / 'short.mat')
  _write_rand_perm(mat, trials=2)
  with pytest.raises(ValueError, match='no trial 5'):
    protocols.sysu_protocol(records, sampling='official', rand_perm_path=mat, trial=5)


def test_regdb_directions():
  records = types.SimpleNamespace(
      person_id=np.array([3, 1, 1, 3, 1, 3]),
      camera=np.array([1, 2, 1, 2, 2, 1]),
      index=np.zeros(6, int),
      modality=np.array([0, 1, 0, 1, 1, 0]),
      path=np.array(['v/3/a', 't/1/a', 'v/1/a', 't/3/a', 't/1/b', 'v/3/b']),
  )
  v2t = protocols.regdb_protocol(1).split(records)
  assert v2t.protocol == 'regdb'
  assert list(records.path[v2t.query]) == ['v/1/a', 'v/3/a', 'v/3/b']
  assert list(records.path[v2t.gallery]) == ['t/1/a', 't/1/b', 't/3/a']
  t2v = protocols.regdb_protocol(1, 't2v').split(records)
  np.testing.assert_array_equal(t2v.query, v2t.gallery)
  np.testing.assert_array_equal(t2v.gallery, v2t.query)
  with pytest.raises(ValueError, match='direction'):
    protocols.regdb_protocol(1, 'sideways')
  with pytest.raises(ValueError, match='1..10'):
    protocols.regdb_protocol(0)


def _llcm_records(seed=0):
  """An LLCM-like test split in the original layout (vis/<id>/..., nir/<id>/...):
  both modalities share camera numbers; NIR has no camera 3 (as on LLCM)."""
  rng = np.random.default_rng(seed)
  rows = []
  for pid in (5, 12, 31):
    for modality, name, cams in ((0, 'vis', range(1, 10)), (1, 'nir', (1, 2, 4, 6, 9))):
      for cam in cams:
        if rng.random() < 0.3:
          continue  # not every camera sees everyone
        names = [
            f'{pid:04d}_c{cam:02d}_s{int(s)}_f{int(f)}_{name}.jpg'
            for s, f in rng.integers(10_000, 99_999, (int(rng.integers(1, 6)), 2))
        ]
        rows += [(pid, cam, modality, f'{name}/{pid:04d}/{n}') for n in names]
  rows = [rows[i] for i in rng.permutation(len(rows))]
  pid, cam, modality, path = map(np.array, zip(*rows))
  return types.SimpleNamespace(
      person_id=pid, camera=cam, modality=modality, path=path, index=np.zeros(len(pid), int)
  )


def _deen_llcm(records, query_modality, trial):
  """DEEN's process_query_llcm / process_gallery_llcm over the same images:
  folders test_<modality>/cam<c>/<id>, ids sorted as 4-digit strings, cameras
  in list order, files sorted, one random.Random(trial).choice per folder."""
  folders = {}
  for p, c, m, path in zip(records.person_id, records.camera, records.modality, records.path):
    folders.setdefault((m, f'cam{c}', f'{p:04d}'), []).append(path)
  ids = sorted({f'{p:04d}' for p in records.person_id})

  def walk(modality):
    for pid in ids:
      for cam in [f'cam{c}' for c in range(1, 10)]:
        if (modality, cam, pid) in folders:
          yield sorted(folders[(modality, cam, pid)], key=os.path.basename)

  rng = random.Random(trial)
  query = [p for files in walk(query_modality) for p in files]
  gallery = [rng.choice(files) for files in walk(1 - query_modality)]
  return query, gallery


def test_llcm_sampler_reproduces_deen_draws():
  records = _llcm_records()
  for direction, query_modality in (('i2v', 1), ('v2i', 0)):
    for trial in range(10):
      split = protocols.llcm_protocol(records, direction=direction, trial=trial)
      want_query, want_gallery = _deen_llcm(records, query_modality, trial)
      assert split.protocol == 'llcm'
      assert list(records.path[split.query]) == want_query
      assert list(records.path[split.gallery]) == want_gallery
  draws = {tuple(protocols.llcm_protocol(records, trial=t).gallery) for t in range(10)}
  assert len(draws) > 1
  with pytest.raises(ValueError, match='direction'):
    protocols.llcm_protocol(records, direction='t2v')
