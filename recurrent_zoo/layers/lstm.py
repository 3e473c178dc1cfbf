"""Long short-term memory (Hochreiter & Schmidhuber 1997) in PyTorch's gate convention."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import initializers as inits
from recurrent_zoo import scan
from recurrent_zoo.layers.base import CellLayer, ParamSpec, project, time_major

Array = jax.Array


class LSTM(CellLayer):
    """LSTM with PyTorch's equations and gate order i, f, g, o (``torch.nn.LSTM``):

        i = σ(W_ii x + b_ii + W_hi h + b_hi)
        f = σ(W_if x + b_if + W_hf h + b_hf)
        g = tanh(W_ig x + b_ig + W_hg h + b_hg)
        o = σ(W_io x + b_io + W_ho h + b_ho)
        c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c'),   y_t = h_t

    Shapes: x [*batch, T, D_in] → y [*batch, T, N]; state the pair ``(c, h)``, each [*batch, N].
    Parameters: ``input_kernel`` [D_in, 4N] and ``input_bias`` [4N] (gates i, f, g, o in that
    order, as PyTorch's ``weight_ih_l0.T``), ``recurrent_kernel`` [N, 4N] and ``recurrent_bias``
    [4N].

    Attributes:
      forget_bias: initial b_if (Jozefowicz et al. 2015); the other biases start at zero.
      chrono_init: None, a time scale T (b_if = log U[T, 2T]) or a pair (T_min, T_max) for
        log U[T_min, T_max], with b_ii = −b_if (Tallec & Ollivier 2018); it replaces
        ``forget_bias``. A forget bias b gives the cell a memory of about 1 + e^b steps.
      kernel_init: init of the input kernel.
      recurrent_init: init of each gate's [N, N] recurrent block (orthogonal by default), by
        name as :class:`VanillaRNN`'s or as ``init(key, shape, dtype)``.
    """

    forget_bias: float = 1.0
    chrono_init: float | tuple[float, float] | None = None
    kernel_init: Callable[..., Array] = nn.initializers.lecun_normal()
    recurrent_init: str | Callable[..., Array] = "orthogonal"

    def __post_init__(self) -> None:
        inits.recurrent(self.recurrent_init)
        if self.chrono_init is not None:
            inits.chrono_range(self.chrono_init)
        if isinstance(self.forget_bias, bool) or not (
            isinstance(self.forget_bias, int | float) and math.isfinite(self.forget_bias)
        ):
            raise ValueError(f"forget_bias must be a finite number, got {self.forget_bias!r}")
        super().__post_init__()

    def state_shape(self, batch_shape: tuple[int, ...]) -> tuple[Any, Any]:
        s = jax.ShapeDtypeStruct((*batch_shape, self.hidden_size), self.state_dtype)
        return s, s

    def _input_bias_init(self, key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        n = self.hidden_size
        if self.chrono_init is None:
            b_f = jnp.full((n,), self.forget_bias, dtype)
        else:
            b_f = inits.chrono(*inits.chrono_range(self.chrono_init))(key, (n,), dtype)
        b_i = jnp.zeros_like(b_f) if self.chrono_init is None else -b_f
        return jnp.zeros(shape, dtype).at[:n].set(b_i).at[n : 2 * n].set(b_f)

    def param_specs(self, d_in: int) -> dict[str, ParamSpec]:
        n, pd = self.hidden_size, self.param_dtype
        return {
            "input_kernel": ParamSpec(self.kernel_init, (d_in, 4 * n), pd),
            "input_bias": ParamSpec(self._input_bias_init, (4 * n,), pd),
            "recurrent_kernel": ParamSpec(
                inits.per_gate(inits.recurrent(self.recurrent_init), 4), (n, 4 * n), pd
            ),
            "recurrent_bias": ParamSpec(nn.initializers.zeros, (4 * n,), pd),
        }

    def cell(
        self, p: dict[str, Array], s: tuple[Array, Array], x_t: Array
    ) -> tuple[tuple[Array, Array], Array]:
        """The class docstring's equations, gates i, f, g, o; state (c, h), y_t = h'."""
        dt, sd = self.dtype, self.state_dtype
        c, h = s
        a = project(x_t, p["input_kernel"], dt, sd) + p["input_bias"].astype(sd)
        a = a + project(h, p["recurrent_kernel"], dt, sd) + p["recurrent_bias"].astype(sd)
        i, f, g, o = jnp.split(a, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    def sequence(
        self,
        p: dict[str, Array],
        x: Array,
        h0: tuple[Array, Array],
        resets: Array | None,
        mask: Array | None,
    ) -> tuple[tuple[Array, Array], Array]:
        """:meth:`cell` run by :func:`scan.scan_matmul_cell`, which forms
        ``a = h @ W_h + (b_h + b_i) + W_i x`` (both biases enter every gate additively: one bias
        in the loop)."""
        h_T, hs = scan.scan_matmul_cell(
            self._fused_cell,
            p["recurrent_kernel"].astype(self.dtype),
            {},
            h0,
            project=self._project,
            x=time_major(x),
            project_params=p["input_kernel"].astype(self.dtype),
            bias=p["recurrent_bias"] + p["input_bias"],
            resets=time_major(resets),
            mask=time_major(mask),
            unroll=self.unroll,
            elementwise=True,  # every gate acts feature by feature
            groups=self.batch_groups,
        )
        return h_T, time_major(hs)

    def _project(self, W_i: Array, x: Array) -> tuple[Array, None]:
        return project(x, W_i, self.dtype, self.state_dtype), None

    def _fused_cell(self, q: dict[str, Any], s: tuple[Array, Array], a: Array, u_t: None):
        # a = W_i x + b_i + W_h h + b_h, gates i, f, g, o
        i, f, g, o = jnp.split(a, 4, axis=-1)
        c = jax.nn.sigmoid(f) * s[0] + jax.nn.sigmoid(i) * jnp.tanh(g)
        return c, jax.nn.sigmoid(o) * jnp.tanh(c)
