"""``recurrent-zoo bench signal-propagation``: a deep recurrent network at initialisation (Fig. 5).

The paper's 4-layer model, Dense encoder → 4 × ([norm] → recurrent layer → GELU → [norm] → GLU →
+ residual) → Dense decoder (:class:`recurrent_zoo.SequenceModel`), for the complex diagonal
RNN, the LRU and the GRU, with eigenvalue magnitudes ν ∈ [1 − 1/T, 1 − 1/(2T)] (GRU: chrono init
over [T, 2T]) and the axis ν0 = 1 − 1/T. Measured at init with :mod:`recurrent_zoo.diagnostics`:
the mean squared output of each recurrent layer (panel A) and the mean squared gradient of the
loss ½·mean((prediction[:, 1:] − x[:, :−1])²) per parameter group (panel B; panel C compares the
norms).
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from typing import TYPE_CHECKING, Any

from recurrent_zoo.bench import _common
from recurrent_zoo.cli.options import Size, Sizes, add_layers, add_protocol
from recurrent_zoo.cli.usage import UsageError

if TYPE_CHECKING:
    import jax

NAME = "signal-propagation"
HELP = "activity and gradients of a 4-layer recurrent network at init against memory ν0 (Fig. 5)"

LAYER_TYPES = ("crnn", "lru", "gru", "lstm")
DEFAULT_LAYERS = ("crnn", "lru", "gru")  # the paper's Fig. 5
NORMS = ("none", "layer", "batch")
T_GRID = (1.0, 10**0.5, 10.0, 10**1.5, 100.0)

#: Parameter groups per layer type; everything else is "rest".
GROUPS = {
    "crnn": {"lambda": ("lambda_re", "lambda_im")},
    "lru": {"nu": ("nu_log",), "theta": ("theta_log",)},
    "gru": {"cell": ("layer",)},
    "lstm": {"cell": ("layer",)},
}

# Quick inputs are synthetic of width 32; full ones BERT-sized (768).
SIZES = Sizes(
    num_sequences=Size(16, 128, "input sequences"),
    # The loss compares the output at t + 1 with x_t: at least two steps.
    length=Size(256, 512, "sequence length T", minimum=2),
    d_model=Size(64, 256, "width of the residual stream"),
    d_in=Size(32, 768, "input features of the synthetic inputs"),
)
NUM_LAYERS = 4


def loss(prediction: jax.Array, x: jax.Array) -> jax.Array:
    """The paper's ½·mean((prediction[:, 1:] − x[:, :−1])²) (the output at t+1 against x_t)."""
    import jax.numpy as jnp

    return 0.5 * jnp.mean(jnp.square(prediction[:, 1:] - x[:, :-1]))


def layer_kwargs(layer: str, T: float) -> dict[str, Any]:
    """The recurrent layer's init for memory T: ν ∈ [1 − 1/T, 1 − 1/(2T)], phases in [−π, π]
    (crnn, lru); chrono bias over [T, 2T], he_normal input kernels, orthogonal recurrence (gru,
    lstm)."""
    import jax

    if layer in ("gru", "lstm"):
        return {"chrono_init": float(T), "kernel_init": jax.nn.initializers.he_normal()}
    ring = {
        "r_min": 1 - 1 / T,
        "r_max": 1 - 1 / (2 * T),
        "min_phase": -math.pi,
        "max_phase": math.pi,
    }
    return {**ring, "normalize": False} if layer == "crnn" else ring


def make_model(layer: str, T: float, norm: str, d_model: int, d_in: int):
    """The paper's model for ``layer`` in LAYER_TYPES with memory T and ``norm`` in NORMS."""
    from recurrent_zoo.models import SequenceModel

    return SequenceModel(
        layer,
        num_layers=NUM_LAYERS,
        d_model=d_model,
        out_features=d_in,
        layer_kwargs=layer_kwargs(layer, T),
        norm=None if norm == "none" else norm,
        mlp="glu",
    )


