"""The teacher–student task (students, vmapped training) and its bench."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import recurrent_zoo as rz
from recurrent_zoo.bench import teacher_student as bench
from recurrent_zoo.cli import main
from recurrent_zoo.tasks import teacher_student as ts


@pytest.mark.parametrize(
    "name, cls, heads, size",
    [
        ("rnn", rz.MultiHeadLinearRNN, 1, 8),
        ("block2", rz.MultiHeadLinearRNN, 4, 8),
        ("block2_128", rz.MultiHeadLinearRNN, 8, 16),
        ("crnn", rz.ComplexDiagonalRNN, None, 8),
        ("crnn_gamma", rz.ComplexDiagonalRNN, None, 8),
        ("lru", rz.LRU, None, 8),
    ],
)
def test_students_are_the_papers(name, cls, heads, size):
    s = ts.make_student(name, 0.9, hidden_size=8)
    assert type(s) is cls and s.hidden_size == size
    if heads is not None:
        assert s.num_heads == heads and s.r_min == 0.0
    else:
        assert (s.r_min, s.r_max, s.min_phase) == (0.9, 1.0, -np.pi)
        assert s.normalize == (name != "crnn")


def test_diagonal_student_init_lies_on_the_ring():
    s = ts.make_student("crnn", 0.95, hidden_size=256)
    p = s.init(jax.random.PRNGKey(0), jnp.zeros((1, 3, 1)))["params"]
    mag = np.abs(np.asarray(p["lambda_re"]) + 1j * np.asarray(p["lambda_im"]))
    assert mag.min() >= 0.95 - 1e-6 and mag.max() <= 1.0


def test_student_errors():
    with pytest.raises(ValueError, match="student"):
        ts.make_student("lstm", 0.5)
    with pytest.raises(ValueError, match="nu0"):
        ts.make_student("lru", 1.0)


def test_cosine_adam_goes_from_peak_to_1e_7():
    opt = ts.cosine_adam(0.1, steps=10)
    p = jnp.zeros(())
    state = opt.init(p)
    sizes = []
    for _ in range(11):
        u, state = opt.update(jnp.ones(()), state, p)
        sizes.append(-float(u))
    # Adam's update for a constant gradient is the learning rate itself.
    np.testing.assert_allclose(sizes[0], 0.1, rtol=1e-4)
    np.testing.assert_allclose(sizes[10], 1e-7, rtol=1e-3)
    assert all(a >= b for a, b in itertools.pairwise(sizes))


@pytest.fixture(scope="module")
def tiny():
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    teachers = [ts.make_teacher(jax.random.fold_in(k, 1), 0.5, hidden_size=4) for k in keys]
    teachers = jax.tree.map(lambda *a: jnp.stack(a), *teachers)
    student = ts.make_student("lru", 0.5, hidden_size=8)
    kw = dict(steps=40, batch_size=8, length=20, eval_size=16, chunk=20)
    both = ts.train_students(student, teachers, keys, jnp.array([3e-2, 1e-1]), **kw)
    return student, teachers, keys, kw, both


def test_training_learns_and_logs(tiny):
    _, _, _, _, r = tiny
    assert r.final_loss.shape == (2, 2) and r.curve.shape == (2, 2, 2)
    assert jax.tree.leaves(r.params)[0].shape[:2] == (2, 2)
    assert np.all(np.isfinite(r.final_loss))
    # The loss of the last chunk is well below the first chunk's.
    assert np.all(r.curve[..., -1] < 0.7 * r.curve[..., 0])


def test_vmapped_learning_rates_are_independent_runs(tiny):
    student, teachers, keys, kw, both = tiny
    alone = ts.train_students(student, teachers, keys, jnp.array([1e-1]), **kw)
    np.testing.assert_allclose(alone.final_loss[:, 0], both.final_loss[:, 1], rtol=1e-4)


def test_fft_size_is_5_smooth_and_large_enough():
    for n in (1, 7, 599, 1000, 1023):
        m = ts._fft_size(n)
        assert m >= n and m < 2 * n + 2
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        assert m == 1
    assert ts._fft_size(599) == 600


def test_causal_conv_is_the_direct_sum():
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (3, 17, 2)))
    k = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (2, 17, 4)))
    want = np.zeros((3, 17, 4))
    for t in range(17):
        for s in range(t + 1):
            want[:, t] += x[:, s] @ k[:, t - s]
    np.testing.assert_allclose(ts.causal_conv(jnp.asarray(x), jnp.asarray(k)), want, atol=1e-5)


@pytest.mark.parametrize("name", [*ts.STUDENTS, "heads"])
def test_impulse_loss_and_gradient_equal_the_scans(name):
    """(k_student − k_teacher) ∗ x is the student's error on x: same loss, same gradient."""
    teacher = ts.make_teacher(jax.random.PRNGKey(3), 0.9, hidden_size=4)
    student = ts.make_student(name, 0.9, hidden_size=8, num_heads=2)
    x, y = ts.sample_batch(jax.random.PRNGKey(4), teacher, 5, length=30)
    p = student.init(jax.random.PRNGKey(5), x[:1])["params"]
    k_teacher = ts.impulse_response(lambda z: ts.run_teacher(teacher, z), 30, 1)

    def by_scan(p):
        return ts.loss(student.apply({"params": p}, x), y)

    def by_impulse(p):
        k = ts.impulse_response(lambda z: student.apply({"params": p}, z), 30, 1)
        return ts.loss(ts.causal_conv(x, k - k_teacher), 0.0)

    (v1, g1), (v2, g2) = jax.value_and_grad(by_scan)(p), jax.value_and_grad(by_impulse)(p)
    np.testing.assert_allclose(v2, v1, rtol=1e-5)
    for name_, a in g1.items():
        np.testing.assert_allclose(g2[name_], a, rtol=1e-4, atol=1e-5 * float(jnp.abs(a).max()))


