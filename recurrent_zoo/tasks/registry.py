"""The registry of tasks that ``recurrent-zoo train TASK`` runs, which other tasks can join.

A :class:`Task` gives its command-line options and builds a :class:`TaskSpec` from the parsed
options: the data (``batch_fn(key, step)``, deterministic in its arguments), the loss, the sizes
the model needs and, optionally, an evaluation of the trained model. To add one::

    from recurrent_zoo.tasks import Task, register
    register(Task("copy", "copy a sequence", add_arguments, build))
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jax import Array


@dataclass(frozen=True)
class TaskSpec:
    """What the training loop needs from a task.

    Attributes:
      batch_fn: ``(key, step) -> batch`` (see :func:`recurrent_zoo.train.train`).
      loss_fn: ``(predictions, batch) -> scalar``.
      d_in: input features (ignored with ``vocab_size``).
      d_out: outputs per step (or per sequence with pooling).
      vocab_size: token inputs of this vocabulary (None: float inputs).
      pooling: the model's pooling (None: one output per step).
      evaluate: ``(model, variables) -> {name: value}`` scores of a trained model on held-out
        data (None: the task has none; the training loss is its measure).
      stream: ``batch_fn`` yields consecutive windows of parallel streams, trained with the
        recurrent state carried from batch to batch (``train(..., stream=True)``).
    """

    batch_fn: Callable[[Array, int], Any]
    loss_fn: Callable[[Any, dict[str, Any]], Array]
    d_in: int
    d_out: int
    vocab_size: int | None = None
    pooling: str | None = None
    evaluate: Callable[[Any, Any], dict[str, float]] | None = None
    stream: bool = False


@dataclass(frozen=True)
class Task:
    """A trainable task: ``add_arguments(parser)`` adds its options, ``build(args)`` makes the
    :class:`TaskSpec` (``args`` also holds the generic ``seed``, ``batch_size`` and ``seq_len``;
    ``seq_len`` is None unless given, and the task picks its default)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    build: Callable[[argparse.Namespace], TaskSpec]


TASKS: dict[str, Task] = {}


def supervised(
    sample: Callable[[Array], tuple[Array, Array]],
    loss: Callable[[Array, Array], Array],
    d_in: int,
    d_out: int,
    pooling: str | None = None,
) -> TaskSpec:
    """A task of fresh (inputs, targets) pairs: ``sample(key) -> (x, y)`` draws a batch (the
    same for the same key, whatever the step) and ``loss(prediction, y)`` scores the model."""

    def batch_fn(key: Array, step: int) -> dict[str, Array]:
        x, y = sample(key)
        return {"inputs": x, "targets": y}

    return TaskSpec(
        batch_fn=batch_fn,
        loss_fn=lambda prediction, batch: loss(prediction, batch["targets"]),
        d_in=d_in,
        d_out=d_out,
        pooling=pooling,
    )


def register(task: Task) -> Task:
    """Adds ``task`` to :data:`TASKS` (a name can be registered once)."""
    if task.name in TASKS:
        raise ValueError(f"a task named {task.name!r} is already registered")
    TASKS[task.name] = task
    return task


__all__ = ["TASKS", "Task", "TaskSpec", "register", "supervised"]
