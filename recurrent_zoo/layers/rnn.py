"""Elman RNNs: the vanilla RNN and the LayerNorm RNN (Ba et al. 2016)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import _checks as checks
from recurrent_zoo import initializers as inits
from recurrent_zoo.layers.base import CellLayer, project

Array = jax.Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "linear": lambda a: a,
}


class VanillaRNN(CellLayer):
    """Elman RNN.

        h_t = φ(W h_{t−1} + U x_t + b),   y_t = h_t

    Shapes: x [*batch, T, D_in] → y [*batch, T, N]; state [*batch, N].
    Parameters: ``input_kernel`` U [D_in, N], ``recurrent_kernel`` W [N, N] (applied as h @ W),
    ``bias`` b [N].

    Attributes:
      activation: φ, one of "tanh", "sigmoid", "relu", "linear".
      recurrent_init: a name in ``rz.initializers.RECURRENT_INITS``: "orthogonal", "identity"
        (IRNN with relu), "glorot" (uniform, variance 1/N), "he" (normal, variance 2/N), "eigen"
        (the paper's eigenvalue-controlled init); or any ``init(key, shape, dtype)``, e.g.
        ``rz.initializers.identity(scale=1.1)``.
      kernel_init: init of the input kernel.
      use_bias: whether to learn b.
    """

    activation: str = "tanh"
    recurrent_init: str | Callable[..., Array] = "orthogonal"
    kernel_init: Callable[..., Array] = nn.initializers.lecun_normal()
    use_bias: bool = True

    _elementwise = True  # φ acts feature by feature

    def __post_init__(self) -> None:
        checks.choice(self.activation, tuple(ACTIVATIONS), "activation")
        inits.recurrent(self.recurrent_init)
        super().__post_init__()

    @nn.compact
    def _params(self, d_in: int) -> dict[str, Any]:
        n, pd = self.hidden_size, self.param_dtype
        p = {
            "U": self.param("input_kernel", self.kernel_init, (d_in, n), pd),
            "W": self.param("recurrent_kernel", inits.recurrent(self.recurrent_init), (n, n), pd),
            "b": self.param("bias", nn.initializers.zeros, (n,), pd) if self.use_bias else None,
        }
        p.update(self._extra_params())
        return p

    def _extra_params(self) -> dict[str, Any]:
        return {}

    def _normalize(self, p: dict[str, Any], a: Array) -> Array:
        return a

    def _input_params(self, p: dict[str, Any]) -> Array:
        return p["U"].astype(self.dtype)

    def _inputs(self, U: Array, x: Array) -> tuple[Array, None]:
        return project(x, U, self.dtype, self.state_dtype), None

    def _recurrent_kernel(self, p: dict[str, Any]) -> Array:
        return p["W"]

    def _recurrent_bias(self, p: dict[str, Any]) -> Array | None:
        return p["b"]  # added in the loop, saving a pass over the projected inputs

    def _cell_params(self, p: dict[str, Any]) -> dict[str, Any]:
        return {k: p[k] for k in ("g", "beta") if k in p}

    def _cell(self, q: dict[str, Any], h: Array, a: Array, u_t: None) -> Array:
        return ACTIVATIONS[self.activation](self._normalize(q, a))


class LayerNormRNN(VanillaRNN):
    """Elman RNN with layer normalisation of the pre-activation inside the recurrence.

        a_t = W h_{t−1} + U x_t,   h_t = φ(g ⊙ (a_t − μ(a_t)) / σ(a_t) + β),   y_t = h_t

    μ, σ: mean and standard deviation over the N features (Ba et al. 2016). Parameters as
    :class:`VanillaRNN` plus ``ln_scale`` g [N] and ``ln_bias`` β [N]; b is off by default since β
    plays its part.

    Attributes:
      epsilon: added to σ² for stability.
    """

    use_bias: bool = False
    epsilon: float = 1e-5

    _elementwise = False  # the normalisation mixes features

    def _extra_params(self) -> dict[str, Any]:
        n, pd = self.hidden_size, self.param_dtype
        return {
            "g": self.param("ln_scale", nn.initializers.ones, (n,), pd),
            "beta": self.param("ln_bias", nn.initializers.zeros, (n,), pd),
        }

    def _normalize(self, p: dict[str, Any], a: Array) -> Array:
        mu = jnp.mean(a, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(a - mu), axis=-1, keepdims=True)
        a = (a - mu) * jax.lax.rsqrt(var + self.epsilon)
        return a * p["g"].astype(a.dtype) + p["beta"].astype(a.dtype)
