"""What a trainer is, and the registry the loop and the tools look it up in.

A trainer is one module that declares everything specific to one model
(`Trainer`): its networks and their initial variables, its optimizers and
learning rates, its samplers, its stages (pure steps over a dict of batches
keyed by sampler name), its named test features, its config group and its
checks, and optional hooks (a pretrained trunk, a translator for the
translation grid). The training loop (`train_loop`), checkpointing,
evaluation and the tools (eval, visualize, search, export) call only this
interface, so a new model is a new module plus ``@register``:

  @base.register
  class MyTrainer(base.Trainer):
    name = 'mine'
    ...

  config.trainer = 'mine'; train_loop.train_and_evaluate(config, workdir)

`create_state`, `make_steps` and `make_extractors` turn a trainer's
declarations into the train state and the jitted functions the loop runs.
"""

import dataclasses
import functools
from typing import Callable, ClassVar

import jax
import ml_collections

from aligngan_jax import errors
from aligngan_jax import sharding
from aligngan_jax import train_state as train_state_lib

_REGISTRY: dict[str, type['Trainer']] = {}


def register(cls: type['Trainer']) -> type['Trainer']:
  """Class decorator: makes ``config.trainer = cls.name`` run ``cls``."""
  if not cls.name:
    raise ValueError(f'{cls.__name__} has no name.')
  _REGISTRY[cls.name] = cls
  return cls


def unregister(name: str) -> None:
  """Removes a registered trainer (a test's own, when the test ends)."""
  _REGISTRY.pop(name, None)


def registered() -> dict[str, type['Trainer']]:
  """name -> trainer class, in registration order."""
  return dict(_REGISTRY)


