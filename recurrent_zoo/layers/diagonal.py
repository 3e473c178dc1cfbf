"""Complex diagonal linear recurrences: the complex diagonal RNN and the LRU (Orvieto et al. 2023)."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import initializers as inits
from recurrent_zoo import parametrization as lam_param
from recurrent_zoo import scan
from recurrent_zoo.layers.base import LinearReadout, project

Array = jax.Array


class ComplexDiagonalRNN(LinearReadout):
    """Complex diagonal linear RNN.

        h_t = λ ⊙ h_{t−1} + γ ⊙ (B x_t),   y_t = Re(C h_t) + D ⊙ x_t

    λ ∈ ℂᴺ is given by two real parameters per unit through ``parametrization`` (see
    :mod:`recurrent_zoo.parametrization`; here "direct": ``lambda_re``, ``lambda_im``). With
    ``normalize`` a learned γ = exp(``gamma_log``), initialised at √(1 − |λ|²), scales the input;
    otherwise γ = 1. B = ``B_re`` + i ``B_im`` [D_in, N], C = ``C_re`` + i ``C_im`` [N, D_out].

    Shapes: x [*batch, T, D_in] → y [*batch, T, D_out]; state complex [*batch, N].

    Attributes:
      r_min, r_max: |λ| at init is drawn uniformly (in area) on the ring r_min ≤ |λ| ≤ r_max.
      min_phase, max_phase: arg λ at init ~ U[min_phase, max_phase].
      parametrization: "direct", "polar", "exp" or "optimal".
      normalize: learn the input normalisation γ.
    """

    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi
    min_phase: float = 0.0
    parametrization: str = "direct"
    normalize: bool = False

    _input_param = "B_re"
    _complex_state = True

    def __post_init__(self) -> None:
        lam_param.get(self.parametrization)
        inits.check_ring(self.r_min, self.r_max, self.min_phase, self.max_phase)
        super().__post_init__()

    @nn.compact
    def _params(self, d_in: int) -> dict[str, Any]:
        n, pd = self.hidden_size, self.param_dtype
        par = lam_param.get(self.parametrization)
        init = None  # flax also calls param inits abstractly in apply, to check shapes
        if self.is_initializing():
            nu, theta = inits.ring(
                self.make_rng("params"), n, self.r_min, self.r_max, self.max_phase, self.min_phase
            )
            init = (*par.encode(nu, theta), jnp.log(jnp.maximum(lam_param.gamma(nu), 1e-12)))

        def fixed(i):
            return lambda key, shape, dtype: (
                jnp.zeros(shape, dtype) if init is None else init[i].astype(dtype)
            )

        p = {
            "p": self.param(par.param_names[0], fixed(0), (n,), pd),
            "q": self.param(par.param_names[1], fixed(1), (n,), pd),
            "gamma_log": self.param("gamma_log", fixed(2), (n,), pd) if self.normalize else None,
        }
        b_init = nn.initializers.normal(1 / math.sqrt(2 * d_in))
        c_init = nn.initializers.normal(1 / math.sqrt(n))
        d_out = self.out_features or d_in
        p["B_re"] = self.param("B_re", b_init, (d_in, n), pd)
        p["B_im"] = self.param("B_im", b_init, (d_in, n), pd)
        p["C_re"] = self.param("C_re", c_init, (n, d_out), pd)
        p["C_im"] = self.param("C_im", c_init, (n, d_out), pd)
        p["D"] = self._skip(d_in)
        return p

    def eigenvalues(self, p: dict[str, Any]) -> Array:
        """λ [N] (complex) from the raw parameters."""
        real = self.real_dtype
        par = lam_param.get(self.parametrization)
        return par.to_complex(p["p"].astype(real), p["q"].astype(real))

    def _inputs(self, p: dict[str, Any], x: Array) -> Array:
        real = self.real_dtype
        u = jax.lax.complex(
            project(x, p["B_re"], self.dtype, real), project(x, p["B_im"], self.dtype, real)
        )
        if p["gamma_log"] is not None:
            u = u * jnp.exp(p["gamma_log"].astype(real))
        return u

    def _readout(self, p: dict[str, Any], h: Array, x: Array) -> Array:
        y = jnp.dot(h.real.astype(self.dtype), p["C_re"].astype(self.dtype))
        y = y - jnp.dot(h.imag.astype(self.dtype), p["C_im"].astype(self.dtype))
        return y + self._apply_skip(p["D"], x)

    def _sequence(self, x, h0, resets, mask):
        p = self._params(x.shape[-1])
        kernel = scan.select_kernel(self.scan, "diagonal", complex_state=True)
        if kernel is scan.Kernel.COMPLEX_SPLIT:
            return self._sequence_split(p, x, h0, resets, mask)
        tm = lambda z: None if z is None else jnp.swapaxes(z, 0, 1)  # rz.scan is time-major
        h_T, hs = scan.linear_scan(
            self.eigenvalues(p),
            tm(self._inputs(p, x)),
            h0,
            resets=tm(resets),
            mask=tm(mask),
            method=kernel.method,
            unroll=self.unroll,
        )
        return h_T, self._readout(p, tm(hs), x)

    def _sequence_split(self, p, x, h0, resets, mask):
        """The sequential scan in real arithmetic, time-major: one matmul in (B with γ folded in,
        producing [T, B, 2N] = [re | im]), :func:`scan.complex_diagonal_scan`, one matmul out
        (``[C_re; −C_im]``, since Re(C h) = C_re h_re − C_im h_im)."""
        real, dt, n = self.real_dtype, self.dtype, self.hidden_size
        lam = self.eigenvalues(p)
        w_in = jnp.concatenate([p["B_re"], p["B_im"]], axis=1).astype(real)
        if p["gamma_log"] is not None:
            w_in = w_in * jnp.tile(jnp.exp(p["gamma_log"].astype(real)), 2)
        # Time-major before projecting, so `project` runs plain 2-D matmuls on rows the scan
        # reads in order: a batched einsum gets transposed copies of u and the states.
        u = project(jnp.swapaxes(x, 0, 1), w_in, dt, real)
        tm = lambda z: None if z is None else jnp.swapaxes(z, 0, 1)
        h_T, hs = scan.complex_diagonal_scan(
            lam.real,
            lam.imag,
            u,
            jnp.concatenate([h0.real, h0.imag], axis=-1),
            resets=tm(resets),
            mask=tm(mask),
            unroll=self.unroll,
        )
        w_out = jnp.concatenate([p["C_re"], -p["C_im"]], axis=0)
        y = project(hs, w_out, dt, dt)
        y = jnp.swapaxes(y, 0, 1) + self._apply_skip(p["D"], x)
        return jax.lax.complex(h_T[..., :n], h_T[..., n:]).astype(h0.dtype), y

    def _step(self, h, x_t):
        p = self._params(x_t.shape[-1])
        h = scan.linear_step(self.eigenvalues(p), h, self._inputs(p, x_t))
        return h, self._readout(p, h, x_t)


class LRU(ComplexDiagonalRNN):
    """Linear Recurrent Unit (Orvieto et al. 2023).

        λ = exp(−exp(ν_log) + i·exp(θ_log)),   γ = exp(γ_log)
        h_t = λ ⊙ h_{t−1} + γ ⊙ (B x_t),   y_t = Re(C h_t) + D ⊙ x_t

    The complex diagonal RNN with the exponential parametrisation (``nu_log``, ``theta_log``)
    and input normalisation γ initialised at √(1 − |λ|²), so the state's variance at init does not
    grow as |λ| → 1 (the paper's answer to the curse of memory).

    Shapes: x [*batch, T, D_in] → y [*batch, T, D_out]; state complex [*batch, N].
    Defaults are the LRU paper's: |λ| ∈ [0.9, 0.999], arg λ ∈ [0, 2π].
    """

    r_min: float = 0.9
    r_max: float = 0.999
    parametrization: str = "exp"
    normalize: bool = True
