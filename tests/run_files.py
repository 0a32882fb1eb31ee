"""Readers of what a training run leaves in its workdir (for tests)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args, timeout=600) -> subprocess.CompletedProcess:
  """``python main.py *args`` from the repository root, on the CPU."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, 'main.py', *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def tensorboard_tags(workdir: str) -> set[str]:
  """Every scalar and image tag in the workdir's event files."""
  import tensorflow as tf
  tags = set()
  for name in os.listdir(workdir):
    if name.startswith('events.out.tfevents'):
      for event in tf.compat.v1.train.summary_iterator(os.path.join(workdir, name)):
        tags.update(v.tag for v in event.summary.value)
  return tags


def latest_eval(workdir: str) -> dict:
  with open(os.path.join(workdir, 'eval', 'latest.json')) as f:
    return json.load(f)
