"""Orbax checkpoints in ``workdir/checkpoints``: save every N steps, resume
from the newest one (or ``config.resume_step``), restore onto the
replicated sharding.

Storage only (the training loop's divergence policy, which refuses a
state before it is written, is `divergence.py`). What is guaranteed
(README, "Reliability"):
- `save` audits the whole state in the pass that fingerprints it, and
  hands the audit to the caller's ``check`` before anything is written.
- Every checkpoint carries a content fingerprint (one 32-bit checksum per
  leaf, in orbax's custom metadata); a restore recomputes it, so flipped
  bytes are an error, never a silent load.
- A damaged checkpoint, or one written by a config with other network
  shapes, is refused in one line that names the step, the newest intact
  step or the differing config keys, and how to go on.
"""

import contextlib
import errno
import functools
import gc
import json
import os
import shutil
import sys

from absl import logging
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from aligngan_jax import distributed
from aligngan_jax import errors
from aligngan_jax import reporting
from aligngan_jax import train_state as train_state_lib

SET_ASIDE = 'checkpoints_set_aside'
# A checkpoint's two items: the train state, and the run's config as JSON.
STATE, CONFIG = 'state', 'config'


class CheckpointError(errors.ConfigError):
  """A checkpoint that cannot be written or resumed; the message names the
  step and what to do."""


def create_manager(
    workdir: str, *, save_every: int, max_to_keep: int, create: bool = True
) -> ocp.CheckpointManager:
  # The handler named up front, so that a manager that has not saved yet
  # (a resume, an evaluation) can read the item's metadata.
  return ocp.CheckpointManager(
      checkpoint_dir(workdir),
      item_handlers={STATE: ocp.StandardCheckpointHandler(), CONFIG: ocp.JsonCheckpointHandler()},
      options=ocp.CheckpointManagerOptions(
          save_interval_steps=save_every,
          max_to_keep=max_to_keep,
          create=create,
          enable_async_checkpointing=True,
      ),
  )


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def steps_in(workdir: str) -> list[int]:
  """The finished checkpoint steps in ``workdir`` (orbax renames a step's
  folder to its bare number once it is complete), without opening orbax."""
  folder = checkpoint_dir(workdir)
  try:
    names = os.listdir(folder)
  except OSError:
    return []
  return sorted(int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(folder, n)))


def _saved_tree(state: train_state_lib.TrainState) -> dict:
  # The static optax transformations are code, not data: save the rest.
  return {
      'step': state.step,
      'params': state.params,
      'batch_stats': state.batch_stats,
      'opt_state': state.opt_state,
      'rng': state.rng,
  }


def leaf_names(tree) -> list[str]:
  return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _words(x):
  """A leaf's bits as uint32 words (keys as their key data)."""
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  x = x.ravel()
  bits = x.dtype.itemsize * 8
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  if bits == 64:
    return jax.lax.bitcast_convert_type(x, jnp.uint32).ravel()
  unsigned = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32}[bits]
  return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


