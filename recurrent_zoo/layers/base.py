"""The functional core every layer shares, and the linen base class that fronts it.

A layer is a dataclass of settings plus three pure pieces, all callable on an unbound module and
all reading the parameters from one dict ``p`` keyed by the linen variable names (exactly
``variables["params"]`` of the layer):

* ``param_specs(d_in) -> {name: ParamSpec}``: every parameter's init, shape and dtype, once;
* ``cell(p, state, x_t [B, D_in]) -> (state, y_t [B, D_out])``: the reference cell, the layer's
  equations step by step (``step`` runs it);
* ``sequence(p, x [B, T, D_in], h0, resets [B, T], mask [B, T]) -> (h_T, y [B, T, D_out])``:
  the fused fast path in forward time, proven equal to a loop of ``cell`` by the tests.

The calling contract (argument checks, batch dimensions, ``reverse`` per sequence under padding,
zeroing outputs past ``lengths``) is :func:`apply_sequence` and :func:`apply_step`, pure in the
parameters; the linen ``__call__`` and ``step`` create or read the parameters and call them, and
any other front-end holding the same ``p`` calls them the same way. :func:`reference_sequence`
runs the contract's inner loop with the reference cell instead of the fused path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import _checks as checks
from recurrent_zoo import scan

Array = jax.Array
Dtype = Any
Params = dict[str, Array]


def promote_state_dtype(dtype: Dtype, param_dtype: Dtype) -> jnp.dtype:
    """The state's dtype: float32 at least, so bfloat16 compute still accumulates in float32."""
    return jax.dtypes.canonicalize_dtype(
        jnp.promote_types(jnp.float32, jnp.promote_types(dtype, param_dtype))
    )


def project(x: Array, kernel: Array, dtype: Dtype, out_dtype: Dtype) -> Array:
    """``x [..., D] @ kernel [D, K]`` in the compute dtype, returned in ``out_dtype``."""
    return scan.matmul(x, kernel.astype(dtype), out_dtype)


def time_major(a: Array | None) -> Array | None:
    """[B, T, ...] ↔ [T, B, ...] (None stays None)."""
    return None if a is None else jnp.swapaxes(a, 0, 1)


# -- parameters ----------------------------------------------------------------------------------
class Joint(NamedTuple):
    """The init of a parameter drawn together with others from one key: ``draw(key)[index]``.

    ``draw(key) -> tuple of arrays`` is called once per key for every parameter sharing it (the
    same function object), e.g. λ's two raw parameters from one draw of (ν, θ) on a ring.
    """

    draw: Callable[[Array], tuple[Array, ...]]
    index: int


class ParamSpec(NamedTuple):
    """One parameter: ``init(key, shape, dtype)`` (or a :class:`Joint` draw), shape and dtype."""

    init: Callable[..., Array] | Joint
    shape: tuple[int, ...]
    dtype: Dtype


