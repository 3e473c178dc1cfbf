"""Elman RNNs: the vanilla RNN and the LayerNorm RNN (Ba et al. 2016)."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import _checks as checks
from recurrent_zoo import initializers as inits
from recurrent_zoo import scan
from recurrent_zoo.layers.base import CellLayer, ParamSpec, project, time_major

Array = jax.Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "linear": lambda a: a,
}
# The parameters VanillaRNN.sequence hands to the scan's matmuls rather than to the cell.
_MATMUL_PARAMS = ("input_kernel", "recurrent_kernel", "bias")


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

    def param_specs(self, d_in: int) -> dict[str, ParamSpec]:
        n, pd = self.hidden_size, self.param_dtype
        specs = {
            "input_kernel": ParamSpec(self.kernel_init, (d_in, n), pd),
            "recurrent_kernel": ParamSpec(inits.recurrent(self.recurrent_init), (n, n), pd),
        }
        if self.use_bias:
            specs["bias"] = ParamSpec(nn.initializers.zeros, (n,), pd)
        return specs

    def _nonlinearity(self, p: dict[str, Array], a: Array) -> Array:
        """h' from the pre-activation a: φ(a)."""
        return ACTIVATIONS[self.activation](a)

    def cell(self, p: dict[str, Array], h: Array, x_t: Array) -> tuple[Array, Array]:
        """h' = φ(W h + U x_t + b), y_t = h' (W and U applied as h @ W, x_t @ U)."""
        dt, sd = self.dtype, self.state_dtype
        a = project(h, p["recurrent_kernel"], dt, sd) + project(x_t, p["input_kernel"], dt, sd)
        if self.use_bias:
            a = a + p["bias"].astype(sd)
        h = self._nonlinearity(p, a)
        return h, h

    def sequence(
        self, p: dict[str, Array], x: Array, h0: Array, resets: Array | None, mask: Array | None
    ) -> tuple[Array, Array]:
        """:meth:`cell` run by :func:`scan.scan_matmul_cell`: U x for all steps at once, b added
        in the loop (saving a pass over the projected inputs), W's gradient in one matmul."""
        # Time-major before projecting: x [B, T, D_in] is the smallest array to transpose, and
        # the projection is then one 2-D matmul whose rows the scan reads in order.
        h_T, hs = scan.scan_matmul_cell(
            self._fused_cell,
            p["recurrent_kernel"].astype(self.dtype),
            # The nonlinearity's own parameters: all but the matmuls' and the bias.
            {k: v for k, v in p.items() if k not in _MATMUL_PARAMS},
            h0,
            project=self._project,
            x=time_major(x),
            project_params=p["input_kernel"].astype(self.dtype),
            bias=p.get("bias"),
            resets=time_major(resets),
            mask=time_major(mask),
            unroll=self.unroll,
            elementwise=self._elementwise,
            groups=self.batch_groups,
        )
        return h_T, time_major(hs)

    def _project(self, U: Array, x: Array) -> tuple[Array, None]:
        return project(x, U, self.dtype, self.state_dtype), None

    def _fused_cell(self, q: dict[str, Array], h: Array, a: Array, u_t: None) -> Array:
        # a = h @ W + b + x_t @ U, formed by the scan
        return self._nonlinearity(q, a)


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

    def param_specs(self, d_in: int) -> dict[str, ParamSpec]:
        n, pd = self.hidden_size, self.param_dtype
        return {
            **super().param_specs(d_in),
            "ln_scale": ParamSpec(nn.initializers.ones, (n,), pd),
            "ln_bias": ParamSpec(nn.initializers.zeros, (n,), pd),
        }

    def _nonlinearity(self, p: dict[str, Array], a: Array) -> Array:
        """h' from the pre-activation a: φ(g ⊙ (a − μ(a)) / σ(a) + β)."""
        mu = jnp.mean(a, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(a - mu), axis=-1, keepdims=True)
        a = (a - mu) * jax.lax.rsqrt(var + self.epsilon)
        a = a * p["ln_scale"].astype(a.dtype) + p["ln_bias"].astype(a.dtype)
        return ACTIVATIONS[self.activation](a)
