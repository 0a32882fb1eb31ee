"""Does AlignGAN learn at full size? Trains the three stages on a synthetic
SYSU-layout dataset rendered in memory and evaluates after every stage.

  python bench/learn_bench.py                          # GPU: official sizes, bf16
  python bench/learn_bench.py --preset=cpu             # CPU: a small run

No TensorFlow, TFDS or clu (the lent GPU machines have none): the dataset is
rendered with datasets/synthetic_vireid/render.py (numpy) into memory,
batches come from the project's P x K samplers (aligngan_jax/sampler.py,
same seeds and flips as training), the steps are the project's jitted stage
steps (trainers.make_steps) and the scores come from the SYSU-MM01
protocol engine plus the per-stage diagnostics (evaluation/diagnostics.py).
ml_collections (configs/) must be importable: carry its wheel to a machine
without it.

The table: stage, iterations, training wall time, compile time, and (a) the
protocol's IR->RGB all-search single-shot Rank-1 / mAP (RGB translated to
fake IR), (b) fake IR -> real IR, (c) IR -> IR across the two IR cameras,
(d) the cosine of fake-IR and real-IR features of the same / different
people, and (e) the generator's translation error against the true infrared
twins of the RGB test images (evaluation/translation.py).
``--ir_from_colour=1`` trains in the learnable world (render.py), where
infrared follows from colour; ``--conv_dim``, ``--num_residual``,
``--pixel_alignment`` and ``--test_instance_norm`` set the pixel module's
points of the issue-26 sweep (bench/pixel_sweep.py runs the small ones on
a CPU). The default budget (``--preset=gpu``) is meant for at most 8 minutes
on one H100 including compilation.
"""

import dataclasses
import functools
import importlib.util
import os
import sys
import time
from concurrent import futures

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

_PRESETS = {
    # Official networks and batch sizes (ResNet-50, generators of width 64
    # with 4 residual blocks, 18 x 4 feature and 4 x 4 pixel batches), 128 px.
    'gpu': dict(train_ids=300, test_ids=96, image_size=128, render_height=128,
                max_images=8, depth=50, width=64, conv_dim=64, num_residual=4,
                d_layers=4, feature_ids=18, pixel_ids=4, encoder_input=(384, 192),
                stage_iterations=(1500, 1500, 1200), dtype='bfloat16'),
    # Minutes on a 2-core CPU.
    'cpu': dict(train_ids=60, test_ids=24, image_size=64, render_height=64,
                max_images=4, depth=18, width=8, conv_dim=8, num_residual=1,
                d_layers=3, feature_ids=6, pixel_ids=2, encoder_input=(64, 32),
                stage_iterations=(60, 40, 40), dtype='float32'),
}

flags.DEFINE_enum('preset', 'gpu', list(_PRESETS), 'Size preset; flags below override it.')
flags.DEFINE_integer('train_ids', None, 'Training identities.')
flags.DEFINE_integer('test_ids', None, 'Test identities.')
flags.DEFINE_integer('image_size', None, 'Square load size (official 128).')
flags.DEFINE_list('stage_iterations', None, 'Iterations of stages 1, 2, 3.')
flags.DEFINE_string('dtype', None, 'config.compute_dtype.')
flags.DEFINE_string('pretrained_backbone', '', 'config.pretrained_backbone (a '
                    'torchvision ResNet-50 file or a .msgpack trunk).')
flags.DEFINE_float('learning_rate', 0.2, 'Head learning rate (official 0.2).')
flags.DEFINE_float('encoder_lr_multiplier', 0.1, 'Trunk lr / head lr (official 0.1).')
flags.DEFINE_integer('seed', 0, 'Data, sampler and initialisation seed.')
flags.DEFINE_integer('num_trials', 10, 'Gallery trials of the protocol.')
flags.DEFINE_float('ir_from_colour', 0.0, 'The world: 0 independent, 1 learnable.')
flags.DEFINE_integer('conv_dim', None, 'config.gan.conv_dim (preset otherwise).')
flags.DEFINE_integer('num_residual', None, 'config.gan.num_residual (preset otherwise).')
flags.DEFINE_bool('pixel_alignment', True, 'config.gan.pixel_alignment (False: ablation).')
flags.DEFINE_enum('test_instance_norm', 'running', ['running', 'instance'],
                  'config.gan.test_instance_norm.')
FLAGS = flags.FLAGS


@functools.cache
def _load_render():
  """datasets/synthetic_vireid/render.py without the datasets package (whose
  __init__ registers TFDS builders, i.e. imports TensorFlow)."""
  path = os.path.join(_ROOT, 'datasets', 'synthetic_vireid', 'render.py')
  spec = importlib.util.spec_from_file_location('synthetic_render', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@dataclasses.dataclass(frozen=True)
class MemoryRecords:
  """The fields of input_pipeline.Records the samplers and protocols read,
  with decoded images instead of encoded bytes."""
  images: np.ndarray     # [n, S, S, 3] uint8
  person_id: np.ndarray
  label: np.ndarray
  camera: np.ndarray
  modality: np.ndarray   # 0 RGB, 1 IR
  index: np.ndarray
  path: np.ndarray

  def __len__(self):
    return len(self.person_id)

  def select(self, mask):
    return MemoryRecords(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))


