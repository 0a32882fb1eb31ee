"""What each trainer is: its networks, its stages and their batches, and the
jitted functions the training loop and the tools call.

``config.trainer='aligngan'``: the three stages of spec §2-§3 over all eight
networks, ``config.gan.stage_iterations`` iterations each.
``config.trainer='ide'``: the IDE baseline, one stage of ``stages.ide_step``
over the feature module, ``config.ide.num_train_steps`` iterations. Both run
in the one loop of ``train_loop.py``: one global iteration counter, one
state (`players.create_state`), one learning-rate path (`players.lr_at`).
"""

import dataclasses
import functools
from typing import Callable

import jax

from aligngan_jax import players
from aligngan_jax import sharding
from aligngan_jax import stages
from aligngan_jax.evaluation import features as features_lib

TRAINERS = ('aligngan', 'ide')


@dataclasses.dataclass(frozen=True)
class Stage:
  number: int               # 1, 2, 3 (the IDE trainer's one stage is 1)
  name: str                 # what the console and logs call it
  step: Callable            # stages.*_step(state, batch, *, models, config)
  samplers: tuple[str, ...]  # the batches one iteration takes, in order
  iterations: int
  images: int               # images one iteration consumes (for images/s)


@dataclasses.dataclass(frozen=True)
class Trainer:
  name: str
  networks: tuple[str, ...]
  stages: tuple[Stage, ...]

  def bounds(self) -> dict[int, tuple[int, int]]:
    """stage number -> [first, end) global iterations."""
    out, start = {}, 0
    for stage in self.stages:
      out[stage.number] = (start, start + stage.iterations)
      start += stage.iterations
    return out

  @property
  def total_iterations(self) -> int:
    return sum(stage.iterations for stage in self.stages)

  @property
  def translates(self) -> bool:
    """Whether it trains the generators (translation grids, translated RGB
    test features)."""
    return 'G_rgb2ir' in self.networks


def trainer_for(config) -> Trainer:
  """The trainer ``config.trainer`` names, with its schedule."""
  feature = config.ids_per_batch * config.instances_per_id
  if config.trainer == 'ide':
    return Trainer('ide', players.FEATURE, (
        Stage(1, 'ide', stages.ide_step, ('feature',),
              int(config.ide.num_train_steps), 2 * feature),))
  pixel = config.gan.pixel_ids_per_batch * config.gan.pixel_instances_per_id
  iterations = [int(n) for n in config.gan.stage_iterations]
  # Stage 1 reads the IR half of a feature batch only.
  return Trainer('aligngan', players.ALL, (
      Stage(1, 'stage 1', stages.stage1_step, ('feature',), iterations[0], feature),
      Stage(2, 'stage 2', stages.stage2_step, ('pixel',), iterations[1], 2 * pixel),
      Stage(3, 'stage 3', stages.stage3_step, ('feature', 'pixel'), iterations[2],
            2 * (feature + pixel))))


def make_steps(trainer: Trainer, models, config, mesh) -> dict:
  """stage number -> the jitted step: state replicated and donated, every
  batch sharded on ``data``, metrics replicated."""
  repl, data = sharding.replicated(mesh), sharding.data_sharded(mesh)
  steps = {}
  for stage in trainer.stages:
    batch = data if len(stage.samplers) == 1 else {name: data for name in stage.samplers}
    steps[stage.number] = jax.jit(
        functools.partial(stage.step, models=models, config=config),
        in_shardings=(repl, batch), out_shardings=(repl, repl), donate_argnums=0)
  return steps


def make_extractors(models, config, mesh) -> dict:
  """{'rgb', 'ir'}: jitted (state, images) -> unit-norm test features. RGB
  images are translated by G_rgb2ir first where the trainer has one and
  ``config.gan.pixel_alignment`` (spec §5)."""
  size = tuple(config.encoder_input_size)
  has_generator = 'G_rgb2ir' in models

  def features(state, images, translate):
    variables = lambda name: {'params': state.params[name],
                              'batch_stats': state.batch_stats[name]}
    return features_lib.translated_test_features(
        models.get('G_rgb2ir'), variables('G_rgb2ir') if translate else None,
        models['encoder'], variables('encoder'), images, translate=translate,
        encoder_input_size=size)
  repl = sharding.replicated(mesh)
  translate_rgb = has_generator and bool(config.gan.pixel_alignment)
  # Without translation both modalities share one function (one compile).
  jitted = {translate: jax.jit(functools.partial(features, translate=translate),
                               in_shardings=(repl, sharding.data_sharded(mesh)),
                               out_shardings=repl)
            for translate in {False, translate_rgb}}
  return {'rgb': jitted[translate_rgb], 'ir': jitted[False]}


def make_translator(models):
  """Jitted (state, rgb) -> (fake IR, reconstructed RGB), eval mode: what
  the generators do at test time."""
  def translate(state, rgb):
    apply = lambda name, x: models[name].apply(
        {'params': state.params[name], 'batch_stats': state.batch_stats[name]},
        x, train=False)
    fake_ir = apply('G_rgb2ir', rgb)
    return fake_ir, apply('G_ir2rgb', fake_ir)
  return jax.jit(translate)
