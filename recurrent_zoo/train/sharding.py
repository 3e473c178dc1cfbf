"""Data (and sequence) parallelism with ``jax.sharding``: the batch split over the devices,
parameters replicated.

The same code runs on one CPU, several GPUs or a TPU pod: by default the mesh is one axis,
"data", over ``jax.devices()`` (every device of every process after
``jax.distributed.initialize``). Each process computes the whole global batch from (seed, step)
and hands over the rows its own devices hold, so no data iterator has to be coordinated between
hosts.

A data × sequence mesh (:func:`data_sequence_mesh`, axes "data" and "seq") also splits time:
the arrays [B, T, ...] of a batch are split over "data" along B and over "seq" along T. The
model then runs under ``jax.shard_map`` over "seq" (:func:`sequence_sharded`), where its layers,
built with ``sequence_axis="seq"``, pass their state from chunk to chunk; "data" stays an
automatic axis, and the loss is computed on the global predictions, so it and its gradient are
the one-device ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
#: The mesh axis time is split over in :func:`train <recurrent_zoo.train.train>`; the model's
#: layers must be built with ``sequence_axis=SEQUENCE_AXIS``.
SEQUENCE_AXIS = "seq"


def data_mesh(devices: Any = None) -> Mesh:
    """A one-axis mesh ("data") over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices).reshape(-1), (DATA_AXIS,))


def data_sequence_mesh(sequence: int, devices: Any = None) -> Mesh:
    """A two-axis mesh ("data", "seq") over ``devices`` (default: every device of every process),
    ``sequence`` devices along "seq".

    The devices, in order, fill a [len(devices) / sequence, sequence] grid row by row, so the
    devices of one chunk group (a row: one batch slice, all of its time) are neighbours in
    ``jax.devices()``, e.g. the devices of one host.
    """
    devices = np.asarray(jax.devices() if devices is None else devices).reshape(-1)
    if not isinstance(sequence, int) or sequence < 1 or devices.size % sequence:
        raise ValueError(
            f"sequence must be a positive int dividing the number of devices ({devices.size}), "
            f"got {sequence!r}"
        )
    return Mesh(devices.reshape(-1, sequence), (DATA_AXIS, SEQUENCE_AXIS))


def sequence_size(mesh: Mesh) -> int | None:
    """The size of the mesh's "seq" axis, or None when it has none (a data-only mesh)."""
    return dict(mesh.shape).get(SEQUENCE_AXIS)


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimiser state)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis split over the "data" axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def _global_array(value: Any, sharding: NamedSharding) -> jax.Array:
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _time_length(batch: Any, mesh: Mesh) -> int | None:
    """T, the length of the batch's "inputs" [B, T, ...] on a mesh with a "seq" axis (checked to
    divide into it); None on a data-only mesh."""
    size = sequence_size(mesh)
    if size is None:
        return None
    inputs = batch.get("inputs") if isinstance(batch, Mapping) else None
    shape = np.shape(inputs) if inputs is not None else ()
    if len(shape) < 2:
        raise ValueError(
            f"a mesh with a {SEQUENCE_AXIS!r} axis splits time: the batch must be a dict with "
            f"'inputs' of shape [B, T, ...], got {type(batch).__name__} with inputs of shape "
            f"{tuple(shape)}"
        )
    if shape[1] % size:
        raise ValueError(
            f"the sequence length must be a multiple of the size of the mesh's "
            f"{SEQUENCE_AXIS!r} axis ({size}) to split time over it, got T = {shape[1]}"
        )
    return int(shape[1])