def _render_person(args):
  """The person's images, then the infrared twins of its RGB images."""
  seed, pid, height, max_images, size, ir_from_colour = args
  render = _load_render()
  draw = lambda **kw: [(pid, cam, index, render.to_square(image, size))
                       for pid, cam, index, image in render.examples(
                           seed, [pid], image_height=height, max_images=max_images,
                           min_images=2, ir_from_colour=ir_from_colour, **kw)]
  return draw(), draw(cameras=render.RGB_CAMERAS, infrared_twins=True)


def render_dataset(seed, train_ids, test_ids, *, height, max_images, size,
                   ir_from_colour=0.0):
  """(train, test) MemoryRecords in the demo dataset's layout, and
  {'train', 'test'}: the [n, S, S, 3] uint8 infrared twins of the split's
  RGB images, in record order."""
  render = _load_render()
  train, test = render.split_identities(seed, train_ids, test_ids)
  with futures.ProcessPoolExecutor(os.cpu_count()) as pool:
    rendered = list(pool.map(_render_person, [
        (seed, int(p), height, max_images, size, ir_from_colour)
        for p in np.concatenate([train, test])]))
  people = [images for images, _ in rendered]
  twin_of = {(r[0], r[1], r[2]): r[3] for _, twins in rendered for r in twins}
  label_of = {int(p): i for i, p in enumerate(train)}

  def records(ids, labelled):
    wanted = set(ids.tolist())
    rows = [r for person in people for r in person if r[0] in wanted]
    pid = np.array([r[0] for r in rows])
    cam = np.array([r[1] for r in rows])
    index = np.array([r[2] for r in rows])
    return MemoryRecords(
        images=np.stack([r[3] for r in rows]), person_id=pid,
        label=np.array([label_of[p] if labelled else -1 for p in pid]),
        camera=cam, modality=np.isin(cam, render.IR_CAMERAS).astype(np.int64),
        index=index,
        path=np.array([f'cam{c}/{p:04d}/{i + 1:04d}.jpg' for p, c, i in zip(pid, cam, index)]))
  train, test = records(train, True), records(test, False)
  twins = {name: np.stack([twin_of[key] for key in zip(
      split.person_id, split.camera, split.index) if key in twin_of])
           for name, split in (('train', train), ('test', test))}
  return train, test, twins


def _to_float(images, flip=None):
  x = images.astype(np.float32) / 127.5 - 1.0
  if flip is not None:
    x[flip] = x[flip, :, ::-1]
  return x


def _batch(sampler, step, rgb, ir):
  b = sampler(step)
  return {'rgb': _to_float(rgb.images[b.rgb], b.rgb_flip),
          'ir': _to_float(ir.images[b.ir], b.ir_flip),
          'labels': b.labels.astype(np.int32)}


