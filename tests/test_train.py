"""The training loop: determinism, NaN guard, metrics, the command line, and in real processes
a SIGTERM-killed run resuming exactly and two processes of two host devices each giving the
one-device numbers.

One straight run (``straight``) is the reference of every comparison; a persistent compilation
cache lets the other runs, in-process or not, reuse its compiled program.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrent_zoo as rz
from recurrent_zoo.cli import main
from recurrent_zoo.tasks import TASKS
from recurrent_zoo.train import Checkpointer, NonFiniteLossError, train

NUM_STEPS = 12


def tiny_setup():
    """A 1-block LRU model with batch norm and dropout on a small teacher–student task."""
    args = argparse.Namespace(seed=0, batch_size=4, seq_len=8, nu0=0.9, teacher_hidden=4)
    spec = TASKS["teacher-student"].build(args)
    model = rz.SequenceModel(
        "lru", num_layers=1, d_model=4, out_features=1, hidden_size=4, norm="batch", dropout=0.1
    )
    tx = rz.optim.make_optimizer(1e-2, total_steps=NUM_STEPS, recurrent_lr_factor=0.5)
    return model, spec.loss_fn, spec.batch_fn, tx


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """A persistent compilation cache for this module's runs (and its subprocesses): every
    ``train`` call jit-compiles a fresh step, and the same model compiles to the same program."""
    from jax._src import compilation_cache as cc

    path = tmp_path_factory.getbasetemp() / "jax_cache"
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    old = {n: getattr(jax.config, n) for n in names}
    jax.config.update(names[0], str(path))
    jax.config.update(names[1], 0.0)
    cc.reset_cache()
    yield path
    for n, v in old.items():
        jax.config.update(n, v)
    cc.reset_cache()


@pytest.fixture(scope="module")
def setup():
    return tiny_setup()


@pytest.fixture(scope="module")
def straight(setup, tmp_path_factory):
    """NUM_STEPS straight steps, seed 0 (the reference for determinism and resume)."""
    path = tmp_path_factory.mktemp("straight") / "metrics.jsonl"
    return train(*setup, num_steps=NUM_STEPS, log_every=4, metrics_path=path, verbose=True), path


def test_run_trains_and_logs(straight):
    result, path = straight
    assert result.step == NUM_STEPS
    assert set(result.variables) == {"params", "batch_stats"}
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8, 12]
    assert all(np.isfinite(r["loss"]) for r in records)
    assert "tokens_per_s" in records[-1] and "eta_s" in records[-1]


def test_deterministic_given_a_seed(setup, straight):
    again = train(*setup, num_steps=NUM_STEPS, log_every=NUM_STEPS, verbose=False)
    jax.tree.map(np.testing.assert_array_equal, again.variables, straight[0].variables)


def test_loss_fn_may_return_extra_metrics(setup, straight):
    model, loss_fn, batch_fn, tx = setup

    def with_metrics(pred, batch):
        loss = loss_fn(pred, batch)
        return loss, {"rmse": jnp.sqrt(2 * loss)}

    result = train(
        model, with_metrics, batch_fn, tx, num_steps=NUM_STEPS, metrics_window=2, verbose=False
    )
    jax.tree.map(np.testing.assert_allclose, result.variables, straight[0].variables)
    record = result.history[-1]  # averaged over the last two steps, like the loss
    last = record["last_loss"]
    first = 2 * record["loss"] - last
    want = (np.sqrt(2 * first) + np.sqrt(2 * last)) / 2
    assert record["step"] == NUM_STEPS
    np.testing.assert_allclose(record["rmse"], want, rtol=1e-5)


TIMING = ("tokens_per_s", "eta_s", "elapsed_s", "time")


def figures(record: dict) -> dict:
    """A record without its timings: what the run itself decides."""
    return {k: v for k, v in record.items() if k not in TIMING}


def test_reported_figures_do_not_depend_on_logging_or_checkpoints(setup, straight, tmp_path):
    # The straight run logs every 4 steps and never checkpoints; this one logs every step and
    # checkpoints every 5. Their records at steps 4, 8 and 12 must be the same to the bit.
    every = train(
        *setup,
        num_steps=NUM_STEPS,
        log_every=1,
        checkpoint_dir=tmp_path,
        checkpoint_every=5,
        verbose=False,
    )
    by_step = {r["step"]: figures(r) for r in every.history}
    assert sorted(by_step) == list(range(1, NUM_STEPS + 1))
    for record in straight[0].history:
        assert figures(record) == by_step[record["step"]]
    # "loss" at step k is the mean of the losses of steps k-9 … k (the default window of 10).
    losses = np.array([by_step[k]["last_loss"] for k in sorted(by_step)])
    for k, record in by_step.items():
        np.testing.assert_allclose(record["loss"], losses[max(0, k - 10) : k].mean(), rtol=1e-6)


def test_nan_guard_stops_naming_the_step_and_keeps_the_last_checkpoint(setup, tmp_path):
    check_nan_guard(setup, tmp_path, NUM_STEPS)


def check_nan_guard(setup, tmp_path, num_steps: int) -> None:
    """NaN inputs from step 5 on: the error names step 5 and the last good checkpoint stays."""
    model, loss_fn, batch_fn, tx = setup

    def poisoned(key, step):  # NaN inputs from step 5 on (same program as the clean runs)
        batch = batch_fn(key, step)
        return {**batch, "inputs": batch["inputs"] * (jnp.nan if step >= 5 else 1.0)}

    with pytest.raises(NonFiniteLossError, match=r"at step 5.*last good checkpoint \(step 4\)"):
        train(
            model,
            loss_fn,
            poisoned,
            tx,
            num_steps=num_steps,
            checkpoint_dir=tmp_path,
            checkpoint_every=4,
            log_every=3,
            verbose=False,
        )
    ckpt = Checkpointer(tmp_path)
    assert ckpt.latest_step() == 4
    ckpt.close()


def test_cli_trains_like_the_api_and_resumes(straight, tmp_path, capsys):
    # The command line with tiny_setup's options runs the very same training.
    argv = ["train", "teacher-student", "--num-layers", "1", "--d-model", "4"]
    argv += ["--hidden-size", "4", "--norm", "batch", "--dropout", "0.1", "--lr", "1e-2"]
    argv += ["--recurrent-lr-factor", "0.5", "--steps", str(NUM_STEPS), "--batch-size", "4"]
    argv += ["--seq-len", "8", "--nu0", "0.9", "--teacher-hidden", "4", "--log-every", "4"]
    argv += ["--checkpoint-dir", str(tmp_path), "--checkpoint-every", "6"]
    assert main(argv) == 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(line) for line in straight[1].read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 6, 8, 12]
    for got, expected in zip(records[::2] + records[-1:], want):  # steps 4, 8, 12
        assert got["step"] == expected["step"]
        for name, value in figures(expected).items():
            np.testing.assert_allclose(got[name], value, rtol=1e-6)
    out = capsys.readouterr()
    assert "step 12/12" in out.err and "tok/s" in out.err and "eta" in out.err
    final = records[-1]["loss"]
    assert f"done: 12 steps, final loss {final:.4e} (mean of the last 10 steps)" in out.out
    assert main(argv) == 0  # resumes at step 12: nothing left to do
    assert "resumed from the checkpoint of step 12" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options, message",
    [
        (["--steps", "0"], "--steps must be >= 1"),
        (["--layer", "transformer"], "invalid choice: 'transformer'"),
        (["--layer-option", "radius=2"], "--layer-option radius: not an option of lru"),
        (["--layer-option", "r_min=2.0"], "r_min and r_max must satisfy"),
        (["--checkpoint-every", "5"], "--checkpoint-every needs --checkpoint-dir"),
        (["--nu0", "1.5"], "--nu0 must lie in [0, 1)"),
    ],
)
def test_cli_bad_option_exits_2_with_one_line(options, message, capsys):
    try:
        status = main(["train", "teacher-student", *options])
    except SystemExit as e:  # argparse's own errors
        status = e.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


# -- real processes ------------------------------------------------------------------------
TESTS = Path(__file__).parent
CHILD = """
import sys, time
import numpy as np
import jax
sys.path.insert(0, sys.argv[1])
from test_train import NUM_STEPS, tiny_setup
from recurrent_zoo.train import train