def _splits_time(shape: tuple[int, ...], batch_size: int, T: int | None) -> bool:
    # An array [B, T, ...] of the inputs' B and T (inputs, per-step targets, resets).
    return T is not None and len(shape) >= 2 and tuple(shape[:2]) == (batch_size, T)


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Places a global batch (a pytree of arrays [B, ...], equal on every process) on the mesh,
    split along B over the "data" axis. B must be a multiple of that axis's size.

    On a mesh with a "seq" axis the batch is a dict whose "inputs" are [B, T, ...] with T a
    multiple of the "seq" axis's size; every array [B, T, ...] (inputs, resets, per-step
    targets) is split along T over it too, the others (lengths [B], ...) only along B."""
    n = dict(mesh.shape)[DATA_AXIS]
    T = _time_length(batch, mesh)
    B = np.shape(batch["inputs"])[0] if T is not None else None

    def put(leaf):
        shape = np.shape(leaf)
        if not shape or shape[0] % n:
            raise ValueError(
                f"the batch size must be a multiple of the number of devices along "
                f"{DATA_AXIS!r} ({n}) to split the batch over them, got an array of shape "
                f"{tuple(shape)}"
            )
        spec = (DATA_AXIS, SEQUENCE_AXIS) if _splits_time(shape, B, T) else (DATA_AXIS,)
        sharding = NamedSharding(mesh, PartitionSpec(*spec))
        if jax.process_count() == 1:  # device-to-device when the batch is already on one
            return jax.device_put(leaf, sharding)
        return _global_array(leaf, sharding)

    return jax.tree.map(put, batch)


def _varying_axes(value: Any) -> frozenset:
    """The manual mesh axes ``value`` (traced inside shard_map) varies over."""
    aval = jax.typeof(value)
    manual = getattr(aval, "manual_axis_type", None)
    return manual.varying if manual is not None else getattr(aval, "vma", frozenset())


def _mentions_axis(jaxpr: Any, axis: str) -> bool:
    """Whether an equation of ``jaxpr`` (or of a jaxpr inside it) names mesh axis ``axis``: a
    collective over it or its ``axis_index``."""
    for eqn in jaxpr.eqns:
        for key in ("axis_name", "axes"):
            names = eqn.params.get(key)
            names = names if isinstance(names, tuple | list) else (names,)
            if axis in names:
                return True
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns") and _mentions_axis(inner, axis):
                    return True
    return False


def sequence_sharded(
    forward: Callable[[Any, Any, jax.Array, dict[str, Any]], tuple[Any, Any]], mesh: Mesh
) -> Callable[[Any, Any, jax.Array, dict[str, Any]], tuple[Any, Any]]:
    """``forward(params, model_state, key, inputs) -> (predictions, model_state)`` run under
    ``jax.shard_map`` over the mesh's "seq" axis ("data" stays automatic).

    ``inputs`` is a dict of the model's arguments: entries [B, T, ...] of the "inputs"' B and T
    ("inputs", "resets") go in split along T, the others ("lengths") whole. ``params``,
    ``model_state`` and ``key`` go in whole; ``key`` is folded with the device's index along
    "seq", so dropout draws a different mask for each chunk of time. Out of the map, each
    prediction that varies over "seq" (one output per step) comes back split along its axis 1,
    the others (pooled outputs, summed over the axis inside) whole. The model state (batch
    statistics) must be the same on every chunk, and the model must communicate over "seq"
    (layers built with ``sequence_axis="seq"``), else a ValueError: a model that does not would
    run each chunk of time as a sequence of its own.
    """
    axis = SEQUENCE_AXIS
    P = PartitionSpec
    # The output specs of each input signature: the train step is traced more than once.
    known: dict[Any, Any] = {}

    def run(params: Any, model_state: Any, key: jax.Array, inputs: dict[str, Any]):
        B, T = inputs["inputs"].shape[:2]
        split = {
            k: P(None, axis) if _splits_time(v.shape, B, T) else P() for k, v in inputs.items()
        }
        in_specs = (P(), P(), P(), split)
        args = (params, model_state, key, inputs)
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), args)
        signature = (jax.tree.structure(abstract), tuple(jax.tree.leaves(abstract)))
        if signature not in known:
            known[signature] = _output_specs(forward, mesh, in_specs, abstract)

        def body(params, model_state, key, inputs):
            key = jax.random.fold_in(key, jax.lax.axis_index(axis))
            return forward(params, model_state, key, inputs)

        return jax.shard_map(
            body, mesh=mesh, in_specs=in_specs, out_specs=known[signature], axis_names={axis}
        )(*args)

    return run


def _output_specs(forward: Callable, mesh: Mesh, in_specs: Any, abstract: Any) -> Any:
    """:func:`sequence_sharded`'s out_specs for ``forward`` on ``abstract`` arguments, from one
    trace under shard_map: a prediction varying over "seq" is split along its axis 1, one the
    same on every chunk comes out whole; the model state must be the same on every chunk and the
    model must communicate over "seq" (else a ValueError)."""
    axis = SEQUENCE_AXIS
    P = PartitionSpec
    found: dict[str, Any] = {}

    def probe(*a):
        pred, state = forward(*a)
        found["pred"] = jax.tree.structure(pred)
        found["varying"] = [axis in _varying_axes(v) for v in jax.tree.leaves(pred)]
        found["state"] = [
            jax.tree_util.keystr(path)
            for path, v in jax.tree_util.tree_leaves_with_path(state)
            if axis in _varying_axes(v)
        ]
        # Any value may leave the map stacked along a new "seq" axis, varying or not.
        return jax.tree.map(lambda leaf: leaf[None], (pred, state))

    def trace(check_vma: bool) -> Any:
        return jax.make_jaxpr(
            jax.shard_map(
                probe,
                mesh=mesh,
                in_specs=in_specs,
                out_specs=P(axis),
                axis_names={axis},
                check_vma=check_vma,
            )
        )(*abstract)

    try:
        probed = trace(True)
    except TypeError:
        # A layer unaware of the axis (its scan's carry starts the same on every device and
        # comes out varying) fails the type check: without it, say why.
        if _mentions_axis(trace(False).jaxpr, axis):
            raise
        probed = None
    if probed is None or not _mentions_axis(probed.jaxpr, axis):
        raise ValueError(
            f"the mesh splits time over its {axis!r} axis but the model never communicates "
            f"over it: build its layers with sequence_axis={axis!r} (e.g. "
            f"rz.SequenceModel(..., layer_kwargs={{'sequence_axis': {axis!r}}}); only crnn, "
            f"lru and mh_linear take it), or train on a data-only mesh"
        )
    if found["state"]:
        raise ValueError(
            f"the model state {found['state']} differs between the chunks of time on the "
            f"{axis!r} axis: a statistic over time must be reduced over the whole sequence "
            f"(the zoo's batch norm does so in a block whose layer has sequence_axis={axis!r})"
        )
    specs = [P(None, axis) if v else P() for v in found["varying"]]
    return (jax.tree.unflatten(found["pred"], specs), P())


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
