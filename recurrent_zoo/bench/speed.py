"""``recurrent-zoo bench speed``: each layer's time, compile time and memory against its peers.

For every layer × scan backend × sequence length T × dtype it measures, in one process and
interleaved so that machine noise hits everyone alike: the median forward time and forward+backward
time (gradient of mean(y²) with respect to the parameters), compile time of forward+backward, and
peak memory. Each peer of :mod:`recurrent_zoo.bench._peers` computes the same function with mapped
parameters; a ratio is peer time / our time (above 1: we are faster) and peer memory / our memory.

Peak memory comes from XLA's analysis of the compiled executable
(``jit(f).lower(...).compile().memory_analysis()``: arguments + outputs + temporaries − aliased),
the same on every backend; on a GPU/TPU the device's own ``peak_bytes_in_use`` is recorded too.
Nothing here is specific to the CPU: the same code times any JAX backend (torch runs on the CPU).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

NAME = "speed"
HELP = "time, compile time and memory of each layer against its peers, across sequence lengths"

# The default --layers: those of these that are registered in rz.LAYERS.
LAYERS = ("lru", "crnn", "mh_linear", "rnn", "ln_rnn", "gru", "lstm")
LINEAR = ("lru", "crnn", "mh_linear")
DTYPES = ("float32", "bfloat16")
QUICK_LENGTHS = (256, 1024)
FULL_LENGTHS = (256, 1024, 4096, 16384)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--layers", nargs="+", default=None, help="layers to time (default: all of them)"
    )
    parser.add_argument(
        "--scans",
        nargs="+",
        default=["auto"],
        help="scan backends of the linear layers (auto, sequential, associative)",
    )
    parser.add_argument(
        "--lengths",
        "--length",
        nargs="+",
        type=int,
        default=None,
        help=f"sequence lengths T (default {list(QUICK_LENGTHS)}; --full: {list(FULL_LENGTHS)})",
    )
    parser.add_argument("--batch", type=int, default=32, help="batch size B")
    parser.add_argument("--hidden", type=int, default=256, help="state size N")
    parser.add_argument("--features", type=int, default=256, help="input (= output) size D")
    parser.add_argument("--dtypes", nargs="+", default=["float32"], help=f"among {DTYPES}")
    parser.add_argument(
        "--peers",
        nargs="*",
        default=None,
        help="peers to race (reference, scan, flax, torch, ideal; default all that apply; "
        "none: ours only)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement")


def _check(args: argparse.Namespace) -> None:
    import recurrent_zoo as rz
    from recurrent_zoo import scan
    from recurrent_zoo.bench import _peers
    from recurrent_zoo.bench._common import UsageError

    def among(values, allowed, what):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise UsageError(f"--{what}: got {bad}, expected values among {list(allowed)}")

    among(args.layers, rz.LAYERS, "layers")
    among(args.scans, scan.METHODS, "scans")
    among(args.dtypes, DTYPES, "dtypes")
    if args.peers is not None:
        among(args.peers, _peers.ALL_PEERS, "peers")
    for what in ("batch", "hidden", "features", "repeats"):
        if getattr(args, what) < 1:
            raise UsageError(f"--{what} must be a positive integer, got {getattr(args, what)}")
    if args.lengths is not None and any(t < 1 for t in args.lengths):
        raise UsageError(f"--lengths must be positive integers, got {args.lengths}")


# -- measuring ------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t


def _peak_bytes(compiled: Any) -> int | None:
    m = compiled.memory_analysis()
    if m is None:
        return None
    return int(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


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
    """Median times; every repeat runs every implementation once, in turn (interleaved)."""
    samples: dict[str, dict[str, list[float]]] = {k: {"fwd": [], "fb": []} for k in impls}
    for impl in impls.values():  # warm-up: first calls allocate
        calls = list(impl.pieces) if isinstance(impl, _Ideal) else [impl.fwd]
        for f in calls + ([impl.fb] if impl.fb is not None else []):
            _timed(f)
    for _ in range(repeats):
        for name, impl in impls.items():
            if isinstance(impl, _Ideal):
                samples[name]["fwd"].append(sum(_timed(p) for p in impl.pieces))
            else:
                samples[name]["fwd"].append(_timed(impl.fwd))
        for name, impl in impls.items():
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


def _config(layer_name, scan_name, T, dtype, peers, args, key):
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


def _exponents(rows: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Least-squares slope of log(time or memory) against log(T), per implementation."""
    series: dict[tuple, dict[str, list[tuple[int, float]]]] = {}

    def add(key, metric, T, v):
        if v is not None and np.isfinite(v) and v > 0:
            series.setdefault(key, {}).setdefault(metric, []).append((T, v))

    for r in rows:
        key = (r["layer"], r["scan"], r["dtype"], "ours")
        for m in ("fwd_ms", "fwd_bwd_ms", "fwd_bwd_MB"):
            add(key, m, r["T"], r[m])
    for r in ratios:
        key = (r["layer"], r["scan"], r["dtype"], r["peer"])
        add(key, "fwd_ms", r["T"], r["peer_fwd_ms"])
        add(key, "fwd_bwd_ms", r["T"], r["peer_fwd_bwd_ms"])
    out = []
    for (layer, scan_name, dtype, impl), metrics in series.items():
        e = {"layer": layer, "scan": scan_name, "dtype": dtype, "impl": impl}
        for m, label in (
            ("fwd_ms", "fwd_time_exp"),
            ("fwd_bwd_ms", "fwd_bwd_time_exp"),
            ("fwd_bwd_MB", "fwd_bwd_mem_exp"),
        ):
            pts = metrics.get(m, [])
            if len({t for t, _ in pts}) >= 2:
                t, v = np.log(np.array(pts, dtype=float)).T
                e[label] = float(np.polyfit(t, v, 1)[0])
        if len(e) > 4:
            out.append(e)
    return out


