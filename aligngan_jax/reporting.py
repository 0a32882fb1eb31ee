"""Console progress (steps/s, images/s, ETA) and metric averaging."""

import math
import os
import time

import jax
import ml_collections
import numpy as np


def mean_metrics(history: list[dict]) -> dict[str, float]:
  """Averages a list of per-step metric dicts (device scalars or host
  values) on the host."""
  host = jax.device_get(history)
  return {k: float(np.mean([h[k] for h in host])) for k in host[0]}


def first_non_finite(history: list[dict], *, first_step: int):
  """(step, sorted terms) of the first step in ``history`` (the steps after
  ``first_step``, in order) with a NaN or infinite metric, or None. Every
  step's losses are checked, when they are read for the log."""
  for offset, metrics in enumerate(jax.device_get(history)):
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(float(v)))
    if bad:
      return first_step + offset + 1, bad
  return None


def format_duration(seconds: float) -> str:
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}:{m:02d}:{s:02d}' if h else f'{m}:{s:02d}'


class Progress:
  """Times training between reports; gives rates and the ETA."""

  def __init__(self, *, start_step: int, num_steps: int, images_per_step: int):
    self.num_steps = num_steps
    self.images_per_step = images_per_step
    self._step, self._time = start_step, time.perf_counter()

  def update(self, step: int) -> dict[str, float]:
    """Rates since the previous call, ``step`` being the steps done."""
    now = time.perf_counter()
    dt = max(now - self._time, 1e-9)
    steps_per_sec = (step - self._step) / dt
    self._step, self._time = step, now
    eta = (self.num_steps - step) / steps_per_sec if steps_per_sec > 0 else float('inf')
    return {
        'steps_per_sec': steps_per_sec,
        'images_per_sec': steps_per_sec * self.images_per_step,
        'eta_seconds': eta,
    }

  def line(self, step: int, metrics: dict[str, float], rates: dict[str, float]) -> str:
    terms = ' '.join(f'{k}={v:.4g}' for k, v in sorted(metrics.items()))
    eta = rates['eta_seconds']
    return (
        f'step {step}/{self.num_steps} | {terms} | '
        f'{rates["steps_per_sec"]:.2f} steps/s, {rates["images_per_sec"]:.0f} img/s'
        f' | ETA {format_duration(eta) if math.isfinite(eta) else "?"}'
    )

  def short_line(self, step: int, rates: dict[str, float]) -> str:
    eta = rates['eta_seconds']
    return (
        f'{step}/{self.num_steps} | {rates["images_per_sec"]:.0f} img/s | '
        f'ETA {format_duration(eta) if math.isfinite(eta) else "?"}'
    )


def write_run_config(config, workdir, writer):
  """The run's config: TensorBoard hparams and ``<workdir>/config.json``."""
  writer.write_hparams(_flat(config))
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))


class MemoryWriter:
  """A clu-style metric writer that keeps scalars in memory ({step: {tag:
  value}}) and drops images and hparams: for callers without clu or
  TensorBoard (bench/learn_bench.py)."""

  def __init__(self):
    self.scalars = {}

  def write_scalars(self, step, scalars):
    self.scalars.setdefault(int(step), {}).update(scalars)

  def write_images(self, step, images):
    del step, images

  def write_hparams(self, hparams):
    del hparams

  def flush(self):
    pass

  def close(self):
    pass


def writer_for(workdir):
  from clu import metric_writers  # imports TensorFlow

  return metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0, asynchronous=True
  )


def flatten(tree, prefix: str = '') -> dict:
  """{'a.b': value} of nested dicts or ConfigDicts."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      out.update(flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def _flat(config) -> dict:
  """Config as flat hparams for TensorBoard (sequences as strings)."""
  return {
      k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flatten(config).items()
  }
