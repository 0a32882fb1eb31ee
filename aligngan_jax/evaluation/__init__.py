"""Evaluation: feature extraction, the jnp ranking kernel and reports.

Importable without TensorFlow; the caller feeds batches (see train_lib).
"""

from aligngan_jax.evaluation.features import flip_pooled_features
from aligngan_jax.evaluation.ranking import rank_metrics
from aligngan_jax.evaluation.report import cross_modal_metrics
from aligngan_jax.evaluation.report import format_table

__all__ = ['flip_pooled_features', 'rank_metrics', 'cross_modal_metrics',
           'format_table']
