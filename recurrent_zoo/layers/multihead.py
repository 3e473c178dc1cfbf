"""Real linear RNN with a block-diagonal (multi-head) recurrence."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import _checks as checks
from recurrent_zoo import initializers as inits
from recurrent_zoo import scan
from recurrent_zoo.layers.base import LinearReadout, project

Array = jax.Array


def _identity(q: Any, h: Array, a: Array, u: None) -> Array:
    return a


class MultiHeadLinearRNN(LinearReadout):
    """Real linear RNN whose recurrence is block-diagonal with ``num_heads`` dense blocks.

        h_t = A h_{t−1} + B x_t,   y_t = C h_t + D ⊙ x_t,   A = diag(A_1, …, A_H), A_k ∈ ℝ^{d×d}

    d = N / H. One head is the dense linear RNN; N/2 heads the 2×2 block-diagonal RNN, which can
    represent any complex diagonal RNN with N/2 complex units. Each block starts from the paper's
    eigenvalue-controlled init: eigenvalue magnitudes in [r_min, 1), phases in [−max_phase,
    max_phase] (see :func:`recurrent_zoo.initializers.eigenvalue_controlled`).

    Parameters: ``A`` [H, d, d], ``B`` [D_in, N], ``C`` [N, D_out], ``D``.
    Shapes: x [*batch, T, D_in] → y [*batch, T, D_out]; state [*batch, N].

    Attributes:
      num_heads: H, must divide hidden_size.
      r_min: minimum eigenvalue magnitude at init (the paper's dense student uses 0).
      max_phase: θ0 of the init.
    """

    num_heads: int = 1
    r_min: float = 0.0
    max_phase: float = math.pi

    _input_param = "B"

    def __post_init__(self) -> None:
        checks.positive_int(self.num_heads, "num_heads")
        if isinstance(self.hidden_size, int) and self.hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads must divide hidden_size, got num_heads={self.num_heads} and "
                f"hidden_size={self.hidden_size}"
            )
        super().__post_init__()

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @nn.compact
    def _params(self, d_in: int) -> dict[str, Any]:
        n, h, d, pd = self.hidden_size, self.num_heads, self.head_size, self.param_dtype
        a_init = inits.eigenvalue_controlled(self.r_min, self.max_phase)
        return {
            "A": self.param("A", a_init, (h, d, d), pd),
            "B": self.param("B", nn.initializers.normal(1 / math.sqrt(d_in)), (d_in, n), pd),
            "C": self.param(
                "C", nn.initializers.normal(1 / math.sqrt(n)), (n, self.out_features or d_in), pd
            ),
            "D": self._skip(d_in),
        }

    def _inputs(self, p: dict[str, Any], x: Array) -> Array:
        u = project(x, p["B"], self.dtype, self.state_dtype)
        return u.reshape(*u.shape[:-1], self.num_heads, self.head_size)

    def _readout(self, p: dict[str, Any], h: Array, x: Array) -> Array:
        h = h.reshape(*h.shape[:-2], self.hidden_size)
        return jnp.dot(h.astype(self.dtype), p["C"].astype(self.dtype)) + self._apply_skip(
            p["D"], x
        )

    def _heads(self, h: Array) -> Array:
        return h.reshape(*h.shape[:-1], self.num_heads, self.head_size)

    def _sequence(self, x, h0, resets, mask):
        p = self._params(x.shape[-1])
        kernel = scan.select_kernel(self.scan, "dense" if self.num_heads == 1 else "block")
        if kernel is scan.Kernel.MATMUL_CELL:
            return self._sequence_dense(p, x, h0, resets, mask)
        tm = lambda a: None if a is None else jnp.swapaxes(a, 0, 1)  # rz.scan is time-major
        h_T, hs = scan.linear_scan(
            p["A"].astype(self.state_dtype),
            tm(self._inputs(p, x)),
            self._heads(h0),
            resets=tm(resets),
            mask=tm(mask),
            method=kernel.method,
            structure="block",
            unroll=self.unroll,
        )
        return h_T.reshape(h0.shape), self._readout(p, tm(hs), x)

    def _sequence_dense(self, p, x, h0, resets, mask):
        """One head, sequentially: the linear Elman RNN h_t = h_{t−1} Aᵀ + x_t B, run by
        :func:`scan.scan_matmul_cell` like the other cell layers (the input projection in the
        loop when nothing is differentiated, ∂A in one matmul over all steps when it is), on
        time-major rows, so that only x and y are transposed."""
        tm = lambda a: None if a is None else jnp.swapaxes(a, 0, 1)
        xt = tm(x)
        h_T, hs = scan.scan_matmul_cell(
            _identity,
            p["A"][0].T.astype(self.state_dtype),
            {},
            h0,
            project=self._project_flat,
            x=xt,
            project_params=p["B"],
            resets=tm(resets),
            mask=tm(mask),
            unroll=self.unroll,
            elementwise=True,
        )
        return h_T, tm(self._readout(p, self._heads(hs), xt))

    def _project_flat(self, B: Array, x: Array) -> tuple[Array, None]:
        return project(x, B, self.dtype, self.state_dtype), None

    def _step(self, h, x_t):
        p = self._params(x_t.shape[-1])
        a = p["A"].astype(self.state_dtype)
        hh = scan.linear_step(a, self._heads(h), self._inputs(p, x_t), "block")
        return hh.reshape(h.shape), self._readout(p, hh, x_t)