@jax.jit
def audit(tree) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(finite [leaves] bool, largest magnitude [leaves] float32, checksums
  [leaves] uint32) of every leaf, in one fused pass on the devices. The
  checksum is sum_i word_i * (2i + 1) mod 2^32: exact integer arithmetic,
  so the same on any device count, and any single changed bit changes it
  (the factor is odd)."""
  finite, largest, sums = [], [], []
  for leaf in jax.tree.leaves(tree):
    if jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.size:
      finite.append(jnp.all(jnp.isfinite(leaf)))
      largest.append(jnp.max(jnp.abs(leaf)).astype(jnp.float32))
    else:
      finite.append(jnp.array(True))
      largest.append(jnp.float32(0))
    words = _words(leaf)
    odd = 2 * jnp.arange(words.size, dtype=jnp.uint32) + 1
    sums.append(jnp.sum(words * odd, dtype=jnp.uint32))
  return jnp.stack(finite), jnp.stack(largest), jnp.stack(sums)


def fingerprint(tree) -> tuple[dict[str, int], list[str]]:
  """({leaf name: checksum}, names of the leaves holding NaN or inf)."""
  sums, bad, _ = _audit_host(tree)
  return sums, bad


def _audit_host(tree):
  finite, largest, sums = jax.device_get(audit(tree))
  names = leaf_names(tree)
  return (
      {n: int(s) for n, s in zip(names, sums)},
      [n for n, ok in zip(names, finite) if not ok],
      dict(zip(names, map(float, largest))),
  )


def save(
    manager: ocp.CheckpointManager,
    state: train_state_lib.TrainState,
    *,
    force: bool = False,
    metadata: dict | None = None,
    check=None,
    config=None,
) -> bool:
  """Saves ``state`` under its step if the save interval (or ``force``) says
  so, with its per-leaf fingerprint. ``check(step, non_finite, largest)``
  (the leaves holding NaN or inf, and each leaf's largest magnitude, from
  the same pass as the fingerprint) may raise to refuse the state: the
  training loop's divergence policy (`divergence.refuse_diverged`).
  ``metadata``: JSON values saved beside (the loop records the class count,
  which the tools read back); ``config``: the run's config, saved as the
  checkpoint's JSON item (`saved_config`). A full disk is a one-line
  `CheckpointError`."""
  step = int(state.step)
  if not (force or manager.should_save(step)):
    return False
  tree = _saved_tree(state)
  sums, bad, largest = _audit_host(tree)
  if check is not None:
    check(step, bad, largest)
  try:
    size = max(
        [largest[n] for n in largest if n.startswith(("['params']", "['batch_stats']"))],
        default=0.0,
    )
    items = {STATE: ocp.args.StandardSave(tree)}
    if config is not None:
      items[CONFIG] = ocp.args.JsonSave(json.loads(config.to_json_best_effort()))
    return manager.save(
        step,
        args=ocp.args.Composite(**items),
        force=force,
        custom_metadata={**(metadata or {}), 'fingerprint': sums, 'largest': size},
    )
  except Exception as e:
    raise _save_error(manager, step, tree, e) from e


def wait(manager: ocp.CheckpointManager, state) -> None:
  """Waits for the asynchronous save in flight; its failure (e.g. a full
  disk) is raised here as a one-line `CheckpointError`."""
  try:
    manager.wait_until_finished()
  except Exception as e:
    raise _save_error(manager, int(state.step), _saved_tree(state), e) from e


def _save_error(manager, step, tree, error) -> Exception:
  full = getattr(error, 'errno', None) == errno.ENOSPC or 'No space left' in str(error)
  if not full:
    return error
  need = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree) if hasattr(x, 'dtype'))
  directory = str(manager.directory)
  free = shutil.disk_usage(directory).free if os.path.isdir(directory) else 0
  kept = sorted(s for s in manager.all_steps() if s != step)
  advice = (
      f'Go on from step {kept[-1]} in {directory}: the rerun resumes from it.'
      if kept
      else 'No checkpoint has been written yet: the rerun starts again.'
  )
  return CheckpointError(
      f'No space left on the device of {directory} while saving step {step}: '
      f'a checkpoint needs about {need / 2**20:.0f} MiB, {free / 2**20:.0f} MiB '
      'are free. Free space (or lower config.max_checkpoints_to_keep) and rerun '
      f'the same command. {advice}'
  )


def custom_metadata(manager, step) -> dict:
  """What `save` recorded beside checkpoint ``step`` ({} when unreadable)."""
  try:
    return dict(manager.metadata(step).custom_metadata or {})
  except Exception:
    return {}


def largest_value(manager, step) -> float:
  """The largest |parameter| or |running statistic| of a checkpoint, as
  `save` recorded it (inf when unknown)."""
  return float(custom_metadata(manager, step).get('largest', 'inf'))


def _key_name(entry) -> str:
  for attribute in ('key', 'idx', 'name'):
    if hasattr(entry, attribute):
      return str(getattr(entry, attribute))
  return str(entry)


def _shapes(tree) -> dict[str, tuple]:
  """{'params/encoder/conv1/kernel': shape} of the networks' and optimizer
  states' leaves (orbax's metadata spells optax's named tuples as plain
  containers, hence names built from the bare keys; step and rng never
  depend on the config)."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(
      {'params': tree['params'], 'batch_stats': tree['batch_stats'], 'opt_state': tree['opt_state']}
  )[0]:
    out['/'.join(map(_key_name, path))] = tuple(getattr(leaf, 'shape', ()))
  return out


def saved_config(manager, step) -> dict | None:
  """The config that wrote checkpoint ``step`` (its JSON item), or None."""
  try:
    return manager.restore(step, args=ocp.args.Composite(**{CONFIG: ocp.args.JsonRestore()}))[
        CONFIG
    ]
  except Exception:
    return None


