"""The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015): memory over T steps.

Each sequence has two channels. Channel 0 holds values u_t ~ U[0, 1]; channel 1 is a marker, 1
at exactly two steps (one drawn uniformly in the first half [0, ⌊T/2⌋), one in the second
[⌊T/2⌋, T)) and 0 elsewhere. The target, read after the last step, is the sum of the two marked
values. Predicting the mean sum, 1, scores the baseline MSE Var(u₁ + u₂) = 2/12 = 1/6 ≈ 0.167; a
model that remembers the first marked value for at least T/2 steps can get to 0.

Registered as the training task ``adding`` (``recurrent-zoo train adding``; :func:`adding_spec`).
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

from recurrent_zoo.tasks.registry import Task, TaskSpec, register, supervised

Array = jax.Array

#: MSE of always predicting 1, the mean of the target.
BASELINE_MSE = 1.0 / 6.0
#: The usual threshold for "solved" (Le et al. 2015 and later work).
SOLVED_MSE = 0.01


# Jitted once per (batch_size, length): every run of that size shares the compiled sampler.
@functools.partial(jax.jit, static_argnames=("batch_size", "length"))
def sample_batch(key: Array, batch_size: int, length: int) -> tuple[Array, Array]:
    """A batch of the adding problem: x float32 [B, T, 2] and the target y float32 [B, 1]."""
    if length < 2:
        raise ValueError(f"the adding problem needs length >= 2 (two halves), got {length}")
    k_values, k_first, k_second = jax.random.split(key, 3)
    half = length // 2
    values = jax.random.uniform(k_values, (batch_size, length))
    first = jax.random.randint(k_first, (batch_size, 1), 0, half)
    second = jax.random.randint(k_second, (batch_size, 1), half, length)
    t = jnp.arange(length)
    marker = ((t == first) | (t == second)).astype(values.dtype)
    x = jnp.stack([values, marker], axis=-1)
    return x, jnp.sum(values * marker, axis=-1, keepdims=True)


def mse(prediction: Array, target: Array) -> Array:
    """Mean squared error (not halved, so that it compares with :data:`BASELINE_MSE`)."""
    return jnp.mean(jnp.square(prediction - target))


def adding_spec(batch_size: int, length: int) -> TaskSpec:
    """The adding problem as a training task: inputs [B, T, 2], one output per sequence (pooling
    "last"), loss the MSE against the sum of the marked values."""
    if length < 2:
        raise ValueError(f"--seq-len must be >= 2 for the adding problem, got {length}")
    return supervised(
        lambda key: sample_batch(key, batch_size, length), mse, d_in=2, d_out=1, pooling="last"
    )


def _arguments(p: argparse.ArgumentParser) -> None:
    del p  # the generic --seq-len and --batch-size are all it takes


TASK = register(
    Task(
        "adding",
        "the adding problem: sum the two marked values of a length-T sequence (baseline MSE 1/6)",
        _arguments,
        lambda args: adding_spec(args.batch_size, args.seq_len or 100),
    )
)