def test_training_methods_agree_where_training_is_not_chaotic(tiny):
    """At a small learning rate the two ways of computing the loss train the same students (at
    large ones float32 rounding differences grow step by step, as between the layer's own scans)."""
    student, teachers, keys, kw, _ = tiny
    runs = [
        ts.train_students(student, teachers, keys, jnp.array([3e-3]), method=m, **kw)
        for m in ts.METHODS
    ]
    np.testing.assert_allclose(runs[0].curve, runs[1].curve, rtol=1e-3)
    np.testing.assert_allclose(runs[0].final_loss, runs[1].final_loss, rtol=1e-3)


def test_given_initial_parameters_are_used(tiny):
    student, teachers, keys, kw, _ = tiny
    other = jax.vmap(lambda k: jax.random.fold_in(k, 9))(keys)
    p = jax.vmap(lambda k: student.init(k, jnp.zeros((1, 20, 1)))["params"])(other)
    r = ts.train_students(student, teachers, keys, jnp.array([1e-7]), params=p, **kw)
    # Adam moves each parameter by about the learning rate per step: 40 steps of 1e-7.
    for a, b in zip(jax.tree.leaves(r.params), jax.tree.leaves(p), strict=True):
        np.testing.assert_allclose(a[:, 0], b, atol=1e-5)
    assert not np.allclose(r.params["B_re"][:, 0], tiny[4].params["B_re"][:, 0], atol=1e-2)


def test_train_students_rejects_bad_arguments(tiny):
    student, teachers, keys, _, _ = tiny
    with pytest.raises(ValueError, match="learning_rates"):
        ts.train_students(student, teachers, keys, jnp.array([-1.0]), steps=2)
    with pytest.raises(ValueError, match="steps"):
        ts.train_students(student, teachers, keys, jnp.array([1e-2]), steps=0)
    with pytest.raises(ValueError, match="method"):
        ts.train_students(student, teachers, keys, jnp.array([1e-2]), steps=2, method="fft")


