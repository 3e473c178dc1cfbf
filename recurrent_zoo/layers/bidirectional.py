"""Bidirectional wrapper around two zoo layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from recurrent_zoo import _checks as checks

Array = jax.Array
MERGES = ("concat", "sum")


class Bidirectional(nn.Module):
    """Runs ``forward`` over time and ``backward`` over reversed time, then merges.

        y = concat(y_fwd, y_bwd) (merge="concat") or y_fwd + y_bwd (merge="sum")

    Padding reverses each sequence's valid part only, so y_bwd stays aligned with x. The state is
    the pair ``(state_fwd, state_bwd)``.

    Attributes:
      forward: layer run forwards.
      backward: layer run with ``reverse=True``.
      merge: "concat" or "sum".
    """

    forward: nn.Module
    backward: nn.Module
    merge: str = "concat"

    def __post_init__(self) -> None:
        checks.choice(self.merge, MERGES, "merge")
        if self.backward is self.forward:
            # One module object given twice would be bound once and silently share its weights.
            object.__setattr__(self, "backward", self.forward.clone())
        super().__post_init__()

    def initial_state(self, batch_shape: tuple[int, ...] | int = ()) -> tuple[Any, Any]:
        return self.forward.initial_state(batch_shape), self.backward.initial_state(batch_shape)

    def __call__(
        self,
        x: Array,
        *,
        initial_state: tuple[Any, Any] | None = None,
        resets: Array | None = None,
        lengths: Array | None = None,
        return_state: bool = False,
    ) -> Array | tuple[tuple[Any, Any], Array]:
        """x [*batch, T, D_in] → y [*batch, T, D_fwd + D_bwd] (concat) or [*batch, T, D_out] (sum)."""
        return run_bidirectional(
            self.forward,
            self.backward,
            self.merge,
            x,
            initial_state=initial_state,
            resets=resets,
            lengths=lengths,
            return_state=return_state,
        )


def run_bidirectional(
    forward: Callable[..., tuple[Any, Array]],
    backward: Callable[..., tuple[Any, Array]],
    merge: str,
    x: Array,
    *,
    initial_state: tuple[Any, Any] | None = None,
    resets: Array | None = None,
    lengths: Array | None = None,
    return_state: bool = False,
) -> Array | tuple[tuple[Any, Any], Array]:
    """The wrapper's data path, for any front-end: ``forward`` and ``backward`` are the two
    layers' calls (the layers' keywords), the second run with ``reverse=True``; ``merge`` as
    :class:`Bidirectional`'s."""
    if initial_state is None:
        s_f = s_b = None
    elif isinstance(initial_state, tuple | list) and len(initial_state) == 2:
        s_f, s_b = initial_state
    else:
        raise ValueError(
            f"initial_state must be a pair (forward_state, backward_state), got {type(initial_state)}"
        )
    kw = dict(resets=resets, lengths=lengths, return_state=True)
    h_f, y_f = forward(x, initial_state=s_f, **kw)
    h_b, y_b = backward(x, initial_state=s_b, reverse=True, **kw)
    if merge == "concat":
        y = jnp.concatenate([y_f, y_b], axis=-1)
    else:
        if y_f.shape != y_b.shape:
            raise ValueError(
                f"merge='sum' needs equal output shapes, got forward {y_f.shape} and "
                f"backward {y_b.shape}"
            )
        y = y_f + y_b
    return ((h_f, h_b), y) if return_state else y
