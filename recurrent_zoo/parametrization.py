"""Parametrisations of a complex eigenvalue λ = ν·e^{iθ} by two real parameters.

Each maps polar coordinates (ν, θ) to its raw parameters (``encode``) and back (``decode``);
``to_complex`` gives λ. The layers learn the raw parameters; :mod:`recurrent_zoo.theory`
differentiates through the same functions.

=============  ==========================  =====================================================
name           parameters                  λ
=============  ==========================  =====================================================
``exp``        ``nu_log``, ``theta_log``   ν = exp(−exp(ν_log)), θ = exp(θ_log) (the LRU's)
``polar``      ``nu``, ``theta``           ν, θ learned directly
``direct``     ``lambda_re``, ``lambda_im`` λ = a + ib learned directly
``optimal``    ``omega_nu``, ``omega_theta`` ν = tanh(ω_ν), θ = ω_θ (1 − ν²) / (ν √(1 + ν²))
=============  ==========================  =====================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

Array = jax.Array
_TINY = 1e-12


@dataclass(frozen=True)
class Parametrization:
    """A map between raw parameters (p, q) and polar coordinates (ν, θ) of λ."""

    name: str
    param_names: tuple[str, str]
    encode: Callable[[Array, Array], tuple[Array, Array]]
    decode: Callable[[Array, Array], tuple[Array, Array]]

    def to_complex(self, p: Array, q: Array) -> Array:
        """λ as a complex array."""
        if self.name == "direct":
            return jax.lax.complex(p, q)
        nu, theta = self.decode(p, q)
        return jax.lax.complex(nu * jnp.cos(theta), nu * jnp.sin(theta))


def _exp_encode(nu, theta):
    # θ ∈ [−π, π] and θ + 2π are the same eigenvalue; exp(θ_log) > 0 needs the positive one.
    theta = jnp.where(theta < 0, theta + 2 * jnp.pi, theta)
    return jnp.log(-jnp.log(jnp.clip(nu, _TINY, 1 - 1e-7))), jnp.log(jnp.maximum(theta, _TINY))


def _exp_decode(nu_log, theta_log):
    return jnp.exp(-jnp.exp(nu_log)), jnp.exp(theta_log)


def _direct_encode(nu, theta):
    return nu * jnp.cos(theta), nu * jnp.sin(theta)


def _direct_decode(re, im):
    return jnp.sqrt(re**2 + im**2), jnp.arctan2(im, re)


def _optimal_scale(nu):
    return (1 - nu**2) / (jnp.maximum(nu, _TINY) * jnp.sqrt(1 + nu**2))


def _optimal_encode(nu, theta):
    return jnp.arctanh(jnp.clip(nu, 0.0, 1 - 1e-7)), theta / _optimal_scale(nu)


def _optimal_decode(omega_nu, omega_theta):
    nu = jnp.tanh(omega_nu)
    return nu, omega_theta * _optimal_scale(nu)


PARAMETRIZATIONS: dict[str, Parametrization] = {
    "exp": Parametrization("exp", ("nu_log", "theta_log"), _exp_encode, _exp_decode),
    "polar": Parametrization("polar", ("nu", "theta"), lambda n, t: (n, t), lambda n, t: (n, t)),
    "direct": Parametrization("direct", ("lambda_re", "lambda_im"), _direct_encode, _direct_decode),
    "optimal": Parametrization(
        "optimal", ("omega_nu", "omega_theta"), _optimal_encode, _optimal_decode
    ),
}


def get(name: str) -> Parametrization:
    """The parametrisation called ``name`` (one of :data:`PARAMETRIZATIONS`)."""
    if name not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be one of {list(PARAMETRIZATIONS)}, got {name!r}")
    return PARAMETRIZATIONS[name]


def gamma(nu: Array) -> Array:
    """Input normalisation γ(ν) = √(1 − ν²): keeps E[|h|²] = E[|x|²] for white-noise inputs."""
    return jnp.sqrt(jnp.maximum(1 - nu**2, 0.0))
