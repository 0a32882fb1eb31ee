"""Does AlignGAN learn at full size? Trains the three stages on a synthetic
SYSU-layout dataset rendered in memory and evaluates after every stage.

  python bench/learn_bench.py                          # GPU: official sizes, bf16
  python bench/learn_bench.py --preset=cpu             # CPU: a small run

No TensorFlow, TFDS or clu (the lent GPU machines have none; importing
them is blocked here): the dataset is rendered with
datasets/synthetic_vireid/render.py (numpy) into memory and handed, with a
writer of its own, to the shipped training loop
(``train_loop.train_and_evaluate(config, workdir, data=..., writer=...)``),
which batches it with the project's P x K samplers, checkpoints into
``--workdir`` and evaluates after every stage with the SYSU-MM01 protocol
engine and the per-stage diagnostics (evaluation/diagnostics.py).
ml_collections (configs/) and orbax must be importable: carry their wheels
to a machine without them.

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

from concurrent import futures
import functools
import importlib.util
import json
import os
import sys
import tempfile
import time

import common  # bench/common.py: puts the repository root on sys.path

_ROOT = common.ROOT

from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

from aligngan_jax import cli  # noqa: E402

_PRESETS = {
    # Official networks and batch sizes (ResNet-50, generators of width 64
    # with 4 residual blocks, 18 x 4 feature and 4 x 4 pixel batches), 128 px.
    'gpu': dict(
        train_ids=300,
        test_ids=96,
        image_size=128,
        render_height=128,
        max_images=8,
        depth=50,
        width=64,
        conv_dim=64,
        num_residual=4,
        d_layers=4,
        feature_ids=18,
        pixel_ids=4,
        encoder_input=(384, 192),
        stage_iterations=(1500, 1500, 1200),
        dtype='bfloat16',
    ),
    # Minutes on a 2-core CPU.
    'cpu': dict(
        train_ids=60,
        test_ids=24,
        image_size=64,
        render_height=64,
        max_images=4,
        depth=18,
        width=8,
        conv_dim=8,
        num_residual=1,
        d_layers=3,
        feature_ids=6,
        pixel_ids=2,
        encoder_input=(64, 32),
        stage_iterations=(60, 40, 40),
        dtype='float32',
    ),
}

flags.DEFINE_enum('preset', 'gpu', list(_PRESETS), 'Size preset; flags below override it.')
flags.DEFINE_integer('train_ids', None, 'Training identities.')
flags.DEFINE_integer('test_ids', None, 'Test identities.')
flags.DEFINE_integer('image_size', None, 'Square load size (official 128).')
flags.DEFINE_list('stage_iterations', None, 'Iterations of stages 1, 2, 3.')
flags.DEFINE_string('dtype', None, 'config.compute_dtype.')
flags.DEFINE_string(
    'pretrained_backbone',
    '',
    'config.pretrained_backbone (a torchvision ResNet-50 file or a .msgpack trunk).',
)
flags.DEFINE_float('learning_rate', 0.2, 'Head learning rate (official 0.2).')
flags.DEFINE_float('encoder_lr_multiplier', 0.1, 'Trunk lr / head lr (official 0.1).')
flags.DEFINE_integer('seed', 0, 'Data, sampler and initialisation seed.')
flags.DEFINE_integer('num_trials', 10, 'Gallery trials of the protocol.')
flags.DEFINE_float('ir_from_colour', 0.0, 'The world: 0 independent, 1 learnable.')
flags.DEFINE_integer('conv_dim', None, 'config.gan.conv_dim (preset otherwise).')
flags.DEFINE_integer('num_residual', None, 'config.gan.num_residual (preset otherwise).')
flags.DEFINE_bool('pixel_alignment', True, 'config.gan.pixel_alignment (False: ablation).')
flags.DEFINE_enum(
    'test_instance_norm', 'running', ['running', 'instance'], 'config.gan.test_instance_norm.'
)
flags.DEFINE_string(
    'workdir', None, 'Checkpoints and eval/stages.json (default: a new temporary folder).'
)
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


def _render_person(args):
  """The person's images, then the infrared twins of its RGB images."""
  seed, pid, height, max_images, size, ir_from_colour = args
  render = _load_render()
  draw = lambda **kw: [
      (pid, cam, index, render.to_square(image, size))
      for pid, cam, index, image in render.examples(
          seed,
          [pid],
          image_height=height,
          max_images=max_images,
          min_images=2,
          ir_from_colour=ir_from_colour,
          **kw,
      )
  ]
  return draw(), draw(cameras=render.RGB_CAMERAS, infrared_twins=True)


