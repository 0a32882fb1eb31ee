"""The training loop's divergence policy: which states are not kept, and
which checkpoint to go on from after a divergence.

- A step whose logged losses hold NaN or inf stops training (`stop_if_non_finite`).
- A state holding NaN or inf anywhere, or (``config.checkpoint_max_abs`` >
  0) parameters or running statistics beyond that magnitude, has diverged:
  it is never written (`refuse_diverged`, the check `checkpointing.save`
  runs on its audit).
- Nor is a state that training cannot go on from (`Probe`): a checkpoint
  is kept as good only if, from it, one forward pass of a fixed probe
  batch gives finite losses, finite running statistics within the bound,
  and finite test features. So the newest checkpoint is always one to
  resume, evaluate, search and export from.
- The advice (`resume_advice`) names the newest checkpoint still far from
  the bound, and how to resume from it.
"""

import jax
import jax.numpy as jnp
import numpy as np

from aligngan_jax import checkpointing
from aligngan_jax import errors
from aligngan_jax import reporting


class DivergenceError(errors.UserError, FloatingPointError):
  """Training produced a non-finite loss or state; the message names the
  term, the step and the checkpoint to go on from."""


def stop_if_non_finite(history, first: int, stage_name: str, manager, max_abs: float):
  """A one-line `DivergenceError` at the first step of ``history`` (the
  steps after ``first``) with a NaN or infinite loss."""
  found = reporting.first_non_finite(history, first_step=first)
  if found:
    step, terms = found
    raise DivergenceError(
        f'Non-finite {", ".join(terms)} at step {step} ({stage_name}); training '
        f'stopped. {resume_advice(manager, max_abs=max_abs)}'
    )


class Probe:
  """What makes a checkpoint good: from its state, one forward pass of a
  fixed probe batch (per stage, the batches of the stage's first
  iteration; for the test features, the first test batch of each
  modality) gives finite losses, finite running statistics within
  ``max_abs`` (0: no bound), and finite test features.

  The forward pass is the stage's own jitted step, run on a copy of the
  state (the step donates its input) whose result is dropped: its losses
  and running statistics come from the state's parameters before any
  update, so the verdict does not depend on the learning rate, and the
  training run is unchanged. Cost: one step and one feature batch per
  modality at each checkpoint.
  """

  def __init__(self, steps: dict, batches: dict, extractors: dict, images: dict, max_abs: float):
    self.steps, self.batches = steps, batches
    self.extractors, self.images, self.max_abs = extractors, images, max_abs

  def problem(self, state, stage: int) -> str | None:
    """What is wrong with going on from ``state`` in ``stage``, or None."""
    copy = jax.tree.map(jnp.copy, state)
    after, metrics = self.steps[stage](copy, self.batches[stage])
    metrics = jax.device_get(metrics)
    bad = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
    if bad:
      return f'non-finite {", ".join(bad)}'
    # Running statistics are small (a few vectors per norm layer): read on
    # the host, with no program to compile.
    names = [f"['batch_stats']{n}" for n in checkpointing.leaf_names(after.batch_stats)]
    stats = [np.asarray(x, np.float64) for x in jax.device_get(jax.tree.leaves(after.batch_stats))]
    del after
    finite = np.array([np.isfinite(x).all() for x in stats], bool)
    largest = np.array([np.abs(x).max(initial=0.0) for x in stats])
    if not finite.all():
      return f'non-finite running statistics (in {_some([n for n, ok in zip(names, finite) if not ok])})'
    huge = [n for n, v in zip(names, largest) if self.max_abs and v > self.max_abs]
    if huge:
      return (
          f'running statistics beyond config.checkpoint_max_abs={self.max_abs:g} '
          f'(up to {float(largest.max()):.3g}, in {_some(huge)})'
      )
    for modality, images in self.images.items():
      feats = jax.device_get(self.extractors[modality](state, images))
      if not all(np.isfinite(f).all() for f in jax.tree.leaves(feats)):
        return f'non-finite test features of the {modality.upper()} probe images'
    return None


def refuse_diverged(manager, *, max_abs: float, probe: Probe | None = None):
  """The ``check`` of `checkpointing.save`: raises `DivergenceError` for a
  state with non-finite values, or parameters or running statistics beyond
  ``max_abs`` (0: no bound), or (``probe``, given the ``state`` and its
  ``stage``) one that `Probe` finds training cannot go on from."""

  def check(step, non_finite, largest, *, state=None, stage=None):
    if non_finite:
      problem = f'holds non-finite values (in {_some(non_finite)})'
    else:
      huge = [
          n
          for n, v in largest.items()
          if max_abs and v > max_abs and n.startswith(("['params']", "['batch_stats']"))
      ]
      problem = huge and (
          f'holds values beyond config.checkpoint_max_abs={max_abs:g} '
          f'(up to {max(largest[n] for n in huge):.3g}, in {_some(huge)})'
      )
    if not problem and probe is not None and state is not None:
      found = probe.problem(state, stage)
      problem = found and (
          f'cannot be trained on: from it, one forward pass of the probe batch gives {found}'
      )
    if problem:
      raise DivergenceError(
          f'Training diverged: the state after step {step} {problem}; it was not '
          f'saved. {resume_advice(manager, max_abs=max_abs)}'
      )

  return check


def _some(names: list[str]) -> str:
  return ', '.join(names[:3]) + (f' and {len(names) - 3} more' if len(names) > 3 else '')


def resume_advice(manager, failed_step: int | None = None, *, max_abs: float = 0.0) -> str:
  """Which checkpoint to go on from: the newest one (every checkpoint is
  finite and within ``max_abs``, `save` sees to it) or, after a
  divergence (``max_abs`` > 0), the newest whose parameters and running
  statistics are still below 1% of ``max_abs``: a state close to the bound
  is already on its way up and fails again even at a lower learning rate."""
  try:
    # The save in flight (the previous checkpoint) finishes first: its
    # metadata, read below, is written last.
    manager.wait_until_finished()
  except Exception:
    pass  # a failed save: its step is not among all_steps()
  steps = sorted(s for s in manager.all_steps() if s != failed_step)
  if not steps:
    return (
        'No checkpoint has been written yet: start again (lower the '
        'learning rate if the losses diverged).'
    )
  sizes = {s: checkpointing.largest_value(manager, s) for s in steps} if max_abs else {}
  calm = [s for s in steps if not max_abs or sizes[s] <= max_abs / 100]
  if not calm:
    return (
        'Every checkpoint kept is already close to the bound ('
        + ', '.join(f'step {s}: {sizes[s]:.3g}' for s in steps)
        + f') in {manager.directory}: start again in a new --workdir with a '
        'lower learning rate (or resume one with --config.resume_step=N at '
        'your own risk).'
    )
  chosen = calm[-1]
  return (
      f'Go on from step {chosen} in {manager.directory}'
      + (f' (largest value {sizes[chosen]:.3g})' if max_abs else '')
      + f': rerun with --config.resume_step={chosen} and a lower learning rate (config.learning_rate, config.gan.learning_rate)'
      + (
          f'; also kept: steps {", ".join(str(s) for s in steps if s != chosen)}.'
          if len(steps) > 1
          else '.'
      )
  )
