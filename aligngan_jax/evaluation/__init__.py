"""Evaluation: test features, protocols, the jnp ranking kernel, re-ranking.

Importable without TensorFlow; the caller feeds image batches (driver.py reads them through the input pipeline).

  features = flip_pooled_features(encoder, variables, images, ...)
  split = sysu_protocol(records, mode='all', shot='single', trial=0)
  metrics = rank_metrics(distmat, q_ids, g_ids, q_cams, g_cams, protocol='sysu')
  report = evaluate_features(features, records, EvalSettings())
"""

from aligngan_jax.evaluation.engine import EvalSettings
from aligngan_jax.evaluation.engine import evaluate_features
from aligngan_jax.evaluation.engine import format_report
from aligngan_jax.evaluation.features import flip_pooled_features
from aligngan_jax.evaluation.protocols import Split
from aligngan_jax.evaluation.protocols import regdb_protocol
from aligngan_jax.evaluation.protocols import sysu_protocol
from aligngan_jax.evaluation.ranking import rank_metrics
from aligngan_jax.evaluation.rerank import k_reciprocal_rerank

__all__ = [
    'EvalSettings',
    'evaluate_features',
    'format_report',
    'flip_pooled_features',
    'regdb_protocol',
    'Split',
    'sysu_protocol',
    'rank_metrics',
    'k_reciprocal_rerank',
]
