"""CPU time per training step of `train_students`, before (method="scan") and after ("impulse").

Run from the repository root: ``PYTHONPATH=$PWD python benchmarks/teacher_student_speed.py``.
Both methods run in one process, interleaved, on the bench's own students and grids; each
measurement times chunks of steps after the first (compiled) one, and the table gives medians.
"""

from __future__ import annotations

import argparse
import os
import time

import jax.numpy as jnp
import numpy as np

from recurrent_zoo.bench import teacher_student as bench
from recurrent_zoo.tasks import teacher_student as ts


def step_seconds(model, method, *, seeds, lr_points, batch, chunk, chunks=4, nu0=0.96):
    """CPU seconds per training step of all seeds × learning rates, one per timed chunk."""
    teachers, keys = bench._teachers(0, nu0, seeds)
    lrs = jnp.asarray(bench._lr_grid(model, lr_points))
    stamps = []

    def progress(starts, desc, total):
        for s in starts:
            stamps.append(time.process_time())
            yield s
        stamps.append(time.process_time())

    ts.train_students(
        bench._student(model, nu0, 64), teachers, keys, lrs, steps=chunk * (chunks + 1),
        batch_size=batch, eval_size=8, chunk=chunk, method=method, progress=progress,
    )  # fmt: skip
    return list(np.diff(stamps)[1:] / chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["rnn", "block2", "lru"])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--lr-points", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=["scan", "impulse"])
    args = parser.parse_args()
    size = dict(seeds=args.seeds, lr_points=args.lr_points, batch=args.batch_size)
    chunks = {"scan": 20, "impulse": 100}
    times = {(m, k): [] for m in args.models for k in args.methods}
    loads = []
    for _ in range(args.repeats):
        for model in args.models:
            for method in args.methods:
                loads.append(os.getloadavg()[0])
                times[model, method] += step_seconds(model, method, chunk=chunks[method], **size)
    copies = args.seeds * args.lr_points
    print(f"{copies} copies ({args.seeds} seeds × {args.lr_points} learning rates), batch "
          f"{args.batch_size}; load average (1 min) {min(loads):.1f}–{max(loads):.1f}")  # fmt: skip
    print("| student | " + " | ".join(f"{k} ms/step" for k in args.methods) + " | ratio |")
    print("| --- " * (len(args.methods) + 2) + "|")
    for model in args.models:
        ms = [1e3 * float(np.median(times[model, k])) for k in args.methods]
        ratio = f"{ms[0] / ms[-1]:.1f}×" if len(ms) > 1 else ""
        print(f"| {model} | " + " | ".join(f"{v:.2f}" for v in ms) + f" | {ratio} |")


if __name__ == "__main__":
    main()
