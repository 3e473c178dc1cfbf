"""``recurrent-zoo bench vanishing-gradients``: the classic account, measured with the zoo's layers.

For h_t = φ(W h_{t−1} + U x_t + b) the backward signal crosses one factor W·diag(φ′) per step, so
it shrinks or grows exponentially with distance; gates, the IRNN's ReLU + identity, careful
inits, clipping and normalisation are the classic remedies. Three parts (``--mode``):

* ``distance``: at init, ‖∂L/∂x_t‖ against the distance d = T − 1 − t for a loss L on the last
  step's output, with the fitted decay per step and the distance at which the gradient falls
  below 1e-6 of its value at d = 0, for Elman RNNs (sigmoid/tanh/ReLU × Glorot/He/orthogonal/
  identity), LayerNorm RNNs, the GRU (plain, chrono), the LSTM (forget bias 0, 1, chrono), the
  LRU and the complex diagonal RNN;
* ``exploding``: the global gradient norm and the loss through SGD training of configurations
  whose gradients explode (a tanh RNN with recurrent gain 2, the IRNN), with and without
  global-norm clipping (Pascanu et al. 2013);
* ``adding``: the adding problem (:mod:`recurrent_zoo.tasks.adding`) at growing T, trained with
  :func:`recurrent_zoo.train.train`: test MSE against the baseline 1/6 and the longest T each
  layer solves (MSE < 0.01).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recurrent_zoo.bench import _common
from recurrent_zoo.cli.options import Size, Sizes, add_layers
from recurrent_zoo.cli.usage import UsageError

if TYPE_CHECKING:
    import jax
    import numpy as np

NAME = "vanishing-gradients"
HELP = "the classic account: gradient against distance, exploding gradients and clipping, adding problem"

MODES = ("distance", "exploding", "adding")
LAYERS = ("rnn", "ln_rnn", "gru", "lstm", "lru", "crnn")
#: Below this fraction of its value at distance 0 the gradient counts as vanished.
VANISHED = 1e-6
# Values this far below the one at distance 0 are near float32's underflow (1.2e-38 for
# gradients of order 1) and are left out of the fit.
_FIT_FLOOR = 1e-30
D_IN = 8  # input features of the distance part

SIZES = Sizes(
    length=Size(256, 1000, "T of the distance part", minimum=2),
    seeds=Size(2, 4, "inits averaged in the distance part"),
    batch_size=Size(64, 128, "sequences per batch"),
    hidden_size=Size(32, 128, "state size (and d_model of the trained models)"),
    steps=Size(500, 4000, "training steps per adding run"),
    explode_length=Size(100, 200, "T of the exploding part", minimum=2),
    explode_steps=Size(200, 1000, "SGD steps per exploding run"),
    lengths=Size(
        (50, 100, 200), (50, 100, 200, 400, 1000), "T of the adding problem", many=True, minimum=2
    ),
)
# Adam's peak learning rate on the adding problem. The diagonal layers get a higher one: at the
# quick size 3e-3 left the LRU near the baseline (docs/vanishing.md).
_LR = 3e-3
_LR_DIAGONAL = 1e-2
_SGD_LR = 1e-2  # the exploding part: plain SGD, so that the gradient's size is the update's


@dataclass(frozen=True)
class Config:
    """A row: a label, a registry name and the layer's options (a callable init allowed)."""

    label: str
    layer: str
    options: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        described = {
            k: v if not callable(v) else getattr(v, "__qualname__", type(v).__name__)
            for k, v in self.options.items()
        }
        return {"label": self.label, "layer": self.layer, "options": described}


def distance_configs(length: int) -> list[Config]:
    """The rows of the distance part; chrono inits spread memories over [1, length] steps."""
    rows = [
        Config(f"rnn {act} {init}", "rnn", {"activation": act, "recurrent_init": init})
        for act in ("sigmoid", "tanh", "relu")
        for init in ("glorot", "he", "orthogonal", "identity")
    ]
    rows += [
        Config(f"ln_rnn {act}", "ln_rnn", {"activation": act})
        for act in ("sigmoid", "tanh", "relu")
    ]
    chrono = (1.0, float(length))
    rows += [
        Config("gru", "gru"),
        Config("gru chrono", "gru", {"chrono_init": chrono}),
        Config("lstm forget bias 0", "lstm", {"forget_bias": 0.0}),
        Config("lstm forget bias 1", "lstm", {"forget_bias": 1.0}),
        Config("lstm chrono", "lstm", {"chrono_init": chrono}),
        Config("lru", "lru"),
        Config("crnn", "crnn"),
    ]
    return rows


