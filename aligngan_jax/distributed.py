"""Multi-controller runs (``jax.distributed``): setup, and the one host-side
synchronisation the job needs (dataset preparation).

One process per host, all running the same program: every process computes
every step on the global arrays (batches assembled from each process's rows
with ``jax.make_array_from_process_local_data``), process 0 alone writes
metrics, images, JSON and logs, and all of them take part in orbax
checkpointing.
"""

import jax
from jax.experimental import multihost_utils


def initialize(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    heartbeat_timeout_seconds: int = 100,
):
  """``jax.distributed.initialize``; with no address, JAX detects the cluster
  (Cloud TPU, SLURM, ...). On the CPU backend cross-process collectives need
  gloo, which is selected here (it changes nothing on TPU or GPU). When a
  process stops answering, the others fail after
  ``heartbeat_timeout_seconds`` instead of waiting forever."""
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(
      coordinator_address=coordinator_address,
      num_processes=num_processes,
      process_id=process_id,
      heartbeat_timeout_seconds=heartbeat_timeout_seconds,
  )


def barrier(name: str):
  """Waits until every process gets here (no-op in a single process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
