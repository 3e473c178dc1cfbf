"""Data parallelism with ``jax.sharding``: the batch split over every device, parameters replicated.

The same code runs on one CPU, several GPUs or a TPU pod: the mesh is one axis, "data", over
``jax.devices()`` (every device of every process after ``jax.distributed.initialize``). Each
process computes the whole global batch from (seed, step) and hands over the rows its own devices
hold, so no data iterator has to be coordinated between hosts.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: Any = None) -> Mesh:
    """A one-axis mesh ("data") over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices).reshape(-1), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimiser state)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis split over the "data" axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def _global_array(value: Any, sharding: NamedSharding) -> jax.Array:
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Places a global batch (a pytree of arrays [B, ...], equal on every process) on the mesh,
    split along B. B must be a multiple of the number of devices."""
    n = mesh.devices.size
    sharding = batch_sharded(mesh)

    def put(leaf):
        shape = np.shape(leaf)
        if not shape or shape[0] % n:
            raise ValueError(
                f"the batch size must be a multiple of the number of devices ({n}) to split the "
                f"batch over them, got an array of shape {tuple(shape)}"
            )
        if jax.process_count() == 1:  # device-to-device when the batch is already on one
            return jax.device_put(leaf, sharding)
        return _global_array(leaf, sharding)

    return jax.tree.map(put, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree (equal on every process) on every device of the mesh."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda leaf: _global_array(leaf, sharding), tree)


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Joins a multi-host run through ``jax.distributed.initialize``.

    With no arguments it relies on JAX's auto-detection (TPU pods, SLURM, Open MPI) or on the
    environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID. Returns
    whether a multi-process run was set up (False for a single process with nothing to join).
    """
    env = os.environ
    coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and "JAX_NUM_PROCESSES" in env:
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and "JAX_PROCESS_ID" in env:
        process_id = int(env["JAX_PROCESS_ID"])
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    return jax.process_count() > 1