def exploding_configs() -> list[tuple[Config, bool]]:
    """(configuration, clipped) pairs of the exploding part: the gain-1 tanh RNN for reference,
    each exploding Elman RNN without and with clipping, and its LayerNorm twin without."""
    import jax

    inits = {"recurrent_init": jax.nn.initializers.orthogonal(scale=2.0)}
    irnn = {"activation": "relu", "recurrent_init": "identity"}
    explode = [
        Config("rnn tanh orthogonal×2", "rnn", inits),
        Config("irnn (relu identity)", "rnn", irnn),
    ]
    normalised = [
        Config("ln_rnn tanh orthogonal×2", "ln_rnn", inits),
        Config("ln_rnn relu identity", "ln_rnn", irnn),
    ]
    return [
        (Config("rnn tanh orthogonal", "rnn"), False),
        *((c, clip) for c in explode for clip in (False, True)),
        *((c, False) for c in normalised),
    ]


ADDING_CONFIGS = (
    Config("rnn tanh", "rnn"),
    Config("rnn sigmoid", "rnn", {"activation": "sigmoid"}),
    Config("irnn", "rnn", {"activation": "relu", "recurrent_init": "identity"}),
    Config("ln_rnn tanh", "ln_rnn"),
    Config("gru", "gru"),
    Config("lstm", "lstm"),
    Config("lru", "lru"),
    Config("crnn", "crnn"),
)


# -- part 1: gradient against distance ------------------------------------------------------
def input_gradients(layer: Any, variables: Any, x: jax.Array, readout: jax.Array) -> jax.Array:
    """∂L/∂x [B, T, D_in] for L = Σ_b ⟨readout, y_{b, T−1}⟩, y = ``layer.apply(variables, x)``.

    A loss on the last step's output: any loss ℓ(y_{T−1}) has this gradient with readout =
    ∂ℓ/∂y_{T−1}. The batch rows are independent, so one backward pass gives every row's gradient.
    """
    import jax
    import jax.numpy as jnp

    def loss(x):
        return jnp.sum(layer.apply(variables, x)[:, -1] @ readout)

    return jax.grad(loss)(x)


def norms_by_distance(grads: jax.Array | np.ndarray) -> np.ndarray:
    """‖∂L/∂x_{T−1−d}‖ [B, T] (float64), index d the distance from the last step.

    In float64 on the host: squaring float32 entries below 1e-19 would underflow to 0.
    """
    import numpy as np

    return np.linalg.norm(np.asarray(grads, np.float64), axis=-1)[:, ::-1]


def fit_decay(profile: np.ndarray) -> dict[str, Any]:
    """Summarises a gradient profile g(d) [T] (d = 0 … T − 1).

    Returns ``rate``: ρ of the least-squares fit log g(d) ≈ a + d·log ρ over the distances where
    g is finite and above 1e-30·g(0) (float32 underflows below); ``vanish_distance``: the first d
    with g(d) < 1e-6·g(0) (None if none); ``end_ratio``: g(T − 1)/g(0).
    """
    import numpy as np

    g = np.asarray(profile, np.float64)
    g0 = g[0]
    out: dict[str, Any] = {"rate": None, "vanish_distance": None, "end_ratio": None}
    if not (np.isfinite(g0) and g0 > 0):
        return out
    with np.errstate(invalid="ignore"):
        below = np.flatnonzero(g < VANISHED * g0)
    out["vanish_distance"] = int(below[0]) if below.size else None
    out["end_ratio"] = float(g[-1] / g0)
    d = np.arange(len(g))
    ok = np.isfinite(g) & (g > _FIT_FLOOR * g0)
    if ok.sum() >= 2:
        slope = np.polyfit(d[ok], np.log(g[ok]), 1)[0]
        out["rate"] = float(np.exp(slope))
    return out