def _config(preset):
  from configs import default
  p = preset
  config = default.get_config()
  config.trainer, config.seed = 'aligngan', FLAGS.seed
  config.compute_dtype = p['dtype']
  config.image_size = p['image_size']
  config.encoder_input_size = tuple(p['encoder_input'])
  config.ids_per_batch, config.instances_per_id = p['feature_ids'], 4
  config.model.depth, config.model.width = p['depth'], p['width']
  config.gan.conv_dim, config.gan.num_residual = p['conv_dim'], p['num_residual']
  config.gan.d_layers = p['d_layers']
  config.gan.pixel_ids_per_batch, config.gan.pixel_instances_per_id = p['pixel_ids'], 4
  config.gan.stage_iterations = tuple(p['stage_iterations'])
  # The official single decay sits at half of stage 3.
  s1, s2, s3 = config.gan.stage_iterations
  config.gan.lr_milestones = (s1 + s2 + s3 // 2,)
  config.learning_rate = FLAGS.learning_rate
  config.encoder_lr_multiplier = FLAGS.encoder_lr_multiplier
  config.pretrained_backbone = FLAGS.pretrained_backbone
  config.eval.sysu_modes, config.eval.sysu_shots = ('all',), ('single',)
  config.eval.num_trials = FLAGS.num_trials
  config.gan.pixel_alignment = FLAGS.pixel_alignment
  config.gan.test_instance_norm = FLAGS.test_instance_norm
  return config


def _preset():
  p = dict(_PRESETS[FLAGS.preset])
  for key in ('train_ids', 'test_ids', 'image_size', 'dtype', 'conv_dim', 'num_residual'):
    if getattr(FLAGS, key) is not None:
      p[key] = getattr(FLAGS, key)
  if FLAGS.stage_iterations:
    p['stage_iterations'] = tuple(int(s) for s in FLAGS.stage_iterations)
  return p


def _evaluate(state, extractors, test, config, mesh, truth):
  from aligngan_jax import sharding
  from aligngan_jax.evaluation import diagnostics, engine
  feats = np.zeros((len(test), 0), np.float32)
  for name, modality in (('rgb', 0), ('ir', 1)):
    rows = np.flatnonzero(test.modality == modality)
    parts = []
    n = config.eval_batch_size
    for i in range(0, len(rows), n):
      chunk = rows[i:i + n]
      images = _to_float(test.images[np.pad(chunk, (0, n - len(chunk)), mode='edge')])
      parts.append(np.asarray(extractors[name](state, sharding.shard_batch(images, mesh)))[:len(chunk)])
    part = np.concatenate(parts)
    if feats.shape[1] == 0:
      feats = np.zeros((len(test), part.shape[1]), np.float32)
    feats[rows] = part
  result = engine.evaluate_features(feats, test, engine.EvalSettings.from_config(config.eval))
  diag = diagnostics.diagnose(feats, test.person_id, test.camera, test.modality)
  pairs, translator = truth
  diag['translation'] = pairs.measure(lambda rgb: translator(state, rgb)[0],
                                      config.eval_batch_size)
  return diagnostics.protocol_summary(result), diag


def main(argv):
  del argv
  import jax
  from aligngan_jax import players, pretrained, sampler as sampler_lib, sharding, trainers
  from aligngan_jax.evaluation import diagnostics, translation
  preset = _preset()
  config = _config(preset)
  start = time.time()
  train, test, twins = render_dataset(
      config.seed, preset['train_ids'], preset['test_ids'], height=preset['render_height'],
      max_images=preset['max_images'], size=config.image_size,
      ir_from_colour=FLAGS.ir_from_colour)
  print(f'Rendered {len(train)} train / {len(test)} test images '
        f'({preset["train_ids"]} / {preset["test_ids"]} people) in {time.time() - start:.0f} s '
        f'on {jax.devices()[0].device_kind}.', flush=True)
  rgb, ir = train.select(train.modality == 0), train.select(train.modality == 1)
  mesh = sharding.create_mesh()
  models = players.create_models(config, int(train.label.max()) + 1)
  state = players.create_state(config, models, mesh)
  if config.pretrained_backbone:
    state = pretrained.load_backbone(state, config, mesh)
  trainer = trainers.trainer_for(config)
  steps = trainers.make_steps(trainer, models, config, mesh)
  extractors = trainers.make_extractors(models, config, mesh)
  truth = (translation.Truth.from_pairs(
      _to_float(rgb.images), _to_float(twins['train']),
      _to_float(test.images[test.modality == 0]), _to_float(twins['test'])),
           trainers.make_translator(models))
  samplers = {
      'feature': sampler_lib.PKSampler(rgb.label, ir.label, ids_per_batch=config.ids_per_batch,
                                       instances_per_id=config.instances_per_id, seed=config.seed),
      'pixel': sampler_lib.PKSampler(rgb.label, ir.label,
                                     ids_per_batch=config.gan.pixel_ids_per_batch,
                                     instances_per_id=config.gan.pixel_instances_per_id,
                                     seed=config.seed + 1)}
  rows = []
  for stage, (lo, hi) in trainer.bounds().items():
    def batch(step, stage=stage):
      if stage == 1:
        return sharding.shard_batch(_batch(samplers['feature'], step, rgb, ir), mesh)
      if stage == 2:
        return sharding.shard_batch(_batch(samplers['pixel'], step, rgb, ir), mesh)
      return {k: sharding.shard_batch(_batch(samplers[k], step, rgb, ir), mesh)
              for k in ('feature', 'pixel')}
    t0 = time.time()
    state, metrics = steps[stage](state, batch(lo))
    jax.block_until_ready(metrics)
    compile_s = time.time() - t0
    t0 = time.time()
    for step in range(lo + 1, hi):
      state, metrics = steps[stage](state, batch(step))
      if (step + 1 - lo) % max(1, (hi - lo) // 4) == 0:
        loss = {k: round(float(v), 3) for k, v in metrics.items()}
        print(f'stage {stage} iteration {step + 1}/{hi} {time.time() - t0:.0f} s {loss}',
              flush=True)
    jax.block_until_ready(state)
    train_s = time.time() - t0
    protocol, diag = _evaluate(state, extractors, test, config, mesh, truth)
    rows.append({'stage': stage, 'step': hi, 'protocol': protocol, 'diagnostics': diag,
                 'iterations': hi - lo, 'train_s': train_s, 'compile_s': compile_s})
  print(f'\nAlignGAN learning benchmark, preset {FLAGS.preset} {preset}, '
        f'{jax.devices()[0].device_kind}, total {time.time() - start:.0f} s')
  print(f'{"stage":>5} {"iterations":>10} {"train s":>8} {"ms/it":>7} {"compile s":>9}')
  for r in rows:
    print(f'{r["stage"]:>5} {r["iterations"]:>10} {r["train_s"]:>8.1f} '
          f'{1000 * r["train_s"] / max(1, r["iterations"] - 1):>7.1f} {r["compile_s"]:>9.1f}')
  print(diagnostics.format_table(rows))


if __name__ == '__main__':
  app.run(main)
