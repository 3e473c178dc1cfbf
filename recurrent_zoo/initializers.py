"""Initialisers of recurrent parameters.

All follow ``jax.nn.initializers``' signature ``init(key, shape, dtype) -> Array`` except
:func:`ring`, which draws polar coordinates of complex eigenvalues.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Initializer = Callable[..., Array]


def ring(
    key: Array,
    n: int,
    r_min: float = 0.0,
    r_max: float = 1.0,
    max_phase: float = 2 * math.pi,
    min_phase: float = 0.0,
) -> tuple[Array, Array]:
    """Draws n eigenvalues uniformly on the ring r_min ≤ |λ| ≤ r_max (the LRU's init).

    ν = √(U·(r_max² − r_min²) + r_min²) is uniform in area, θ ~ U[min_phase, max_phase].
    Returns (ν, θ), each [n] float32.
    """
    check_ring(r_min, r_max, min_phase, max_phase)
    k_nu, k_theta = jax.random.split(key)
    u = jax.random.uniform(k_nu, (n,))
    nu = jnp.sqrt(u * (r_max**2 - r_min**2) + r_min**2)
    theta = jax.random.uniform(k_theta, (n,), minval=min_phase, maxval=max_phase)
    return nu, theta


def check_ring(r_min: float, r_max: float, min_phase: float, max_phase: float) -> None:
    """Checks the ring's bounds: 0 ≤ r_min ≤ r_max ≤ 1 and min_phase ≤ max_phase."""
    if not 0.0 <= r_min <= r_max <= 1.0:
        raise ValueError(
            f"r_min and r_max must satisfy 0 <= r_min <= r_max <= 1, got r_min={r_min}, "
            f"r_max={r_max}"
        )
    if not min_phase <= max_phase:
        raise ValueError(
            f"min_phase must not exceed max_phase, got min_phase={min_phase}, max_phase={max_phase}"
        )


def _reshape_spectrum(g: np.ndarray, nu0: float, theta0: float) -> np.ndarray:
    g = np.asarray(g, np.float64)
    lam, v = np.linalg.eig(g)
    phase = np.angle(lam) * theta0 / np.pi
    # A real eigenvalue has no conjugate partner: it must stay real (phase 0, or π when θ0 = π
    # allows it), or Re(·) below would move the whole spectrum.
    phase = np.where(lam.imag == 0, np.where(phase >= np.pi, np.pi, 0.0), phase)
    lam = (nu0 + (1 - nu0) * np.tanh(np.abs(lam))) * np.exp(1j * phase)
    return np.real(v @ np.diag(lam) @ np.linalg.inv(v))


def eigenvalue_controlled(nu0: float = 0.0, theta0: float = math.pi) -> Initializer:
    """The paper's dense init with controlled eigenvalues, for square matrices [..., n, n].

    Draws G ~ N(0, 1/n), eigendecomposes G = V diag(l) V⁻¹, maps each eigenvalue to
    (ν0 + (1 − ν0) tanh|l|)·exp(i·angle(l)·θ0/π) and returns A = Re(V diag(l') V⁻¹), so every
    eigenvalue of A has magnitude in [ν0, 1) and phase in [−θ0, θ0]. The map keeps conjugate
    pairs, and real eigenvalues stay real (negative ones become positive unless θ0 = π), so A
    is real. Leading axes are independent blocks (block-diagonal RNNs).
    """

    def init(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        if len(shape) < 2 or shape[-1] != shape[-2]:
            raise ValueError(
                f"eigenvalue_controlled needs square matrices [..., n, n], got {shape}"
            )
        n = shape[-1]
        g = jax.random.normal(key, shape, jnp.float32) / math.sqrt(n)
        callback = lambda g: (
            np.stack([_reshape_spectrum(b, nu0, theta0) for b in np.asarray(g).reshape(-1, n, n)])
            .reshape(g.shape)
            .astype(np.float32)
        )
        # The callback runs block by block over leading axes, so a vmapped init (a batch of
        # models) passes its batch axis straight through.
        out = jax.pure_callback(
            callback, jax.ShapeDtypeStruct(shape, jnp.float32), g, vmap_method="expand_dims"
        )
        return out.astype(dtype)

    return init


def identity(scale: float = 1.0) -> Initializer:
    """scale·I for square matrices (Le et al. 2015's IRNN)."""

    def init(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        del key
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"identity init needs a square matrix, got shape {shape}")
        return scale * jnp.eye(shape[0], dtype=dtype)

    return init


def chrono(t_min: float, t_max: float) -> Initializer:
    """Chrono bias init (Tallec & Ollivier 2018): b = log U[t_min, t_max].

    On a GRU update gate z = σ(b) with h' = (1 − z) n + z h, the state forgets at a rate
    1 − z ≈ 1/(1 + e^b), so memory times spread over [t_min, t_max] steps.
    """
    chrono_range((t_min, t_max), "chrono's (t_min, t_max)")

    def init(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        return jnp.log(jax.random.uniform(key, shape, jnp.float32, t_min, t_max)).astype(dtype)

    return init


def per_gate(init: Initializer, gates: int) -> Initializer:
    """``init`` drawn independently for each gate's [n, n] block of an [n, gates·n] kernel."""

    def init_gates(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        n = shape[0]
        if shape != (n, gates * n):
            raise ValueError(f"per-gate init needs shape (n, {gates}·n), got {shape}")
        keys = jax.random.split(key, gates)
        return jnp.concatenate([init(k, (n, n), dtype) for k in keys], axis=1)

    return init_gates


def chrono_range(
    value: float | tuple[float, float], name: str = "chrono_init"
) -> tuple[float, float]:
    """A chrono-init field as ``(t_min, t_max)``: a time scale T means (T, 2T)."""
    pair = (value, 2 * value) if isinstance(value, int | float) else value
    try:
        lo, hi = (float(v) for v in pair)
        ok = 0 < lo <= hi < math.inf
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"{name} must be T > 0 or (T_min, T_max) with 0 < T_min <= T_max, finite, got {value!r}"
        )
    return lo, hi


RECURRENT_INITS: dict[str, Callable[[], Initializer]] = {
    "orthogonal": jax.nn.initializers.orthogonal,
    "identity": identity,
    "glorot": jax.nn.initializers.glorot_uniform,
    "he": jax.nn.initializers.he_normal,
    "eigen": eigenvalue_controlled,
}


def recurrent(init: str | Initializer) -> Initializer:
    """Resolves a recurrent-kernel init given by name (:data:`RECURRENT_INITS`) or as a function."""
    if callable(init):
        return init
    if init not in RECURRENT_INITS:
        raise ValueError(
            f"recurrent_init must be one of {list(RECURRENT_INITS)} or a callable, got {init!r}"
        )
    return RECURRENT_INITS[init]()
