"""TFDS builders of the project. Importing this package registers them.

This folder is a repo-level package (like ``configs/``), imported by
``main.py`` and the tests from the repository root. It is deliberately not
installed as a top-level ``datasets`` package, which would shadow the
Hugging Face ``datasets`` library in users' environments.
"""

from datasets import llcm  # noqa: F401  (registers the builder)
from datasets import regdb  # noqa: F401  (registers the builder)
from datasets import synthetic_vireid  # noqa: F401  (registers the builder)
from datasets import sysu_mm01  # noqa: F401  (registers the builder)
