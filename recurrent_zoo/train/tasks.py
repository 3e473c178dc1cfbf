"""Tasks that ``recurrent-zoo train TASK`` can run, in a registry other tasks can join.

A :class:`Task` gives its command-line options and builds a :class:`TaskSpec` from the parsed
options: the data (``batch_fn(key, step)``, deterministic in its arguments), the loss and the
sizes the model needs. To add one::

    from recurrent_zoo.train.tasks import Task, register
    register(Task("copy", "copy a sequence", add_arguments, build))
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax

Array = jax.Array


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
    """

    batch_fn: Callable[[Array, int], Any]
    loss_fn: Callable[[Any, dict[str, Any]], Array]
    d_in: int
    d_out: int
    vocab_size: int | None = None
    pooling: str | None = None


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


def register(task: Task) -> Task:
    """Adds ``task`` to :data:`TASKS` (a name can be registered once)."""
    if task.name in TASKS:
        raise ValueError(f"a task named {task.name!r} is already registered")
    TASKS[task.name] = task
    return task


# -- the paper's teacher–student task --------------------------------------------------------
def _teacher_student_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nu0", type=float, default=0.99, help="teacher's minimum |eigenvalue| (default 0.99)"
    )
    p.add_argument(
        "--teacher-hidden", type=int, default=10, help="teacher's state size (default 10)"
    )


def _teacher_student_build(args: argparse.Namespace) -> TaskSpec:
    from recurrent_zoo.tasks import teacher_student as ts

    if not 0.0 <= args.nu0 < 1.0:
        raise ValueError(f"--nu0 must lie in [0, 1), got {args.nu0}")
    if args.teacher_hidden < 1:
        raise ValueError(f"--teacher-hidden must be >= 1, got {args.teacher_hidden}")
    # The teacher has its own stream, apart from the loop's (init, data, dropout) keys.
    teacher = ts.make_teacher(
        jax.random.fold_in(jax.random.key(args.seed), 0x7EAC4E2), args.nu0, args.teacher_hidden
    )
    length = args.seq_len or 300
    sample = jax.jit(lambda key: ts.sample_batch(key, teacher, args.batch_size, length))

    def batch_fn(key: Array, step: int) -> dict[str, Array]:
        x, y = sample(key)
        return {"inputs": x, "targets": y}

    return TaskSpec(
        batch_fn=batch_fn,
        loss_fn=lambda pred, batch: ts.loss(pred, batch["targets"]),
        d_in=1,
        d_out=1,
    )


register(
    Task(
        "teacher-student",
        "learn a linear teacher with memory ν0 from fresh N(0, 1) inputs (paper Fig. 3)",
        _teacher_student_arguments,
        _teacher_student_build,
    )
)


# -- the adding problem ------------------------------------------------------------------------
def _adding_arguments(p: argparse.ArgumentParser) -> None:
    del p  # the generic --seq-len and --batch-size are all it takes


def adding_spec(batch_size: int, length: int) -> TaskSpec:
    """The adding problem (:mod:`recurrent_zoo.tasks.adding`) as a training task: inputs [B, T, 2],
    one output per sequence (pooling "last"), loss the MSE against the sum of the marked values."""
    from recurrent_zoo.tasks import adding

    if length < 2:
        raise ValueError(f"--seq-len must be >= 2 for the adding problem, got {length}")

    def batch_fn(key: Array, step: int) -> dict[str, Array]:
        x, y = adding.sample_batch(key, batch_size, length)
        return {"inputs": x, "targets": y}

    return TaskSpec(
        batch_fn=batch_fn,
        loss_fn=lambda pred, batch: adding.mse(pred, batch["targets"]),
        d_in=2,
        d_out=1,
        pooling="last",
    )


register(
    Task(
        "adding",
        "the adding problem: sum the two marked values of a length-T sequence (baseline MSE 1/6)",
        _adding_arguments,
        lambda args: adding_spec(args.batch_size, args.seq_len or 100),
    )
)
