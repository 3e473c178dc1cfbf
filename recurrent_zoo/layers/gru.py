"""Gated recurrent unit (Cho et al. 2014) in PyTorch's gate convention."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import initializers as inits
from recurrent_zoo.layers.base import CellLayer, project

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

    _elementwise = True  # every gate acts feature by feature

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

    @nn.compact
    def _params(self, d_in: int) -> dict[str, Any]:
        n, pd = self.hidden_size, self.param_dtype
        recurrent_init = inits.per_gate(inits.recurrent(self.recurrent_init), 3)
        return {
            "Wi": self.param("input_kernel", self.kernel_init, (d_in, 3 * n), pd),
            "bi": self.param("input_bias", self._input_bias_init, (3 * n,), pd),
            "Wh": self.param("recurrent_kernel", recurrent_init, (n, 3 * n), pd),
            "bh": self.param("recurrent_bias", nn.initializers.zeros, (3 * n,), pd),
        }

    def _input_params(self, p: dict[str, Any]) -> dict[str, Array]:
        n, sd = self.hidden_size, self.state_dtype
        # Sliced and cast once, outside the loop (see _inputs for the per-gate kernels).
        W = p["Wi"].astype(self.dtype)
        return {
            "W_rz": W[:, : 2 * n],
            "W_r": W[:, :n],
            "W_z": W[:, n : 2 * n],
            "W_n": W[:, 2 * n :],
            "b_n": p["bi"][2 * n :].astype(sd),
        }

    def _inputs(self, q: dict[str, Array], x: Array) -> tuple[Array, Array]:
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

    def _step_inputs(self, p: dict[str, Any], x_t: Array) -> tuple[Array, Array]:
        # One matmul by the whole kernel, then slices of its small result: a step that sliced
        # the kernel would copy it at every call.
        n, sd = self.hidden_size, self.state_dtype
        g = project(x_t, p["Wi"], self.dtype, sd)
        return g[..., : 2 * n], g[..., 2 * n :] + p["bi"][2 * n :].astype(sd)

    def _recurrent_kernel(self, p: dict[str, Any]) -> Array:
        return p["Wh"]

    def _recurrent_bias(self, p: dict[str, Any]) -> Array:
        n = self.hidden_size
        return p["bh"] + jnp.concatenate([p["bi"][: 2 * n], jnp.zeros_like(p["bi"][2 * n :])])

    def _cell(self, q: dict[str, Any], h: Array, a: Array, gi_n: Array) -> Array:
        # a = [W_ir x + W_hr h + b_r | W_iz x + W_hz h + b_z | W_hn h + b_hn]
        n = self.hidden_size
        r = jax.nn.sigmoid(a[..., :n])
        z = jax.nn.sigmoid(a[..., n : 2 * n])
        c = jnp.tanh(gi_n + r * a[..., 2 * n :])
        return (1 - z) * c + z * h
