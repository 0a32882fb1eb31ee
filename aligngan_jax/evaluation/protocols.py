"""Evaluation protocols as data: which records are queries, which gallery.

``records`` is any object with equal-length arrays ``person_id``,
``camera``, ``index`` (position in its (camera, id) folder) and ``path``
(relative file path, e.g. ``cam3/0006/0001.jpg``), plus ``modality`` for
RegDB: the test split of a dataset (``input_pipeline.Records`` has them).
Facts and sources: ../shared/docs/evaluation_protocols.md and docs/evaluation.md.

SYSU-MM01 gallery sampling:

* ``'seeded'`` reproduces the AGW baseline's draws exactly: Python
  ``random.seed(trial)``, identities ascending, cameras in the order
  (1, 2, 4, 5) (indoor: (1, 2)), files sorted by path, one
  ``random.choice(files)`` per (identity, camera) that has images. AGW has no
  multi-shot; the common AGW-derived extension draws
  ``np.random.choice(files, 10, replace=False)`` from NumPy's *unseeded*
  global generator, so its galleries cannot be reproduced. Here multi-shot
  draws the same call from ``np.random.RandomState(trial)`` (what the
  extension gives after ``np.random.seed(trial)``), taking every file when
  a folder holds fewer than 10.
* ``'official'`` reads the official kit's ``rand_perm_cam.mat``: cell
  [camera][person id] of a (10 trials x n) matrix of 1-based indices into the
  folder's files in ascending file-name order; trial t takes the first 1
  (single-shot) or 10 (multi-shot) indices of row t.

Queries are every infrared image (cameras 3 and 6) in both modes, ordered by
identity, camera, path. The gallery is ordered by identity, then camera, then
draw order: ties in distance resolve in that order.

LLCM (DEEN's test code): every image of one modality is a query (VIS -> IR:
the visible images; IR -> VIS: the infrared ones); the gallery holds one
image per (identity, camera) of the other modality, drawn exactly like
SYSU's seeded single shot (``random.Random(trial)``, identities ascending,
cameras ascending, files sorted by path); trials 0..9.
"""

import dataclasses
import random

import numpy as np

SYSU_QUERY_CAMERAS = (3, 6)
SYSU_GALLERY_CAMERAS = {'all': (1, 2, 4, 5), 'indoor': (1, 2)}
SYSU_SHOTS = {'single': 1, 'multi': 10}
SAMPLINGS = ('seeded', 'official')
REGDB_DIRECTIONS = {'v2t': (0, 1), 't2v': (1, 0)}  # (query, gallery) modality
LLCM_DIRECTIONS = {'v2i': (0, 1), 'i2v': (1, 0)}
NUM_TRIALS = 10


@dataclasses.dataclass(frozen=True)
class Split:
  """Query and gallery positions into ``records`` for one trial."""

  name: str  # e.g. 'sysu all single'
  protocol: str  # the rank_metrics semantics: 'sysu', 'regdb' or 'llcm'
  trial: int
  query: np.ndarray
  gallery: np.ndarray


def _folders(records, cameras=None, modality=None):
  """{(person id, camera): positions sorted by path} for the given cameras
  (all if None) and modality (both if None)."""
  person_id = np.asarray(records.person_id)
  camera = np.asarray(records.camera)
  path = np.asarray(records.path).astype(str)
  keep = np.ones(len(camera), bool) if cameras is None else np.isin(camera, cameras)
  if modality is not None:
    keep &= np.asarray(records.modality) == modality
  folders = {}
  for i in np.flatnonzero(keep):
    folders.setdefault((int(person_id[i]), int(camera[i])), []).append(i)
  return {k: np.array(sorted(v, key=lambda i: path[i]), np.int64) for k, v in folders.items()}


def _all_of(folders) -> np.ndarray:
  """Every position, by identity, camera, path."""
  parts = [folders[k] for k in sorted(folders)]
  return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _one_per_folder(folders, trial: int) -> list:
  """AGW's seeded single shot: ``random.Random(trial)``, one ``choice`` per
  (identity, camera) folder in ascending order, files sorted by path."""
  rng = random.Random(trial)
  return [rng.choice(list(folders[k])) for k in sorted(folders)]


def load_rand_perm(path: str) -> dict:
  """{(camera, person id): int array [trials, n]} from ``rand_perm_cam.mat``."""
  import scipy.io

  try:
    mat = scipy.io.loadmat(path)
  except (OSError, ValueError) as e:
    raise ValueError(
        f'cannot read the SYSU-MM01 gallery permutations {path!r}: '
        f'{e}. It is data_split/rand_perm_cam.mat of the official '
        'evaluation kit (github.com/wuancong/SYSU-MM01).'
    ) from e
  if 'rand_perm_cam' not in mat:
    raise ValueError(
        f'{path!r} has no variable rand_perm_cam '
        f'(found {sorted(k for k in mat if not k.startswith("__"))}).'
    )
  cams = np.asarray(mat['rand_perm_cam'], dtype=object).reshape(-1)
  perms = {}
  for cam, cell in enumerate(cams, start=1):
    for pid, entry in enumerate(np.asarray(cell, dtype=object).reshape(-1), start=1):
      entry = np.asarray(entry)
      if entry.size:
        perms[(cam, pid)] = entry.astype(np.int64).reshape(entry.shape[0], -1)
  return perms


