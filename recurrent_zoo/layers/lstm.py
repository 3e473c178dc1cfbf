"""Long short-term memory (Hochreiter & Schmidhuber 1997) in PyTorch's gate convention."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import initializers as inits
from recurrent_zoo.layers.base import CellLayer, project

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

    _elementwise = True  # every gate acts feature by feature

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

    @nn.compact
    def _params(self, d_in: int) -> dict[str, Any]:
        n, pd = self.hidden_size, self.param_dtype
        recurrent_init = inits.per_gate(inits.recurrent(self.recurrent_init), 4)
        return {
            "Wi": self.param("input_kernel", self.kernel_init, (d_in, 4 * n), pd),
            "bi": self.param("input_bias", self._input_bias_init, (4 * n,), pd),
            "Wh": self.param("recurrent_kernel", recurrent_init, (n, 4 * n), pd),
            "bh": self.param("recurrent_bias", nn.initializers.zeros, (4 * n,), pd),
        }

    def _input_params(self, p: dict[str, Any]) -> Array:
        return p["Wi"].astype(self.dtype)

    def _inputs(self, Wi: Array, x: Array) -> tuple[Array, None]:
        return project(x, Wi, self.dtype, self.state_dtype), None

    def _recurrent_kernel(self, p: dict[str, Any]) -> Array:
        return p["Wh"]

    def _recurrent_bias(self, p: dict[str, Any]) -> Array:
        return p["bh"] + p["bi"]  # both enter every gate additively: one bias in the loop

    def _cell(self, q: dict[str, Any], s: tuple[Array, Array], a: Array, u_t: None):
        # a = W_i x + b_i + W_h h + b_h, gates i, f, g, o
        i, f, g, o = jnp.split(a, 4, axis=-1)
        c = jax.nn.sigmoid(f) * s[0] + jax.nn.sigmoid(i) * jnp.tanh(g)
        return c, jax.nn.sigmoid(o) * jnp.tanh(c)
