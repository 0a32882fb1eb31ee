"""Cross-modality scoring of a feature set, and its console table."""

import numpy as np

from aligngan_jax.evaluation import ranking

RGB, IR = 0, 1


def cross_modal_metrics(features, person_id, modality, camera, *,
                        max_rank: int = 20) -> dict:
  """IR queries against the RGB gallery, cosine similarity.

  Returns rank_metrics' dict with CMC entries 'rank1', 'rank5', 'rank10',
  'rank20' and 'chance_rank1', the expected Rank-1 of a random ranking (the
  mean fraction of the gallery that matches each query).
  """
  features = np.asarray(features, np.float32)
  person_id, modality, camera = map(np.asarray, (person_id, modality, camera))
  q, g = modality == IR, modality == RGB
  distmat = -features[q] @ features[g].T   # unit-norm rows: -cosine
  result = ranking.rank_metrics(distmat, person_id[q], person_id[g], camera[q],
                                camera[g], protocol='regdb', max_rank=max_rank)
  for r in (1, 5, 10, 20):
    if r <= max_rank:
      result[f'rank{r}'] = float(result['cmc'][r - 1])
  matches = person_id[q][:, None] == person_id[g][None, :]
  has_match = matches.any(axis=1)
  result['chance_rank1'] = float(matches.mean(axis=1)[has_match].mean())
  result['num_query'], result['num_gallery'] = int(q.sum()), int(g.sum())
  return result


def format_table(result: dict, *, title: str = 'IR -> RGB') -> str:
  """A small fixed-width table of the headline numbers (in %)."""
  keys = [k for k in ('rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'mINP')
          if k in result]
  head = f'{title:<12}' + ''.join(f'{k:>9}' for k in keys)
  row = f'{"":<12}' + ''.join(f'{100 * result[k]:>9.2f}' for k in keys)
  foot = (f'{result["num_query"]} queries, {result["num_gallery"]} gallery images, '
          f'chance Rank-1 {100 * result["chance_rank1"]:.2f}%')
  return '\n'.join([head, row, foot])
