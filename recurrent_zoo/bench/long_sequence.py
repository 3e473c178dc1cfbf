"""``recurrent-zoo bench long-sequence``: memory and time of very long sequences, per device.

The LRU's forward + backward pass (gradient of ``sum(y)`` with respect to the parameters and
x; B = 1, N = D = 256 by default) at T from 2¹² to 2²⁰, on 1, 2 and 4 devices with time sharded
over them (``sequence_axis`` under :func:`jax.shard_map`), without and with ``remat_chunk``.
For each configuration it records the per-device memory of XLA's analysis of the compiled
executable (``jit(f).lower(...).compile().memory_analysis()``: arguments, outputs and
temporaries; compile only, so T = 2²⁰ costs no memory) and, up to ``--timed-length``, the
median time of the call. Then, by memory analysis alone:

* remat: the LRU's and the GRU's temporary memory at ``--compare-length`` with and without
  ``remat_chunk=--compare-chunk``;
* sharding: P × the per-device temporary memory over one device's, at ``--compare-length``;
* the longest T whose per-device peak (arguments + outputs + temporaries) fits in
  ``--budget-gib``: on one device without remat ("today"), and on the most shards with each
  remat chunk length (the best is kept).

Several devices: the multi-shard figures need ``max(--shards)`` devices. Started from the
command line (JAX not yet imported), the bench asks XLA for that many host CPU devices
(``--xla_force_host_platform_device_count``) when the backend is the CPU; if fewer devices are
visible when it runs (JAX already started with one, or one accelerator), it runs itself in a
child process on host CPU devices, so that one command gives all the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from recurrent_zoo.bench import _common
from recurrent_zoo.cli.options import Size, Sizes
from recurrent_zoo.cli.usage import UsageError

NAME = "long-sequence"
HELP = (
    "per-device memory and time of very long sequences: remat chunks and time sharded over devices"
)

AXIS = "seq"
MIB = 2**20
DEVICE_FLAG = "--xla_force_host_platform_device_count"
SIZES = Sizes(
    lengths=Size(
        (2**12, 2**14, 2**16, 2**18, 2**20),
        (2**12, 2**14, 2**16, 2**18, 2**20, 2**22),
        "sequence lengths T (memory analysis of each; powers of two shard evenly)",
        many=True,
    ),
    remat_chunks=Size((16, 64, 256), (16, 64, 256, 1024), "remat chunk lengths k", many=True),
    timed_length=Size(2**14, 2**16, "the longest T that is also run and timed", minimum=0),
    repeats=Size(3, 5, "timed calls per measurement (median)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    SIZES.add_arguments(parser)
    parser.add_argument(
        "--shards",
        type=int,
        nargs="+",
        default=[1, 2, 4],
        help="numbers of devices time is sharded over (default 1 2 4)",
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size B (default 1)")
    parser.add_argument("--hidden", type=int, default=256, help="state size N (default 256)")
    parser.add_argument(
        "--features", type=int, default=256, help="input (= output) size D (default 256)"
    )
    parser.add_argument(
        "--compare-length",
        type=int,
        default=2**16,
        help="T of the remat and sharding comparisons (default 65536)",
    )
    parser.add_argument(
        "--compare-chunk",
        type=int,
        default=64,
        help="remat chunk length of the remat comparison (default 64)",
    )
    parser.add_argument(
        "--budget-gib",
        type=float,
        default=8.0,
        help="per-device memory of the longest-T search, GiB (default 8)",
    )


def _check(args: argparse.Namespace) -> None:
    for what in ("batch", "hidden", "features", "compare_length", "compare_chunk"):
        if getattr(args, what) < 1:
            flag = "--" + what.replace("_", "-")
            raise UsageError(f"{flag} must be a positive integer, got {getattr(args, what)}")
    if any(p < 1 for p in args.shards):
        raise UsageError(f"--shards must be positive integers, got {args.shards}")
    if not args.budget_gib > 0:
        raise UsageError(f"--budget-gib must be positive, got {args.budget_gib}")
    P = max(args.shards)
    for T in [*args.lengths, args.compare_length]:
        if T % P:
            raise UsageError(f"every length must be a multiple of the shards ({P}), got {T}")


# -- measuring one configuration ------------------------------------------------------------------
def _layer(name: str, args: argparse.Namespace, remat: int | None, sharded: bool):
    import recurrent_zoo as rz

    kw = {"sequence_axis": AXIS} if sharded else {}
    return rz.make_layer(name, hidden_size=args.hidden, remat_chunk=remat, **kw)


def _grad_fn(name: str, args: argparse.Namespace, shards: int, remat: int | None):
    """``(variables, x) -> gradients of sum(y)``, jitted; time sharded over ``shards`` devices."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    layer = _layer(name, args, remat, sharded=shards > 1)
    if shards == 1:
        apply = layer.apply
    else:
        mesh = Mesh(np.array(jax.devices()[:shards]), (AXIS,))
        apply = jax.shard_map(
            layer.apply, mesh=mesh, in_specs=(P(), P(None, AXIS)), out_specs=P(None, AXIS)
        )
    return jax.jit(jax.grad(lambda v, x: jnp.sum(apply(v, x)), argnums=(0, 1)))


