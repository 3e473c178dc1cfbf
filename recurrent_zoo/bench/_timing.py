"""How ``recurrent-zoo bench speed`` measures one configuration: compiled calls, interleaved
medians, compile time and XLA's peak memory, for ours and each peer."""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from recurrent_zoo.bench._common import compiled_memory

#: Layers with a ``scan`` option (the linear recurrences).
LINEAR = ("lru", "crnn", "mh_linear")


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t


def _peak_bytes(compiled: Any) -> int | None:
    memory = compiled_memory(compiled)
    return None if memory is None else memory["peak"]


def _device_peak() -> int | None:
    stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
    return None if not stats else stats.get("peak_bytes_in_use")


class _Jax:
    """A JAX implementation: compiled forward and forward+backward, with compile time and memory."""

    def __init__(self, params: Any, apply: Callable[[Any, Any], Any], x: Any) -> None:
        def loss(q, x):
            return jnp.mean(jnp.square(apply(q, x).astype(jnp.float32)))

        t, cpu = time.perf_counter(), time.process_time()
        self.fb_compiled = jax.jit(jax.value_and_grad(loss)).lower(params, x).compile()
        self.compile_s = time.perf_counter() - t
        # CPU seconds too: on a shared machine the wall time also counts other processes' turns.
        self.compile_cpu_s = time.process_time() - cpu
        self.fwd_compiled = jax.jit(apply).lower(params, x).compile()
        self.fb_bytes = _peak_bytes(self.fb_compiled)
        self.fwd_bytes = _peak_bytes(self.fwd_compiled)
        self.fwd = lambda: self.fwd_compiled(params, x)
        self.fb = lambda: self.fb_compiled(params, x)


class _Nnx:
    """The layer's ``rz.nnx`` twin holding the same parameters, called under ``nnx.jit``: the
    NNX front-end's own cost (its Python graph handling included) on top of the same kernels."""

    def __init__(self, layer: Any, variables: Any, x: Any) -> None:
        from flax import nnx

        from recurrent_zoo.nnx import from_linen

        model = from_linen(layer, variables)

        def loss(m, x):
            return jnp.mean(jnp.square(m(x).astype(jnp.float32)))

        fwd, fb = nnx.jit(lambda m, x: m(x)), nnx.jit(nnx.value_and_grad(loss))
        t, cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(fb(model, x))
        self.compile_s = time.perf_counter() - t
        self.compile_cpu_s = time.process_time() - cpu
        jax.block_until_ready(fwd(model, x))
        # nnx.jit lowers split → jit(merge → call); the same program gives the memory figures.
        graph, state = nnx.split(model)
        pure = lambda s, x: loss(nnx.merge(graph, s), x)
        self.fb_bytes = _peak_bytes(jax.jit(jax.value_and_grad(pure)).lower(state, x).compile())
        self.fwd_bytes = None
        self.fwd = lambda: fwd(model, x)
        self.fb = lambda: fb(model, x)


class _Callables:
    """A non-JAX implementation (torch): just the two calls."""

    compile_s = fwd_bytes = fb_bytes = None

    def __init__(self, fwd: Callable[[], Any], fb: Callable[[], Any]) -> None:
        self.fwd, self.fb = fwd, fb


class _Ideal:
    """Forward only: the sum of the separately timed pieces a layer cannot avoid."""

    compile_s = fb_bytes = fb = None

    def __init__(self, pieces: list[tuple[str, Any]]) -> None:
        self.pieces = []
        for _, (fn, fargs) in pieces:
            c = jax.jit(fn).lower(*fargs).compile()
            self.pieces.append(lambda c=c, fargs=fargs: c(*fargs))
        self.fwd_bytes = None


