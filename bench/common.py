"""What the benchmark scripts share (import it first: it puts the repository
root on ``sys.path``, so ``aligngan_jax``, ``configs`` and ``datasets``
import from a plain ``python bench/<script>.py``).

- `ROOT`: the repository root.
- `machine_header`: the first line of every table (date, machine, cores).
- `run_child`: a variant measured in a fresh process (the script itself
  again with ``--_child=...``), its result read from a ``RESULT {json}``
  line: memory peaks and compile times are per process.
- `run_logged`: a command whose output goes to a log file (long runs).
- `median_seconds`: the median wall time of repeated calls.
"""

import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

RESULT = 'RESULT '


def machine_header(*details: str, machine: bool = True) -> str:
  """'# <date> | <arch> <n> CPUs | details...' (``machine``: with the arch)."""
  where = f'{platform.machine()} {os.cpu_count()} CPUs' if machine else f'{os.cpu_count()} CPUs'
  return ' | '.join([f'# {time.strftime("%Y-%m-%d")}', where, *details])


def print_result(result: dict) -> None:
  """A child's answer to `run_child`: one ``RESULT {json}`` line."""
  print(RESULT + json.dumps(result))


def run_child(script: str, child: str) -> dict | str:
  """Runs ``script`` again with this process's arguments and
  ``--_child=<child>``; returns the dict its `print_result` line holds, or
  a one-line reason it failed."""
  passthrough = [a for a in sys.argv[1:] if not a.startswith('--_child')]
  out = subprocess.run(
      [sys.executable, script, *passthrough, f'--_child={child}'],
      capture_output=True,
      text=True,
      check=False,
  )
  lines = [line for line in out.stdout.splitlines() if line.startswith(RESULT)]
  if out.returncode or not lines:
    return f'failed (rc={out.returncode}): {out.stderr.strip().splitlines()[-1:]}'
  return json.loads(lines[0][len(RESULT) :])


def run_logged(cmd: list[str], log: str, *, mode: str = 'a', env=None) -> None:
  """Runs ``cmd`` in the repository root with its output in ``log``; a
  failure exits naming the command and the log."""
  with open(log, mode) as f:
    code = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
  if code:
    raise SystemExit(f'error: {" ".join(cmd)} exited {code}; see {log}.')


def median_seconds(fn, repeats: int) -> float:
  """Median wall time of ``repeats`` calls of ``fn`` (warm it up first)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))