def _variables(name: str, args: argparse.Namespace):
    import jax
    import jax.numpy as jnp

    layer = _layer(name, args, None, sharded=False)
    x = jnp.zeros((args.batch, 4, args.features))
    return layer.init(jax.random.key(args.seed), x)


def _memory(compiled) -> dict[str, float]:
    """Per-device MiB of XLA's analysis (:func:`_common.compiled_memory`)."""
    memory = _common.compiled_memory(compiled)
    if memory is None:
        raise RuntimeError("this backend gives no XLA memory analysis, the bench's measure")
    order = ("temp", "argument", "output", "alias", "peak")
    return {f"{k}_MiB": memory[k] / MIB for k in order}


def measure(
    name: str,
    args: argparse.Namespace,
    T: int,
    shards: int,
    remat: int | None,
    variables: Any,
    run: bool = False,
    cache: dict | None = None,
) -> dict[str, Any]:
    """One row: per-device memory of forward + backward at length T, and its median time when
    ``run`` (x of ones; the time of one call, compile excluded). A row already in ``cache``
    (by layer, T, shards and remat chunk) is not measured again."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    key = (name, T, shards, remat)
    if cache is not None and key in cache and (not run or cache[key]["fwd_bwd_ms"] is not None):
        return cache[key]
    row: dict[str, Any] = {"layer": name, "T": T, "shards": shards, "remat_chunk": remat}
    f = _grad_fn(name, args, shards, remat)
    spec = jax.ShapeDtypeStruct((args.batch, T, args.features), jnp.float32)
    start = time.perf_counter()
    compiled = f.lower(variables, spec).compile()
    row["compile_s"] = time.perf_counter() - start
    row.update(_memory(compiled))
    row["fwd_bwd_ms"] = None
    if run:
        x = jnp.ones(spec.shape, spec.dtype)
        jax.block_until_ready(compiled(variables, x))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(compiled(variables, x))
            times.append(1e3 * (time.perf_counter() - start))
        row["fwd_bwd_ms"] = float(np.median(times))
    if cache is not None:
        cache[key] = row
    return row


def longest_fit(
    name: str,
    args: argparse.Namespace,
    shards: int,
    remat: int | None,
    variables: Any,
    cache: dict | None = None,
) -> dict[str, Any]:
    """The longest T (a multiple of ``shards`` · k) whose per-device peak fits the budget.

    Memory grows linearly with T here (every buffer is a number of steps times a size per step),
    so a line through two compiled lengths predicts T; the prediction is then compiled and,
    while it does not fit, lowered by 2 %.
    """
    budget = args.budget_gib * 1024
    grain = shards * (remat or 1)
    T1 = max(grain, args.compare_length // grain * grain)
    T2 = 4 * T1
    m1 = measure(name, args, T1, shards, remat, variables, cache=cache)["peak_MiB"]
    m2 = measure(name, args, T2, shards, remat, variables, cache=cache)["peak_MiB"]
    slope = (m2 - m1) / (T2 - T1)
    T = int((budget - m1) / slope + T1) // grain * grain if slope > 0 else T2
    row = None
    for _ in range(8):
        if T < grain:
            break
        row = measure(name, args, T, shards, remat, variables, cache=cache)
        if row["peak_MiB"] <= budget:
            break
        T = int(T * 0.98) // grain * grain
        row = None
    fit = {"shards": shards, "remat_chunk": remat, "T": None, "peak_MiB": None}
    fit["MiB_per_step"] = slope
    if row is not None:
        fit.update(T=row["T"], peak_MiB=row["peak_MiB"])
    return fit


# -- the whole bench -----------------------------------------------------------------------------
def _enough_devices(needed: int) -> bool:
    import jax

    return len(jax.devices()) >= needed


def _ask_host_devices(needed: int) -> None:
    """Asks XLA for ``needed`` host CPU devices, if JAX has not started yet (XLA reads the flag
    when its CPU backend starts)."""
    if "jax" in sys.modules or needed <= 1:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if DEVICE_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {DEVICE_FLAG}={needed}".strip()


def _run_in_child(args: argparse.Namespace, needed: int) -> dict[str, Any]:
    """Runs the bench in a process of its own with ``needed`` host CPU devices; its results."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    flags = " ".join(f for f in env.get("XLA_FLAGS", "").split() if DEVICE_FLAG not in f)
    env["XLA_FLAGS"] = f"{flags} {DEVICE_FLAG}={needed}".strip()
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    code = "import sys; from recurrent_zoo.bench.long_sequence import _child; _child(sys.argv[1])"
    payload = json.dumps(_common.args_dict(args))
    print(
        f"long-sequence: {needed} devices needed, running on {needed} host CPU devices in a child"
    )
    subprocess.run([sys.executable, "-c", code, payload], env=env, check=True)
    return json.loads((Path(args.out) / f"{NAME}.json").read_text())["results"]