def _config_differences(manager, step, config) -> list[str]:
  """'key (saved there, now)' of the keys in which ``config`` differs from
  the config that wrote checkpoint ``step`` (the first six, and how many
  more)."""
  saved = saved_config(manager, step)
  if not isinstance(saved, dict):
    return []
  saved = reporting.flatten(saved)
  now = reporting.flatten(json.loads(config.to_json_best_effort()))
  differ = [
      k
      for k in sorted(set(saved) | set(now))
      if saved.get(k) != now.get(k) and k not in ('mode', 'data_dir', 'manual_dir')
  ]
  out = [f'{k} ({saved.get(k)!r} there, {now.get(k)!r} now)' for k in differ[:6]]
  return out + ([f'{len(differ) - 6} more keys'] if len(differ) > 6 else [])


def _check_structure(manager, step, template, config):
  """Refuses, in one line, a checkpoint whose tree or shapes are not the
  ones ``config`` builds (another trainer, width, depth or dataset)."""
  saved = manager.item_metadata(step)[STATE]
  saved = getattr(saved, 'tree', saved)
  if not isinstance(saved, dict) or 'opt_state' not in saved:
    raise ValueError('its metadata is missing or unreadable')
  where = os.path.join(str(manager.directory), str(step))
  have, want = _shapes(saved), _shapes(_saved_tree(template))
  if have == want:
    return
  differences = _config_differences(manager, step, config) if config is not None else []
  hint = (
      f' The config differs from the one that wrote it in {"; ".join(differences)}.'
      if differences
      else ''
  )
  advice = (
      ' Pass the config the workdir was trained with (e.g. the same :tiny '
      'argument), or a new --workdir to start fresh.'
  )
  have_networks, want_networks = sorted(saved['params']), sorted(template.params)
  if have_networks != want_networks:
    raise CheckpointError(
        f'{where} holds the networks {have_networks}, but this config builds '
        f'{want_networks} (another config.trainer?).{hint}{advice}'
    )
  differ = sorted(
      {k.split('/')[1] for k in have if k.startswith('params/') and have[k] != want.get(k)}
  )
  raise CheckpointError(
      f'{where} holds {", ".join(differ) or "optimizer states"} of other shapes '
      f'than this config builds.{hint}{advice}'
  )


def _restore_step(manager, step, template, config):
  """``template`` filled from checkpoint ``step``, its fingerprint verified.
  Raises CheckpointError for a mismatched config, anything else for damage."""
  _check_structure(manager, step, template, config)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _saved_tree(template))
  tree = manager.restore(
      step, args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore(abstract)})
  )[STATE]
  want = (manager.metadata(step).custom_metadata or {}).get('fingerprint')
  if want is None:
    # Every checkpoint this version writes has one: a missing fingerprint is
    # missing or damaged metadata, not an old format.
    raise ValueError(
        'its fingerprint is missing (_CHECKPOINT_METADATA deleted or '
        'damaged), so its content cannot be verified'
    )
  got, _ = fingerprint(tree)
  changed = [name for name in want if got.get(name) != want[name]]
  if changed or set(got) != set(want):
    raise ValueError(
        f'its content does not match its fingerprint (in '
        f'{", ".join(changed[:3]) or "the tree"})'
    )
  return template.replace(**tree)


def _first_line(error) -> str:
  """The gist of a restore error (TensorStore appends pages of spec dumps)."""
  text = str(error).strip().splitlines()
  text = (text[0] if text else type(error).__name__).split(' See full TensorStore')[0]
  return text if len(text) <= 200 else text[:200] + '...'


@contextlib.contextmanager
def _quiet_closed_loops():
  """A failed orbax read leaves coroutines and futures behind; when the
  garbage collector finds them they print "Event loop is closed" and
  "Encountered error while reading array" tracebacks: noise after the one
  line that names the damage. They are collected here, and only they are
  silenced."""
  previous = sys.unraisablehook

  def hook(unraisable):
    code = getattr(unraisable.object, 'cr_code', None)
    from_orbax = code is not None and '/orbax/' in code.co_filename
    closed_loop = isinstance(unraisable.exc_value, RuntimeError) and 'Event loop is closed' in str(
        unraisable.exc_value
    )
    if not (from_orbax or closed_loop):
      previous(unraisable)

  sys.unraisablehook = hook
  try:
    yield
  finally:
    gc.collect()
    sys.unraisablehook = previous