def distance_profile(config: Config, cfg: dict[str, Any], seed: int) -> np.ndarray:
    """g(d) of one row: the root mean square of ‖∂L/∂x_{T−1−d}‖ over the batch and the seeds, each
    seed a fresh init, inputs x ~ N(0, 1) and a unit readout."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import recurrent_zoo as rz

    T, B, N = cfg["length"], cfg["batch_size"], cfg["hidden_size"]
    layer = rz.make_layer(config.layer, hidden_size=N, **config.options)
    init = jax.jit(layer.init)
    grad = jax.jit(lambda v, x, c: input_gradients(layer, v, x, c))
    squares = []
    for s in range(cfg["seeds"]):
        k_init, k_x, k_c = jax.random.split(jax.random.fold_in(jax.random.key(seed), s), 3)
        x = jax.random.normal(k_x, (B, T, D_IN))
        variables = init(k_init, x[:1, :1])
        d_out = jax.eval_shape(layer.apply, variables, x[:1, :1]).shape[-1]
        c = jax.random.normal(k_c, (d_out,))
        g = norms_by_distance(grad(variables, x, c / jnp.linalg.norm(c)))
        squares.append(np.mean(np.square(g), axis=0))
    return np.sqrt(np.mean(squares, axis=0))


def run_distance(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    rows = [c for c in distance_configs(cfg["length"]) if c.layer in cfg["layers"]]
    records = []
    for config in _common.progress(rows, "distance: rows"):
        profile = distance_profile(config, cfg, seed)
        records.append({**config.record(), "profile": profile, **fit_decay(profile)})
    return {"rows": records}


# -- parts 2 and 3: training on the adding problem ------------------------------------------
def adding_model(config: Config, d_model: int, num_layers: int) -> Any:
    """``num_layers`` blocks of the layer (no norm, GLU, residual), read at the last step.

    Two blocks by default: a linear recurrence (LRU, crnn) sums its inputs linearly, so it needs a
    block before it to form value × marker; every layer gets the same stack.
    """
    import recurrent_zoo as rz

    return rz.SequenceModel(
        config.layer,
        num_layers=num_layers,
        d_model=d_model,
        out_features=1,
        pooling="last",
        hidden_size=d_model,
        layer_kwargs=config.options,
        norm=None,
        mlp="glu",
    )


def train_adding(
    config: Config,
    length: int,
    cfg: dict[str, Any],
    optimizer: Any,
    steps: int,
    seed: int,
    log_every: int,
    evaluate: bool = True,
) -> dict[str, Any]:
    """Trains on the adding problem of ``length`` with :func:`recurrent_zoo.train.train`.

    Returns the logged history (step, loss, grad_norm: the gradient's global norm before any
    clipping) and, when the run met a non-finite loss, ``diverged_at`` (the history then stops
    before it); with ``evaluate`` and a finite run, ``test_mse`` on fresh sequences.
    """
    import jax

    from recurrent_zoo.tasks import adding
    from recurrent_zoo.train import NonFiniteLossError, train

    spec = adding.adding_spec(cfg["batch_size"], length)
    model = adding_model(config, cfg["hidden_size"], cfg["num_layers"])
    out: dict[str, Any] = {"length": length, "diverged_at": None, "test_mse": None}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # The loop's JSONL file keeps the records of a run stopped by a non-finite step.
        metrics = Path(tmp) / "metrics.jsonl"
        try:
            result = train(
                model,
                spec.loss_fn,
                spec.batch_fn,
                optimizer,
                num_steps=steps,
                seed=seed,
                log_every=log_every,
                metrics_path=metrics,
                verbose=False,
                handle_signals=False,
            )
        except NonFiniteLossError as e:
            out["diverged_at"], result = e.step, None
        history = [json.loads(line) for line in metrics.read_text().splitlines()]
    out["history"] = {k: [h[k] for h in history] for k in ("step", "loss", "grad_norm")}
    if evaluate and result is not None:
        key = jax.random.fold_in(jax.random.key(seed), 0x7E57)
        x, y = adding.sample_batch(key, cfg["test_size"], length)
        out["test_mse"] = float(adding.mse(jax.jit(model.apply)(result.variables, x), y))
    out["seconds"] = time.perf_counter() - start
    return out


def run_exploding(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    import recurrent_zoo as rz

    runs = []
    steps = cfg["explode_steps"]
    for config, clipped in _common.progress(exploding_configs(), "exploding: runs"):
        clip = cfg["clip_norm"] if clipped else None
        optimizer = rz.optim.make_optimizer(
            _SGD_LR, total_steps=steps, clip_norm=clip, optimizer="sgd"
        )
        run = train_adding(
            config, cfg["explode_length"], cfg, optimizer, steps, seed, 1, evaluate=False
        )
        runs.append({**config.record(), "clip_norm": clip, **run})
    return {"runs": runs, "learning_rate": _SGD_LR, "optimizer": "sgd"}


def run_adding(cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    import recurrent_zoo.optim as optim
    from recurrent_zoo.tasks import adding

    configs = [c for c in ADDING_CONFIGS if c.layer in cfg["layers"]]
    pairs = [(c, T) for c in configs for T in cfg["lengths"]]
    failed: set[str] = set()
    runs = []
    steps = cfg["steps"]
    for config, T in _common.progress(pairs, "adding: runs"):
        # A layer that fails at some T is not trained at longer ones.
        if config.label in failed:
            continue
        lr = cfg["lr"] or (_LR_DIAGONAL if config.layer in ("lru", "crnn") else _LR)
        optimizer = optim.make_optimizer(lr, total_steps=steps, clip_norm=cfg["clip_norm"])
        run = train_adding(config, T, cfg, optimizer, steps, seed, max(1, steps // 25))
        run["solved"] = run["test_mse"] is not None and run["test_mse"] < adding.SOLVED_MSE
        if not run["solved"]:
            failed.add(config.label)
        runs.append({**config.record(), "learning_rate": lr, **run})
    longest = {
        c.label: max(
            (r["length"] for r in runs if r["label"] == c.label and r["solved"]), default=None
        )
        for c in configs
    }
    return {"runs": runs, "longest_solved": longest, "baseline_mse": adding.BASELINE_MSE}


# -- command line -----------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        help="parts to run, space-separated (default: all three)",
    )
    add_layers(parser, among=LAYERS, what="layers of the distance and adding parts")
    SIZES.add_arguments(parser)
    parser.add_argument(
        "--num-layers", type=int, default=2, help="blocks of the trained models (2)"
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"Adam's peak learning rate on the adding problem (default {_LR}; lru, crnn {_LR_DIAGONAL})",
    )
    parser.add_argument("--clip-norm", type=float, default=1.0, help="global-norm clipping (1.0)")
    parser.add_argument(
        "--test-size", type=int, default=1024, help="test sequences of the adding problem"
    )


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    cfg = SIZES.resolve(args)
    cfg["lengths"] = sorted(set(cfg["lengths"]))
    cfg["layers"] = list(dict.fromkeys(args.layers))
    for name in ("num_layers", "test_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.clip_norm > 0:
        raise UsageError(f"--clip-norm must be > 0, got {args.clip_norm}")
    if args.lr is not None and not args.lr > 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    cfg.update(
        num_layers=args.num_layers, test_size=args.test_size, clip_norm=args.clip_norm, lr=args.lr
    )
    cfg["modes"] = [m for m in MODES if m in args.mode]
    return cfg


_PARTS: dict[str, Callable[[dict[str, Any], int], dict[str, Any]]] = {
    "distance": run_distance,
    "exploding": run_exploding,
    "adding": run_adding,
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = _resolve(args)
    results: dict[str, Any] = {"config": cfg, "seconds": {}}
    start = time.perf_counter()
    for mode in cfg["modes"]:
        t0 = time.perf_counter()
        results[mode] = _PARTS[mode](cfg, args.seed)
        results["seconds"][mode] = time.perf_counter() - t0
    results["seconds"]["total"] = time.perf_counter() - start
    _common.write_json(args.out, NAME, _common.args_dict(args), results)
    for mode in cfg["modes"]:
        print(_TABLES[mode](results[mode]), end="\n\n")
        _PLOTS[mode](results[mode], cfg, args.out)
    print(f"total {results['seconds']['total']:.1f}s; wrote {args.out}/{NAME}.json and PNG plots")
    return results


# -- tables and plots -------------------------------------------------------------------------
def _fmt_distance(d: int | None, length: int) -> str:
    return f"> {length - 1}" if d is None else str(d)


def _distance_table(part: dict[str, Any]) -> str:
    rows = [
        {
            "row": r["label"],
            "decay/step": r["rate"] if r["rate"] is not None else "-",
            "d(1e-6)": _fmt_distance(r["vanish_distance"], len(r["profile"])),
            "g(T-1)/g(0)": r["end_ratio"] if r["end_ratio"] is not None else "-",
        }
        for r in part["rows"]
    ]
    return "gradient against distance, at init\n" + _common.format_table(rows)


def _exploding_table(part: dict[str, Any]) -> str:
    import numpy as np

    rows = []
    for r in part["runs"]:
        g = np.asarray(r["history"]["grad_norm"], np.float64)
        loss = r["history"]["loss"]
        rows.append(
            {
                "run": r["label"],
                "clip": r["clip_norm"] or "none",
                "|g| at init": float(g[0]) if g.size else "-",
                "|g| median": float(np.median(g)) if g.size else "-",
                "|g| max": float(np.max(g)) if g.size else "-",
                "final loss": float(loss[-1]) if loss else "-",
                "diverged at": r["diverged_at"] if r["diverged_at"] is not None else "-",
            }
        )
    return f"exploding gradients, SGD lr {part['learning_rate']}\n" + _common.format_table(rows)


def _adding_table(part: dict[str, Any]) -> str:
    lengths = sorted({r["length"] for r in part["runs"]})
    labels = list(dict.fromkeys(r["label"] for r in part["runs"]))
    rows = []
    for label in labels:
        row: dict[str, Any] = {"layer": label}
        for T in lengths:
            r = next((r for r in part["runs"] if r["label"] == label and r["length"] == T), None)
            row[f"T={T}"] = (
                "-" if r is None else (r["test_mse"] if r["test_mse"] is not None else "nan")
            )
        row["longest solved"] = part["longest_solved"][label] or "none"
        rows.append(row)
    return (
        f"adding problem: test MSE (baseline {part['baseline_mse']:.3f}, solved < 0.01)\n"
        + _common.format_table(rows)
    )


def _family_style(label: str) -> dict[str, Any]:
    """Colour by activation or layer, line style by init."""
    colours = {"sigmoid": "tab:blue", "tanh": "tab:green", "relu": "tab:red"}
    styles = {"glorot": "-", "he": "--", "orthogonal": "-.", "identity": ":"}
    words = label.split()
    colour = next((colours[w] for w in words if w in colours), None)
    style = next((styles[w] for w in words if w in styles), "-")
    return {"color": colour, "linestyle": style}


def _plot_distance(part: dict[str, Any], cfg: dict[str, Any], out: str) -> None:
    import numpy as np

    plt = _common.pyplot()
    panels = [
        (
            "Elman RNN: activation × recurrent init",
            [r for r in part["rows"] if r["layer"] == "rnn"],
        ),
        ("normalised, gated and diagonal layers", [r for r in part["rows"] if r["layer"] != "rnn"]),
    ]
    panels = [(title, rows) for title, rows in panels if rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.5), squeeze=False)
    for ax, (title, rows) in zip(axes[0], panels):
        for i, r in enumerate(rows):
            g = np.asarray(r["profile"], np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = g / g[0]
            if r["layer"] == "rnn":
                style = _family_style(r["label"])
            else:
                style = {
                    "color": f"C{i % 10}",
                    "linestyle": "--" if r["layer"] == "ln_rnn" else "-",
                }
            ax.plot(np.arange(len(g)), rel, label=r["label"], lw=1.2, **style)
        ax.axhline(VANISHED, color="k", lw=0.6, ls=":")
        ax.set_yscale("log")
        ax.set_ylim(1e-30, 1e8)
        ax.set_xlabel("distance T − 1 − t (steps)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    axes[0, 0].set_ylabel("‖∂L/∂x_t‖ / its value at distance 0")
    fig.suptitle(
        f"gradient against distance at init (T = {cfg['length']}, N = {cfg['hidden_size']}, "
        f"RMS over {cfg['seeds']} seeds × {cfg['batch_size']} sequences)",
        fontsize=10,
    )
    fig.tight_layout()
    _common.save_figure(fig, out, f"{NAME}-distance")


def _plot_exploding(part: dict[str, Any], cfg: dict[str, Any], out: str) -> None:

    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    labels = list(dict.fromkeys(r["label"] for r in part["runs"]))
    for r in part["runs"]:
        colour = f"C{labels.index(r['label'])}"
        style = "-" if r["clip_norm"] else "--"
        name = f"{r['label']}, " + (f"clip {r['clip_norm']:g}" if r["clip_norm"] else "no clipping")
        h = r["history"]
        for ax, key in zip(axes, ("grad_norm", "loss")):
            ax.plot(h["step"], h[key], style, color=colour, lw=1.1, label=name)
            if r["diverged_at"] is not None and h["step"]:
                ax.plot(h["step"][-1], h[key][-1], "x", color=colour, ms=9, mew=2)
    axes[0].set_ylabel("global gradient norm (before clipping)")
    axes[1].set_ylabel("training loss (MSE)")
    axes[1].axhline(1 / 6, color="k", lw=0.6, ls=":", label="baseline 1/6")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("SGD step")
    axes[1].legend(fontsize=7)
    fig.suptitle(
        f"adding problem, T = {cfg['explode_length']}, SGD lr {part['learning_rate']}; × marks a non-finite step (run stopped)",
        fontsize=10,
    )
    fig.tight_layout()
    _common.save_figure(fig, out, f"{NAME}-exploding")


def _plot_adding(part: dict[str, Any], cfg: dict[str, Any], out: str) -> None:
    from matplotlib.ticker import NullLocator

    plt = _common.pyplot()
    lengths = cfg["lengths"]
    fig, axes = plt.subplots(
        1, 1 + len(lengths), figsize=(4 * (1 + len(lengths)), 3.8), squeeze=False
    )
    axes = axes[0]
    labels = list(dict.fromkeys(r["label"] for r in part["runs"]))
    for i, label in enumerate(labels):
        rs = [r for r in part["runs"] if r["label"] == label and r["test_mse"] is not None]
        axes[0].plot(
            [r["length"] for r in rs], [r["test_mse"] for r in rs], "o-", color=f"C{i}", label=label
        )
        for r in part["runs"]:
            if r["label"] == label:
                ax = axes[1 + lengths.index(r["length"])]
                ax.plot(
                    r["history"]["step"], r["history"]["loss"], color=f"C{i}", lw=1, label=label
                )
    for ax in axes:
        ax.axhline(part["baseline_mse"], color="k", lw=0.6, ls=":")
        ax.axhline(0.01, color="k", lw=0.6, ls="--")
        ax.set_yscale("log")
    axes[0].set_xscale("log")
    axes[0].set_xticks(lengths, [str(t) for t in lengths])
    axes[0].xaxis.set_minor_locator(NullLocator())  # keep the T labels alone
    axes[0].set_xlabel("T")
    axes[0].set_ylabel("test MSE (baseline 1/6 dotted, solved 0.01 dashed)")
    for T, ax in zip(lengths, axes[1:]):
        ax.set_title(f"training loss, T = {T}", fontsize=10)
        ax.set_xlabel("step")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="center right")
    fig.tight_layout(rect=(0, 0, 1 - 1.1 / fig.get_figwidth(), 1))
    _common.save_figure(fig, out, f"{NAME}-adding")


_TABLES = {"distance": _distance_table, "exploding": _exploding_table, "adding": _adding_table}
_PLOTS = {"distance": _plot_distance, "exploding": _plot_exploding, "adding": _plot_adding}
