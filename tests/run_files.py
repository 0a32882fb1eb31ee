"""Readers of what a training run leaves in its workdir (for tests)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The session's shared AlignGAN run (conftest.aligngan_run): the demo config
# at :tiny, 64 px (the joint discriminator's last maps are then 2x2), 2 + 2
# + 2 iterations, every checkpoint kept. Its numbers are golden
# (tests/golden.py), so bench/golden_spread.py runs it with these flags too.
ALIGNGAN_TINY_FLAGS = ('--config=configs/synthetic.py:tiny', '--config.image_size=64',
                       '--config.checkpoint_every_steps=1',
                       '--config.max_checkpoints_to_keep=10', '--config.eval.num_trials=2')
# The IDE trainer's tiny run (test_train.py, in-process): configs/synthetic.py
# at 'ide,tiny' with these keys set; its numbers are golden too.
IDE_TINY_OVERRIDES = {'checkpoint_every_steps': 1, 'eval.num_trials': 2,
                      'ide.num_train_steps': 2}


def override(config, overrides: dict):
  """Sets dotted ``overrides`` keys on ``config`` (as --config.KEY=VALUE would)."""
  for key, value in overrides.items():
    *groups, leaf = key.split('.')
    node = config
    for group in groups:
      node = node[group]
    node[leaf] = value
  return config


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
