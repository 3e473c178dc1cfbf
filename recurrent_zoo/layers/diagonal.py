"""Complex diagonal linear recurrences: the complex diagonal RNN and the LRU (Orvieto et al. 2023)."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import initializers as inits
from recurrent_zoo import parametrization as lam_param
from recurrent_zoo import scan
from recurrent_zoo.layers.base import Joint, LinearReadout, ParamSpec, project, time_major

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

    def param_specs(self, d_in: int) -> dict[str, ParamSpec]:
        n, pd = self.hidden_size, self.param_dtype
        par = lam_param.get(self.parametrization)

        def draw(key: Array) -> tuple[Array, Array, Array]:
            # λ's two raw parameters and γ_log, from one draw of (ν, θ) on the ring.
            nu, theta = inits.ring(key, n, self.r_min, self.r_max, self.max_phase, self.min_phase)
            return (*par.encode(nu, theta), jnp.log(jnp.maximum(lam_param.gamma(nu), 1e-12)))

        specs = {
            par.param_names[0]: ParamSpec(Joint(draw, 0), (n,), pd),
            par.param_names[1]: ParamSpec(Joint(draw, 1), (n,), pd),
        }
        if self.normalize:
            specs["gamma_log"] = ParamSpec(Joint(draw, 2), (n,), pd)
        b_init = nn.initializers.normal(1 / math.sqrt(2 * d_in))
        c_init = nn.initializers.normal(1 / math.sqrt(n))
        d_out = self.out_features or d_in
        specs["B_re"] = ParamSpec(b_init, (d_in, n), pd)
        specs["B_im"] = ParamSpec(b_init, (d_in, n), pd)
        specs["C_re"] = ParamSpec(c_init, (n, d_out), pd)
        specs["C_im"] = ParamSpec(c_init, (n, d_out), pd)
        specs["D"] = self._skip_spec(d_in)
        return specs

    def eigenvalues(self, p: dict[str, Array]) -> Array:
        """λ [N] (complex) from the raw parameters."""
        real = self.real_dtype
        par = lam_param.get(self.parametrization)
        a, b = (p[k].astype(real) for k in par.param_names)
        return par.to_complex(a, b)

    def cell(self, p: dict[str, Array], h: Array, x_t: Array) -> tuple[Array, Array]:
        """h' = λ ⊙ h + γ ⊙ (B x_t),   y_t = Re(C h') + D ⊙ x_t."""
        dt, real = self.dtype, self.real_dtype
        u = jax.lax.complex(project(x_t, p["B_re"], dt, real), project(x_t, p["B_im"], dt, real))
        if self.normalize:
            u = u * jnp.exp(p["gamma_log"].astype(real))
        h = self.eigenvalues(p) * h + u
        y = project(h.real, p["C_re"], dt, dt) - project(h.imag, p["C_im"], dt, dt)
        return h, y + self._apply_skip(p["D"], x_t)

    def sequence(
        self, p: dict[str, Array], x: Array, h0: Array, resets: Array | None, mask: Array | None
    ) -> tuple[Array, Array]:
        """Every step's B x at once, :func:`scan.linear_scan` (or, sequentially, the real
        arithmetic of :meth:`_sequence_split`), every step's readout at once."""
        kernel = scan.select_kernel(self.scan, "diagonal", complex_state=True)
        if kernel is scan.Kernel.COMPLEX_SPLIT:
            return self._sequence_split(p, x, h0, resets, mask)
        tm = time_major
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

    def _inputs(self, p: dict[str, Array], x: Array) -> Array:
        real = self.real_dtype
        u = jax.lax.complex(
            project(x, p["B_re"], self.dtype, real), project(x, p["B_im"], self.dtype, real)
        )
        if self.normalize:
            u = u * jnp.exp(p["gamma_log"].astype(real))
        return u

    def _readout(self, p: dict[str, Array], h: Array, x: Array) -> Array:
        y = jnp.dot(h.real.astype(self.dtype), p["C_re"].astype(self.dtype))
        y = y - jnp.dot(h.imag.astype(self.dtype), p["C_im"].astype(self.dtype))
        return y + self._apply_skip(p["D"], x)

    def _sequence_split(self, p, x, h0, resets, mask):
        """The sequential scan in real arithmetic, time-major: one matmul in (B with γ folded in,
        producing [T, B, 2N] = [re | im]), :func:`scan.complex_diagonal_scan`, one matmul out
        (``[C_re; −C_im]``, since Re(C h) = C_re h_re − C_im h_im)."""
        real, dt, n = self.real_dtype, self.dtype, self.hidden_size
        lam = self.eigenvalues(p)
        w_in = jnp.concatenate([p["B_re"], p["B_im"]], axis=1).astype(real)
        if self.normalize:
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
