"""Times AlignGAN's three training steps at the official sizes.

  python bench/train_bench.py                       # official sizes, fp32 + bf16
  python bench/train_bench.py --feature_ids=4 --pixel_ids=2 --dtypes=float32

Official sizes (spec §2-§3): feature batches 18 ids x 4 images per modality
(72 + 72), pixel batches 4 x 4 (16 + 16), 128x128 images, the encoder at
384x192, ResNet-50, 395 classes. Batches are synthetic and already on the
devices (no TensorFlow), so it runs on a bare GPU machine. Each (stage,
dtype) runs in its own subprocess, so its peak memory is its own.

Per row: median ms per iteration, images per second (the images the stage
consumes: stage 1 the IR half of a feature batch, stage 2 a pixel batch,
stage 3 both batches), the FLOPs XLA counts for one compiled iteration, the
achieved TFLOP/s, the model FLOP utilisation against the chip's peak
(GPU: the vendor's dense peak for the dtype; CPU: a float32 matmul measured
in the same run, labelled so), peak memory (device allocator on GPU, process
RSS on CPU) and the speed-up of bf16 over fp32 of the same stage.
"""

import json
import os
import platform
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list('stages', ['1', '2', '3'], 'Stages to time.')
flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'config.compute_dtype values.')
flags.DEFINE_integer('feature_ids', 18, 'P of a feature batch (official 18).')
flags.DEFINE_integer('feature_instances', 4, 'K of a feature batch (official 4).')
flags.DEFINE_integer('pixel_ids', 4, 'P of a pixel batch (official 4).')
flags.DEFINE_integer('pixel_instances', 4, 'K of a pixel batch (official 4).')
flags.DEFINE_integer('depth', 50, 'ResNet depth (official 50).')
flags.DEFINE_integer('repeats', 10, 'Timed iterations (median reported).')
flags.DEFINE_integer('warmup', 2, 'Untimed iterations after compilation.')
flags.DEFINE_string('_child', '', 'Internal: "stage,dtype" to run in this process.')

# Dense peak FLOP/s per chip (vendor data sheets; SXM parts). float32 runs
# use TF32 tensor cores under XLA's default precision on these GPUs.
_PEAKS = {'H100': {'bfloat16': 989e12, 'float32': 495e12},
          'H200': {'bfloat16': 989e12, 'float32': 495e12},
          'A100': {'bfloat16': 312e12, 'float32': 156e12}}


def _config(dtype: str):
  from configs import default
  config = default.get_config()
  config.compute_dtype = dtype
  config.ids_per_batch, config.instances_per_id = FLAGS.feature_ids, FLAGS.feature_instances
  config.gan.pixel_ids_per_batch = FLAGS.pixel_ids
  config.gan.pixel_instances_per_id = FLAGS.pixel_instances
  config.model.depth = FLAGS.depth
  return config


def _batch(ids, instances, size, rng):
  import numpy as np
  labels = np.repeat(np.arange(ids), instances).astype(np.int32)
  images = lambda: rng.uniform(-1, 1, (ids * instances, size, size, 3)).astype(np.float32)
  return {'rgb': images(), 'ir': images(), 'labels': labels}


