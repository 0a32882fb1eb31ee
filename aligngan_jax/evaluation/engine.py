"""Every requested protocol setting, every trial, from one set of features.

``evaluate_features(features, records, settings)`` takes unit-norm test
features (one row per record) and returns, per setting, the mean and
standard deviation over trials of Rank-1/5/10/20, mAP and mINP, plus the
chance Rank-1 (what a random ranking scores) and, when re-ranking is on, the
same numbers re-ranked, kept apart. ``format_report`` prints it, naming the
protocol variant next to the numbers. TensorFlow-free.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from aligngan_jax.evaluation import protocols
from aligngan_jax.evaluation import ranking
from aligngan_jax.evaluation import rerank as rerank_lib

CMC_RANKS = (1, 5, 10, 20)
METRICS = tuple(f'rank{r}' for r in CMC_RANKS) + ('mAP', 'mINP')
_TITLES = {'sysu': 'SYSU-MM01', 'regdb': 'RegDB', 'llcm': 'LLCM'}
_SAMPLING_NAMES = {
    'seeded': "seeded: AGW's random.seed(trial) draws (multi-shot: "
    'np.random.RandomState(trial))',
    'official': 'official: rand_perm_cam.mat of the SYSU-MM01 kit',
}
_CMC_NAMES = {
    'sysu': 'identity-level CMC (AGW eval_sysu); cam-3 queries skip cam 2',
    'regdb': 'image-level CMC (AGW eval_regdb); nothing removed',
    'llcm': "identity-level CMC (DEEN eval_llcm); a query's own "
    'identity in its own camera removed',
}


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """What to evaluate (``config.eval`` holds the same fields)."""

  protocol: str = 'sysu'  # 'sysu' | 'regdb' | 'llcm'
  sysu_modes: tuple[str, ...] = ('all', 'indoor')
  sysu_shots: tuple[str, ...] = ('single', 'multi')
  sampling: str = 'seeded'  # 'seeded' | 'official'
  rand_perm_path: str | None = None
  num_trials: int = protocols.NUM_TRIALS
  regdb_trial: int = 1
  regdb_directions: tuple[str, ...] = ('v2t', 't2v')
  llcm_directions: tuple[str, ...] = ('i2v', 'v2i')
  max_rank: int = 20
  rerank: bool = False
  rerank_k1: int = 20
  rerank_k2: int = 6
  rerank_lambda: float = 0.3

  @classmethod
  def from_config(cls, eval_config, **overrides) -> 'EvalSettings':
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in dict(eval_config).items() if k in fields}
    values.update(overrides)
    for key in ('sysu_modes', 'sysu_shots', 'regdb_directions', 'llcm_directions'):
      if key in values:
        values[key] = tuple(values[key])
    return cls(**values)


def splits(records, settings: EvalSettings) -> dict[str, list[protocols.Split]]:
  """{setting name: one Split per trial} for the configured protocol."""
  if settings.protocol == 'regdb':
    return {
        f'regdb {d}': [protocols.regdb_protocol(settings.regdb_trial, d).split(records)]
        for d in settings.regdb_directions
    }
  if settings.protocol == 'llcm':
    return {
        f'llcm {d}': [
            protocols.llcm_protocol(records, direction=d, trial=t)
            for t in range(settings.num_trials)
        ]
        for d in settings.llcm_directions
    }
  if settings.protocol != 'sysu':
    raise ValueError(
        f"config.eval.protocol={settings.protocol!r}: expected 'sysu', 'regdb' or 'llcm'."
    )
  rand_perm = None
  if settings.sampling == 'official':
    if not settings.rand_perm_path:
      raise ValueError(
          "config.eval.sampling='official' needs "
          'config.eval.rand_perm_path (rand_perm_cam.mat of the '
          'official SYSU-MM01 evaluation kit).'
      )
    rand_perm = protocols.load_rand_perm(settings.rand_perm_path)
  return {
      f'sysu {mode} {shot}': [
          protocols.sysu_protocol(
              records,
              mode=mode,
              shot=shot,
              trial=t,
              sampling=settings.sampling,
              rand_perm=rand_perm,
          )
          for t in range(settings.num_trials)
      ]
      for mode in settings.sysu_modes
      for shot in settings.sysu_shots
  }


class _Skip(Exception):
  """A setting that cannot be scored on this data."""


def chance_rank1(query_ids, gallery_ids, query_cams, gallery_cams, protocol: str) -> float:
  """Expected Rank-1 of a random ranking: per valid query, the fraction of
  its kept gallery that shows its identity (identity-level CMC gives the
  same expectation), averaged."""
  query_ids, gallery_ids = np.asarray(query_ids), np.asarray(gallery_ids)
  query_cams, gallery_cams = np.asarray(query_cams), np.asarray(gallery_cams)

  def count(keys, of):  # how many rows of `keys` equal each row of `of`
    table, inverse = np.unique(np.concatenate([keys, of]), axis=0, return_inverse=True)
    counts = np.bincount(inverse.reshape(-1)[: len(keys)], minlength=len(table))
    return counts[inverse.reshape(-1)[len(keys) :]]

  matches = count(gallery_ids[:, None], query_ids[:, None])
  removed = np.zeros(len(query_ids), np.int64)  # gallery items dropped
  if protocol == 'sysu':
    skips = query_cams == 3
    skipped = gallery_cams == 2
    removed = skips * skipped.sum()
    matches = matches - skips * count(gallery_ids[skipped, None], query_ids[:, None])
  elif protocol == 'llcm':
    removed = count(np.stack([gallery_ids, gallery_cams], 1), np.stack([query_ids, query_cams], 1))
    matches = matches - removed
  kept = len(gallery_ids) - removed
  valid = matches > 0
  return float(np.mean(matches[valid] / kept[valid])) if valid.any() else 0.0


def _score(distmat, split, ids, cams, max_rank):
  q, g = split.query, split.gallery
  result = ranking.rank_metrics(
      distmat, ids[q], ids[g], cams[q], cams[g], protocol=split.protocol, max_rank=max_rank
  )
  for r in CMC_RANKS:
    result[f'rank{r}'] = float(result['cmc'][min(r, max_rank) - 1])
  return result


def _summarise(trials: list[dict]) -> dict:
  out = {}
  for key in METRICS + ('chance_rank1',):
    values = np.array([t[key] for t in trials], np.float64)
    out[key] = {'mean': float(values.mean()), 'std': float(values.std())}
  out['cmc'] = np.mean([t['cmc'] for t in trials], axis=0).tolist()
  for key in ('num_query', 'num_gallery', 'num_valid_queries'):
    out[key] = float(np.mean([t[key] for t in trials]))
  out['num_trials'] = len(trials)
  return out


# Largest query x gallery distance table computed once for all trials.
_MAX_SHARED_DISTANCES = 1 << 27


def _distance_fn(features, all_splits):
  """distances(query, gallery) -> cosine distances [len(query), len(gallery)].

  Trials and settings draw their galleries from the same images, so when
  the table for every query row against every gallery image that any trial
  uses fits in memory, one matmul serves all trials (SYSU-MM01: 3,803 x
  about 6,800, instead of 40 matmuls) and each trial gathers its columns.
  """

  def direct(query, gallery):
    return _cosine_distances(features, query, gallery)

  rows = np.unique(np.concatenate([s.query for t in all_splits for s in t] + [[]])).astype(np.int64)
  cols = np.unique(np.concatenate([s.gallery for t in all_splits for s in t] + [[]])).astype(
      np.int64
  )
  if not len(rows) or not len(cols) or len(rows) * len(cols) > _MAX_SHARED_DISTANCES:
    return direct
  table = direct(rows, cols)

  def shared(query, gallery):
    return _gather_block(table, np.searchsorted(rows, query), np.searchsorted(cols, gallery))

  return shared


# Jitted: eager jnp indexing of a large table costs more than the ranking.
@jax.jit
def _cosine_distances(features, query, gallery):
  return -(features[query] @ features[gallery].T)


@jax.jit
def _gather_block(table, rows, cols):
  return jnp.take(jnp.take(table, rows, axis=0), cols, axis=1)


def evaluate_features(
    features, records, settings: EvalSettings, all_splits: dict | None = None
) -> dict:
  """Scores ``features`` ([len(records), D], unit rows) on every setting;
  ``all_splits`` (from :func:`splits`) when the caller already drew them."""
  features = jnp.asarray(features, jnp.float32)
  ids = np.asarray(records.person_id)
  cams = np.asarray(records.camera)
  plain, reranked = {}, {}
  all_splits = all_splits or splits(records, settings)
  distances = _distance_fn(features, list(all_splits.values()))
  for name, trial_splits in all_splits.items():
    trials, trials_rr = [], []
    try:
      for split in trial_splits:
        if not len(split.query) or not len(split.gallery):
          raise _Skip(f'empty {"query set" if not len(split.query) else "gallery"}')
        chance = chance_rank1(
            ids[split.query],
            ids[split.gallery],
            cams[split.query],
            cams[split.gallery],
            split.protocol,
        )
        if chance == 0.0:
          raise _Skip('no query has a true match in the gallery')
        extra = {
            'chance_rank1': chance,
            'num_query': len(split.query),
            'num_gallery': len(split.gallery),
        }
        trials.append(
            {
                **_score(
                    distances(split.query, split.gallery), split, ids, cams, settings.max_rank
                ),
                **extra,
            }
        )
        if settings.rerank:
          dist = rerank_lib.k_reciprocal_rerank(
              features[split.query],
              features[split.gallery],
              k1=settings.rerank_k1,
              k2=settings.rerank_k2,
              lambda_value=settings.rerank_lambda,
          )
          trials_rr.append({**_score(dist, split, ids, cams, settings.max_rank), **extra})
    except _Skip as skip:
      # A dataset may lack a setting's cameras (e.g. a tiny test split with
      # no indoor RGB images): report why instead of failing the run.
      plain[name] = {'skipped': f'trial {split.trial}: {skip}'}
      if settings.rerank:
        reranked[name] = plain[name]
      continue
    plain[name] = _summarise(trials)
    if settings.rerank:
      reranked[name] = _summarise(trials_rr)
  result = {
      'protocol': settings.protocol,
      'variant': {
          'cmc': _CMC_NAMES[settings.protocol],
          'ties': 'stable sort: gallery order',
          'similarity': 'cosine of L2-normalised features',
      },
      'results': plain,
  }
  if settings.protocol == 'sysu':
    result['variant']['sampling'] = _SAMPLING_NAMES[settings.sampling]
  elif settings.protocol == 'llcm':
    result['variant'][
        'sampling'
    ] = "DEEN's random.Random(trial) draws, one image per (identity, camera)"
  else:
    result['variant']['trial'] = settings.regdb_trial
  if settings.rerank:
    result['reranked'] = reranked
    result['variant']['rerank'] = (
        f'k-reciprocal (Zhong et al. 2017), k1={settings.rerank_k1}, '
        f'k2={settings.rerank_k2}, lambda={settings.rerank_lambda}'
    )
  return result


def setting_title(name: str) -> str:
  """'sysu all single' -> 'all-search single-shot' (report and plot labels)."""
  parts = name.split()
  if parts[0] == 'sysu':
    return f'{parts[1]}-search {parts[2]}-shot'
  return {
      'v2t': 'visible -> thermal',
      't2v': 'thermal -> visible',
      'v2i': 'visible -> infrared',
      'i2v': 'infrared -> visible',
  }[parts[1]]


def protocol_title(protocol: str) -> str:
  return _TITLES[protocol]


def format_report(result: dict) -> str:
  """The console table: mean +- std over trials, in %."""
  title = protocol_title(result['protocol'])
  lines = [f'{title} evaluation (mean ± std over trials, in %)']
  lines += [f'  {k}: {v}' for k, v in result['variant'].items()]
  blocks = [('', result['results'])]
  if 'reranked' in result:
    blocks = [('plain', result['results']), ('RE-RANKED', result['reranked'])]
  head = (
      f'{"setting":<28}'
      + ''.join(f'{m:>14}' for m in METRICS)
      + f'{"chance R1":>11}{"trials":>7}{"query":>7}{"gallery":>8}'
  )
  for label, table in blocks:
    if label:
      lines.append(f'-- {label} --')
    lines.append(head)
    for name, row in table.items():
      if 'skipped' in row:
        lines.append(f'{setting_title(name):<28}n/a ({row["skipped"]})')
        continue
      cells = ''.join(f'{100 * row[m]["mean"]:>8.2f}±{100 * row[m]["std"]:<5.2f}' for m in METRICS)
      lines.append(
          f'{setting_title(name):<28}{cells}'
          f'{100 * row["chance_rank1"]["mean"]:>11.2f}'
          f'{row["num_trials"]:>7d}{row["num_query"]:>7.0f}'
          f'{row["num_gallery"]:>8.0f}'
      )
  return '\n'.join(lines)


def scalars(result: dict) -> dict[str, float]:
  """TensorBoard scalars: eval/<setting>/<metric> (re-ranked: eval_rerank/)."""
  out = {}
  for prefix, key in (('eval', 'results'), ('eval_rerank', 'reranked')):
    for name, row in result.get(key, {}).items():
      if 'skipped' in row:
        continue
      for metric in METRICS + ('chance_rank1',):
        out[f'{prefix}/{name.replace(" ", "_")}/{metric}'] = row[metric]['mean']
  return out
