"""Streaming training (truncated backpropagation through time): the recurrent state carried
from one batch to the next.

With ``train(..., stream=True)`` the batch of step k continues the B sequences of step k − 1
(``batch_fn`` lays an endless stream out as B parallel streams, cut into windows of T steps).
The train state then holds ``carry``, the model's state after step k − 1 (the pytree the model
returns with ``return_state=True``, leaves [B, ...]); step k runs

    (carry', y) = model(x_k, initial_state=stop_gradient(carry), resets=r_k, return_state=True)

and the loss of y. The gradient is that of the window's loss with the incoming state held
constant: backpropagation stops at the batch boundary, while the forward pass sees the whole
past. ``resets`` [B, T] (True at a document or episode start) zero the state before that step,
so one stream's separate documents do not leak into each other.

The carry is part of the train state, hence of every checkpoint (a killed run resumes exactly),
and it is split over the "data" axis like the batch.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

#: The train state's entry holding the carried recurrent state.
CARRY = "carry"


def model_kwargs(carry: Any) -> dict[str, Any]:
    """The model's keywords of a streaming step: start from ``carry`` (None: the model's zero
    state) with no gradient flowing into it, and return the final state."""
    initial = None if carry is None else jax.lax.stop_gradient(carry)
    return {"initial_state": initial, "return_state": True}


def split_output(output: Any) -> tuple[Any, Any]:
    """``(carry, predictions)`` of a model called with ``return_state=True``."""
    if not isinstance(output, tuple) or len(output) != 2:
        raise TypeError(
            "stream=True needs a model that returns (state, y) when called with "
            f"return_state=True (as rz.SequenceModel does), got {type(output).__name__}"
        )
    return output


def check_carry(abstract: Any, batch_size: int) -> None:
    """Every leaf of the carried state has the batch as its leading axis (it is split over the
    devices like the batch and must line up with the next batch's rows)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
        shape = np.shape(leaf)
        if not shape or shape[0] != batch_size:
            raise ValueError(
                f"stream=True carries the model's state from batch to batch, so each of its "
                f"leaves must be [B={batch_size}, ...]; got shape {tuple(shape)} at "
                f"{jax.tree_util.keystr(path)}"
            )


def zero_carry(abstract: Any, sharding: NamedSharding) -> Any:
    """Zeros shaped like ``abstract`` (``jax.ShapeDtypeStruct``s), placed with ``sharding``."""
    return jax.jit(
        lambda: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), abstract),
        out_shardings=sharding,
    )()


def state_shardings(state: dict[str, Any], replicated: Any, batch: Any) -> dict[str, Any]:
    """Per-entry shardings of the train state: everything replicated but the carry, which is
    split along its batch axis."""
    return {k: (batch if k == CARRY else replicated) for k in state}


__all__ = ["CARRY", "check_carry", "model_kwargs", "split_output", "state_shardings", "zero_carry"]
