"""Gated recurrent unit (Cho et al. 2014) in PyTorch's gate convention."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import initializers as inits
from recurrent_zoo import scan
from recurrent_zoo.layers.base import CellLayer, ParamSpec, project, time_major

Array = jax.Array


class GRU(CellLayer):
    """GRU with PyTorch's equations (``torch.nn.GRU``):

        r = σ(W_ir x + b_ir + W_hr h + b_hr)
        z = σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
        h' = (1 − z) ⊙ n + z ⊙ h,   y_t = h_t

    Shapes: x [*batch, T, D_in] → y [*batch, T, N]; state [*batch, N]. Parameters:
    ``input_kernel`` [D_in, 3N] and ``input_bias`` [3N] (gates r, z, n in that order, as in
    PyTorch's ``weight_ih_l0.T``), ``recurrent_kernel`` [N, 3N] and ``recurrent_bias`` [3N].

    Attributes:
      kernel_init: init of the input kernel (the paper uses ``he_normal``: variance 2/fan_in).
      recurrent_init: init of each gate's [N, N] recurrent block (orthogonal by default).
      chrono_init: None, a time scale T (update-gate bias b_iz = log U[T, 2T], the paper's chrono
        init) or a pair (T_min, T_max) for log U[T_min, T_max]. With z the keep gate, a bias b
        gives a memory of about 1 + e^b steps.
    """

    kernel_init: Callable[..., Array] = nn.initializers.lecun_normal()
    recurrent_init: str | Callable[..., Array] = "orthogonal"
    chrono_init: float | tuple[float, float] | None = None

    def __post_init__(self) -> None:
        inits.recurrent(self.recurrent_init)
        if self.chrono_init is not None:
            inits.chrono_range(self.chrono_init)
        super().__post_init__()

    def _input_bias_init(self, key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        b = jnp.zeros(shape, dtype)
        if self.chrono_init is None:
            return b
        n = self.hidden_size
        return b.at[n : 2 * n].set(
            inits.chrono(*inits.chrono_range(self.chrono_init))(key, (n,), dtype)
        )

    def param_specs(self, d_in: int) -> dict[str, ParamSpec]:
        n, pd = self.hidden_size, self.param_dtype
        return {
            "input_kernel": ParamSpec(self.kernel_init, (d_in, 3 * n), pd),
            "input_bias": ParamSpec(self._input_bias_init, (3 * n,), pd),
            "recurrent_kernel": ParamSpec(
                inits.per_gate(inits.recurrent(self.recurrent_init), 3), (n, 3 * n), pd
            ),
            "recurrent_bias": ParamSpec(nn.initializers.zeros, (3 * n,), pd),
        }

    def cell(self, p: dict[str, Array], h: Array, x_t: Array) -> tuple[Array, Array]:
        """The class docstring's equations, gates r, z, n; y_t = h'."""
        dt, sd = self.dtype, self.state_dtype
        i_r, i_z, i_n = jnp.split(
            project(x_t, p["input_kernel"], dt, sd) + p["input_bias"].astype(sd), 3, axis=-1
        )
        h_r, h_z, h_n = jnp.split(
            project(h, p["recurrent_kernel"], dt, sd) + p["recurrent_bias"].astype(sd), 3, axis=-1
        )
        r = jax.nn.sigmoid(i_r + h_r)
        z = jax.nn.sigmoid(i_z + h_z)
        n = jnp.tanh(i_n + r * h_n)
        h = (1 - z) * n + z * h
        return h, h

    def sequence(
        self, p: dict[str, Array], x: Array, h0: Array, resets: Array | None, mask: Array | None
    ) -> tuple[Array, Array]:
        """:meth:`cell` run by :func:`scan.scan_matmul_cell`: the scan forms
        ``a = h @ W_h + b_h + [b_ir + W_ir x | b_iz + W_iz x | 0]`` and :meth:`_fused_cell` reads
        it with n's input part ``W_in x + b_in`` (see :meth:`_project`)."""
        n, sd = self.hidden_size, self.state_dtype
        W = p["input_kernel"].astype(self.dtype)
        b_i = p["input_bias"]
        # Sliced and cast once, outside the loop (see _project for the per-gate kernels).
        q = {
            "W_rz": W[:, : 2 * n],
            "W_r": W[:, :n],
            "W_z": W[:, n : 2 * n],
            "W_n": W[:, 2 * n :],
            "b_n": b_i[2 * n :].astype(sd),
        }
        # r and z read b_i added to b_h: one bias in the loop.
        bias = p["recurrent_bias"] + jnp.concatenate([b_i[: 2 * n], jnp.zeros_like(b_i[2 * n :])])
        h_T, hs = scan.scan_matmul_cell(
            self._fused_cell,
            p["recurrent_kernel"].astype(self.dtype),
            {},
            h0,
            project=self._project,
            x=time_major(x),
            project_params=q,
            bias=bias,
            resets=time_major(resets),
            mask=time_major(mask),
            unroll=self.unroll,
            elementwise=True,  # every gate acts feature by feature
            groups=self.batch_groups,
        )
        return h_T, time_major(hs)

    def _project(self, q: dict[str, Array], x: Array) -> tuple[Array, Array]:
        # r and z read W_i x + b_i added to W_h h + b_h (their b_i joins b_h in the loop); n
        # reads its input part on its own.
        sd = self.state_dtype
        gi_n = project(x, q["W_n"], self.dtype, sd) + q["b_n"]
        if x.ndim == 2:
            # One step inside the forward loop: a product per gate, which the cell reads by
            # slices, so the concatenate is never formed. XLA's CPU backend runs these N-wide
            # products faster than one 2N-wide product split over threads.
            pre = jnp.concatenate([project(x, q[k], self.dtype, sd) for k in ("W_r", "W_z")], -1)
            return pre, gi_n
        return project(x, q["W_rz"], self.dtype, sd), gi_n

    def _fused_cell(self, q: dict[str, Any], h: Array, a: Array, gi_n: Array) -> Array:
        # a = [W_ir x + W_hr h + b_r | W_iz x + W_hz h + b_z | W_hn h + b_hn]
        n = self.hidden_size
        r = jax.nn.sigmoid(a[..., :n])
        z = jax.nn.sigmoid(a[..., n : 2 * n])
        c = jnp.tanh(gi_n + r * a[..., 2 * n :])
        return (1 - z) * c + z * h
