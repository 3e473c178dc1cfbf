"""The paper's teacher–student task: learn a linear time-invariant system with long memory.

Teacher: h_t = A h_{t−1} + B x_t, y_t = C h_t + D x_t, h_0 = 0, x_t ~ N(0, 1) i.i.d. A is dense
and real with eigenvalue magnitudes in [ν0, 1) (``initializers.eigenvalue_controlled``), so ν0
sets how long the teacher remembers.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from recurrent_zoo import initializers as inits
from recurrent_zoo import scan

Array = jax.Array

#: The paper's ν0 grid, 1 − 0.01·2^k.
NU0_GRID = (0.36, 0.68, 0.84, 0.92, 0.96, 0.98, 0.99)


class Teacher(NamedTuple):
    """A linear time-invariant system. A [n, n], B [n, d_in], C [d_out, n], D [d_out, d_in]."""

    A: Array
    B: Array
    C: Array
    D: Array


def make_teacher(
    key: Array,
    nu0: float,
    hidden_size: int = 10,
    theta0: float = math.pi,
    d_in: int = 1,
    d_out: int = 1,
) -> Teacher:
    """Draws the paper's teacher: B ~ N(0, 1), C ~ N(0, 1/n), D ~ N(0, 1)."""
    ka, kb, kc, kd = jax.random.split(key, 4)
    n = hidden_size
    return Teacher(
        A=inits.eigenvalue_controlled(nu0, theta0)(ka, (n, n)),
        B=jax.random.normal(kb, (n, d_in)),
        C=jax.random.normal(kc, (d_out, n)) / math.sqrt(n),
        D=jax.random.normal(kd, (d_out, d_in)),
    )


def run_teacher(teacher: Teacher, x: Array) -> Array:
    """y [B, T, d_out] of the teacher on x [B, T, d_in], from h_0 = 0."""
    u = jnp.einsum("btd,nd->btn", x, teacher.B)[:, :, None, :]
    h0 = jnp.zeros((x.shape[0], 1, teacher.A.shape[0]), u.dtype)
    _, hs = scan.linear_scan(teacher.A[None], u, h0, method="sequential", structure="block")
    return jnp.einsum("btn,on->bto", hs[:, :, 0], teacher.C) + jnp.einsum(
        "btd,od->bto", x, teacher.D
    )


def sample_batch(
    key: Array, teacher: Teacher, batch_size: int, length: int = 300
) -> tuple[Array, Array]:
    """A fresh batch: x ~ N(0, 1) [B, T, d_in] and the teacher's y [B, T, d_out]."""
    x = jax.random.normal(key, (batch_size, length, teacher.B.shape[1]))
    return x, run_teacher(teacher, x)


def loss(prediction: Array, target: Array) -> Array:
    """½·mean over batch, time and outputs of (ŷ − y)²."""
    return 0.5 * jnp.mean(jnp.square(prediction - target))