def _child(payload: str) -> None:
    """The child process's entry: the parent's options as JSON."""
    args = argparse.Namespace(**json.loads(payload))
    if not _enough_devices(max(args.shards)):
        raise RuntimeError(f"the child has too few devices: {os.environ.get('XLA_FLAGS')}")
    run(args)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


def _summaries(rows, remat_rows, fits, args) -> dict[str, Any]:
    L, k = args.compare_length, args.compare_chunk
    P = max(args.shards)
    one = {(r["remat_chunk"], r["shards"]): r for r in rows if r["T"] == L and r["layer"] == "lru"}
    sharding = []
    for (remat, shards), r in sorted(one.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1])):
        ref = one.get((remat, 1))
        if ref is None:
            continue
        sharding.append(
            {
                "T": L,
                "remat_chunk": remat,
                "shards": shards,
                "temp_MiB": r["temp_MiB"],
                "peak_MiB": r["peak_MiB"],
                # P × per-device / one device's: 1 is perfect sharding.
                "temp_x_P_over_one": shards * r["temp_MiB"] / ref["temp_MiB"],
                "peak_x_P_over_one": shards * r["peak_MiB"] / ref["peak_MiB"],
            }
        )
    remat = []
    for layer in dict.fromkeys(r["layer"] for r in remat_rows):
        plain = next(r for r in remat_rows if r["layer"] == layer and r["remat_chunk"] is None)
        chunked = next(r for r in remat_rows if r["layer"] == layer and r["remat_chunk"] == k)
        remat.append(
            {
                "layer": layer,
                "T": L,
                "remat_chunk": k,
                "temp_MiB_plain": plain["temp_MiB"],
                "temp_MiB_remat": chunked["temp_MiB"],
                "temp_reduction": _ratio(plain["temp_MiB"], chunked["temp_MiB"]),
            }
        )
    today = fits["today"]
    best = max(fits["sharded"], key=lambda f: f["T"] or 0)
    gain = _ratio(best["T"], today["T"])
    # The target is on the most shards, without remat.
    most = next((s for s in sharding if s["remat_chunk"] is None and s["shards"] == P), None)
    targets = {
        "sharded_temp_x_P_over_one": None if most is None else most["temp_x_P_over_one"],
        "sharded_target": 1.2,
        "remat_reduction": {r["layer"]: r["temp_reduction"] for r in remat},
        "remat_target": 8.0,
        "longest_T_gain": gain,
        "longest_T_target": 16.0,
    }
    return {"sharding": sharding, "remat": remat, "best_fit": best, "targets": targets}