def sysu_protocol(
    records,
    *,
    mode: str = 'all',
    shot: str = 'single',
    trial: int = 0,
    sampling: str = 'seeded',
    rand_perm_path: str | None = None,
    rand_perm=None,
) -> Split:
  """SYSU-MM01 query/gallery positions for one trial (see module docstring).

  ``rand_perm`` (from :func:`load_rand_perm`) may be passed instead of
  ``rand_perm_path`` to read the file once for many trials.
  """
  if mode not in SYSU_GALLERY_CAMERAS:
    raise ValueError(f'sysu_protocol: mode={mode!r}; expected all or indoor.')
  if shot not in SYSU_SHOTS:
    raise ValueError(f'sysu_protocol: shot={shot!r}; expected single or multi.')
  if sampling not in SAMPLINGS:
    raise ValueError(f'sysu_protocol: sampling={sampling!r}; expected {SAMPLINGS}.')
  num_shots = SYSU_SHOTS[shot]
  cameras = SYSU_GALLERY_CAMERAS[mode]
  folders = _folders(records, cameras)
  person_ids = sorted({pid for pid, _ in folders})
  gallery = []
  if sampling == 'seeded' and num_shots == 1:
    gallery = _one_per_folder(folders, trial)
  elif sampling == 'seeded':
    multi_rng = np.random.RandomState(trial)
    for key in sorted(folders):
      files = folders[key]
      gallery.extend(multi_rng.choice(files, min(num_shots, len(files)), replace=False))
  else:
    if rand_perm is None:
      if rand_perm_path is None:
        raise ValueError(
            "sysu_protocol(sampling='official') needs rand_perm_path: "
            'data_split/rand_perm_cam.mat of the official SYSU-MM01 '
            'evaluation kit (config.eval.rand_perm_path).'
        )
      rand_perm = load_rand_perm(rand_perm_path)
    for pid in person_ids:
      for cam in cameras:
        files = folders.get((pid, cam))
        if files is None:
          continue
        perm = rand_perm.get((cam, pid))
        if perm is None or trial >= perm.shape[0]:
          raise ValueError(
              f'rand_perm_cam has no trial {trial} for camera {cam}, '
              f'person {pid}, which has {len(files)} images.'
          )
        picks = perm[trial, :num_shots] - 1
        if picks.max() >= len(files) or picks.min() < 0:
          raise ValueError(
              f'rand_perm_cam indexes image {picks.max() + 1} of camera '
              f'{cam}, person {pid}, which has {len(files)} images.'
          )
        gallery.extend(files[picks])
  return Split(
      name=f'sysu {mode} {shot}',
      protocol='sysu',
      trial=trial,
      query=_all_of(_folders(records, SYSU_QUERY_CAMERAS)),
      gallery=np.asarray(gallery, np.int64),
  )


@dataclasses.dataclass(frozen=True)
class RegDBProtocol:
  """RegDB trial ``trial`` (1..10) in one direction.

  The trial picks the dataset split (each trial has its own 206/206 identity
  split and its own model); ``split`` then takes every visible (or thermal)
  image of that trial's test set as queries and every image of the other
  modality as the gallery. Nothing is removed; the CMC counts images.
  """

  trial: int
  direction: str

  def split(self, records) -> Split:
    query_modality, gallery_modality = REGDB_DIRECTIONS[self.direction]
    modality = np.asarray(records.modality)
    order = np.lexsort((np.asarray(records.path).astype(str), np.asarray(records.person_id)))
    return Split(
        name=f'regdb {self.direction}',
        protocol='regdb',
        trial=self.trial,
        query=order[modality[order] == query_modality],
        gallery=order[modality[order] == gallery_modality],
    )


def regdb_protocol(trial: int, direction: str = 'v2t') -> RegDBProtocol:
  """RegDB visible->thermal ('v2t', the default) or thermal->visible ('t2v')."""
  if direction not in REGDB_DIRECTIONS:
    raise ValueError(f'regdb_protocol: direction={direction!r}; expected v2t or t2v.')
  if not 1 <= trial <= NUM_TRIALS:
    raise ValueError(f'regdb_protocol: trial={trial}; RegDB trials are 1..10.')
  return RegDBProtocol(trial=trial, direction=direction)


def llcm_protocol(records, *, direction: str = 'i2v', trial: int = 0) -> Split:
  """LLCM infrared->visible ('i2v') or visible->infrared ('v2i'), one trial
  (see the module docstring)."""
  if direction not in LLCM_DIRECTIONS:
    raise ValueError(f'llcm_protocol: direction={direction!r}; expected {sorted(LLCM_DIRECTIONS)}.')
  query_modality, gallery_modality = LLCM_DIRECTIONS[direction]
  return Split(
      name=f'llcm {direction}',
      protocol='llcm',
      trial=trial,
      query=_all_of(_folders(records, modality=query_modality)),
      gallery=np.asarray(
          _one_per_folder(_folders(records, modality=gallery_modality), trial), np.int64
      ),
  )
