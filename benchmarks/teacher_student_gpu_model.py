"""A model, not a measurement: the `--full` teacher–student sweep's wall time on one H100.

Run from the repository root: ``PYTHONPATH=$PWD python benchmarks/teacher_student_gpu_model.py``
(on any backend; it compiles, it does not train). For each student it compiles one training
step of the `--full` program (10 seeds × 5 learning rates, batch 128, T = 300, 64 units) and
reads two things off XLA's compiled program:

* the sequential loop iterations of one step: the trip counts of its while loops (the impulse
  response's scan forward and backward, the random number generator's rounds), which run one
  after the other whatever the device;
* the bytes the step reads and writes outside those loops (XLA's cost analysis, which counts a
  loop's body once).

A step is modelled as iterations × (an assumed latency per loop iteration on a GPU) + bytes ÷
(the H100 SXM's memory bandwidth, 3.35 TB/s). The latency per iteration is the assumption: each
iteration launches the body's kernels one after the other, a few µs each; the script gives the
figure for 5 and for 20 µs. ``recurrent-zoo bench teacher-student --full --estimate`` on a GPU
replaces all of this by the measured cost.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp

from recurrent_zoo.bench import teacher_student as bench
from recurrent_zoo.tasks import teacher_student as ts

BANDWIDTH = 3.35e12  # bytes/s, H100 SXM (HBM3)
LATENCIES = (5e-6, 20e-6)  # s per sequential loop iteration: assumed, not measured
STEPS, PROGRAMS_PER_STUDENT = 10_000, len(ts.NU0_GRID)


def step_figures(model: str) -> tuple[int, float, float]:
    """(sequential loop iterations, bytes accessed, flops) of one `--full` training step."""
    teachers, keys = bench._teachers(0, 0.99, 10)
    lrs = jnp.asarray(bench._lr_grid(model, 5))
    prog = ts._program(
        bench._student(model, 0.99, 64), teachers, keys, lrs, steps=STEPS, batch_size=128,
        length=300, eval_size=1024, method="impulse", params=None, devices=jax.devices()[:1],
    )  # fmt: skip
    compiled = prog.run_chunk.lower(
        prog.params, prog.opt_state, prog.data, jnp.int32(0), 1
    ).compile()
    trips = re.findall(r'known_trip_count":\{"n":"(\d+)"', compiled.as_text())
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return sum(map(int, trips)), float(cost["bytes accessed"]), float(cost["flops"])


def main() -> None:
    rows, totals = [], [0.0] * len(LATENCIES)
    for model in ts.STUDENTS:
        iters, nbytes, flops = step_figures(model)
        steps_s = [iters * lat + nbytes / BANDWIDTH for lat in LATENCIES]
        totals = [t + PROGRAMS_PER_STUDENT * STEPS * s for t, s in zip(totals, steps_s)]
        rows.append(
            f"| `{model}` | {iters} | {nbytes / 1e6:.0f} | {flops / 1e9:.2f} | "
            f"{nbytes / BANDWIDTH * 1e3:.3f} | "
            + " | ".join(f"{s * 1e3:.2f}" for s in steps_s)
            + " |"
        )
    lat = " | ".join(f"step at {x * 1e6:.0f} µs/iteration (ms)" for x in LATENCIES)
    print(f"| student | loop iterations per step | MB per step | GFLOP per step | "
          f"bytes ÷ bandwidth (ms) | {lat} |")  # fmt: skip
    print("| --- " * (5 + len(LATENCIES)) + "|")
    print("\n".join(rows))
    hours = ", ".join(f"{t / 3600:.2f} h at {x * 1e6:.0f} µs" for t, x in zip(totals, LATENCIES))
    print(f"\n--full sweep ({len(ts.STUDENTS)} students × {PROGRAMS_PER_STUDENT} ν0 × {STEPS:,} "
          f"steps), steps only: {hours}")  # fmt: skip


if __name__ == "__main__":
    main()
