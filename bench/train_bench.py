"""Times AlignGAN's three training steps (and AGW's and CAJ's one) at the
official sizes.

  python bench/train_bench.py                       # official sizes, fp32 + bf16
  python bench/train_bench.py --feature_ids=4 --pixel_ids=2 --dtypes=float32 \
      --calls=batched --repeats=1

Official sizes (spec §2-§3): feature batches 18 ids x 4 images per modality
(72 + 72), pixel batches 4 x 4 (16 + 16), 128x128 images, the encoder at
384x192, ResNet-50, 395 classes. Batches are synthetic and already on the
devices (no TensorFlow), so it runs on a bare GPU machine. Each (stage,
dtype) runs in its own subprocess, so its peak memory is its own.

Each (stage, dtype) runs with ``config.batch_network_calls`` (the default:
repeated calls joined, stages.py) and without (every call separate, as the
official code makes them), and with each ``--remat`` policy of the trunk;
the speed-up column compares a row with the separate calls without remat.

Per row: median ms per iteration, images per second (the images the stage
consumes: stage 1 the IR half of a feature batch, stage 2 a pixel batch,
stage 3 both batches), FLOPs per iteration, achieved TFLOP/s, utilisation
against the chip's dense peak (GPU: the vendor's figure for the dtype; CPU:
a float32 matmul measured in the same run, labelled so), peak memory
(device allocator on GPU, process RSS on CPU), XLA's planned memory of the
step (arguments + outputs + temporaries, from the compiled executable), the
speed-up over the separate calls, and compile time cold (empty persistent
cache) and warm (the same step again after `jax.clear_caches()`, served
from the persistent cache).

FLOPs: XLA's cost analysis of the step's HLO *before* backend optimisation,
where every convolution is still a convolution. The compiled executable's
count would be the natural one, but on GPU convolutions become cuDNN custom
calls that XLA's GPU cost analysis does not count (it read 0.1 % MFU). On
CPU both counts are printed; they agree within a few percent.
"""

import resource
import tempfile
import time

from absl import flags
import common  # bench/common.py: puts the repository root on sys.path

from aligngan_jax import cli

FLAGS = flags.FLAGS
flags.DEFINE_list(
    'stages',
    ['1', '2', '3'],
    "AlignGAN's stages to time (1, 2, 3), and the baselines' one step "
    "('agw': 64 images of 288x144, 'caj': 96; SYSU-MM01's 395 classes).",
)
flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'config.compute_dtype values.')
flags.DEFINE_list(
    'calls',
    ['batched', 'separate'],
    'config.batch_network_calls True (batched) / False (separate).',
)
flags.DEFINE_integer('feature_ids', 18, 'P of a feature batch (official 18).')
flags.DEFINE_integer('feature_instances', 4, 'K of a feature batch (official 4).')
flags.DEFINE_integer('pixel_ids', 4, 'P of a pixel batch (official 4).')
flags.DEFINE_integer('pixel_instances', 4, 'K of a pixel batch (official 4).')
flags.DEFINE_integer('depth', 50, 'ResNet depth (official 50).')
flags.DEFINE_integer('repeats', 10, 'Timed iterations (median reported).')
flags.DEFINE_integer('warmup', 2, 'Untimed iterations after compilation.')
flags.DEFINE_list('remat', ['none'], 'config.model.remat values (resnet.REMAT_POLICIES).')
flags.DEFINE_bool(
    'compile_only',
    False,
    'Lower and compile only: FLOPs, planned memory and compile '
    'times without running (official sizes on a small CPU host).',
)
flags.DEFINE_string('_child', '', 'Internal: "stage,dtype,calls,remat" to run in this process.')

# Dense peak FLOP/s per chip (vendor data sheets; SXM parts). float32 runs
# use TF32 tensor cores under XLA's default precision on these GPUs.
_PEAKS = {
    'H100': {'bfloat16': 989e12, 'float32': 495e12},
    'H200': {'bfloat16': 989e12, 'float32': 495e12},
    'A100': {'bfloat16': 312e12, 'float32': 156e12},
}