def _peak_flops(dtype: str) -> tuple[float, str]:
  import jax
  import jax.numpy as jnp
  import numpy as np
  device = jax.devices()[0]
  for name, peaks in _PEAKS.items():
    if name in device.device_kind:
      return peaks[dtype], f'{name} {dtype} dense peak'
  # No table entry (CPU): the float32 matmul rate measured here.
  n = 2048
  a = jnp.ones((n, n), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  times = []
  for _ in range(5):
    start = time.perf_counter()
    matmul(a).block_until_ready()
    times.append(time.perf_counter() - start)
  return 2 * n ** 3 / float(np.median(times)), 'measured f32 matmul'


def _child(stage: int, dtype: str) -> dict:
  import jax
  import numpy as np
  from aligngan_jax import aligngan_train
  from aligngan_jax import players
  from aligngan_jax import sharding
  config = _config(dtype)
  mesh = sharding.create_mesh()
  models = players.create_models(config, num_classes=395)
  state = players.create_state(config, models, mesh)
  step = aligngan_train.make_stage_steps(models, config, mesh)[stage]
  rng = np.random.default_rng(0)
  feature = _batch(config.ids_per_batch, config.instances_per_id, config.image_size, rng)
  pixel = _batch(config.gan.pixel_ids_per_batch, config.gan.pixel_instances_per_id,
                 config.image_size, rng)
  batch = {1: feature, 2: pixel, 3: {'feature': feature, 'pixel': pixel}}[stage]
  batch = sharding.shard_batch(batch, mesh)
  images = aligngan_train.stage_images(config, stage)   # the training loop's images/s
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', float('nan'))) if cost else float('nan')
  for _ in range(FLAGS.warmup):
    state, metrics = step(state, batch)
  jax.block_until_ready(state)
  times = []
  for _ in range(FLAGS.repeats):
    t = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t)
  seconds = float(np.median(times))
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    memory, memory_kind = stats['peak_bytes_in_use'], 'device peak'
  else:
    memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    memory_kind = 'process RSS peak'
  peak, peak_kind = _peak_flops(dtype)
  finite = all(np.isfinite(float(v)) for v in jax.device_get(metrics).values())
  return {'stage': stage, 'dtype': dtype, 'ms': 1e3 * seconds, 'images': images,
          'images_per_s': images / seconds, 'flops': flops,
          'tflops_per_s': flops / seconds / 1e12, 'mfu': flops / seconds / peak,
          'peak_kind': peak_kind, 'memory_gib': memory / 2 ** 30,
          'memory_kind': memory_kind, 'compile_s': compile_s, 'finite': finite,
          'device': f'{jax.devices()[0].device_kind} x{jax.device_count()}'}


def main(argv):
  del argv
  if FLAGS._child:
    stage, dtype = FLAGS._child.split(',')
    print('RESULT ' + json.dumps(_child(int(stage), dtype)))
    return
  print(f'# {time.strftime("%Y-%m-%d")} | {platform.machine()} {os.cpu_count()} CPUs | '
        f'feature {FLAGS.feature_ids}x{FLAGS.feature_instances}, pixel '
        f'{FLAGS.pixel_ids}x{FLAGS.pixel_instances} per modality, 128x128, encoder '
        f'384x192, ResNet-{FLAGS.depth}; median of {FLAGS.repeats}')
  print(f'{"stage":<7}{"dtype":<10}{"ms/iter":>10}{"img/s":>9}{"GFLOP/iter":>12}'
        f'{"TFLOP/s":>9}{"MFU":>8}{"peak GiB":>10}{"vs fp32":>9}{"compile s":>11}  notes')
  rows = {}
  passthrough = [a for a in sys.argv[1:] if not a.startswith('--_child')]
  for stage in FLAGS.stages:
    for dtype in FLAGS.dtypes:
      out = subprocess.run(
          [sys.executable, __file__, *passthrough, f'--_child={stage},{dtype}'],
          capture_output=True, text=True, check=False)
      lines = [line for line in out.stdout.splitlines() if line.startswith('RESULT ')]
      if out.returncode or not lines:
        print(f'{stage:<7}{dtype:<10} failed (rc={out.returncode}): '
              f'{out.stderr.strip().splitlines()[-1:] }')
        continue
      r = rows[stage, dtype] = json.loads(lines[0][len('RESULT '):])
      base = rows.get((stage, 'float32'))
      speedup = f'{base["ms"] / r["ms"]:.2f}x' if base else '-'
      print(f'{stage:<7}{dtype:<10}{r["ms"]:>10.1f}{r["images_per_s"]:>9.1f}'
            f'{r["flops"] / 1e9:>12.0f}{r["tflops_per_s"]:>9.3f}{100 * r["mfu"]:>7.1f}%'
            f'{r["memory_gib"]:>10.2f}{speedup:>9}{r["compile_s"]:>11.1f}  '
            f'{r["device"]}; MFU vs {r["peak_kind"]}; {r["memory_kind"]}'
            f'{"" if r["finite"] else "; NON-FINITE LOSS"}', flush=True)


if __name__ == '__main__':
  app.run(main)