def measure(model, variables, x: jax.Array, layer: str, norm: str) -> dict[str, Any]:
    """Activity per recurrent layer (its own output, and its block's output including the
    residual) and mean squared gradient per group, at ``variables``."""
    from recurrent_zoo.diagnostics import activity, gradient_by_group, name_groups
    from recurrent_zoo.layers import RecurrentLayer
    from recurrent_zoo.models import RecurrentBlock

    # Batch norm at init uses the batch's statistics (train mode), as in a first training step.
    kw = {"train": True, "mutable": ["batch_stats"]} if norm == "batch" else {}

    def predict(params):
        out = model.apply({**variables, "params": params}, x, **kw)
        return out[0] if kw else out

    act = activity(model, variables, x, modules=RecurrentLayer, **kw)
    blocks = activity(model, variables, x, modules=RecurrentBlock, **kw)
    grads = gradient_by_group(
        lambda p: loss(predict(p), x), variables["params"], name_groups(**GROUPS[layer])
    )
    return {
        "activity": list(act.values()),
        "block_activity": list(blocks.values()),
        "gradients": grads,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_layers(parser, DEFAULT_LAYERS, among=LAYER_TYPES)
    parser.add_argument(
        "--norms",
        nargs="+",
        choices=NORMS,
        default=list(NORMS),
        help=f"normalisations, space-separated among {' '.join(NORMS)} (default: all)",
    )
    parser.add_argument(
        "--T",
        nargs="+",
        type=float,
        default=None,
        help="memory times T ≥ 1 (ν0 = 1 − 1/T), space-separated; default 1 √10 10 10^1.5 100",
    )
    parser.add_argument(
        "--inputs",
        choices=("synthetic", "wikipedia"),
        default="synthetic",
        help="AR(1) inputs with --rho (default), or BERT embeddings of the shipped Wikipedia sample",
    )
    parser.add_argument(
        "--rho", type=float, default=0.9, help="autocorrelation of the AR(1) inputs (default 0.9)"
    )
    SIZES.add_arguments(parser)
    add_protocol(
        parser,
        "panel A plots each block's output, residual included, as the paper's figure does; "
        "both activities are in the table and the JSON either way",
    )


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    cfg = SIZES.resolve(args)
    cfg["layers"] = list(dict.fromkeys(args.layers))
    cfg["norms"] = list(dict.fromkeys(args.norms))
    cfg["T"] = list(T_GRID) if args.T is None else list(args.T)
    if any(not (t >= 1) for t in cfg["T"]):
        raise UsageError(f"--T must be numbers >= 1, got {' '.join(map(str, args.T))}")
    if not -1.0 < args.rho < 1.0:
        raise UsageError(f"--rho must be in (-1, 1), got {args.rho}")
    return cfg


def _inputs(args: argparse.Namespace, cfg: dict[str, Any]) -> Any:
    """x float32 [num_sequences, length, d_in] (numpy): AR(1) or Wikipedia embeddings."""
    import jax
    import numpy as np

    from recurrent_zoo import theory

    n, length = cfg["num_sequences"], cfg["length"]
    if args.inputs == "synthetic":
        key = jax.random.key(args.seed)
        return np.asarray(theory.ar1_inputs(key, args.rho, n, length, cfg["d_in"]))
    from recurrent_zoo.data import wikipedia_embeddings

    try:
        x = wikipedia_embeddings(n, length, seed=args.seed)
    except (ValueError, OSError) as e:
        raise UsageError(f"--inputs wikipedia: {e}") from None
    cfg["d_in"] = int(x.shape[-1])  # the embedding width decides it
    return x


def run(args: argparse.Namespace) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    cfg = _resolve(args)
    x = jnp.asarray(_inputs(args, cfg))
    combos = [
        (layer, norm, T) for layer in cfg["layers"] for norm in cfg["norms"] for T in cfg["T"]
    ]
    records, rows = [], []
    compiled: dict[tuple[str, str], Any] = {}
    start = time.perf_counter()
    for i, (layer, norm, T) in enumerate(_common.progress(combos, "signal propagation")):
        model = make_model(layer, T, norm, cfg["d_model"], cfg["d_in"])
        variables = model.init(jax.random.fold_in(jax.random.PRNGKey(args.seed), i), x[:1])
        # T only sets the init, so one compiled measurement serves every T of a (layer, norm).
        if (layer, norm) not in compiled:
            compiled[(layer, norm)] = jax.jit(
                functools.partial(measure, model, layer=layer, norm=norm)
            )
        m = jax.device_get(compiled[(layer, norm)](variables, x))
        nu0 = 1 - 1 / T
        rec = {
            "layer": layer,
            "norm": norm,
            "T": T,
            "nu0": nu0,
            "activity": [float(a) for a in m["activity"]],
            "block_activity": [float(a) for a in m["block_activity"]],
            "gradients": {g: float(v) for g, v in m["gradients"].items()},
        }
        records.append(rec)
        rows.append(
            {
                "layer": layer,
                "norm": norm,
                "nu0": nu0,
                **{f"act{j}": a for j, a in enumerate(rec["activity"])},
                **{f"block{j}": a for j, a in enumerate(rec["block_activity"])},
                **{f"g_{g}": v for g, v in rec["gradients"].items()},
            }
        )
    seconds = time.perf_counter() - start
    growth = growth_factors(records)
    print(
        _common.format_table(rows, columns=sorted({k for r in rows for k in r}, key=_column_order))
    )
    print(_common.format_table(growth, columns=list(dict.fromkeys(k for g in growth for k in g))))
    print(f"total {seconds:.1f}s")
    results = {"config": cfg, "records": records, "growth": growth, "seconds": seconds}
    _common.write_json(args.out, NAME, _common.args_dict(args), results)
    _plot(records, cfg, args.out, getattr(args, "protocol", "zoo"))
    return results


def _column_order(c: str) -> tuple[int, str]:
    rank = 3 if c.startswith("act") else 4 if c.startswith("block") else 5
    return ({"layer": 0, "norm": 1, "nu0": 2}.get(c, rank), c)


def growth_factors(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (layer, norm): value at the largest ν0 over value at the smallest, for the last
    layer's activity (its own output, and its block's with the residual) and each gradient
    group."""
    out = []
    for key in dict.fromkeys((r["layer"], r["norm"]) for r in records):
        rs = sorted((r for r in records if (r["layer"], r["norm"]) == key), key=lambda r: r["nu0"])
        lo, hi = rs[0], rs[-1]
        row = {"layer": key[0], "norm": key[1], "nu0": f"{lo['nu0']:.3g}→{hi['nu0']:.3g}"}
        row["activity(last layer)"] = hi["activity"][-1] / lo["activity"][-1]
        if "block_activity" in lo:
            row["block output(last)"] = hi["block_activity"][-1] / lo["block_activity"][-1]
        for g in lo["gradients"]:
            row[f"grad {g}"] = hi["gradients"][g] / lo["gradients"][g]
        out.append(row)
    return out


def _plot(
    records: list[dict[str, Any]], cfg: dict[str, Any], out: str, protocol: str = "zoo"
) -> None:
    import numpy as np
    from matplotlib.ticker import NullLocator

    plt = _common.pyplot()
    layers, norms = cfg["layers"], cfg["norms"]
    base = "none" if "none" in norms else norms[0]
    fig, axes = plt.subplots(3, len(layers), figsize=(4 * len(layers), 10), squeeze=False)
    ticks = sorted({r["nu0"] for r in records})

    def series(layer, norm):
        rs = sorted(
            (r for r in records if r["layer"] == layer and r["norm"] == norm),
            key=lambda r: r["nu0"],
        )
        return np.array([1 - r["nu0"] for r in rs]), rs

    for j, layer in enumerate(layers):
        x, rs = series(layer, base)
        ax = axes[0, j]
        # The paper's panel A is each block's output, residual included; the zoo's the layer's.
        which = "block_activity" if protocol == "paper" else "activity"
        for k in range(NUM_LAYERS):
            ax.plot(x, [r[which][k] for r in rs], "o-", label=f"layer {k + 1}")
        what = "block output" if protocol == "paper" else "activity"
        ax.set_title(f"A  {layer}: {what} E[y²] (norm {base})", fontsize=9)
        ax = axes[1, j]
        for g in rs[0]["gradients"]:
            ax.plot(x, [r["gradients"][g] for r in rs], "o-", label=g)
        ax.set_title(f"B  {layer}: E[g²] per group (norm {base})", fontsize=9)
        ax = axes[2, j]
        for ni, norm in enumerate(norms):
            xn, rn = series(layer, norm)
            for gi, g in enumerate(rn[0]["gradients"]):
                ax.plot(
                    xn,
                    [r["gradients"][g] for r in rn],
                    ["o-", "s--", "^:"][gi % 3],
                    color=f"C{ni}",
                    label=f"{norm}: {g}",
                )
        ax.set_title(f"C  {layer}: E[g²] by norm", fontsize=9)
        for ax in axes[:, j]:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.invert_xaxis()
            ax.set_xticks([1 - v for v in ticks], [f"{v:.2g}" for v in ticks])
            ax.xaxis.set_minor_locator(NullLocator())  # keep the ν0 labels alone
            ax.set_xlabel("ν0 = 1 − 1/T")
            ax.legend(fontsize=7)
    fig.tight_layout()
    _common.save_figure(fig, out, NAME)