def _measure(impls: dict[str, Any], repeats: int) -> dict[str, dict[str, float]]:
    """Median times; every repeat runs every implementation once, in turn (interleaved, each
    repeat starting one implementation later)."""
    samples: dict[str, dict[str, list[float]]] = {k: {"fwd": [], "fb": []} for k in impls}
    for impl in impls.values():  # warm-up: first calls allocate
        calls = list(impl.pieces) if isinstance(impl, _Ideal) else [impl.fwd]
        for f in calls + ([impl.fb] if impl.fb is not None else []):
            _timed(f)
    names = list(impls)
    for i in range(repeats):
        # Each repeat starts one implementation later, so no one always runs first.
        turn = names[i % len(names) :] + names[: i % len(names)]
        for name in turn:
            impl = impls[name]
            if isinstance(impl, _Ideal):
                samples[name]["fwd"].append(sum(_timed(p) for p in impl.pieces))
            else:
                samples[name]["fwd"].append(_timed(impl.fwd))
        for name in turn:
            impl = impls[name]
            if impl.fb is not None:
                samples[name]["fb"].append(_timed(impl.fb))
    return {
        k: {m: (statistics.median(v) if v else math.nan) for m, v in s.items()}
        for k, s in samples.items()
    }


def _build(layer_name: str, scan_name: str, dtype: str, args: argparse.Namespace):
    import recurrent_zoo as rz

    kwargs: dict[str, Any] = {"hidden_size": args.hidden, "dtype": jnp.dtype(dtype)}
    if layer_name in LINEAR:
        kwargs["scan"] = scan_name
    return rz.make_layer(layer_name, **kwargs)


def config(
    layer_name: str,
    scan_name: str,
    T: int,
    dtype: str,
    peers: list[str],
    args: argparse.Namespace,
    key: jax.Array,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Measures one configuration: our row (times, compile time, memory) and one ratio row per
    peer that applies (peer / ours)."""
    from recurrent_zoo import scan
    from recurrent_zoo.bench import _peers

    layer = _build(layer_name, scan_name, dtype, args)
    x = jax.random.normal(key, (args.batch, T, args.features), jnp.float32)
    params = layer.init(jax.random.key(args.seed), x[:, :2])
    x = x.astype(dtype)
    impls: dict[str, Any] = {"ours": _Jax(params, layer.apply, x)}
    device_peak = _device_peak()
    # Peers run in float32 (their own formulation's dtype); ours in each requested dtype.
    for peer in peers if dtype == "float32" else ():
        if peer not in _peers.PEERS[layer_name]:
            continue
        if peer == "ideal":
            impls[peer] = _Ideal(_peers.ideal_pieces(layer, params["params"], x))
        elif peer == "nnx":
            impls[peer] = _Nnx(layer, params, x)
        elif peer == "torch":
            if _peers.torch_available() and jax.default_backend() == "cpu":
                module = _peers.torch_peer(layer, params["params"])
                impls[peer] = _Callables(*_peers.torch_callables(module, x))
        else:
            q, apply = _peers.build(peer, layer, params["params"])
            impls[peer] = _Jax(q, apply, x)
    times = _measure(impls, args.repeats)
    structure = "block" if layer_name == "mh_linear" else "diagonal"
    resolved = scan.resolve_method(scan_name, structure) if layer_name in LINEAR else "-"
    ours = impls["ours"]
    row = {
        "layer": layer_name,
        "scan": scan_name if resolved in ("-", scan_name) else f"{scan_name}:{resolved}",
        "T": T,
        "dtype": dtype,
        "fwd_ms": 1e3 * times["ours"]["fwd"],
        "fwd_bwd_ms": 1e3 * times["ours"]["fb"],
        "compile_s": ours.compile_s,
        "compile_cpu_s": ours.compile_cpu_s,
        "fwd_MB": ours.fwd_bytes / 2**20,
        "fwd_bwd_MB": ours.fb_bytes / 2**20,
    }
    if device_peak is not None:
        row["device_peak_MB"] = device_peak / 2**20
    ratios = []
    for name, impl in impls.items():
        if name == "ours":
            continue
        r = {"layer": layer_name, "scan": row["scan"], "T": T, "dtype": dtype, "peer": name}
        r["peer_fwd_ms"] = 1e3 * times[name]["fwd"]
        r["peer_fwd_bwd_ms"] = 1e3 * times[name]["fb"]
        r["fwd_x"] = times[name]["fwd"] / times["ours"]["fwd"]
        r["fwd_bwd_x"] = times[name]["fb"] / times["ours"]["fb"]
        r["mem_x"] = impl.fb_bytes / ours.fb_bytes if impl.fb_bytes else math.nan
        r["peer_compile_s"] = impl.compile_s if impl.compile_s is not None else math.nan
        ratios.append(r)
    return row, ratios
