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
from recurrent_zoo.layers.base import LinearReadout, ParamSpec, project, time_major

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

    def param_specs(self, d_in: int) -> dict[str, ParamSpec]:
        n, h, d, pd = self.hidden_size, self.num_heads, self.head_size, self.param_dtype
        return {
            "A": ParamSpec(inits.eigenvalue_controlled(self.r_min, self.max_phase), (h, d, d), pd),
            "B": ParamSpec(nn.initializers.normal(1 / math.sqrt(d_in)), (d_in, n), pd),
            "C": ParamSpec(
                nn.initializers.normal(1 / math.sqrt(n)), (n, self.out_features or d_in), pd
            ),
            "D": self._skip_spec(d_in),
        }

    def cell(self, p: dict[str, Array], h: Array, x_t: Array) -> tuple[Array, Array]:
        """h' = A h + B x_t (head k: h'_k = A_k h_k + (B x_t)_k),   y_t = C h' + D ⊙ x_t."""
        dt, sd = self.dtype, self.state_dtype
        Ah = jnp.einsum("...kij,...kj->...ki", p["A"].astype(sd), self._heads(h))
        h = Ah.reshape(h.shape) + project(x_t, p["B"], dt, sd)
        return h, project(h, p["C"], dt, dt) + self._apply_skip(p["D"], x_t)

    def sequence(
        self, p: dict[str, Array], x: Array, h0: Array, resets: Array | None, mask: Array | None
    ) -> tuple[Array, Array]:
        """Every step's B x at once, :func:`scan.linear_scan` over the heads (one head,
        sequentially: :meth:`_sequence_dense`), every step's readout at once."""
        kernel = scan.select_kernel(self.scan, "dense" if self.num_heads == 1 else "block")
        if kernel is scan.Kernel.MATMUL_CELL:
            return self._sequence_dense(p, x, h0, resets, mask)
        tm = time_major
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
        xt = time_major(x)
        h_T, hs = scan.scan_matmul_cell(
            _identity,
            p["A"][0].T.astype(self.state_dtype),
            {},
            h0,
            project=self._project_flat,
            x=xt,
            project_params=p["B"],
            resets=time_major(resets),
            mask=time_major(mask),
            unroll=self.unroll,
            elementwise=True,
        )
        return h_T, time_major(self._readout(p, self._heads(hs), xt))

    def _inputs(self, p: dict[str, Array], x: Array) -> Array:
        return self._heads(project(x, p["B"], self.dtype, self.state_dtype))

    def _readout(self, p: dict[str, Array], h: Array, x: Array) -> Array:
        h = h.reshape(*h.shape[:-2], self.hidden_size)
        return jnp.dot(h.astype(self.dtype), p["C"].astype(self.dtype)) + self._apply_skip(
            p["D"], x
        )

    def _heads(self, h: Array) -> Array:
        return h.reshape(*h.shape[:-1], self.num_heads, self.head_size)

    def _project_flat(self, B: Array, x: Array) -> tuple[Array, None]:
        return project(x, B, self.dtype, self.state_dtype), None
