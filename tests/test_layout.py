"""The package's import direction: main -> train_lib -> trainers -> leaves."""

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'aligngan_jax')


def _imported_modules(path):
  """Every aligngan_jax module a file imports, at any depth."""
  with open(path) as f:
    tree = ast.parse(f.read())
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      names.update(f'{node.module}.{a.name}' for a in node.names)
    elif isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
  return names


def test_no_package_module_imports_train_lib():
  offenders = []
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      path = os.path.join(folder, name)
      if name.endswith('.py') and path != os.path.join(PACKAGE, 'train_lib.py'):
        if 'aligngan_jax.train_lib' in _imported_modules(path):
          offenders.append(os.path.relpath(path, ROOT))
  assert not offenders, f'{offenders} import train_lib (only main.py, tests and bench may)'


def test_trainers_import_without_tensorflow():
  """TensorFlow is reached only through the input pipeline and the dataset
  builders, which the trainers import when a run starts, not at import."""
  code = "import sys; import aligngan_jax.train_lib; print('tensorflow' in sys.modules)"
  out = subprocess.run(
      [sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, check=True
  )
  assert out.stdout.strip() == 'False', out.stderr[-2000:]
