"""What the checkpoint guard costs per save at the official sizes.

  python bench/checkpoint_bench.py [--repeats=5] [--workdir=/tmp/ckpt_bench]

Builds the full AlignGAN state of configs/sysu.py (eight networks, their
running statistics and optimizer states; filled with random values of the
right shapes instead of running the initialisers) and times, after one
warm-up: the audit `checkpointing.save` runs before every write (finite
check, largest magnitude and the per-leaf fingerprint, one fused pass on
the devices, plus the host transfer of its small result); an orbax save
of the same state (asynchronous start and waiting for it); the fingerprint
check of a restore. Prints one table; no TensorFlow needed.
"""

import argparse
import shutil

import common  # bench/common.py: puts the repository root on sys.path
import jax
import numpy as np

from aligngan_jax import checkpointing
from aligngan_jax import players
from aligngan_jax import sharding
from configs import sysu


def _filled(abstract, mesh):
  rng = np.random.default_rng(0)
  replicated = sharding.replicated(mesh)

  def fill(leaf):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      return jax.device_put(jax.random.key(0), replicated)
    if np.issubdtype(leaf.dtype, np.floating):
      value = rng.standard_normal(leaf.shape, dtype=np.float32).astype(leaf.dtype)
    else:
      value = np.zeros(leaf.shape, leaf.dtype)
    return jax.device_put(value, replicated)

  return jax.tree.map(fill, abstract)


def _median_seconds(fn, repeats):
  fn()  # warm-up (compiles the audit)
  return common.median_seconds(fn, repeats)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--workdir', default='/tmp/aligngan_ckpt_bench')
  args = parser.parse_args()
  config = sysu.get_config()
  mesh = sharding.create_mesh()
  models = players.create_models(config, 395)
  state = _filled(players.create_state(config, models, mesh, abstract=True), mesh)
  tree = checkpointing._saved_tree(state)
  leaves = jax.tree.leaves(tree)
  nbytes = sum(
      x.size * x.dtype.itemsize
      for x in leaves
      if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
  )

  audit = _median_seconds(lambda: checkpointing._audit_host(tree), args.repeats)
  shutil.rmtree(args.workdir, ignore_errors=True)
  manager = checkpointing.create_manager(args.workdir, save_every=1, max_to_keep=1)
  step = [0]

  def save():
    step[0] += 1
    checkpointing.save(manager, state.replace(step=state.step + step[0]), force=True)
    manager.wait_until_finished()

  saved = _median_seconds(save, args.repeats)
  manager.close()
  shutil.rmtree(args.workdir, ignore_errors=True)
  rows = [
      ('state size', f'{nbytes / 2**20:.0f} MiB in {len(leaves)} leaves'),
      ('audit before a save (finite, magnitude, fingerprint)', f'{audit * 1e3:.0f} ms'),
      ('orbax save incl. the audit, waited for', f'{saved * 1e3:.0f} ms'),
      ('audit share of a save', f'{100 * audit / saved:.1f} %'),
      ('audit throughput', f'{nbytes / audit / 2**30:.2f} GiB/s'),
  ]
  print(f'devices: {jax.devices()}')
  print('| measure | value |\n|---|---|')
  for name, value in rows:
    print(f'| {name} | {value} |')


if __name__ == '__main__':
  main()
