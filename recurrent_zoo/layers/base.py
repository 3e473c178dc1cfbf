"""The calling contract shared by every layer: sequence call, single step and initial state.

A layer subclasses :class:`RecurrentLayer` and supplies, on a flat batch ``[B, ...]``:

* ``_sequence(x [B, T, D], h0, resets, mask) -> (h_T, y [B, T, D_out])`` in forward time;
* ``_step(h, x_t [B, D]) -> (h, y_t)``;
* ``state_shape``/``state_dtype`` (the zero state) and ``_input_param`` (the parameter whose first
  axis is the input feature size, for a clear error on a mismatched input).

Batch dimensions, argument checks, ``reverse`` (per sequence under padding) and zeroing outputs
past ``lengths`` are done here once for every layer.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import _checks as checks
from recurrent_zoo import scan

Array = jax.Array
Dtype = Any


def promote_state_dtype(dtype: Dtype, param_dtype: Dtype) -> jnp.dtype:
    """The state's dtype: float32 at least, so bfloat16 compute still accumulates in float32."""
    return jax.dtypes.canonicalize_dtype(
        jnp.promote_types(jnp.float32, jnp.promote_types(dtype, param_dtype))
    )


def project(x: Array, kernel: Array, dtype: Dtype, out_dtype: Dtype) -> Array:
    """``x [..., D] @ kernel [D, K]`` in the compute dtype, returned in ``out_dtype``."""
    return scan.matmul(x, kernel.astype(dtype), out_dtype)