def restore(
    manager,
    template,
    config=None,
    *,
    step=None,
    step_flag: str = '--config.resume_step',
    training: bool = True,
):
  """The checkpoint ``step`` (default: the newest) restored like ``template``
  (same shapes, dtypes and shardings; arrays or `jax.ShapeDtypeStruct`s,
  e.g. ``players.create_state(..., abstract=True)``), or None when there is
  none. A damaged checkpoint is a one-line `CheckpointError` naming the
  newest intact one and how to use it: ``step_flag`` (main.py's
  ``--config.resume_step``; search's and export's ``--step``), and
  (``training``) that newer checkpoints are then set aside."""
  steps = manager.all_steps()
  if not steps:
    return None
  step = manager.latest_step() if step is None else step
  with _quiet_closed_loops():
    try:
      return _restore_step(manager, step, template, config)
    except CheckpointError:
      raise
    except Exception as e:
      damage = _first_line(e)
    intact = None
    for older in sorted((s for s in steps if s < step), reverse=True):
      try:
        _restore_step(manager, older, template, config)
        intact = older
        break
      except Exception:
        continue
  where = os.path.join(str(manager.directory), str(step))
  if intact is None:
    raise CheckpointError(
        f'Checkpoint {where} is damaged ({damage}) and no older one is intact; '
        f'move {manager.directory} away to start fresh.'
    )
  then = (
      f' to go on from it (newer checkpoints are then moved to {SET_ASIDE}/, not deleted)'
      if training
      else ' to use it'
  )
  raise CheckpointError(
      f'Checkpoint {where} is damaged ({damage}). The newest intact one is step '
      f'{intact}: rerun with {step_flag}={intact}{then}.'
  )


def chosen_step(manager, step: int, step_flag: str = 'config.resume_step') -> int:
  """``step`` (-1: the newest) of the manager's checkpoints (`check_step`)."""
  return check_step(step, manager.all_steps(), str(manager.directory), step_flag)


def check_step(step: int, steps, directory: str, step_flag: str) -> int:
  """``step`` (-1: the newest of ``steps``), checked to be one of ``steps``:
  a `CheckpointError` naming ``step_flag`` and the steps there otherwise."""
  steps = sorted(steps)
  if step is None or step == -1:
    return steps[-1]
  if step not in steps:
    raise CheckpointError(
        f'{step_flag}={step} is not a checkpoint in {directory} '
        f'(there: {", ".join(map(str, steps))}).'
    )
  return step


def set_aside_after(workdir: str, step: int) -> list[int]:
  """Moves the checkpoints newer than ``step`` to ``<workdir>/checkpoints_set_aside``
  (orbax would not save a step older than the newest one); returns them."""
  source = checkpoint_dir(workdir)
  target = os.path.join(os.path.abspath(workdir), SET_ASIDE)
  moved = sorted(int(n) for n in os.listdir(source) if n.isdigit() and int(n) > step)
  for s in moved:
    os.makedirs(target, exist_ok=True)
    destination = os.path.join(target, str(s))
    if os.path.exists(destination):
      shutil.rmtree(destination)
    shutil.move(os.path.join(source, str(s)), destination)
  return moved


def resume_or_start(config, workdir, create_state):
  """(checkpoint manager, state, resumed): the checkpoint ``config.resume_step``
  (-1: the newest) of ``workdir`` restored into ``create_state(abstract=True)``,
  or ``create_state()`` when there is none (initialisers run only then)."""
  make = functools.partial(
      create_manager,
      workdir,
      save_every=config.checkpoint_every_steps,
      max_to_keep=config.max_checkpoints_to_keep,
  )
  manager = make()
  steps = manager.all_steps()
  if not steps:
    if config.resume_step >= 0:
      raise CheckpointError(
          f'config.resume_step={config.resume_step}: {manager.directory} holds no checkpoint.'
      )
    return manager, create_state(), False
  newest = manager.latest_step()
  step = chosen_step(manager, config.resume_step)
  restored = restore(manager, create_state(abstract=True), config, step=step)
  if step < newest:
    manager.close()
    if jax.process_index() == 0:
      moved = set_aside_after(workdir, step)
      logging.info(
          'Resuming from step %d: moved the newer checkpoints %s to %s.',
          step,
          moved,
          os.path.join(workdir, SET_ASIDE),
      )
    distributed.barrier('newer checkpoints set aside')
    manager = make()
  logging.info('Resumed from %s at step %d.', manager.directory, int(restored.step))
  return manager, restored, True