def _plot(rows, fits, args):
    plt = _common.pyplot()
    fig, (ax_m, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    lru = [r for r in rows if r["layer"] == "lru"]
    keys = list(dict.fromkeys((r["shards"], r["remat_chunk"]) for r in lru))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    remats = list(dict.fromkeys(k for _, k in keys))
    styles = {1: "o-", 2: "s--", 4: "^:"}
    for shards, remat in keys:
        group = sorted(
            (r for r in lru if (r["shards"], r["remat_chunk"]) == (shards, remat)),
            key=lambda r: r["T"],
        )
        c = colors[remats.index(remat) % len(colors)]
        label = f"P={shards}, " + ("no remat" if remat is None else f"k={remat}")
        style = styles.get(shards, "x-.")
        ax_m.plot([r["T"] for r in group], [r["peak_MiB"] for r in group], style, c=c, label=label)
        timed = [r for r in group if r["fwd_bwd_ms"] is not None]
        if timed:
            ax_t.plot(
                [r["T"] for r in timed], [r["fwd_bwd_ms"] for r in timed], style, c=c, label=label
            )
    ax_m.axhline(args.budget_gib * 1024, c="k", lw=0.8)
    ax_m.text(
        min(r["T"] for r in lru),
        args.budget_gib * 1024 * 1.15,
        f"{args.budget_gib:g} GiB",
        fontsize=7,
    )
    for f in [fits["today"], *fits["sharded"]]:
        if f["T"]:
            ax_m.plot([f["T"]], [f["peak_MiB"]], "k*", ms=6)
    ax_m.set(xscale="log", yscale="log", xlabel="T", ylabel="per-device peak memory (MiB)")
    ax_m.set_title("LRU fwd+bwd memory (XLA analysis; ★ longest T in budget)", fontsize=9)
    ax_t.set(xscale="log", yscale="log", xlabel="T", ylabel="fwd+bwd time (ms)")
    ax_t.set_title("LRU fwd+bwd time (median)", fontsize=9)
    ax_m.legend(fontsize=6, ncol=2)
    ax_t.legend(fontsize=6, ncol=2)
    fig.suptitle(f"long sequences: B={args.batch}, N={args.hidden}, D={args.features}")
    return _common.save_figure(fig, args.out, NAME)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measures every configuration, prints the tables, writes ``long-sequence.json`` and
    ``long-sequence.png``; in a child process when fewer devices than shards are visible."""
    resolved = SIZES.resolve(args)
    args.lengths = sorted(resolved["lengths"])
    args.remat_chunks = sorted(resolved["remat_chunks"])
    args.timed_length, args.repeats = resolved["timed_length"], resolved["repeats"]
    args.shards = sorted(set(args.shards))
    _check(args)
    needed = max(args.shards)
    _ask_host_devices(needed)
    if not _enough_devices(needed):
        return _run_in_child(args, needed)
    import jax

    v_lru, v_gru = _variables("lru", args), _variables("gru", args)
    L, k = args.compare_length, args.compare_chunk
    configs = [
        (T, shards, remat)
        for T in sorted({*args.lengths, L})
        for shards in args.shards
        for remat in [None, *args.remat_chunks]
    ]
    cache: dict = {}
    rows = []
    for T, shards, remat in _common.progress(configs, "long-sequence"):
        timed = T <= args.timed_length
        rows.append(measure("lru", args, T, shards, remat, v_lru, run=timed, cache=cache))
    remat_rows = [
        measure(name, args, L, 1, remat, v, cache=cache)
        for name, v in (("lru", v_lru), ("gru", v_gru))
        for remat in (None, k)
    ]
    P = max(args.shards)
    fits = {
        "budget_GiB": args.budget_gib,
        "today": longest_fit("lru", args, 1, None, v_lru, cache),
        "sharded": [
            longest_fit("lru", args, P, remat, v_lru, cache) for remat in args.remat_chunks
        ],
    }
    summary = _summaries(rows, remat_rows, fits, args)
    memory_source = (
        "XLA memory_analysis of the compiled executable, per device; "
        "peak = arguments + outputs + temporaries − aliased"
    )
    results = {
        "rows": rows,
        "remat_rows": remat_rows,
        "longest_fit": fits,
        **summary,
        "memory_source": memory_source,
        "loss": "sum(y); gradients w.r.t. the parameters and x",
        "devices": [str(d) for d in jax.devices()[:P]],
    }
    path = _common.write_json(args.out, NAME, _common.args_dict(args), results)
    figure = _plot(rows, fits, args)
    columns = ["T", "shards", "remat_chunk", "temp_MiB", "peak_MiB", "fwd_bwd_ms", "compile_s"]
    sizes = f"B={args.batch}, N={args.hidden}, D={args.features}"
    print(f"LRU fwd+bwd, {sizes} ({jax.default_backend()}, {P} devices):")
    print(_common.format_table(rows, columns))
    print(f"\nsharding at T={L} (P × per-device / one device's):")
    print(_common.format_table(summary["sharding"]))
    print(f"\nremat at T={L}, k={k}:")
    print(_common.format_table(summary["remat"]))
    print(f"\nlongest T in {args.budget_gib:g} GiB per device:")
    print(_common.format_table([fits["today"], *fits["sharded"]]))
    t = summary["targets"]
    print(f"\ngain in longest T: {t['longest_T_gain'] and round(t['longest_T_gain'], 2)}×")
    print(f"peak memory: {memory_source}")
    print(f"wrote {path} and {figure}")
    return results