def _config(dtype: str, calls: str, remat: str):
  from configs import default

  config = default.get_config()
  config.compute_dtype = dtype
  config.batch_network_calls = calls == 'batched'
  config.model.remat = remat
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
  return 2 * n**3 / float(np.median(times)), 'measured f32 matmul'


def _flops(compiled, lowered) -> tuple[float, float]:
  """(HLO count before optimisation, compiled executable's count)."""

  def get(cost):
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get('flops', float('nan'))) if cost else float('nan')

  return get(lowered.cost_analysis()), get(compiled.cost_analysis())


def _planned_bytes(compiled) -> float:
  m = compiled.memory_analysis()
  if m is None:
    return float('nan')
  return float(
      m.argument_size_in_bytes
      + m.output_size_in_bytes
      + m.temp_size_in_bytes
      - m.alias_size_in_bytes
  )


# The baselines' official SYSU-MM01 split sizes (their epoch length).
_SYSU_IMAGES = (22_258, 11_909)


def _child(stage, dtype: str, calls: str, remat: str) -> dict:
  import jax
  import numpy as np
  # Cold and warm compilation against an empty persistent cache of our own.
  jax.config.update('jax_compilation_cache_dir', tempfile.mkdtemp(prefix='train-bench-'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  from aligngan_jax import sharding
  from aligngan_jax import trainers

  config = _config(dtype, calls, remat)
  baseline = stage in ('agw', 'caj')
  if baseline:
    config.trainer = stage
  mesh = sharding.create_mesh()
  trainer = trainers.trainer_for(config, trainers.DataInfo(395, *_SYSU_IMAGES))
  state = trainers.create_state(trainer, mesh)
  number = 1 if baseline else int(stage)
  step = trainers.make_steps(trainer, mesh)[number]
  rng = np.random.default_rng(0)
  if baseline:
    # At the load size (288 x 144), as the training loop feeds the step.
    g = config[stage]
    labels = np.repeat(np.arange(g.ids_per_batch), g.instances_per_id).astype(np.int32)
    image = lambda: rng.uniform(-1, 1, (len(labels), *g.input_size, 3)).astype(np.float32)
    batch = sharding.shard_batch(
        {'identity': {'rgb': image(), 'ir': image(), 'labels': labels}}, mesh
    )
  else:
    feature = _batch(config.ids_per_batch, config.instances_per_id, config.image_size, rng)
    pixel = _batch(
        config.gan.pixel_ids_per_batch, config.gan.pixel_instances_per_id, config.image_size, rng
    )
    batch = sharding.shard_batch({'feature': feature, 'pixel': pixel}, mesh)
  batch = {name: batch[name] for name in trainer.schedule[number - 1].samplers}
  images = trainer.schedule[number - 1].images  # the training loop's images/s
  start = time.perf_counter()
  lowered = step.lower(state, batch)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  jax.clear_caches()
  start = time.perf_counter()
  step.lower(state, batch).compile()
  warm_compile_s = time.perf_counter() - start
  flops, compiled_flops = _flops(compiled, lowered)
  common = {
      'stage': stage,
      'dtype': dtype,
      'calls': calls,
      'remat': remat,
      'flops': flops,
      'compiled_flops': compiled_flops,
      'planned_gib': _planned_bytes(compiled) / 2**30,
      'compile_s': compile_s,
      'warm_compile_s': warm_compile_s,
      'iterations': trainer.schedule[number - 1].iterations,
      'device': f'{jax.devices()[0].device_kind} x{jax.device_count()}',
  }
  if FLAGS.compile_only:
    return {
        **common,
        'ms': float('nan'),
        'images_per_s': float('nan'),
        'tflops_per_s': float('nan'),
        'mfu': float('nan'),
        'peak_kind': '-',
        'memory_gib': float('nan'),
        'memory_kind': 'not run',
        'finite': True,
    }
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
  return {
      **common,
      'ms': 1e3 * seconds,
      'images_per_s': images / seconds,
      'tflops_per_s': flops / seconds / 1e12,
      'mfu': flops / seconds / peak,
      'peak_kind': peak_kind,
      'memory_gib': memory / 2**30,
      'memory_kind': memory_kind,
      'finite': finite,
  }


def _print_row(r, speedup):
  print(
      f'{r["stage"]:<7}{r["dtype"]:<10}{r["calls"]:<10}{r["remat"]:<7}{r["ms"]:>10.1f}'
      f'{r["images_per_s"]:>9.1f}{r["flops"] / 1e9:>9.0f}{r["compiled_flops"] / 1e9:>10.0f}'
      f'{r["tflops_per_s"]:>9.2f}{100 * r["mfu"]:>7.1f}%{r["memory_gib"]:>10.2f}'
      f'{r["planned_gib"]:>9.2f}{speedup:>9}{r["compile_s"]:>8.1f}'
      f'{r["warm_compile_s"]:>7.1f}  {r["device"]}; util vs {r["peak_kind"]}; '
      f'{r["memory_kind"]}{"" if r["finite"] else "; NON-FINITE LOSS"}',
      flush=True,
  )


def main(argv):
  del argv
  if FLAGS._child:
    stage, dtype, calls, remat = FLAGS._child.split(',')
    common.print_result(_child(stage, dtype, calls, remat))
    return
  print(
      common.machine_header(
          f'feature {FLAGS.feature_ids}x{FLAGS.feature_instances}, pixel '
          f'{FLAGS.pixel_ids}x{FLAGS.pixel_instances} per modality, 128x128, encoder '
          f'384x192, ResNet-{FLAGS.depth}; median of {FLAGS.repeats}'
      )
  )
  print(
      '# GFLOP: HLO before optimisation (convolutions counted) | compiled: the '
      "executable's own count (on GPU it omits cuDNN convolutions)"
  )
  print(
      f'{"stage":<7}{"dtype":<10}{"calls":<10}{"remat":<7}{"ms/iter":>10}{"img/s":>9}{"GFLOP":>9}'
      f'{"compiled":>10}{"TFLOP/s":>9}{"util":>8}{"peak GiB":>10}{"XLA GiB":>9}'
      f'{"speedup":>9}{"cold s":>8}{"warm s":>7}  notes'
  )
  rows = {}
  variants = [
      (stage, dtype, calls, remat)
      for stage in FLAGS.stages
      for dtype in FLAGS.dtypes
      for calls in sorted(FLAGS.calls, key=lambda c: c != 'separate')  # reference first
      for remat in FLAGS.remat
  ]
  for stage, dtype, calls, remat in variants:
    r = common.run_child(__file__, f'{stage},{dtype},{calls},{remat}')
    if isinstance(r, str):
      print(f'{stage:<7}{dtype:<10}{calls:<10}{remat:<7} {r}')
      continue
    rows[stage, dtype, calls, remat] = r
    base = rows.get((stage, dtype, 'separate', 'none'))
    _print_row(r, f'{base["ms"] / r["ms"]:.2f}x' if base and r is not base else '-')
  # The step time the official schedule implies (no input, eval or logging).
  for _, dtype, calls, remat in {(None, *v[1:]) for v in variants}:
    found = [rows.get((s, dtype, calls, remat)) for s in ('1', '2', '3')]
    if all(found) and not FLAGS.compile_only:
      total = sum(r['iterations'] * r['ms'] for r in found) / 6e4
      parts = ' + '.join(f'{r["iterations"]:,} x {r["ms"]:.1f} ms' for r in found)
      print(f'# schedule {dtype} {calls} remat={remat}: {parts} = {total:.1f} min of steps')


if __name__ == '__main__':
  cli.run(main)