def render_dataset(seed, train_ids, test_ids, *, height, max_images, size, ir_from_colour=0.0):
  """`data.Data` in the demo dataset's layout ([n, S, S, 3] uint8 images),
  with the infrared twins of the RGB images of both splits."""
  from aligngan_jax import data as data_lib

  render = _load_render()
  train, test = render.split_identities(seed, train_ids, test_ids)
  with futures.ProcessPoolExecutor(os.cpu_count()) as pool:
    rendered = list(
        pool.map(
            _render_person,
            [
                (seed, int(p), height, max_images, size, ir_from_colour)
                for p in np.concatenate([train, test])
            ],
        )
    )
  people = [images for images, _ in rendered]
  twin_of = {(r[0], r[1], r[2]): r[3] for _, twins in rendered for r in twins}
  label_of = {int(p): i for i, p in enumerate(train)}

  def records(rows, labelled, modality=None):
    pid = np.array([r[0] for r in rows])
    cam = np.array([r[1] for r in rows])
    index = np.array([r[2] for r in rows])
    if modality is None:
      modality = np.isin(cam, render.IR_CAMERAS).astype(np.int64)
    return data_lib.Records(
        images=np.stack([r[3] for r in rows]),
        person_id=pid,
        label=np.array([label_of[p] if labelled else -1 for p in pid]),
        camera=cam,
        modality=np.broadcast_to(modality, pid.shape).copy(),
        index=index,
        path=np.array([f'cam{c}/{p:04d}/{i + 1:04d}.jpg' for p, c, i in zip(pid, cam, index)]),
    )

  splits, paired = {}, {}
  for name, ids, labelled in (('train', train, True), ('test', test, False)):
    wanted = set(ids.tolist())
    split = records([r for person in people for r in person if r[0] in wanted], labelled)
    rgb = split.select(split.modality == data_lib.RGB)
    twins = records(
        [(p, c, i, twin_of[(p, c, i)]) for p, c, i in zip(rgb.person_id, rgb.camera, rgb.index)],
        labelled,
        data_lib.IR,
    )
    splits[name], paired[name] = split, (rgb, twins)
  return data_lib.Data(splits['train'], splits['test'], paired)


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
  # Bookkeeping: log four times a stage; checkpoint, picture and evaluate at
  # the end of each stage only.
  config.dataset = 'synthetic_vireid (rendered in memory)'
  config.log_every_steps = max(1, min(config.gan.stage_iterations) // 4)
  config.checkpoint_every_steps = config.eval_every_steps = 10**9
  config.image_every_steps = 10**9
  config.max_checkpoints_to_keep = 1
  return config


def _preset():
  p = dict(_PRESETS[FLAGS.preset])
  for key in ('train_ids', 'test_ids', 'image_size', 'dtype', 'conv_dim', 'num_residual'):
    if getattr(FLAGS, key) is not None:
      p[key] = getattr(FLAGS, key)
  if FLAGS.stage_iterations:
    p['stage_iterations'] = tuple(int(s) for s in FLAGS.stage_iterations)
  return p


def _block(*names):
  """Makes ``names`` absent, as on a machine without them (an import raises
  ImportError, ``importlib.util.find_spec`` finds nothing): the loop must not
  need them when given data and a writer."""
  for name in names:
    if name in sys.modules:
      raise RuntimeError(f'{name} was imported before bench/learn_bench.py blocked it.')
    sys.modules[name] = None


def main(argv):
  del argv
  _block('tensorflow', 'tensorflow_datasets', 'clu')
  import jax

  from aligngan_jax import reporting
  from aligngan_jax import train_loop
  from aligngan_jax.evaluation import diagnostics

  preset = _preset()
  config = _config(preset)
  start = time.time()
  data = render_dataset(
      config.seed,
      preset['train_ids'],
      preset['test_ids'],
      height=preset['render_height'],
      max_images=preset['max_images'],
      size=config.image_size,
      ir_from_colour=FLAGS.ir_from_colour,
  )
  print(
      f'Rendered {len(data.train)} train / {len(data.test)} test images '
      f'({preset["train_ids"]} / {preset["test_ids"]} people) in {time.time() - start:.0f} s '
      f'on {jax.devices()[0].device_kind}.',
      flush=True,
  )
  workdir = FLAGS.workdir or tempfile.mkdtemp(prefix='learn-bench-')
  train_loop.train_and_evaluate(config, workdir, data=data, writer=reporting.MemoryWriter())
  with open(os.path.join(workdir, 'eval', 'stages.json')) as f:
    rows = json.load(f)
  print(
      f'\nAlignGAN learning benchmark, preset {FLAGS.preset} {preset}, '
      f'{jax.devices()[0].device_kind}, total {time.time() - start:.0f} s, workdir {workdir}'
  )
  print(f'{"stage":>5} {"iterations":>10} {"train s":>8} {"ms/it":>7} {"compile s":>9}')
  for r in rows:
    t = r.get('timing')
    if not t:
      continue
    steady = max(t['seconds'] - t['first_step_seconds'], 0.0)
    ms = 1000 * steady / max(1, t['iterations'] - 1)
    # As before the loop ran here: training time after the first step.
    print(
        f'{r["stage"]:>5} {t["iterations"]:>10} {steady:>8.1f} {ms:>7.1f} '
        f'{max(t["first_step_seconds"] - ms / 1000, 0.0):>9.1f}'
    )
  print(diagnostics.format_table(rows))


if __name__ == '__main__':
  cli.run(main)
