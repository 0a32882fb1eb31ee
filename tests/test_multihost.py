"""Several cooperating processes on one machine (jax.distributed, CPU, gloo):
the same run as one process (this one), resumable by one process, and a
clear failure when a process dies. The one-process runs happen in-process:
only the cooperating processes need processes."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _launch(tmp_path, workdir, data_dir, *, processes, devices, steps, extra=()):
  """Starts `processes` main.py processes with `devices` CPU devices each;
  returns [(Popen, stderr path)]."""
  port = _free_port()
  # The session's XLA flags (tests/conftest.py), with `devices` devices.
  flags = re.sub(
      r'--xla_force_host_platform_device_count=\d+',
      f'--xla_force_host_platform_device_count={devices}',
      os.environ['XLA_FLAGS'],
  )
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  launched = []
  for i in range(processes):
    args = [
        sys.executable,
        'main.py',
        '--config=configs/synthetic.py:ide,tiny',
        f'--workdir={workdir}',
        f'--config.data_dir={data_dir}',
        f'--config.ide.num_train_steps={steps}',
        '--config.checkpoint_every_steps=1',
        # No starting-point evaluation and two trials: these tests
        # compare and resume training; the final evaluation still runs.
        '--config.eval.stage_end=False',
        '--config.eval.num_trials=2',
        *extra,
    ]
    if processes > 1:
      args += [
          f'--coordinator_address=localhost:{port}',
          f'--num_processes={processes}',
          f'--process_id={i}',
      ]
    log = tmp_path / f'{os.path.basename(workdir)}_{i}_{time.monotonic_ns()}.log'
    with open(log, 'w') as f:
      launched.append((subprocess.Popen(args, cwd=ROOT, env=env, stdout=f, stderr=f), log))
  return launched


def _finish(launched, timeout=600):
  for proc, log in launched:
    proc.wait(timeout=timeout)
    assert proc.returncode == 0, log.read_text()[-3000:]
  return launched[0][1].read_text()


def _restore(workdir, step):
  """A checkpoint's params, batch_stats and optimizer state as host arrays,
  whatever topology wrote it."""
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  checkpointer = ocp.StandardCheckpointer()
  meta = checkpointer.metadata(path)
  meta = getattr(meta, 'item_metadata', meta)
  meta = getattr(meta, 'tree', meta)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  tree = checkpointer.restore(
      path, jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)
  )
  return jax.device_get({k: tree[k] for k in ('params', 'batch_stats', 'opt_state')})


def _train_here(workdir, data_dir, steps, caplog) -> str:
  """The run `_launch` starts, in this process (two devices); its log."""
  import logging

  from aligngan_jax import train_lib
  from configs import synthetic

  config = synthetic.get_config('ide,tiny')
  config.data_dir, config.ide.num_train_steps = data_dir, steps
  config.checkpoint_every_steps = 1
  config.eval.stage_end, config.eval.num_trials = False, 2
  caplog.clear()
  with caplog.at_level(logging.INFO):
    train_lib.train_and_evaluate(config, workdir)
  return caplog.text


def test_two_processes_equal_one(tfds_data_dir, tmp_path, caplog):
  # (That one process resumes what two wrote: the restart of the next test.)
  two, one = str(tmp_path / 'two'), str(tmp_path / 'one')
  log = _finish(_launch(tmp_path, two, tfds_data_dir, processes=2, devices=2, steps=1))
  assert 'step 1/1' in log and 'all-search single-shot' in log
  # The reference: the same run in this one process, on two devices. The
  # global batch is the same either way (4 images per device there, 2 x 2
  # here): same parameters, up to the order of floating-point sums across
  # devices and processes (measured: 8e-6 after one step against one
  # process on 4 devices). One step, because the tiny model is
  # ill-conditioned: at width 4 some BatchNorm channels are nearly
  # constant, and the rounding noise of x - E[x] in them (which depends on
  # the summation order) reaches the gradient amplified by 1/sqrt(eps);
  # after three steps two topologies differ by 1e-3 (measured), which says
  # nothing about the batches.
  _train_here(one, tfds_data_dir, 1, caplog)
  for a, b in zip(jax.tree.leaves(_restore(two, 1)), jax.tree.leaves(_restore(one, 1))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  with open(os.path.join(two, 'eval', 'latest.json')) as f:
    got = json.load(f)
  with open(os.path.join(one, 'eval', 'latest.json')) as f:
    want = json.load(f)
  for setting, row in want['results'].items():
    for metric in ('rank1', 'rank5', 'mAP', 'mINP'):
      assert got['results'][setting][metric]['mean'] == pytest.approx(
          row[metric]['mean'], abs=1e-4
      ), (setting, metric)
  # Process 0 alone wrote the logs' report and the event files.
  assert len([f for f in os.listdir(two) if f.startswith('events.out')]) == 1


def test_a_dead_process_fails_the_others_and_a_restart_resumes(tfds_data_dir, tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  launched = _launch(
      tmp_path,
      workdir,
      tfds_data_dir,
      processes=2,
      devices=2,
      steps=500,
      extra=('--heartbeat_timeout_seconds=5',),
  )
  checkpoints = os.path.join(workdir, 'checkpoints')

  def saved():
    names = os.listdir(checkpoints) if os.path.isdir(checkpoints) else []
    return sorted(int(n) for n in names if n.isdigit())

  deadline = time.monotonic() + 300
  # Killed once a checkpoint is complete (later ones may be half-written:
  # a restart must skip those).
  while not saved() and time.monotonic() < deadline:
    assert all(p.poll() is None for p, _ in launched), launched[0][1].read_text()[-3000:]
    time.sleep(0.5)
  (survivor, survivor_log), (victim, _) = launched
  victim.send_signal(signal.SIGKILL)
  start = time.monotonic()
  survivor.wait(timeout=120)  # fails, does not hang
  assert survivor.returncode != 0
  assert time.monotonic() - start < 60
  # It says why: main.py's one line when the failed collective reaches
  # Python first, else JAX's own fatal message when its coordination
  # service notices the dead peer first (a race between the two).
  text = survivor_log.read_text()
  assert (
      'error: process 0 of 2: a collective with the other processes failed' in text
      and 'Another process has probably died' in text
  ) or ('another task died' in text), text[-3000:]
  last = saved()[-1]
  # Restarting (here as one process) resumes from the newest checkpoint.
  # One process (2 devices) resumes what two processes (4 devices) wrote.
  log = _train_here(workdir, tfds_data_dir, last + 2, caplog)
  assert f'at step {last}.' in log and f'step {last + 1}/{last + 2}' in log