class RecurrentLayer(nn.Module):
    """Base class of the zoo's layers (see the module docstring for the subclass hooks).

    Attributes:
      hidden_size: N, the size of the recurrent state.
      dtype: compute dtype of the projections (the state stays at least float32).
      param_dtype: dtype of the parameters.
    """

    hidden_size: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    _input_param = "input_kernel"
    _complex_state = False

    def __post_init__(self) -> None:
        checks.positive_int(self.hidden_size, "hidden_size")
        super().__post_init__()

    # -- state -----------------------------------------------------------------------------
    @property
    def real_dtype(self) -> jnp.dtype:
        """The real dtype the state accumulates in (float32 at least)."""
        return promote_state_dtype(self.dtype, self.param_dtype)

    @property
    def state_dtype(self) -> jnp.dtype:
        real = self.real_dtype
        return jnp.result_type(real, jnp.complex64) if self._complex_state else real

    def state_shape(self, batch_shape: tuple[int, ...]) -> Any:
        return jax.ShapeDtypeStruct((*batch_shape, self.hidden_size), self.state_dtype)

    def initial_state(self, batch_shape: tuple[int, ...] | int = ()) -> Any:
        """The zero state for inputs with leading dims ``batch_shape``; [*batch, N]."""
        if isinstance(batch_shape, int):
            batch_shape = (batch_shape,)
        return jax.tree.map(
            lambda s: jnp.zeros(s.shape, s.dtype), self.state_shape(tuple(batch_shape))
        )

    # -- checks ----------------------------------------------------------------------------
    def _check_features(self, d: int, name: str) -> None:
        if self.scope is not None and self.has_variable("params", self._input_param):
            checks.feature_size(d, self.get_variable("params", self._input_param).shape[0], name)

    def _output(self, y: Array) -> Array:
        return y.astype(self.dtype)

    # -- public API ------------------------------------------------------------------------
    def __call__(
        self,
        x: Array,
        *,
        initial_state: Any = None,
        resets: Array | None = None,
        lengths: Array | None = None,
        reverse: bool = False,
        return_state: bool = False,
    ) -> Array | tuple[Any, Array]:
        """Runs the layer over a sequence.

        Args:
          x: float [*batch, T, D_in].
          initial_state: state [*batch, N] (zeros when None).
          resets: bool [*batch, T]; True at t zeroes the state before x_t is read, so each
            piece between resets runs as its own sequence. With ``reverse`` every piece runs
            backwards on its own (the last piece from ``initial_state``), so packed sequences
            stay apart in both directions.
          lengths: int [*batch] in [0, T]; steps t ≥ length are padding (zero outputs, state held).
          reverse: run time backwards (each sequence's valid part, under padding); y stays
            aligned with x.
          return_state: also return the state after the last valid step.

        Returns:
          y [*batch, T, D_out], or ``(state, y)`` when ``return_state``.
        """
        batch_shape, T, D = checks.sequence_input(x, "x")
        self._check_features(D, "x")
        resets = checks.resets(resets, batch_shape, T)
        lengths = checks.lengths(lengths, batch_shape, T)
        zero = self.initial_state(batch_shape)
        h0 = zero if initial_state is None else checks.state(initial_state, zero, "initial_state")

        B = math.prod(batch_shape)
        nb = len(batch_shape)
        flat = lambda a: None if a is None else a.reshape((B, *a.shape[nb:]))
        x_, r_, n_ = flat(x), flat(resets), flat(lengths)
        h0_ = jax.tree.map(flat, h0)

        if reverse:
            perm = scan.time_permutation(n_, T)
            if r_ is not None:
                # A reset at t starts a piece at t. Backwards, that piece is entered at its last
                # step, just before the next piece starts: the reset moves one step earlier, and
                # one past the end of a sequence means nothing.
                r_ = jnp.concatenate([r_[:, 1:], jnp.zeros_like(r_[:, :1])], axis=1)
                if n_ is not None:
                    r_ = r_ & (jnp.arange(1, T + 1)[None, :] < n_[:, None])
            x_, r_ = (
                scan.reverse_time(x_, perm, time_axis=1),
                scan.reverse_time(r_, perm, time_axis=1),
            )
        mask = scan.valid_mask(n_, T, time_axis=1)
        h_T, y = self._sequence(x_, h0_, r_, mask)
        if mask is not None:
            y = jnp.where(mask[..., None], y, jnp.zeros_like(y))
        if reverse:
            y = scan.reverse_time(y, perm, time_axis=1)
        h_T, y = checks.poison_out_of_range((h_T, y), n_, T)

        unflat = lambda a: a.reshape((*batch_shape, *a.shape[1:]))
        h_T, y = jax.tree.map(unflat, h_T), unflat(self._output(y))
        return (h_T, y) if return_state else y

    def step(self, state: Any, x_t: Array) -> tuple[Any, Array]:
        """One step: ``state [*batch, N], x_t [*batch, D_in] -> (state, y_t [*batch, D_out])``."""
        batch_shape, D = checks.step_input(x_t, "x_t")
        self._check_features(D, "x_t")
        state = checks.state(state, self.initial_state(batch_shape), "state")
        B = math.prod(batch_shape)
        flat = lambda a: a.reshape((B, *a.shape[len(batch_shape) :]))
        h, y = self._step(jax.tree.map(flat, state), flat(x_t))
        unflat = lambda a: a.reshape((*batch_shape, *a.shape[1:]))
        return jax.tree.map(unflat, h), unflat(self._output(y))

    # -- hooks -----------------------------------------------------------------------------
    def _sequence(self, x, h0, resets, mask):  # pragma: no cover - abstract
        raise NotImplementedError

    def _step(self, h, x_t):  # pragma: no cover - abstract
        raise NotImplementedError


