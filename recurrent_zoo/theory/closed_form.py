"""Closed forms of the one-dimensional analysis of the curse of memory (Zucchet & Orvieto 2024).

The model is one complex unit driven by a stationary input with unit variance and correlation
E[x_t x_{t+Δ}] = ρ^|Δ|, observed at t → ∞:

    h_t = λ h_{t−1} + γ x_t,   |λ| < 1,   γ = 1 or the normalisation γ(λ) = √(1 − |λ|²).

Everything follows from one generating function. With h̃ = Σ_k λ^k x_{t−k} (the state for γ = 1),

    F(a, b) = Σ_{k,l≥0} a^k b^l ρ^|k−l| = (1 − abρ²) / ((1 − ab)(1 − aρ)(1 − bρ)),

E|h̃|² = F(λ, λ̄), E[h̃ conj(∂h̃/∂λ)] = ∂_b F and E|∂h̃/∂λ|² = ∂_a ∂_b F, all at (a, b) = (λ, λ̄).
For real λ these are the paper's

    E[h²]        = (1 + λρ) / ((1 − λρ)(1 − λ²)),
    E[(dh/dλ)²]  = [(1 + λ²)(1 − λ²ρ²) + 2λρ(1 − λ²)] / [(1 − λ²)³ (1 − λρ)²],

which is (1 + λ²)/(1 − λ²)³ at ρ = 0 and 1/(1 − λ)⁴ at ρ = 1: the sensitivity of the state to λ
explodes as λ → 1, faster the more correlated the inputs (the "curse of memory").

The learned quantities are raw parameters (p, q) of λ (see :mod:`recurrent_zoo.parametrization`);
:func:`parameter_sensitivity` and :func:`parametrized_loss` differentiate through
``parametrization.get(name).to_complex``, so a new parametrisation needs no new formula here.

The Monte Carlo checks of these formulas are in :mod:`recurrent_zoo.theory.simulation`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from recurrent_zoo import parametrization as lam_param

Array = jax.Array

__all__ = [
    "parameter_sensitivity",
    "parametrized_loss",
    "sensitivity_second_moment",
    "state_second_moment",
    "teacher_student_loss",
]


# -- argument checks (only on concrete values: under jit the formulas just run) ------------------
def _concrete(x) -> np.ndarray | None:
    try:
        return np.asarray(x)
    except jax.errors.TracerArrayConversionError:
        return None


def _check_lambda(lam, name: str) -> Array:
    if not hasattr(lam, "dtype") and not isinstance(lam, int | float | complex | list | tuple):
        raise TypeError(f"{name} must be a number or an array of numbers, got {type(lam)}")
    v = _concrete(lam)
    if v is not None:
        if not (np.issubdtype(v.dtype, np.number) or v.dtype == bool):
            raise TypeError(f"{name} must be numeric, got dtype {v.dtype}")
        if v.size and not np.all(np.abs(v) < 1):
            raise ValueError(
                f"{name} must lie inside the unit disk (|{name}| < 1, a stable recurrence), "
                f"got max |{name}| = {np.max(np.abs(v)):.6g}"
            )
    return jnp.asarray(lam)


def _check_rho(rho) -> Array:
    v = _concrete(rho)
    if v is not None:
        if np.iscomplexobj(v):
            raise TypeError(f"rho must be real, got dtype {v.dtype}")
        if v.size and not np.all(np.abs(v) <= 1):
            raise ValueError(
                f"rho must lie in [-1, 1] (a correlation), got values in "
                f"[{np.min(v):.6g}, {np.max(v):.6g}]"
            )
    return jnp.asarray(rho)


def _check_positive(x, name: str, allow_zero: bool = True) -> None:
    v = _concrete(x)
    if v is not None and v.size and not np.all(v >= 0 if allow_zero else v > 0):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {v}")


def _abs2(z: Array) -> Array:
    # |z|² as z·z̄: unlike abs(z)**2 it has the right second derivative at z = 0.
    return jnp.real(z * jnp.conj(z))


# -- moments of h and dh/dλ ------------------------------------------------------------------------
def _moments(lam: Array, rho: Array) -> tuple[Array, Array, Array]:
    """(E|h̃|², E[h̃ conj(h̃')], E|h̃'|²) for γ = 1, from the generating function F."""
    lam = jnp.asarray(lam)
    lam = lam.astype(jnp.result_type(lam, jnp.complex64))
    rho = jnp.asarray(rho, lam.real.dtype)
    lc = jnp.conj(lam)
    r2 = jnp.real(lam * lc)
    P = 1 - r2  # 1 − ab
    N = 1 - r2 * rho**2  # 1 − abρ²
    Q = 1 - lam * rho  # 1 − aρ; 1 − bρ is its conjugate
    f = N / (P * jnp.real(Q * jnp.conj(Q)))
    g = lc / P - lc * rho**2 / N + rho / Q  # ∂_a log F
    # ∂_a∂_b log F = 1/P² − ρ²/N², written without the cancellation as ρ → 1.
    h_ab = (1 - rho) * (1 + rho * r2) * (N + rho * P) / (P**2 * N**2)
    sens = f * (jnp.real(g * jnp.conj(g)) + h_ab)
    return f, f * jnp.conj(g), sens


def state_second_moment(
    lam: Array | complex, rho: Array | float = 0.0, *, normalize: bool = False
) -> Array:
    """E|h_t|² at t → ∞ for h_t = λ h_{t−1} + γ x_t, inputs of correlation ρ^|Δ|.

        E|h|² = γ² Re[(1 + λ̄ρ) / (1 − λ̄ρ)] / (1 − |λ|²)
              = (1 + λρ) / ((1 − λρ)(1 − λ²))        for real λ and γ = 1.

    Args:
      lam: λ, real or complex, |λ| < 1; any shape (broadcast against ``rho``).
      rho: input correlation decay ρ ∈ [−1, 1].
      normalize: multiply the input by γ(λ) = √(1 − |λ|²) (then E|h|² = 1 at ρ = 0).

    Returns:
      real array of the broadcast shape of ``lam`` and ``rho``.
    """
    lam = _check_lambda(lam, "lam")
    f, _, _ = _moments(lam, _check_rho(rho))
    return f * (1 - _abs2(lam)) if normalize else f


def sensitivity_second_moment(lam: Array | complex, rho: Array | float = 0.0) -> Array:
    """E|∂h_t/∂λ|² at t → ∞ for h_t = λ h_{t−1} + x_t (γ = 1).

        real λ: [(1 + λ²)(1 − λ²ρ²) + 2λρ(1 − λ²)] / [(1 − λ²)³ (1 − λρ)²]

    For complex λ, ∂h/∂λ is the complex derivative (h is holomorphic in λ). With a normalisation
    or a parametrisation of λ use :func:`parameter_sensitivity`.

    Args:
      lam: λ, real or complex, |λ| < 1; any shape (broadcast against ``rho``).
      rho: input correlation decay ρ ∈ [−1, 1].

    Returns:
      real array of the broadcast shape.
    """
    _, _, sens = _moments(_check_lambda(lam, "lam"), _check_rho(rho))
    return sens


def _lambda_gamma(name: str, p: Array, q: Array, normalize: bool) -> tuple[Array, Array]:
    lam = lam_param.get(name).to_complex(p, q)
    gam = lam_param.gamma(jnp.abs(lam)) if normalize else jnp.ones_like(jnp.real(lam))
    return lam, gam


def _raw(p, q) -> tuple[Array, Array]:
    p, q = jnp.broadcast_arrays(jnp.asarray(p), jnp.asarray(q))
    dtype = jnp.result_type(p, q, jnp.float32)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"raw parameters p and q must be real, got dtype {dtype}")
    return p.astype(dtype), q.astype(dtype)


def parameter_sensitivity(
    parametrization: str,
    p: Array | float,
    q: Array | float,
    rho: Array | float = 0.0,
    *,
    normalize: bool = False,
) -> tuple[Array, Array]:
    """(E|∂h/∂p|², E|∂h/∂q|²) for λ = ``parametrization.get(name).to_complex(p, q)``.

    With ``normalize`` the input is scaled by γ(λ) = √(1 − |λ|²) *as a function of λ*, so
    ∂h/∂p = (∂γ/∂p) h̃ + γ (∂λ/∂p) h̃'. At ρ = 0 with ``normalize`` the "optimal"
    parametrisation gives exactly 1 for ω_θ at any λ and for ω_ν on the real axis (at θ ≠ 0,
    moving ω_ν also moves θ), whatever |λ|; "polar" without normalisation gives
    (1 + ν²)/(1 − ν²)³ for ν.

    Args:
      parametrization: a name in ``rz.parametrization.PARAMETRIZATIONS``.
      p, q: its raw parameters, real arrays of any (broadcastable) shape.
      rho: input correlation decay ρ ∈ [−1, 1].
      normalize: include γ(λ) = √(1 − |λ|²).

    Returns:
      two real arrays of the broadcast shape.
    """
    p, q = _raw(p, q)
    rho = _check_rho(rho)
    _check_lambda(lam_param.get(parametrization).to_complex(p, q), "lambda(p, q)")

    def along(tp: Array, tq: Array) -> Array:
        fn = lambda p, q: _lambda_gamma(parametrization, p, q, normalize)
        (lam, gam), (dlam, dgam) = jax.jvp(fn, (p, q), (tp, tq))
        f, cross, sens = _moments(lam, rho)
        b = gam * dlam  # coefficient of h̃'; dgam is that of h̃
        return dgam**2 * f + _abs2(b) * sens + 2 * jnp.real(dgam * jnp.conj(b) * cross)

    one, zero = jnp.ones_like(p), jnp.zeros_like(p)
    return along(one, zero), along(zero, one)


# -- the 1-D teacher–student loss -----------------------------------------------------------------
def teacher_student_loss(
    lam: Array | complex,
    lam_star: Array | complex,
    *,
    mu: Array | float = 0.0,
    sigma: Array | float = 1.0,
    normalize: bool = False,
) -> Array:
    """L(λ) = ½ E|h_t − h*_t|² at t → ∞, student λ, teacher λ*, i.i.d. inputs of mean μ, var σ².

        L = ½[ μ² |1/(1−λ) − 1/(1−λ*)|²
               + σ² ( 1/(1−|λ|²) + 1/(1−|λ*|²) − 2 Re 1/(1 − λ conj(λ*)) ) ]

    evaluated without cancellation near the optimum, using
    1/(1−|a|²) + 1/(1−|b|²) − 2 Re 1/(1 − a b̄) = |a − b|² (1 − |ab|²) / ((1−|a|²)(1−|b|²)|1 − a b̄|²).
    With ``normalize`` student and teacher both scale their input by γ = √(1 − |λ|²) (the
    teacher too, so that the optimum stays at λ = λ*).

    Args:
      lam: student λ, |λ| < 1, any shape (broadcast against the rest).
      lam_star: teacher λ*, |λ*| < 1.
      mu, sigma: mean and standard deviation of the inputs.
      normalize: use the normalised recurrence.

    Returns:
      real array of the broadcast shape.
    """
    a = _check_lambda(lam, "lam")
    b = _check_lambda(lam_star, "lam_star")
    _check_positive(sigma, "sigma")
    ctype = jnp.result_type(a, b, jnp.complex64)
    a, b = a.astype(ctype), b.astype(ctype)
    ra, rb = jnp.real(a * jnp.conj(a)), jnp.real(b * jnp.conj(b))
    cross = 1 - a * jnp.conj(b)
    d = _abs2(a - b) * (1 - ra * rb) / ((1 - ra) * (1 - rb) * jnp.real(cross * jnp.conj(cross)))
    if normalize:
        ga, gb = lam_param.gamma(jnp.sqrt(ra)), lam_param.gamma(jnp.sqrt(rb))
        # Σ|γ_a a^k − γ_b b^k|² = γ_a γ_b d + (γ_a − γ_b)(γ_a/(1−|a|²) − γ_b/(1−|b|²))
        var = ga * gb * d + (ga - gb) * (ga / (1 - ra) - gb / (1 - rb))
        mean = ga / (1 - a) - gb / (1 - b)
    else:
        var = d
        mean = (a - b) / ((1 - a) * (1 - b))
    return 0.5 * (jnp.asarray(mu) ** 2 * _abs2(mean) + jnp.asarray(sigma) ** 2 * var)


def parametrized_loss(
    parametrization: str,
    p: Array | float,
    q: Array | float,
    lam_star: Array | complex,
    *,
    mu: Array | float = 0.0,
    sigma: Array | float = 1.0,
    normalize: bool = False,
) -> Array:
    """:func:`teacher_student_loss` as a function of the raw parameters (p, q) of λ.

    Differentiable in (p, q): ``jax.grad(parametrized_loss, argnums=1)`` is the gradient a
    learner of that parametrisation sees, ``jax.hessian`` its curvature.
    """
    p, q = _raw(p, q)
    lam = lam_param.get(parametrization).to_complex(p, q)
    return teacher_student_loss(lam, lam_star, mu=mu, sigma=sigma, normalize=normalize)
