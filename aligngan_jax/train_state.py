"""The train state: one pure pytree holding every player (spec §1).

Networks, their batch statistics and their optimizer states live in dicts
keyed by network / optimizer name, so a new player (the generators and
discriminators of the full AlignGAN) is a new key, not a new class. The
optax transformations are static (not checkpointed); `rng` is a fixed key
that steps fold their step number into.
"""

from typing import Any

import jax
from flax import struct


@struct.dataclass
class TrainState:
  step: jax.Array                 # int32 scalar: iterations done
  params: dict[str, Any]          # network name -> params
  batch_stats: dict[str, Any]     # network name -> running statistics
  opt_state: dict[str, Any]       # optimizer name -> optax state
  rng: jax.Array                  # typed PRNG key; use fold_in(rng, step)
  tx: dict[str, Any] = struct.field(pytree_node=False)  # optimizer name -> optax tx