mode, out = sys.argv[2], sys.argv[3]
if mode == "process":  # one of two processes on localhost, CPU collectives (gloo)
    from recurrent_zoo.train import initialize_distributed
    initialize_distributed(f"localhost:{sys.argv[4]}", 2, int(sys.argv[5]))
    assert jax.process_count() == 2 and jax.device_count() == 4
model, loss_fn, batch_fn, tx = tiny_setup()
if mode == "process":
    r = train(model, loss_fn, batch_fn, tx, num_steps=NUM_STEPS, verbose=False,
              checkpoint_dir=out, checkpoint_every=6)
    leaves = jax.tree_util.tree_flatten_with_path(r.variables)[0]
    np.savez(f"{out}/variables{jax.process_index()}.npz",
             **{jax.tree_util.keystr(p): np.asarray(jax.device_get(v)) for p, v in leaves})
else:
    def slow(key, step):  # leaves the parent time to send the signal mid-run
        time.sleep(0.3)
        return batch_fn(key, step)
    r = train(model, loss_fn, slow, tx, num_steps=NUM_STEPS, checkpoint_dir=out,
              checkpoint_every=2, log_every=1, verbose=False)
    print("interrupted", r.interrupted, r.step)
"""


def _env(cache: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        **extra,
    )
    return env


def sigterm_after_checkpoint_2(child_script: str, ckpt: Path, cache: Path, num_steps: int) -> int:
    """Runs ``child_script`` in "kill" mode, sends SIGTERM once checkpoint 2 exists, and returns
    the step the child says it stopped at (checked to be a clean SIGTERM stop mid-run)."""
    child = subprocess.Popen(
        [sys.executable, "-c", child_script, str(TESTS), "kill", str(ckpt)],
        env=_env(cache),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (ckpt / "2").is_dir():  # orbax renames the finished checkpoint to its step
        assert child.poll() is None, child.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint of step 2 in time"
        time.sleep(0.02)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    _, signum, step = out.split()
    assert int(signum) == signal.SIGTERM and 2 <= int(step) < num_steps
    return int(step)


def test_sigterm_then_resume_continues_exactly(setup, straight, compilation_cache, tmp_path):
    ckpt = tmp_path / "ckpt"
    step = sigterm_after_checkpoint_2(CHILD, ckpt, compilation_cache, NUM_STEPS)
    resumed = train(*setup, num_steps=NUM_STEPS, checkpoint_dir=ckpt, verbose=False)
    assert resumed.resumed_from == int(step)  # the checkpoint written on SIGTERM
    jax.tree.map(np.testing.assert_array_equal, resumed.variables, straight[0].variables)
    # The loss window is part of the checkpoint: the last record is the straight run's.
    assert figures(resumed.history[-1]) == figures(straight[0].history[-1])


def test_two_processes_of_two_devices_give_the_one_device_numbers(
    straight, compilation_cache, tmp_path
):
    """Two processes on localhost (CPU collectives), each with two host devices: the batch is
    split over 4 devices in 2 processes, and every number matches the one-device run."""
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = str(sock.getsockname()[1])
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(TESTS), "process", str(tmp_path), port, str(i)],
            env=_env(compilation_cache, XLA_FLAGS="--xla_force_host_platform_device_count=2"),
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
    leaves = jax.tree_util.tree_flatten_with_path(straight[0].variables)[0]
    for i in range(2):
        got = np.load(tmp_path / f"variables{i}.npz")
        for path, want in leaves:
            np.testing.assert_allclose(got[jax.tree_util.keystr(path)], want, rtol=2e-4, atol=1e-6)
    ckpt = Checkpointer(tmp_path)  # both processes wrote one checkpoint together
    assert ckpt.latest_step() == NUM_STEPS
    ckpt.close()