def _plot(rows, ratios, out):
    from recurrent_zoo.bench._common import pyplot, save_figure

    plt = pyplot()
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    cols = min(3, len(layers))
    nrows = math.ceil(len(layers) / cols)
    fig, axes = plt.subplots(
        nrows, cols, figsize=(4.5 * cols, 3.6 * nrows), squeeze=False, layout="constrained"
    )
    for ax, layer in zip(axes.flat, layers):
        # One colour per implementation: solid/dashed its forward+backward, dotted its forward.
        colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
        for (scan_name, dtype), group in _groups([r for r in rows if r["layer"] == layer]):
            T, c = [r["T"] for r in group], next(colors)
            label = f"ours {scan_name} {dtype}"
            ax.plot(T, [r["fwd_bwd_ms"] for r in group], "o-", c=c, label=label + " fwd+bwd")
            ax.plot(T, [r["fwd_ms"] for r in group], "o:", c=c, label=label + " fwd")
        peers = [r for r in ratios if r["layer"] == layer]
        for peer in dict.fromkeys(r["peer"] for r in peers):
            group = sorted((r for r in peers if r["peer"] == peer), key=lambda r: r["T"])
            T, c = [r["T"] for r in group], next(colors)
            if peer != "ideal":  # forward only
                fb = [r["peer_fwd_bwd_ms"] for r in group]
                ax.plot(T, fb, "s--", c=c, label=f"{peer} fwd+bwd")
            ax.plot(T, [r["peer_fwd_ms"] for r in group], "s:", c=c, label=f"{peer} fwd")
        ax.set(xscale="log", yscale="log", title=layer, xlabel="T", ylabel="ms")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(layers) :]:
        ax.axis("off")
    fig.suptitle(f"time against sequence length ({jax.default_backend()})")
    return save_figure(fig, out, NAME)


def _groups(rows):
    keys = list(dict.fromkeys((r["scan"], r["dtype"]) for r in rows))
    for k in keys:
        yield k, sorted((r for r in rows if (r["scan"], r["dtype"]) == k), key=lambda r: r["T"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measures every configuration, prints the tables, writes ``speed.json`` and ``speed.png``."""
    import recurrent_zoo as rz
    from recurrent_zoo.bench import _peers
    from recurrent_zoo.bench._common import args_dict, format_table, progress, write_json

    if args.layers is None:
        args.layers = [name for name in LAYERS if name in rz.LAYERS]
    _check(args)
    if args.lengths is None:
        args.lengths = list(FULL_LENGTHS if args.full else QUICK_LENGTHS)
    peers = list(args.peers) if args.peers is not None else list(_peers.ALL_PEERS)
    configs = []
    for layer in args.layers:
        for scan_name in args.scans if layer in LINEAR else ["-"]:
            for dtype in args.dtypes:
                for T in sorted(args.lengths):
                    configs.append((layer, scan_name, T, dtype))
    key = jax.random.key(args.seed + 1)
    rows, ratios = [], []
    for layer, scan_name, T, dtype in progress(configs, "speed"):
        row, r = _config(layer, scan_name, T, dtype, peers, args, key)
        rows.append(row)
        ratios.extend(r)
    exponents = _exponents(rows, ratios)
    memory_source = "XLA memory_analysis of the compiled executable (arguments + outputs + temporaries − aliased)"
    results = {
        "rows": rows,
        "ratios": ratios,
        "exponents": exponents,
        "memory_source": memory_source,
        "ratio_meaning": "peer / ours: above 1 means ours is faster (or smaller)",
        "torch": _peers.torch_available(),
    }
    path = write_json(args.out, NAME, args_dict(args), results)
    figure = _plot(rows, ratios, args.out)
    print(f"ours (B={args.batch}, D={args.features}, N={args.hidden}, {jax.default_backend()}):")
    print(format_table(rows))
    print("\nratios, peer / ours (above 1: ours faster or smaller):")
    print(format_table(ratios))
    if exponents:
        print("\ngrowth with T, fitted exponent of time/memory ∝ T^e:")
        print(format_table(exponents))
    print(f"\npeak memory: {memory_source}")
    print(f"wrote {path} and {figure}")
    return results
