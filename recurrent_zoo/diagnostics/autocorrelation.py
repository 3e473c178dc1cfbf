"""The uncentred autocorrelation of embedding sequences, and its fits by exponentials.

The paper's uncentred, unnormalised autocorrelation of a model's inputs x [B, L, d],

    C(Δ) = mean over sequences b, positions t and features i of x[b, t+Δ, i] · x[b, t, i],

for Δ = 0 … max_lag, and its fit by a white-noise part plus one exponential,
C(Δ) = a·[Δ = 0] + c·ρ^|Δ| (ρ is the input correlation of the one-dimensional theory; its time
constant is 1/(1 − ρ)), next to a single exponential C(Δ) = c·ρ^|Δ|.

:func:`embedding_autocorrelation` streams: each batch of token windows is embedded and reduced to
the lag sums S(Δ) = Σ_{b,t,i} x[b,t+Δ,i] x[b,t,i] (:func:`lag_sums`) and pair counts N(Δ)
(:func:`pair_counts`) inside one jitted function (through the FFT: S is the inverse transform of
the power spectrum, summed over batch and features), so a million tokens never need a million
tokens' embeddings in memory; C(Δ) = S(Δ) / N(Δ) at the end. ``recurrent-zoo bench
autocorrelation`` runs it on BERT embeddings of Wikipedia.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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


@functools.partial(jax.jit, static_argnums=(1, 5, 6))
def _batch_lag_sums(params, config, ids, mask, sum_mask, max_lag, contextual):
    from recurrent_zoo.embeddings import embeddings, encoder

    x = embeddings(params, config, ids)
    if contextual:
        x = encoder(params, config, x, mask)
    return lag_sums(x, sum_mask, max_lag)


def padded_mask(mask: np.ndarray) -> np.ndarray:
    """bool [B, L]: every position of each row that holds a sequence (padding included), none of
    an empty row: the paper's estimator, which averages over padded positions too."""
    mask = np.asarray(mask, bool)
    return np.broadcast_to(mask.any(-1, keepdims=True), mask.shape)


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


def _log_exponential_fit(lags: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """c, ρ of log10 C(Δ) = log10 c + Δ·log10 ρ, linear least squares over the lags where C > 0
    (the paper's fit); the error is measured on C itself, as for the other fits."""
    keep = values > 0
    if keep.sum() < 2:
        nan = float("nan")
        return {"c": nan, "rho": nan, "time_constant": nan, "relative_rms_error": nan}
    slope, intercept = np.polyfit(lags[keep].astype(np.float64), np.log10(values[keep]), 1)
    c, rho = float(10.0**intercept), float(10.0**slope)
    sse = float(np.sum((values - c * rho ** lags.astype(np.float64)) ** 2))
    return {
        "c": c,
        "rho": rho,
        "time_constant": 1.0 / (1.0 - rho) if rho != 1.0 else float("inf"),
        "relative_rms_error": float(np.sqrt(sse / len(values)) / np.mean(np.abs(values))),
        "lags_fitted": int(keep.sum()),
    }


def fit_autocorrelation(C: np.ndarray) -> dict[str, Any]:
    """Fits of C(Δ), Δ = 0 … len(C) − 1.

    ``white_plus_exponential``: C(Δ) = a·[Δ = 0] + c·ρ^|Δ|. a touches only Δ = 0, so c, ρ fit
    Δ ≥ 1 and a = C(0) − c. ``single_exponential``: C(Δ) = c·ρ^|Δ| over Δ ≥ 0. Both least
    squares on C. ``log_single_exponential``: c·ρ^|Δ| fitted to log10 C(Δ) (the paper's fit),
    which weighs every lag's relative error alike, so the long tail counts as much as Δ = 0.
    Each gives c, ρ, the time constant 1/(1 − ρ) and the RMS residual of C relative to mean |C|
    over the lags fitted.
    """
    C = np.asarray(C, np.float64)
    if C.ndim != 1 or len(C) < 3 or not np.isfinite(C).all():
        raise ValueError(f"C must be a finite 1-D array of at least 3 lags, got shape {C.shape}")
    lags = np.arange(len(C))
    two = _exponential_fit(lags[1:], C[1:])
    return {
        "white_plus_exponential": {"a": float(C[0] - two["c"]), **two},
        "single_exponential": _exponential_fit(lags, C),
        "log_single_exponential": _log_exponential_fit(lags, C),
    }


def embedding_autocorrelation(
    batches: Any, bert: Any, max_lag: int, contextual: bool = False, padded: bool = False
) -> dict[str, Any]:
    """C(Δ) of a BERT model's embeddings of a stream of ``(ids, mask)`` batches.

    ``batches``: int32 ids and bool masks [B, L] (:func:`recurrent_zoo.data.iter_batches`);
    ``bert``: a model of :func:`recurrent_zoo.embeddings.load_bert`, whose embedding layer (or,
    with ``contextual``, whole encoder) makes x [B, L, d]. ``padded``: average over every
    position of each window, its padding (the [PAD] tokens' embeddings) included, as the paper's
    code does (:func:`padded_mask`); otherwise over the real tokens only.

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
        sum_mask = padded_mask(mask) if padded else mask
        pending.append(
            _batch_lag_sums(bert.params, bert.config, ids, mask, sum_mask, max_lag, contextual)
        )
        pairs += pair_counts(sum_mask, max_lag)
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


__all__ = [
    "embedding_autocorrelation",
    "fit_autocorrelation",
    "lag_sums",
    "padded_mask",
    "pair_counts",
]
