"""Wall time per training step of the teacher–student grid split over 4 host CPU devices, against
the same program on 1 of them.

Run from the repository root: ``PYTHONPATH=$PWD python benchmarks/teacher_student_devices.py``.
XLA is asked for 4 host CPU devices before JAX starts; ``train_students``' program is timed by
``ts.time_steps`` on ``devices[:1]`` and on all 4, interleaved, and the table gives medians.
On a CPU the 4 "devices" share the machine's cores, so this checks what the split costs or gains
here, not what 4 accelerators would give.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from recurrent_zoo.bench import teacher_student as bench
from recurrent_zoo.tasks import teacher_student as ts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["rnn", "lru"])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--lr-points", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    devices = jax.devices()
    teachers, keys = bench._teachers(0, 0.96, args.seeds)
    times = {(m, n): [] for m in args.models for n in (1, len(devices))}
    loads = []
    for _ in range(args.repeats):
        for model in args.models:
            lrs = jnp.asarray(bench._lr_grid(model, args.lr_points))
            for n in (1, len(devices)):
                loads.append(os.getloadavg()[0])
                cost = ts.time_steps(
                    bench._student(model, 0.96, 64), teachers, keys, lrs, steps=3000,
                    batch_size=args.batch_size, length=300, eval_size=8, chunk=25, repeats=3,
                    devices=devices[:n],
                )  # fmt: skip
                times[model, n].append(cost.step_seconds)
    print(f"{args.seeds} seeds × {args.lr_points} learning rates, batch {args.batch_size}, "
          f"T = 300, 64 units; {os.cpu_count()} CPU cores; load average (1 min) "
          f"{min(loads):.1f}–{max(loads):.1f}; wall ms per step, median of {args.repeats}")  # fmt: skip
    print(f"| student | 1 device | {len(devices)} devices | speed-up |")
    print("| --- | --- | --- | --- |")
    for model in args.models:
        one, many = np.median(times[model, 1]), np.median(times[model, len(devices)])
        print(f"| `{model}` | {one * 1e3:.2f} | {many * 1e3:.2f} | {one / many:.2f}× |")


if __name__ == "__main__":
    main()
