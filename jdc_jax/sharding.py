"""Data-parallel placement over a 1-D device mesh ("data"), on one or several processes.

The training state is replicated on every device; a batch is split along its leading axis. With
several processes (`jax.distributed`), every process builds the same replicated values from the
same seed and contributes its own copy (`replicate`), and feeds only its slice of each global
batch (`global_batch`); nothing else crosses processes outside the compiled step.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def replicate(tree, mesh: Mesh):
    """Global jax.Arrays replicated over `mesh` from this process's values (arrays, typed PRNG
    keys). Every process passes its own, equal copy; nothing is sent between processes."""
    sharding = NamedSharding(mesh, P())

    def put(value):
        if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(value)),
                                            impl=jax.random.key_impl(value))
        host = np.asarray(value)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jax.tree_util.tree_map(put, tree)


def local_copy(tree):
    """This process's first copy of replicated global arrays, as single-device arrays."""
    return jax.tree_util.tree_map(lambda value: value.addressable_data(0), tree)


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Builds global jax.Arrays from this process's slice of the batch (an explicit transfer)."""
    sharding = NamedSharding(mesh, P("data"))
    # With several processes, JAX copies the slices through a path that a "disallow" transfer
    # guard counts as implicit; this copy is the intended one.
    with jax.transfer_guard_host_to_device("allow"):
        return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
                for k, v in local_batch.items()}
