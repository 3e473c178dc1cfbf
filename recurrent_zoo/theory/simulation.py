"""Monte Carlo checks of the closed forms, run through the library's own layer.

:func:`simulate_moments` and :func:`simulate_loss` estimate what
:mod:`recurrent_zoo.theory.closed_form` computes exactly, by running one
:class:`~recurrent_zoo.ComplexDiagonalRNN` unit per λ on sampled inputs (:func:`ar1_inputs`), as a
check anyone can run.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from recurrent_zoo import _checks as checks
from recurrent_zoo import scan
from recurrent_zoo.theory.closed_form import (
    _abs2,
    _check_lambda,
    _check_positive,
    _check_rho,
    _concrete,
)

Array = jax.Array

__all__ = ["ar1_inputs", "simulate_loss", "simulate_moments"]


def ar1_inputs(
    key: Array, rho: float | Array, batch_size: int, length: int, features: int = 1
) -> Array:
    """Stationary Gaussian AR(1) inputs [batch_size, length, features] with E[x_t x_{t+Δ}] = ρ^|Δ|.

    x_t = ρ x_{t−1} + √(1 − ρ²) ε_t, started from the stationary law, so no burn-in is needed;
    ρ = 1 gives a constant N(0, 1) input per sequence. ``rho`` may be traced (under jit).
    """
    v = _concrete(rho)
    if v is not None and (v.ndim or np.iscomplexobj(v) or not -1 <= float(v) <= 1):
        raise ValueError(f"rho must be a float in [-1, 1], got {rho!r}")
    rho = jnp.asarray(rho, jnp.float32)
    k0, k1 = jax.random.split(key)
    x0 = jax.random.normal(k0, (batch_size, features))
    eps = jax.random.normal(k1, (batch_size, length, features))
    u = jnp.sqrt(jnp.maximum(1 - rho**2, 0.0)) * eps
    _, x = scan.linear_scan(jnp.full((features,), rho), jnp.swapaxes(u, 0, 1), x0)
    return jnp.swapaxes(x, 0, 1)


def _default_length(lams: np.ndarray) -> int:
    # λ^T and Tλ^T (the transients of h and of dh/dλ) below ~1e-5 at the largest |λ|.
    return max(64, math.ceil(20.0 / (1.0 - float(np.max(np.abs(lams))))))


def _unit_params(lam_re: Array, lam_im: Array, gamma_log: Array | None = None):
    """A ComplexDiagonalRNN with one unit per λ, B = 1, C = 1, D = 0 (and γ when given)."""
    from recurrent_zoo.layers import ComplexDiagonalRNN

    n = lam_re.shape[0]
    layer = ComplexDiagonalRNN(
        hidden_size=n, out_features=1, parametrization="direct", normalize=gamma_log is not None
    )
    params = {
        "lambda_re": lam_re,
        "lambda_im": lam_im,
        "B_re": jnp.ones((1, n)),
        "B_im": jnp.zeros((1, n)),
        "C_re": jnp.ones((n, 1)),
        "C_im": jnp.zeros((n, 1)),
        "D": jnp.zeros((1,)),
    }
    if gamma_log is not None:
        params["gamma_log"] = gamma_log
    return layer, params


def _as_lambdas(lam, name: str) -> np.ndarray:
    v = np.atleast_1d(np.asarray(_check_lambda(lam, name))).astype(np.complex64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array, got shape {v.shape}")
    return v


def _check_sizes(batch_size: int, length: int | None, chunk_size: int) -> None:
    checks.positive_int(batch_size, "batch_size")
    checks.positive_int(chunk_size, "chunk_size")
    checks.optional_positive_int(length, "length")


@partial(jax.jit, static_argnames=("length", "chunk_size"))
def _moments_chunk(key, lam_re, lam_im, rho, *, length: int, chunk_size: int):
    layer, params = _unit_params(lam_re, lam_im)
    x = ar1_inputs(key, rho, chunk_size, length)

    def re_im(lambda_re: Array, x1: Array) -> tuple[Array, Array]:
        state, _ = layer.apply(
            {"params": {**params, "lambda_re": lambda_re}}, x1, return_state=True
        )
        # Unit i depends on λ_i alone, so the Jacobian of the sums over units is ∂h_i/∂λ_i.
        return jnp.stack([jnp.sum(state.real), jnp.sum(state.imag)]), state

    # Reverse mode, one sequence at a time (the layer's scans need not support jvp).
    jac, h = jax.vmap(jax.jacrev(re_im, has_aux=True), (None, 0))(lam_re, x)
    return jnp.sum(_abs2(h), 0), jnp.sum(jac[:, 0] ** 2 + jac[:, 1] ** 2, 0)


def _accumulate(key, batch_size, chunk_size, fn) -> tuple[np.ndarray, ...]:
    n_chunks = math.ceil(batch_size / chunk_size)
    sums = None
    for k in jax.random.split(key, n_chunks):
        out = [np.asarray(o, np.float64) for o in fn(k)]
        sums = out if sums is None else [s + o for s, o in zip(sums, out)]
    return tuple(s / (n_chunks * chunk_size) for s in sums)


def simulate_moments(
    key: Array,
    lam: Array | complex,
    rho: float,
    *,
    batch_size: int = 2000,
    length: int | None = None,
    chunk_size: int = 500,
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo estimates of (E|h_T|², E|∂h_T/∂λ|²) through :class:`ComplexDiagonalRNN`.

    One layer unit per λ (B = 1, C = 1, D = 0, λ learned directly) runs on stationary AR(1)
    sequences (:func:`ar1_inputs`) of ``length`` steps; ∂h_T/∂λ is the derivative
    (``jax.jacrev``, per sequence) of the layer's final state along ``lambda_re`` (h is
    holomorphic in λ, so this is the complex derivative). Each sequence gives one sample; the
    relative standard error of either estimate is about √(2 / batch_size).

    Args:
      key: PRNG key.
      lam: λ values [n] (or a scalar), |λ| < 1.
      rho: input correlation decay ρ ∈ [−1, 1].
      batch_size: number of sequences (rounded up to a multiple of ``chunk_size``).
      length: T (default: 20/(1 − max|λ|), long enough that the initial state is forgotten).
      chunk_size: sequences per compiled call (bounds memory).

    Returns:
      two float64 numpy arrays [n].
    """
    lams = _as_lambdas(lam, "lam")
    _check_rho(rho)
    _check_sizes(batch_size, length, chunk_size)
    T = length or _default_length(lams)
    re, im, r = jnp.asarray(lams.real), jnp.asarray(lams.imag), jnp.asarray(rho, jnp.float32)
    fn = lambda k: _moments_chunk(k, re, im, r, length=T, chunk_size=chunk_size)
    return _accumulate(key, batch_size, chunk_size, fn)


