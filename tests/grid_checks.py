"""The teacher–student grid split over 4 host CPU devices: same results as on one device.

Run as a script (``python tests/grid_checks.py``): it asks XLA for 4 host devices before
importing jax, so it runs in a process of its own (``test_teacher_student`` starts one). Each
check prints one line starting "ok "; any mismatch raises, and the script exits non-zero.

``train_students`` with 4 seeds (one per device; ``lru``) and with 3 (padded to 4 with a copy of
seed 0; ``rnn``) on every device against the same call on one device: final losses, training curves and trained
parameters; the trained parameters are sharded over all 4 devices, and the compiled training
chunk holds no collective (no all-gather, all-reduce, all-to-all or collective-permute): the
devices never talk during training. Then the bench with 4 programs (2 students × 2 ν0) on the 4
devices: they run side by side, one device each, and give the one-device results.
"""

from __future__ import annotations

import os

# Tiny programs: XLA's backend optimisations would cost more than they buy (as in harness.py).
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
    + " --xla_llvm_disable_expensive_passes=true"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp
import numpy as np

from recurrent_zoo.tasks import teacher_student as ts

COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")
KW = dict(steps=6, batch_size=4, length=30, eval_size=8, chunk=3)
LRS = jnp.array([1e-2, 3e-2])


def _setup(num_seeds):
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    teachers = [ts.make_teacher(jax.random.fold_in(k, 1), 0.9, hidden_size=4) for k in keys]
    return jax.tree.map(lambda *a: jnp.stack(a), *teachers), keys


def _compiled_chunk_text(student, teachers, keys):
    prog = ts._program(
        student, teachers, keys, LRS, steps=KW["steps"], batch_size=KW["batch_size"],
        length=KW["length"], eval_size=KW["eval_size"], method="impulse", params=None,
        devices=jax.devices(),
    )  # fmt: skip
    lowered = prog.run_chunk.lower(prog.params, prog.opt_state, prog.data, jnp.int32(0), 3)
    return lowered.compile().as_text()


def main() -> None:
    devices = jax.devices()
    assert len(devices) == 4, devices
    for name, num_seeds in [("lru", 4), ("rnn", 3)]:
        student = ts.make_student(name, 0.9, hidden_size=8)
        teachers, keys = _setup(num_seeds)
        one = ts.train_students(student, teachers, keys, LRS, devices=devices[:1], **KW)
        four = ts.train_students(student, teachers, keys, LRS, **KW)  # default: every device
        np.testing.assert_allclose(four.final_loss, one.final_loss, rtol=1e-6)
        np.testing.assert_allclose(four.curve, one.curve, rtol=1e-6)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
            four.params,
            one.params,
        )
        assert four.final_loss.shape == (num_seeds, 2)
        leaves = jax.tree.leaves(four.params)
        assert all(leaf.shape[:2] == (num_seeds, 2) for leaf in leaves)
        if num_seeds == 4:  # unpadded: the parameters stay where they were trained
            spans = {len(leaf.sharding.device_set) for leaf in leaves}
            assert spans == {4}, spans
            assert all(leaf.sharding.shard_shape(leaf.shape)[0] == 1 for leaf in leaves), (
                "one seed per device"
            )
        text = _compiled_chunk_text(student, teachers, keys)
        found = [c for c in COLLECTIVES if c in text]
        assert not found, f"collectives in the training chunk: {found}"
        exact = all(
            np.array_equal(a, b) for a, b in zip(jax.tree.leaves(four), jax.tree.leaves(one))
        )
        print(f"ok {name} S={num_seeds} on 4 devices = on 1 (bitwise: {exact})")


def bench_programs_side_by_side() -> None:
    import json
    import tempfile
    from pathlib import Path

    from recurrent_zoo.bench import teacher_student as bench
    from recurrent_zoo.cli import main as cli

    args = ["--models", "rnn", "lru", "--nu0", "0.5", "0.9", "--steps", "4", "--seeds", "2"]
    args += ["--batch-size", "2", "--length", "12", "--eval-size", "4", "--lr-points", "2"]
    args += ["--hidden-size", "4"]
    with tempfile.TemporaryDirectory() as out:
        assert cli(["bench", "teacher-student", "--out", out, *args]) == 0
        runs = json.loads((Path(out) / "teacher-student.json").read_text())["results"]["runs"]
    assert [(r["model"], r["nu0"]) for r in runs] == [
        ("rnn", 0.5), ("lru", 0.5), ("rnn", 0.9), ("lru", 0.9)
    ]  # fmt: skip
    assert all(len(r["devices"]) == 1 for r in runs), [r["devices"] for r in runs]
    assert len({r["devices"][0] for r in runs}) > 1, "the programs ran on one device"
    for r in runs:
        teachers, keys = bench._teachers(0, r["nu0"], 2)
        one = ts.train_students(
            bench._student(r["model"], r["nu0"], 4), teachers, keys,
            jnp.asarray(r["learning_rates"]), steps=4, batch_size=2, length=12, eval_size=4,
            chunk=bench._chunk(4), devices=jax.devices()[:1],
        )  # fmt: skip
        np.testing.assert_allclose(r["final_loss"], one.final_loss, rtol=1e-6)
    print(f"ok 4 programs side by side on devices {sorted({r['devices'][0] for r in runs})}")


if __name__ == "__main__":
    main()
    bench_programs_side_by_side()
