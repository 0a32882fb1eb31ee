"""How far do the golden numbers move under other float rounding? Measures
the tolerance of tests/golden.py.

  python bench/golden_spread.py            # about 10 minutes on 2 CPU cores

Runs the tests' two tiny training runs (the shared AlignGAN run and the IDE
run, with the flags and XLA settings of tests/conftest.py) through main.py
under XLA variants that stand in for other x86 machines, and prints the
largest difference of each from tests/golden/<run>.json:

- ``as the tests``: the tests' own settings, again (run-to-run spread);
- ``AVX2``: ``--xla_cpu_max_isa=AVX2``, a CPU without AVX-512;
- ``1 core``: one core instead of two (other thread partitions);
- ``fusion emitters``: XLA's newer CPU code generator, which the tests turn
  off on the jaxlib series they were measured with.

Each variant trains in a fresh workdir with no compilation cache.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import common  # bench/common.py: puts the repository root on sys.path

ROOT = common.ROOT
sys.path.insert(0, os.path.join(ROOT, 'tests'))

import golden  # noqa: E402
import run_files  # noqa: E402

_TESTS = run_files.xla_flags_for_tests()
VARIANTS = {
    'as the tests': (_TESTS, []),
    'AVX2': (_TESTS + ['--xla_cpu_max_isa=AVX2'], []),
    '1 core': (_TESTS, ['taskset', '-c', '0']),
    'fusion emitters': (run_files.xla_flags_for_tests(faster_compiles=False), []),
}
RUNS = {
    'aligngan_tiny': run_files.ALIGNGAN_TINY_FLAGS,
    'ide_tiny': (
        '--config=configs/synthetic.py:ide,tiny',
        *(f'--config.{k}={v}' for k, v in run_files.IDE_TINY_OVERRIDES.items()),
    ),
}


def spread(expected: dict, got: dict) -> tuple[float, float]:
  """(largest relative loss difference, largest metric difference)."""
  loss = max(
      (
          abs(got['losses'][tag][step] - value) / max(abs(value), 1e-12)
          for tag, steps in expected['losses'].items()
          for step, value in steps.items()
      ),
      default=0.0,
  )
  metric = max(
      (
          abs(got['metrics'][s][m] - value)
          for s, ms in expected['metrics'].items()
          for m, value in ms.items()
      ),
      default=0.0,
  )
  return loss, metric


def main():
  tmp = tempfile.mkdtemp(prefix='golden-spread-')
  data_dir = os.path.join(tmp, 'tfds')
  rows = []
  for variant, (xla_flags, prefix) in VARIANTS.items():
    for name, flags in RUNS.items():
      workdir = os.path.join(tmp, variant.replace(' ', '_'), name)
      env = dict(
          os.environ,
          **run_files.TEST_ENV,
          XLA_FLAGS=' '.join(xla_flags),
          JAX_PLATFORMS='cpu',
          TF_CPP_MIN_LOG_LEVEL='2',
      )
      run = subprocess.run(
          [
              *prefix,
              sys.executable,
              'main.py',
              *flags,
              f'--workdir={workdir}',
              f'--config.data_dir={data_dir}',
              '--nocompilation_cache',
          ],
          cwd=ROOT,
          env=env,
          capture_output=True,
          text=True,
          check=False,
      )
      if run.returncode:
        sys.exit(f'error: {variant} / {name} failed:\n{run.stderr[-2000:]}')
      with open(golden.path(name)) as f:
        expected = json.load(f)
      got = golden.numbers(workdir)
      loss, metric = spread(expected, got)
      rows.append((variant, name, loss, metric, len(golden.differences(expected, got))))
      print(f'{variant} / {name}: loss {loss:.2g}, metric {metric:.2g}', flush=True)
  print(
      '\n| variant | run | max relative loss difference | max metric difference |'
      " outside the test's tolerance |\n|---|---|---|---|---|"
  )
  for variant, name, loss, metric, outside in rows:
    print(f'| {variant} | {name} | {loss:.2g} | {metric:.3g} | {outside} |')


if __name__ == '__main__':
  # No options: --help prints the above and exits 0; anything else is refused.
  argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  ).parse_args()
  main()
