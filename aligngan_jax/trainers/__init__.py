"""Trainers: one module per model, registered by name (`base.register`).

``config.trainer`` picks one: 'aligngan' (aligngan.py), 'ide' (ide.py),
'agw' (agw.py) or 'caj' (caj.py).
A new model is a new module with a `base.Trainer` subclass and
``@base.register``; the loop, checkpointing, evaluation and the tools need
no change (base.py says what a trainer declares).
"""

from aligngan_jax.trainers import agw  # noqa: F401  (registers 'agw')
from aligngan_jax.trainers import aligngan  # noqa: F401  (registers 'aligngan')
from aligngan_jax.trainers import caj  # noqa: F401  (registers 'caj')
from aligngan_jax.trainers import ide  # noqa: F401  (registers 'ide')
from aligngan_jax.trainers.base import DataInfo
from aligngan_jax.trainers.base import Stage
from aligngan_jax.trainers.base import Trainer
from aligngan_jax.trainers.base import create_state
from aligngan_jax.trainers.base import get
from aligngan_jax.trainers.base import make_steps
from aligngan_jax.trainers.base import register
from aligngan_jax.trainers.base import registered
from aligngan_jax.trainers.base import trainer_for
from aligngan_jax.trainers.base import unregister

__all__ = [
    'create_state',
    'DataInfo',
    'get',
    'make_steps',
    'register',
    'registered',
    'Stage',
    'Trainer',
    'trainer_for',
    'unregister',
]
