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
from typing import Any

from recurrent_zoo.bench import _common
from recurrent_zoo.cli.names import LAYERS as REGISTERED
from recurrent_zoo.cli.options import Size, Sizes, add_layers
from recurrent_zoo.cli.usage import UsageError

NAME = "speed"
HELP = "time, compile time and memory of each layer against its peers, across sequence lengths"

# The default --layers: those of these that are registered in rz.LAYERS.
LAYERS = ("lru", "crnn", "mh_linear", "rnn", "ln_rnn", "gru", "lstm")
DTYPES = ("float32", "bfloat16")
QUICK_LENGTHS = (256, 1024)
FULL_LENGTHS = (256, 1024, 4096, 16384)
SIZES = Sizes(lengths=Size(QUICK_LENGTHS, FULL_LENGTHS, "sequence lengths T", many=True))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_layers(parser, [n for n in LAYERS if n in REGISTERED], what="layers to time")
    parser.add_argument(
        "--scans",
        nargs="+",
        default=["auto"],
        help="scan backends of the linear layers (auto, sequential, associative)",
    )
    SIZES.add_arguments(parser)
    parser.add_argument("--batch", type=int, default=32, help="batch size B")
    parser.add_argument("--hidden", type=int, default=256, help="state size N")
    parser.add_argument("--features", type=int, default=256, help="input (= output) size D")
    parser.add_argument("--dtypes", nargs="+", default=["float32"], help=f"among {DTYPES}")
    parser.add_argument(
        "--peers",
        nargs="*",
        default=None,
        help="peers to race (reference, scan, flax, torch, ideal, nnx: the rz.nnx twin; default all "
        "that apply; "
        "none: ours only)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement")


def _check(args: argparse.Namespace) -> None:
    from recurrent_zoo import scan
    from recurrent_zoo.bench import _peers

    def among(values, allowed, what):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise UsageError(f"--{what}: got {bad}, expected values among {list(allowed)}")

    among(args.scans, scan.METHODS, "scans")
    among(args.dtypes, DTYPES, "dtypes")
    if args.peers is not None:
        among(args.peers, _peers.ALL_PEERS, "peers")
    for what in ("batch", "hidden", "features", "repeats"):
        if getattr(args, what) < 1:
            raise UsageError(f"--{what} must be a positive integer, got {getattr(args, what)}")


def _exponents(rows: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Least-squares slope of log(time or memory) against log(T), per implementation."""
    import numpy as np

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
    import jax

    plt = _common.pyplot()
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
    return _common.save_figure(fig, out, NAME)


def _groups(rows):
    keys = list(dict.fromkeys((r["scan"], r["dtype"]) for r in rows))
    for k in keys:
        yield k, sorted((r for r in rows if (r["scan"], r["dtype"]) == k), key=lambda r: r["T"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measures every configuration, prints the tables, writes ``speed.json`` and ``speed.png``."""
    import jax

    from recurrent_zoo.bench import _peers
    from recurrent_zoo.bench._timing import LINEAR, config

    _check(args)
    args.lengths = SIZES.resolve(args)["lengths"]
    peers = list(args.peers) if args.peers is not None else list(_peers.ALL_PEERS)
    configs = []
    for layer in args.layers:
        for scan_name in args.scans if layer in LINEAR else ["-"]:
            for dtype in args.dtypes:
                for T in sorted(args.lengths):
                    configs.append((layer, scan_name, T, dtype))
    key = jax.random.key(args.seed + 1)
    rows, ratios = [], []
    for layer, scan_name, T, dtype in _common.progress(configs, "speed"):
        row, r = config(layer, scan_name, T, dtype, peers, args, key)
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
    path = _common.write_json(args.out, NAME, _common.args_dict(args), results)
    figure = _plot(rows, ratios, args.out)
    print(f"ours (B={args.batch}, D={args.features}, N={args.hidden}, {jax.default_backend()}):")
    print(_common.format_table(rows))
    print("\nratios, peer / ours (above 1: ours faster or smaller):")
    print(_common.format_table(ratios))
    if exponents:
        print("\ngrowth with T, fitted exponent of time/memory ∝ T^e:")
        print(_common.format_table(exponents))
    print(f"\npeak memory: {memory_source}")
    print(f"wrote {path} and {figure}")
    return results
