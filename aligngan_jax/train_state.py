"""The train state: one pure pytree holding every player (spec §1).

Networks, their batch statistics and their optimizer states live in dicts
keyed by network / optimizer name, so a new player (the generators and
discriminators of the full AlignGAN) is a new key, not a new class. The
optax transformations are static (not checkpointed); `rng` is a fixed key
that steps fold their step number into.
"""

from typing import Any

from flax import struct
import jax
import jax.numpy as jnp

from aligngan_jax import sharding


@struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: iterations done
  params: dict[str, Any]  # network name -> params
  batch_stats: dict[str, Any]  # network name -> running statistics
  opt_state: dict[str, Any]  # optimizer name -> optax state
  rng: jax.Array  # typed PRNG key; use fold_in(rng, step)
  tx: dict[str, Any] = struct.field(pytree_node=False)  # optimizer name -> optax tx


def create(init_variables, tx: dict, *, seed: int, mesh, abstract: bool = False) -> TrainState:
  """A fresh state replicated over ``mesh``: ``init_variables(key)`` gives
  network name -> {'params', optionally 'batch_stats'} from
  ``fold_in(key(seed), 0)``; ``tx``: network name -> optax transformation of
  every trained network; ``rng`` is ``fold_in(key(seed), 1)``.

  ``abstract``: the same state as `jax.ShapeDtypeStruct` leaves with their
  shardings, without running (or compiling) the initialisers.
  """

  def init():
    base = jax.random.key(seed)
    variables = init_variables(jax.random.fold_in(base, 0))
    params = {k: v['params'] for k, v in variables.items()}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats={k: v['batch_stats'] for k, v in variables.items() if 'batch_stats' in v},
        opt_state={k: t.init(params[k]) for k, t in tx.items()},
        rng=jax.random.fold_in(base, 1),
        tx=tx,
    )

  replicated = sharding.replicated(mesh)
  if abstract:
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), jax.eval_shape(init)
    )
  return jax.jit(init, out_shardings=replicated)()