@partial(jax.jit, static_argnames=("length", "chunk_size", "normalize"))
def _loss_chunk(key, lam_re, lam_im, mu, sigma, *, length: int, chunk_size: int, normalize: bool):
    gamma_log = 0.5 * jnp.log1p(-(lam_re**2 + lam_im**2)) if normalize else None
    layer, params = _unit_params(lam_re, lam_im, gamma_log)
    x = mu + sigma * jax.random.normal(key, (chunk_size, length, 1))
    state, _ = layer.apply({"params": params}, x, return_state=True)
    return (jnp.sum(0.5 * _abs2(state[:, :-1] - state[:, -1:]), 0),)


def simulate_loss(
    key: Array,
    lam: Array | complex,
    lam_star: complex,
    *,
    mu: float = 0.0,
    sigma: float = 1.0,
    normalize: bool = False,
    batch_size: int = 4000,
    length: int | None = None,
    chunk_size: int = 1000,
) -> np.ndarray:
    """Monte Carlo estimate of the 1-D teacher–student loss ½ E|h_T − h*_T|² through the layer.

    One :class:`ComplexDiagonalRNN` holds a unit per student λ and one for the teacher λ*, all
    fed the same i.i.d. inputs x_t = μ + σ ε_t; with ``normalize`` each unit's γ is set to
    √(1 − |λ|²). Compare with :func:`teacher_student_loss`.

    Returns:
      float64 numpy array [n], one loss per student λ.
    """
    lams = _as_lambdas(lam, "lam")
    star = _as_lambdas(lam_star, "lam_star")
    if star.shape != (1,):
        raise ValueError(f"lam_star must be a single value, got shape {np.shape(lam_star)}")
    _check_positive(sigma, "sigma")
    _check_sizes(batch_size, length, chunk_size)
    units = np.concatenate([lams, star])
    T = length or _default_length(units)
    re, im = jnp.asarray(units.real), jnp.asarray(units.imag)
    mu, sigma = jnp.asarray(mu, jnp.float32), jnp.asarray(sigma, jnp.float32)
    fn = lambda k: _loss_chunk(
        k, re, im, mu, sigma, length=T, chunk_size=chunk_size, normalize=normalize
    )
    return _accumulate(key, batch_size, chunk_size, fn)[0]