def get(name: str) -> type['Trainer']:
  """The trainer class ``config.trainer`` names (KeyError if none)."""
  return _REGISTRY[name]


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What a trainer may know of its training split."""

  num_classes: int
  rgb_images: int = 0  # 0 where unknown (a workdir reopened for eval)
  ir_images: int = 0


@dataclasses.dataclass(frozen=True)
class Stage:
  number: int  # 1, 2, ... in training order
  name: str  # what the console and logs call it
  # (state, {sampler name: batch}) -> (state, metrics): pure, jitted once.
  step: Callable
  samplers: tuple[str, ...]  # the batches one iteration takes
  iterations: int
  images: int  # images one iteration consumes (for images/s)


class Trainer:
  """One model's training, declared. Subclasses set ``name`` and implement
  the methods that raise NotImplementedError; the rest have defaults.

  An instance is built for one config and one training split
  (``info.num_classes`` classes); tools that reopen a workdir build it
  with the class count read from the checkpoint.
  """

  name: ClassVar[str] = ''
  # The config group (``config.<group>``) holding this trainer's own keys.
  config_group: ClassVar[str] = ''
  # Names of its test features; the first is the one the protocols report
  # and the tools (search, export, sheets) use.
  feature_names: ClassVar[tuple[str, ...]] = ('feature',)

  def __init__(self, config: ml_collections.ConfigDict, info: DataInfo):
    self.config, self.info = config, info

  # --- config ---------------------------------------------------------------
  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    """Defaults of ``config.<config_group>`` (configs/default.py adds the
    group of every registered trainer)."""
    return ml_collections.ConfigDict()

  @classmethod
  def validate(cls, config, *, num_devices: int) -> None:
    """Raises `config_checks.ConfigError` naming the key at fault; runs
    before any data is read."""

  @classmethod
  def load_size(cls, config) -> tuple[int, int]:
    """(height, width) every image is decoded and resized to, for training,
    evaluation and the tools: ``config.image_size`` square by default."""
    return config.image_size, config.image_size

  @classmethod
  def fetch_pretrained(cls, config) -> object:
    """Called for a new run before the data is read: fetch and verify
    pretrained weights; the result reaches `load_pretrained`."""
    return None

  # --- networks and optimisation --------------------------------------------
  @functools.cached_property
  def networks(self) -> dict:
    """network name -> linen module."""
    return self.build_networks()

  def build_networks(self) -> dict:
    raise NotImplementedError(f'trainer {self.name!r}: build_networks')

  def init_variables(self, key: jax.Array) -> dict:
    """network name -> {'params', optionally 'batch_stats'}: the initial
    variables (traced under jit; no I/O)."""
    raise NotImplementedError(f'trainer {self.name!r}: init_variables')

  def optimizers(self) -> dict:
    """network name -> optax transformation (of every trained network)."""
    raise NotImplementedError(f'trainer {self.name!r}: optimizers')

  def learning_rates(self, step) -> dict:
    """network name -> learning rate at global iteration ``step`` (what the
    loop logs; a step may use it or carry the rate in its optax chain)."""
    return {}

  def load_pretrained(self, state, mesh, fetched):
    """A new run's state with pretrained weights (`fetch_pretrained`)."""
    return state

  # --- data and stages --------------------------------------------------------
  def samplers(self, rgb_labels, ir_labels) -> dict:
    """sampler name -> step-indexed sampler (`sampler.PKSampler`-like:
    ``sampler(step)`` gives a `PKBatch`) over the training labels."""
    raise NotImplementedError(f'trainer {self.name!r}: samplers')

  def stages(self) -> tuple[Stage, ...]:
    raise NotImplementedError(f'trainer {self.name!r}: stages')

  # --- test time ---------------------------------------------------------------
  def test_features(self, state, images, *, modality: str) -> dict:
    """{feature name: [n, d] unit-norm features} of images [n, S, S, 3] in
    [-1, 1] of ``modality`` ('rgb' or 'ir'); pure (jitted by the caller)."""
    raise NotImplementedError(f'trainer {self.name!r}: test_features')

  def extractors(self, mesh) -> dict:
    """{'rgb', 'ir'}: jitted (state, sharded images) -> {feature name:
    features}, replicated."""
    jit = lambda modality: jax.jit(
        functools.partial(self.test_features, modality=modality),
        in_shardings=(sharding.replicated(mesh), sharding.data_sharded(mesh)),
        out_shardings=sharding.replicated(mesh),
    )
    return {'rgb': jit('rgb'), 'ir': jit('ir')}

  # --- hooks --------------------------------------------------------------------
  def translator(self) -> Callable | None:
    """Jitted (state, rgb) -> (fake IR, reconstructed RGB) for models that
    translate (translation grids, diagnostic (e)); None otherwise."""
    return None

  @classmethod
  def check_release(cls, config) -> None:
    """``config.mode='eval'`` with ``config.init_from``: raise a
    `config_checks.ConfigError` naming what the official release lacks."""
    raise NotImplementedError(
        f'config.init_from: trainer {cls.name!r} cannot evaluate an official release.'
    )

  @classmethod
  def release_extractors(cls, config, mesh) -> dict:
    """{'rgb', 'ir'}: images -> {feature name: unit-norm features} of the
    official release in ``config.init_from`` (its converted weights)."""
    raise NotImplementedError(
        f'config.init_from: trainer {cls.name!r} cannot evaluate an official release.'
    )

  def check_data(self, rgb_labels, ir_labels, keys: tuple[str, ...]) -> None:
    """Each identities-per-batch key of ``keys`` (e.g. 'agw.ids_per_batch')
    against the training identities with both RGB and IR images: a
    `ConfigError` naming the key before anything is compiled."""
    both = len(set(rgb_labels.tolist()) & set(ir_labels.tolist()))
    for key in keys:
      value = functools.reduce(lambda group, part: group[part], key.split('.'), self.config)
      if value > both:
        raise errors.ConfigError(
            f'config.{key}={value} is more than the {both} training identities '
            f'with both RGB and IR images in {self.config.dataset}; lower config.{key}.'
        )

  def before_training(self) -> None:
    """Called once when training starts (warnings about the config)."""

  # --- derived -------------------------------------------------------------------
  @functools.cached_property
  def schedule(self) -> tuple[Stage, ...]:
    return tuple(self.stages())

  def bounds(self) -> dict[int, tuple[int, int]]:
    """stage number -> [first, end) global iterations."""
    out, start = {}, 0
    for stage in self.schedule:
      out[stage.number] = (start, start + stage.iterations)
      start += stage.iterations
    return out

  @property
  def total_iterations(self) -> int:
    return sum(stage.iterations for stage in self.schedule)


def trainer_for(config, info: DataInfo) -> Trainer:
  """The trainer ``config.trainer`` names, built for ``info``."""
  return get(config.trainer)(config, info)


def create_state(trainer: Trainer, mesh, *, abstract: bool = False) -> train_state_lib.TrainState:
  """A fresh state of ``trainer``'s networks, replicated over ``mesh``
  (``abstract``: `jax.ShapeDtypeStruct` leaves, nothing run: the template
  a checkpoint is restored into)."""
  return train_state_lib.create(
      trainer.init_variables,
      trainer.optimizers(),
      seed=trainer.config.seed,
      mesh=mesh,
      abstract=abstract,
  )


def make_steps(trainer: Trainer, mesh) -> dict[int, Callable]:
  """stage number -> the jitted step: state replicated and donated, every
  batch sharded on ``data``, metrics replicated."""
  repl, data = sharding.replicated(mesh), sharding.data_sharded(mesh)
  return {
      stage.number: jax.jit(
          stage.step,
          in_shardings=(repl, {name: data for name in stage.samplers}),
          out_shardings=(repl, repl),
          donate_argnums=0,
      )
      for stage in trainer.schedule
  }
