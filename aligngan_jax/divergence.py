"""The training loop's divergence policy: which states are not kept, and
which checkpoint to go on from after a divergence.

- A step whose logged losses hold NaN or inf stops training (`stop_if_non_finite`).
- A state holding NaN or inf anywhere, or (``config.checkpoint_max_abs`` >
  0) parameters or running statistics beyond that magnitude, has diverged:
  it is never written (`refuse_diverged`, the check `checkpointing.save`
  runs on its audit), so the newest checkpoint is always one to resume from.
- The advice (`resume_advice`) names the newest checkpoint still far from
  the bound, and how to resume from it.
"""

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
        f'stopped. {resume_advice(manager, max_abs=max_abs)}')


def refuse_diverged(manager, *, max_abs: float):
  """The ``check`` of `checkpointing.save`: raises `DivergenceError` for a
  state with non-finite values, or parameters or running statistics beyond
  ``max_abs`` (0: no bound)."""
  def check(step, non_finite, largest):
    if non_finite:
      problem = f'non-finite values (in {_some(non_finite)})'
    else:
      huge = [n for n, v in largest.items() if max_abs and v > max_abs
              and n.startswith(("['params']", "['batch_stats']"))]
      problem = huge and (f'values beyond config.checkpoint_max_abs={max_abs:g} (up to '
                          f'{max(largest[n] for n in huge):.3g}, in {_some(huge)})')
    if problem:
      raise DivergenceError(
          f'Training diverged: the state after step {step} holds {problem}; it was '
          f'not saved. {resume_advice(manager, max_abs=max_abs)}')
  return check


def _some(names: list[str]) -> str:
  return ', '.join(names[:3]) + (f' and {len(names) - 3} more' if len(names) > 3 else '')


def resume_advice(manager, failed_step: int | None = None, *, max_abs: float = 0.0
                  ) -> str:
  """Which checkpoint to go on from: the newest one (every checkpoint is
  finite and within ``max_abs``, `save` sees to it) or, after a
  divergence (``max_abs`` > 0), the newest whose parameters and running
  statistics are still below 1% of ``max_abs``: a state close to the bound
  is already on its way up and fails again even at a lower learning rate."""
  steps = sorted(s for s in manager.all_steps() if s != failed_step)
  if not steps:
    return ('No checkpoint has been written yet: start again (lower the '
            'learning rate if the losses diverged).')
  sizes = {s: checkpointing.largest_value(manager, s) for s in steps} if max_abs else {}
  calm = [s for s in steps if not max_abs or sizes[s] <= max_abs / 100]
  if not calm:
    return ('Every checkpoint kept is already close to the bound ('
            + ', '.join(f'step {s}: {sizes[s]:.3g}' for s in steps)
            + f') in {manager.directory}: start again in a new --workdir with a '
            'lower learning rate (or resume one with --config.resume_step=N at '
            'your own risk).')
  chosen = calm[-1]
  return (f'Go on from step {chosen} in {manager.directory}'
          + (f' (largest value {sizes[chosen]:.3g})' if max_abs else '')
          + f': rerun with --config.resume_step={chosen} and a lower learning rate '
          '(config.learning_rate, config.gan.learning_rate)'
          + (f'; also kept: steps {", ".join(str(s) for s in steps if s != chosen)}.'
             if len(steps) > 1 else '.'))