class CellLayer(RecurrentLayer):
    """Base of the layers run by :func:`scan.scan_matmul_cell` (``rnn``, ``ln_rnn``, ``gru``,
    ``lstm``).

    Subclasses give ``_params(d_in)`` (compact), ``_inputs(q, x)`` (the input projection of
    ``x [..., D_in]``, any number of steps: ``(pre [..., K'], u)``, the part added to the first K'
    columns of the pre-activation and a pytree the cell reads; ``q = _input_params(p)``, by default
    ``p``, is what it reads, sliced and cast once outside the loop), ``_recurrent_kernel(p)``
    (W [N, K]), optionally ``_recurrent_bias(p)`` (b [K]) and ``_cell_params(p)`` (what the cell
    reads besides W and b), and ``_cell(q, s, a, u_t) -> s`` with ``a = h @ W + b + [pre | 0]``.
    The state ``s`` is h [B, N], or a tuple of [B, N] blocks ending in h (the LSTM's ``(c, h)``,
    with ``state_shape`` overridden); the output is h. Set ``_elementwise = True`` only for a cell that acts feature by
    feature: its gradients then use the cell's diagonal Jacobians (see
    :func:`scan.scan_matmul_cell`).

    Attributes:
      unroll: steps unrolled per loop iteration.
      batch_groups: groups of batch rows each step runs side by side (None: two halves on the
        CPU from 16 rows up, the default rule of :func:`scan.batch_groups`, which
        :func:`scan.set_batch_groups_rule` replaces process-wide); a speed setting only.
    """

    unroll: int = 1
    batch_groups: int | None = None

    _elementwise = False

    def __post_init__(self) -> None:
        checks.optional_positive_int(self.batch_groups, "batch_groups")
        super().__post_init__()

    def _kernel(self, p: dict[str, Any]) -> Array:
        return self._recurrent_kernel(p).astype(self.dtype)

    def _sequence(self, x, h0, resets, mask):
        p = self._params(x.shape[-1])
        # Time-major before projecting: x [B, T, D_in] is the smallest array to transpose, and
        # the projection is then one 2-D matmul whose rows the scan reads in order.
        tm = lambda a: None if a is None else jnp.swapaxes(a, 0, 1)
        h_T, hs = scan.scan_matmul_cell(
            self._cell,
            self._kernel(p),
            self._cell_params(p),
            h0,
            project=self._inputs,
            x=tm(x),
            project_params=self._input_params(p),
            bias=self._recurrent_bias(p),
            resets=tm(resets),
            mask=tm(mask),
            unroll=self.unroll,
            elementwise=self._elementwise,
            groups=self.batch_groups,
        )
        return h_T, tm(hs)

    def _step(self, s, x_t):
        p = self._params(x_t.shape[-1])
        pre, u = self._step_inputs(p, x_t)
        s = scan.matmul_cell_step(
            self._cell, self._kernel(p), self._cell_params(p), s, u, pre=pre,
            bias=self._recurrent_bias(p),
        )  # fmt: skip
        return s, scan.output_block(s)

    def _input_params(self, p: dict[str, Any]) -> Any:
        return p

    def _step_inputs(self, p: dict[str, Any], x_t: Array) -> tuple[Array | None, Any]:
        return self._inputs(self._input_params(p), x_t)

    def _recurrent_kernel(self, p: dict[str, Any]) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def _recurrent_bias(self, p: dict[str, Any]) -> Array | None:
        return None

    def _cell_params(self, p: dict[str, Any]) -> dict[str, Any]:
        return {}

    def _cell(self, q, h, a, u_t):  # pragma: no cover - abstract
        raise NotImplementedError


class LinearReadout(RecurrentLayer):
    """Base of the linear recurrences with readout y = C h + D ⊙ x (``crnn``, ``lru``, ``mh_linear``).

    ``D`` is element-wise when the output size equals the input size, a [D_in, D_out] matrix
    otherwise.

    Attributes:
      out_features: D_out (None: the input's feature size).
      scan: scan strategy, one of ``scan.METHODS``; all give the same numbers.
      unroll: steps unrolled per loop iteration of the sequential scan.
    """

    out_features: int | None = None
    scan: str = "auto"
    unroll: int = 1

    def __post_init__(self) -> None:
        checks.choice(self.scan, scan.METHODS, "scan")
        # (0 would otherwise read as None, the input's size, in `out_features or d_in`.)
        checks.optional_positive_int(self.out_features, "out_features")
        super().__post_init__()

    def _skip(self, d_in: int) -> Array:
        d_out = self.out_features or d_in
        if d_out == d_in:
            return self.param("D", nn.initializers.normal(1.0), (d_in,), self.param_dtype)
        return self.param("D", nn.initializers.lecun_normal(), (d_in, d_out), self.param_dtype)

    def _apply_skip(self, D: Array, x: Array) -> Array:
        x = x.astype(self.dtype)
        return x * D.astype(self.dtype) if D.ndim == 1 else jnp.dot(x, D.astype(self.dtype))