def resolve_inits(
    specs: dict[str, ParamSpec], next_key: Callable[[], Array] | None
) -> dict[str, Callable[..., Array]]:
    """Every parameter's ``init(key, shape, dtype)``, with the :class:`Joint` draws done.

    Each distinct joint draw takes one key from ``next_key()``, in declaration order, before any
    parameter is created (so linen's key sequence, and with it the values drawn, stay as they
    were). With ``next_key=None`` (not initialising) joint parameters get zeros of the right
    shape: linen still calls inits abstractly to check shapes.
    """
    drawn: dict[Any, tuple[Array, ...] | None] = {}
    for s in specs.values():
        if isinstance(s.init, Joint) and s.init.draw not in drawn:
            drawn[s.init.draw] = None if next_key is None else s.init.draw(next_key())

    def joint(values: tuple[Array, ...] | None, index: int) -> Callable[..., Array]:
        def init(key: Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> Array:
            return jnp.zeros(shape, dtype) if values is None else values[index].astype(dtype)

        return init

    return {
        name: joint(drawn[s.init.draw], s.init.index) if isinstance(s.init, Joint) else s.init
        for name, s in specs.items()
    }


def check_features(layer: RecurrentLayer, p: Params, d: int, name: str) -> None:
    """``p``'s input parameter must take ``d`` features (its first axis), else a ValueError."""
    if layer._input_param in p:
        checks.feature_size(d, p[layer._input_param].shape[0], name)


# -- the calling contract --------------------------------------------------------------------------
def reference_sequence(
    layer: RecurrentLayer, p: Params, x: Array, h0: Any, resets: Array | None, mask: Array | None
) -> tuple[Any, Array]:
    """``layer.cell`` looped over time by :func:`scan.scan_cell`: the reference for
    ``layer.sequence``, with the same arguments and results (flat batch, forward time)."""
    tm = time_major
    h_T, ys = scan.scan_cell(
        lambda h, x_t: layer.cell(p, h, x_t), h0, tm(x), resets=tm(resets), mask=tm(mask)
    )
    return h_T, tm(ys)


def apply_sequence(
    layer: RecurrentLayer,
    p: Params,
    x: Array,
    *,
    initial_state: Any = None,
    resets: Array | None = None,
    lengths: Array | None = None,
    reverse: bool = False,
    return_state: bool = False,
    sequence: Callable[..., tuple[Any, Array]] | None = None,
) -> Array | tuple[Any, Array]:
    """Runs ``layer`` with parameters ``p`` over a sequence; the contract of the layers' call.

    Args:
      layer: the layer's settings (bound or not).
      p: its parameters, keyed by the linen names.
      x: float [*batch, T, D_in].
      initial_state: state [*batch, N] (zeros when None).
      resets: bool [*batch, T]; True at t zeroes the state before x_t is read, so each piece
        between resets runs as its own sequence. With ``reverse`` every piece runs backwards on
        its own (the last piece from ``initial_state``), so packed sequences stay apart in both
        directions.
      lengths: int [*batch] in [0, T]; steps t ≥ length are padding (zero outputs, state held).
      reverse: run time backwards (each sequence's valid part, under padding); y stays aligned
        with x.
      return_state: also return the state after the last valid step.
      sequence: the inner loop ``(p, x [B, T, D_in], h0, resets, mask) -> (h_T, y)`` on a flat
        batch in forward time; None: ``layer.sequence`` (the fused path).

    Returns:
      y [*batch, T, D_out] in ``layer.dtype``, or ``(state, y)`` when ``return_state``.
    """
    batch_shape, T, D = checks.sequence_input(x, "x")
    check_features(layer, p, D, "x")
    resets = checks.resets(resets, batch_shape, T)
    # Sharded over time (inside shard_map over the layer's sequence_axis): x is this device's
    # chunk of T steps out of shards·T, and lengths count global steps.
    shards = None
    if layer.sequence_axis is not None:
        shards = scan.bound_axis_size(layer.sequence_axis)
    T_all = T * (shards or 1)
    lengths = checks.lengths(lengths, batch_shape, T_all)
    zero = layer.initial_state(batch_shape)
    h0 = zero if initial_state is None else checks.state(initial_state, zero, "initial_state")

    B = math.prod(batch_shape)
    nb = len(batch_shape)
    flat = lambda a: None if a is None else a.reshape((B, *a.shape[nb:]))
    x_, r_, n_ = flat(x), flat(resets), flat(lengths)
    h0_ = jax.tree.map(flat, h0)

    seq = layer.sequence if sequence is None else sequence

    def run(h0: Any, x: Array, r: Array | None, m: Array | None) -> tuple[Any, Array]:
        # The inner loop in forward time, chunked for a bounded-memory backward when asked.
        return scan.remat_chunks(
            lambda h, xs: seq(p, xs[0], h, xs[1], xs[2]),
            h0,
            (x, r, m),
            layer.remat_chunk,
            time_axis=1,
        )

    if shards is not None and shards > 1:
        offset = jax.lax.axis_index(layer.sequence_axis) * T
        mask = scan.valid_mask(n_, T, time_axis=1, offset=offset)
        a, structure = layer.linear_recurrence(p)
        h_T, y = scan.sequence_parallel(
            run,
            a,
            h0_,
            x_,
            r_,
            mask,
            axis=layer.sequence_axis,
            structure=structure,
            reverse=reverse,
            time_axis=1,
            # The backward pass's pieces made of whole remat chunks.
            piece_multiple=layer.remat_chunk or 1,
        )
        if mask is not None:
            y = jnp.where(mask[..., None], y, jnp.zeros_like(y))
    else:
        # Right padding stays right padding when each valid part is reversed: one mask serves.
        mask = scan.valid_mask(n_, T, time_axis=1)
        if reverse:
            perm = scan.time_permutation(n_, T)
            if r_ is not None:
                r_ = scan.shift_resets_back(r_, mask, None, time_axis=1)
            x_ = scan.reverse_time(x_, perm, time_axis=1)
            r_ = scan.reverse_time(r_, perm, time_axis=1)
        h_T, y = run(h0_, x_, r_, mask)
        if mask is not None:
            y = jnp.where(mask[..., None], y, jnp.zeros_like(y))
        if reverse:
            y = scan.reverse_time(y, perm, time_axis=1)
    h_T, y = checks.poison_out_of_range((h_T, y), n_, T_all)

    unflat = lambda a: a.reshape((*batch_shape, *a.shape[1:]))
    h_T, y = jax.tree.map(unflat, h_T), unflat(y.astype(layer.dtype))
    return (h_T, y) if return_state else y


def apply_step(layer: RecurrentLayer, p: Params, state: Any, x_t: Array) -> tuple[Any, Array]:
    """One step of the reference cell: ``state [*batch, N], x_t [*batch, D_in] -> (state,
    y_t [*batch, D_out])``, with the same checks as :func:`apply_sequence`."""
    batch_shape, D = checks.step_input(x_t, "x_t")
    check_features(layer, p, D, "x_t")
    state = checks.state(state, layer.initial_state(batch_shape), "state")
    B = math.prod(batch_shape)
    flat = lambda a: a.reshape((B, *a.shape[len(batch_shape) :]))
    h, y = layer.cell(p, jax.tree.map(flat, state), flat(x_t))
    unflat = lambda a: a.reshape((*batch_shape, *a.shape[1:]))
    return jax.tree.map(unflat, h), unflat(y.astype(layer.dtype))


# -- the linen front-end ---------------------------------------------------------------------------
class RecurrentLayer(nn.Module):
    """Base class of the zoo's layers: the settings, the state, and the linen front-end.

    A subclass gives ``param_specs``, ``cell`` and ``sequence`` (see the module docstring);
    ``state_shape`` when its state is not one array [*batch, N], ``_input_param`` (the parameter
    whose first axis is the input feature size) and ``_complex_state``.

    Attributes:
      hidden_size: N, the size of the recurrent state.
      dtype: compute dtype of the projections (the state stays at least float32).
      param_dtype: dtype of the parameters.
      remat_chunk: k, for a bounded-memory backward pass: the sequence runs in chunks of k
        steps and the backward pass keeps the state every k steps, recomputing each chunk's
        steps (see :func:`scan.remat_chunks`); None keeps every step. Same results; one more
        forward pass.
      sequence_axis: the mesh axis that time is sharded over when the layer is called inside
        :func:`jax.shard_map` (see :func:`scan.sequence_parallel`); linear recurrences only
        (``crnn``, ``lru``, ``mh_linear``), the others refuse it. Where no map binds the axis
        (e.g. at ``init``) the call runs unsharded.
    """

    hidden_size: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    remat_chunk: int | None = None
    sequence_axis: str | None = None

    _input_param = "input_kernel"
    _complex_state = False
    _time_parallel = False  # a linear recurrence, which can be sharded over time

    def __post_init__(self) -> None:
        checks.positive_int(self.hidden_size, "hidden_size")
        checks.optional_positive_int(self.remat_chunk, "remat_chunk")
        if self.sequence_axis is not None:
            if not self._time_parallel:
                raise ValueError(
                    f"{type(self).__name__} cannot take sequence_axis={self.sequence_axis!r}: "
                    f"only linear recurrences (crnn, lru, mh_linear) shard over time; a "
                    f"nonlinear recurrence must see the whole sequence on one device"
                )
            if not isinstance(self.sequence_axis, str):
                raise TypeError(
                    f"sequence_axis must be a mesh axis name (str) or None, got "
                    f"{type(self.sequence_axis).__name__}"
                )
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

    # -- the layer, in each subclass ---------------------------------------------------------
    def param_specs(self, d_in: int) -> dict[str, ParamSpec]:  # pragma: no cover - abstract
        """Every parameter for inputs of ``d_in`` features, in creation order."""
        raise NotImplementedError

    def cell(self, p: Params, state: Any, x_t: Array) -> tuple[Any, Array]:  # pragma: no cover
        """The reference cell on a flat batch: ``(state, x_t [B, D_in]) -> (state, y_t)``."""
        raise NotImplementedError

    def sequence(
        self, p: Params, x: Array, h0: Any, resets: Array | None, mask: Array | None
    ) -> tuple[Any, Array]:
        """The fused path on a flat batch in forward time; by default the reference loop."""
        return reference_sequence(self, p, x, h0, resets, mask)

    # -- linen -------------------------------------------------------------------------------
    @nn.compact
    def create_params(self, d_in: int) -> Params:
        """Creates (init) or reads (apply) the parameters of :meth:`param_specs` as the dict
        ``p``, one ``self.param`` each in declaration order."""
        specs = self.param_specs(d_in)
        next_key = (lambda: self.make_rng("params")) if self.is_initializing() else None
        inits = resolve_inits(specs, next_key)
        return {name: self.param(name, inits[name], s.shape, s.dtype) for name, s in specs.items()}

    def _linen_params(self, d: int, name: str) -> Params:
        # An existing input parameter is checked first: `self.param` would raise a shape error
        # that names neither the argument nor the cause.
        if self.scope is not None and self.has_variable("params", self._input_param):
            checks.feature_size(d, self.get_variable("params", self._input_param).shape[0], name)
        return self.create_params(d)

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
        """Runs the layer over a sequence (see :func:`apply_sequence` for the arguments).

        Args:
          x: float [*batch, T, D_in].
          initial_state: state [*batch, N] (zeros when None).
          resets: bool [*batch, T]; True at t zeroes the state before x_t is read.
          lengths: int [*batch] in [0, T]; steps t ≥ length are padding.
          reverse: run time backwards over each sequence's valid part; y stays aligned with x.
          return_state: also return the state after the last valid step.

        Returns:
          y [*batch, T, D_out], or ``(state, y)`` when ``return_state``.
        """
        _, _, D = checks.sequence_input(x, "x")
        return apply_sequence(
            self,
            self._linen_params(D, "x"),
            x,
            initial_state=initial_state,
            resets=resets,
            lengths=lengths,
            reverse=reverse,
            return_state=return_state,
        )

    def step(self, state: Any, x_t: Array) -> tuple[Any, Array]:
        """One step: ``state [*batch, N], x_t [*batch, D_in] -> (state, y_t [*batch, D_out])``."""
        _, D = checks.step_input(x_t, "x_t")
        return apply_step(self, self._linen_params(D, "x_t"), state, x_t)


class CellLayer(RecurrentLayer):
    """Base of the layers whose fused path is :func:`scan.scan_matmul_cell` (``rnn``,
    ``ln_rnn``, ``gru``, ``lstm``): the speed settings they share.

    Attributes:
      unroll: steps unrolled per loop iteration.
      batch_groups: groups of batch rows each step runs side by side (None: two halves on the
        CPU from 16 rows up, see :func:`scan.batch_groups`); a speed setting only.
    """

    unroll: int = 1
    batch_groups: int | None = None

    def __post_init__(self) -> None:
        checks.optional_positive_int(self.batch_groups, "batch_groups")
        super().__post_init__()


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

    _time_parallel = True

    def __post_init__(self) -> None:
        checks.choice(self.scan, scan.METHODS, "scan")
        # (0 would otherwise read as None, the input's size, in `out_features or d_in`.)
        checks.optional_positive_int(self.out_features, "out_features")
        super().__post_init__()

    def linear_recurrence(self, p: Params) -> tuple[Array, scan.Structure]:  # pragma: no cover
        """The coefficient ``a`` of ``h_t = a h_{t−1} + u_t`` and its structure: a diagonal [N]
        ("diagonal"), or blocks [H, d, d] acting on the state's heads [.., H, d] ("block")."""
        raise NotImplementedError

    def _skip_spec(self, d_in: int) -> ParamSpec:
        d_out = self.out_features or d_in
        if d_out == d_in:
            return ParamSpec(nn.initializers.normal(1.0), (d_in,), self.param_dtype)
        return ParamSpec(nn.initializers.lecun_normal(), (d_in, d_out), self.param_dtype)

    def _apply_skip(self, D: Array, x: Array) -> Array:
        x = x.astype(self.dtype)
        return x * D.astype(self.dtype) if D.ndim == 1 else jnp.dot(x, D.astype(self.dtype))