def test_grid_split_over_four_devices_equals_one():
    """``grid_checks.py`` in a process with 4 host CPU devices: the seeds split over the devices
    (padded where 4 does not divide them) train the same students as on one device, the trained
    parameters span the 4 devices, and the compiled step holds no collective."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(rz.__file__).parents[1]), env.get("PYTHONPATH", "")]
    )
    script = Path(__file__).with_name("grid_checks.py")
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("ok ") == 3, done.stdout


def test_bench_end_to_end(tmp_path, capsys):
    argv = ["bench", "teacher-student", "--out", str(tmp_path), "--models", "crnn_gamma"]
    argv += ["--nu0", "0.5", "--steps", "3", "--seeds", "2", "--batch-size", "2"]
    argv += ["--length", "12", "--eval-size", "4", "--lr-points", "2", "--hidden-size", "4"]
    assert main(argv) == 0
    record = json.loads((tmp_path / "teacher-student.json").read_text())
    assert (tmp_path / "teacher-student.png").stat().st_size > 0
    runs = record["results"]["runs"]
    assert [(r["model"], r["nu0"]) for r in runs] == [("crnn_gamma", 0.5)]
    for r in runs:
        assert np.shape(r["final_loss"]) == (2, 2) and len(r["losses"]) == 2
        assert r["best_lr"] in r["learning_rates"] and r["min"] <= r["geomean"] <= r["max"]
    out = capsys.readouterr().out
    assert "crnn_gamma" in out
    assert "estimated wall time" not in out  # only --full and --estimate time the programs


TINY_BENCH = ["--models", "rnn", "--nu0", "0.5", "0.9", "--steps", "4", "--seeds", "2"]
TINY_BENCH += ["--batch-size", "2", "--length", "12", "--eval-size", "4", "--lr-points", "1"]
TINY_BENCH += ["--hidden-size", "4"]


def test_full_bench_prints_the_wall_time_estimate_before_training(tmp_path, capsys, monkeypatch):
    seen = []
    train = ts.train_students

    def spy(*args, **kwargs):
        seen.append(capsys.readouterr().out)  # what was printed before this program trains
        return train(*args, **kwargs)

    monkeypatch.setattr(ts, "train_students", spy)
    argv = ["bench", "teacher-student", "--out", str(tmp_path), *TINY_BENCH]
    assert main([*argv, "--full"]) == 0  # the given sizes override the paper's
    assert len(seen) == 2 and "estimated wall time: " in seen[0]
    assert "2 ν0 × 1 students × 4 steps" in seen[0]
    estimate = json.loads((tmp_path / "teacher-student.json").read_text())["results"]["estimate"]
    cost = estimate["students"]["rnn"]
    assert cost["step_seconds"] > 0 and cost["devices"] == estimate["devices"] >= 1
    # Two ν0 of one student: twice its setup and its 4 steps.
    want = 2 * (cost["setup_seconds"] + 4 * cost["step_seconds"])
    assert estimate["seconds"] == pytest.approx(want)


def test_bench_estimate_only_does_not_train(tmp_path, capsys, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("--estimate trained")

    monkeypatch.setattr(ts, "train_students", no_training)
    argv = ["bench", "teacher-student", "--out", str(tmp_path), *TINY_BENCH, "--estimate"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("estimated wall time: ") and len(out.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_duration_format():
    assert bench._duration(35.4) == "35 s"
    assert bench._duration(250) == "4 min 10 s"
    assert bench._duration(3 * 3600 + 5 * 60 + 20) == "3 h 5 min"
    assert bench._duration(2 * 3600 - 10) == "2 h 0 min"


def _resolve(*argv):
    parser = bench.argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true")
    bench.add_arguments(parser)
    return bench._resolve(parser.parse_args(list(argv)))


def test_modes_and_sizes():
    quick = _resolve()
    assert quick["models"] == ["rnn", "lru"] and quick["nu0"] == [0.36, 0.92, 0.99]
    assert (quick["steps"], quick["batch_size"], quick["seeds"], quick["lr_points"]) == (
        10000,
        64,
        2,
        3,
    )
    full = _resolve("--full")
    assert full["models"] == list(ts.STUDENTS) and full["nu0"] == list(ts.NU0_GRID)
    assert (full["steps"], full["batch_size"], full["seeds"], full["lr_points"]) == (
        10000,
        128,
        10,
        5,
    )
    heads = _resolve("--mode", "heads")
    assert heads["models"] == [f"heads{h}" for h in (1, 2, 4, 8, 16, 32)] and heads["nu0"] == [0.99]
    ablation = _resolve("--mode", "ablation")
    assert ablation["models"] == list(ts.STUDENTS) and ablation["nu0"] == [0.99]
    assert bench._lr_grid("lru", 5) == pytest.approx([10**-0.5, 0.1, 10**-1.5, 0.01, 10**-2.5])
    assert bench._lr_grid("rnn", 1) == pytest.approx([1e-3 * 10**-0.5])


@pytest.mark.parametrize(
    "bad",
    [
        ["--models", "lstm"],
        ["--nu0", "1.5"],
        ["--nu0", "x"],
        ["--steps", "0"],
        ["--lr-points", "6"],
        ["--mode", "heads", "--hidden-size", "12"],
        ["--mode", "ablation", "--nu0", "0.5"],
    ],
)
def test_bad_options_exit_2(bad, tmp_path, capsys):
    argv = ["bench", "teacher-student", "--out", str(tmp_path), *bad]
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's own errors (a malformed number) exit directly
        status = e.code
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0]


def test_optax_is_the_optimizer():
    assert isinstance(ts.cosine_adam(1e-3, 5), optax.GradientTransformation)


# -- the paper's protocol -------------------------------------------------------------------------
def test_paper_protocol_grids_and_sizes():
    paper = _resolve("--protocol", "paper")
    assert paper["protocol"] == "paper" and _resolve()["protocol"] == "zoo"
    assert bench._lr_grid("block2", 5, "paper") == pytest.approx([1e-2, 10**-2.5, 1e-3, 10**-3.5])
    assert bench._lr_grid("crnn", 7, "paper", "ablation") == pytest.approx(
        [10.0**-g for g in (1, 1.5, 2, 2.5, 3, 3.5, 4)]
    )
    assert bench._lr_grid("heads8", 5, "paper", "heads") == pytest.approx(
        [0.032 / 10**0.005, 1e-2, 10**-2.5, 1e-3, 1e-4], rel=0.02
    )
    assert bench._lr_grid("lru", 5, "paper") == bench._lr_grid("lru", 5)
    # --full takes every point of the paper's grids; 7 only where a grid has 7.
    assert _resolve("--protocol", "paper", "--full")["lr_points"] == 5
    assert _resolve("--protocol", "paper", "--full", "--mode", "ablation")["lr_points"] == 7
    assert _resolve("--protocol", "paper", "--mode", "ablation", "--lr-points", "7")
    with pytest.raises(bench.UsageError, match="lr-points"):
        _resolve("--protocol", "paper", "--lr-points", "6")


def test_paper_protocol_shares_one_teacher():
    shared, keys = bench._teachers(0, 0.5, 3, shared=True)
    own, keys2 = bench._teachers(0, 0.5, 3)
    np.testing.assert_array_equal(keys, keys2)
    for leaf in shared:
        assert all(np.array_equal(leaf[0], leaf[s]) for s in (1, 2))
    assert not np.array_equal(own.A[0], own.A[1])
    np.testing.assert_array_equal(shared.A[0], own.A[0])


def test_summaries_of_both_protocols():
    final = np.array([[1e-4, 1e-2], [1e-4, 2e-2], [1e4, 1e-2]])
    lrs = [0.1, 0.01]
    # Zoo: mean of log final loss; the third seed's failure costs the first rate, not the second.
    zoo = bench._summary(final, lrs)
    assert zoo["best_lr"] == 0.01 and "mean" not in zoo
    # Paper: arithmetic mean of the training loss, NaN runs dropped.
    train = np.array([[1e-4, 1e-3], [np.nan, 1e-3], [3e-4, 1e-3]])
    paper = bench._summary(final, lrs, train)
    assert paper["best_lr"] == 0.1 and paper["mean"] == pytest.approx(2e-4)
    assert paper["losses"][1] == np.inf and paper["min"] == 1e-4
    assert paper["final_losses"] == [1e-4, 1e-4, 1e4]


@pytest.mark.parametrize("name", ["crnn", "lru"])
def test_paper_init_draws_b_c_d_as_the_papers_code(name):
    student = ts.make_student(name, 0.9, hidden_size=512)
    p = student.init(jax.random.PRNGKey(0), jnp.zeros((1, 3, 1)))["params"]
    q = ts.paper_init(name, p, jax.random.PRNGKey(1))
    assert set(q) == set(p) and all(q[k].shape == p[k].shape for k in p)
    for k in ("B_re", "B_im"):  # N(0, 1/N), the zoo's N(0, 1/2)
        assert np.var(q[k]) == pytest.approx(1 / 512, rel=0.2)
        assert np.var(p[k]) == pytest.approx(1 / 2, rel=0.2)
    for k in ("C_re", "C_im"):  # N(0, 1/d_out) = N(0, 1), the zoo's N(0, 1/N)
        assert np.var(q[k]) == pytest.approx(1.0, rel=0.2)
    assert not np.array_equal(q["D"], p["D"])
    for k in set(p) - {"B_re", "B_im", "C_re", "C_im", "D"}:  # λ (and γ) stay the zoo's draw
        np.testing.assert_array_equal(q[k], p[k])


def test_paper_init_leaves_the_other_students():
    student = ts.make_student("block2", 0.9, hidden_size=8)
    p = student.init(jax.random.PRNGKey(0), jnp.zeros((1, 3, 1)))["params"]
    assert ts.paper_init("block2", p, jax.random.PRNGKey(1)) is p


def test_bench_paper_protocol_end_to_end(tmp_path, capsys):
    argv = ["bench", "teacher-student", "--out", str(tmp_path), "--models", "lru", "rnn"]
    argv += ["--nu0", "0.5", "--steps", "4", "--seeds", "2", "--batch-size", "2"]
    argv += ["--length", "12", "--eval-size", "4", "--lr-points", "2", "--hidden-size", "4"]
    argv += ["--protocol", "paper"]
    assert main(argv) == 0
    record = json.loads((tmp_path / "teacher-student.json").read_text())
    assert record["results"]["config"]["protocol"] == "paper"
    for r in record["results"]["runs"]:
        assert r["best_lr"] in r["learning_rates"] and len(r["final_losses"]) == 2
        assert r["min"] <= r["mean"] <= r["max"]
    assert "loss (mean)" in capsys.readouterr().out
