"""The vanishing-gradients bench: gradient against distance, the adding problem, the command line."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrent_zoo as rz
from recurrent_zoo.bench import vanishing_gradients as vg
from recurrent_zoo.cli import main
from recurrent_zoo.tasks import adding

N = 4


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors
        return int(e.code)


# -- gradient against distance --------------------------------------------------------------
def test_linear_rnn_gradient_decays_at_the_known_rate() -> None:
    """h_t = h_{t−1} W + x_t with W = ρQ (Q orthogonal): ∂L/∂x_{T−1−d} = W^d c, of norm ρ^d."""
    rho, T = 0.8, 80
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(N, N)))[0]
    params = {
        "input_kernel": np.eye(N, dtype=np.float32),
        "recurrent_kernel": (rho * q).astype(np.float32),
        "bias": np.zeros(N, np.float32),
    }
    layer = rz.VanillaRNN(hidden_size=N, activation="linear")
    x = jax.random.normal(jax.random.key(1), (3, T, N))
    c = jnp.asarray(np.random.default_rng(2).normal(size=N), jnp.float32)
    norms = vg.norms_by_distance(vg.input_gradients(layer, {"params": params}, x, c))
    assert norms.shape == (3, T)
    expected = rho ** np.arange(T) * float(jnp.linalg.norm(c))
    np.testing.assert_allclose(norms, np.broadcast_to(expected, norms.shape), rtol=1e-4)
    fit = vg.fit_decay(np.sqrt(np.mean(norms**2, axis=0)))
    np.testing.assert_allclose(fit["rate"], rho, rtol=1e-5)
    assert fit["vanish_distance"] == 62  # 0.8^61 = 1.2e-6, 0.8^62 = 9.8e-7
    np.testing.assert_allclose(fit["end_ratio"], rho ** (T - 1), rtol=1e-3)


def test_fit_skips_underflow_and_reports_what_never_vanishes() -> None:
    g = 0.5 ** np.arange(200.0)
    g[120:] = 0.0  # float32 underflow
    fit = vg.fit_decay(g)
    np.testing.assert_allclose(fit["rate"], 0.5, rtol=1e-9)
    assert fit["vanish_distance"] == 20  # 0.5^20 = 9.5e-7
    flat = vg.fit_decay(np.full(50, 3.0))
    assert flat["rate"] == pytest.approx(1.0) and flat["vanish_distance"] is None
    assert vg.fit_decay(np.zeros(5)) == {"rate": None, "vanish_distance": None, "end_ratio": None}


# -- the adding problem ---------------------------------------------------------------------
@pytest.mark.parametrize("T", [10, 11])
def test_adding_problem_data(T: int) -> None:
    n = 8192
    x, y = (np.asarray(a) for a in adding.sample_batch(jax.random.key(0), n, T))
    assert x.shape == (n, T, 2) and y.shape == (n, 1) and x.dtype == np.float32
    values, marker = x[..., 0], x[..., 1]
    assert values.min() >= 0.0 and values.max() < 1.0
    assert set(np.unique(marker)) == {0.0, 1.0}
    half = T // 2
    first = np.argmax(marker[:, :half], axis=1)
    second = half + np.argmax(marker[:, half:], axis=1)
    np.testing.assert_array_equal(marker[:, :half].sum(1), 1)
    np.testing.assert_array_equal(marker[:, half:].sum(1), 1)
    # Every position of each half is drawn.
    assert set(first) == set(range(half)) and set(second) == set(range(half, T))
    rows = np.arange(n)
    np.testing.assert_allclose(y[:, 0], values[rows, first] + values[rows, second], rtol=1e-6)
    # Predicting 1: MSE = Var(u₁ + u₂) = 1/6; its standard error here is 0.2/√n = 0.0022.
    np.testing.assert_allclose(np.mean((y - 1.0) ** 2), adding.BASELINE_MSE, atol=0.01)
    np.testing.assert_allclose(np.mean(y), 1.0, atol=0.02)


def test_adding_is_a_training_task() -> None:
    import argparse

    from recurrent_zoo.tasks import TASKS

    spec = TASKS["adding"].build(argparse.Namespace(batch_size=4, seq_len=6, seed=0))
    batch = spec.batch_fn(jax.random.key(0), 0)
    assert batch["inputs"].shape == (4, 6, 2) and batch["targets"].shape == (4, 1)
    assert (spec.d_in, spec.d_out, spec.pooling) == (2, 1, "last")
    assert float(spec.loss_fn(batch["targets"], batch)) == 0.0
    assert float(spec.loss_fn(jnp.ones((4, 1)), batch)) > 0.0
    assert _exit_code(["train", "adding", "--seq-len", "1"]) == 2


# -- the bench end to end -------------------------------------------------------------------
def _bench(tmp_path, *options: str) -> dict:
    argv = ["bench", "vanishing-gradients", "--out", str(tmp_path), "--seeds", "1"]
    argv += ["--batch-size", "4", "--hidden-size", "8", *options]
    assert main(argv) == 0
    return json.loads((tmp_path / "vanishing-gradients.json").read_text())["results"]


def test_bench_distance(tmp_path, capsys) -> None:
    results = _bench(tmp_path, "--mode", "distance", "--layers", "gru", "--length", "32")
    assert (tmp_path / "vanishing-gradients-distance.png").stat().st_size > 0
    rows = {r["label"]: r for r in results["distance"]["rows"]}
    assert list(rows) == ["gru", "gru chrono"] and "exploding" not in results
    assert all(len(r["profile"]) == 32 for r in rows.values())
    # Update gates biased towards keeping the state (memories of 1 … 32 steps) slow the decay.
    assert rows["gru chrono"]["rate"] > rows["gru"]["rate"] + 0.1
    assert "gru chrono" in capsys.readouterr().out


def test_exploding_runs_pair_each_config_with_and_without_clipping() -> None:
    pairs = [(c.label, c.layer, clip) for c, clip in vg.exploding_configs()]
    assert pairs[0] == ("rnn tanh orthogonal", "rnn", False)
    exploding = {label for label, layer, _ in pairs[1:] if layer == "rnn"}
    assert len(exploding) == 2
    rnn_runs = sorted((label, clip) for label, layer, clip in pairs[1:] if layer == "rnn")
    assert rnn_runs == sorted((label, clip) for label in exploding for clip in (False, True))
    # The LayerNorm twins share the exploding Elman runs' options and run without clipping.
    configs = vg.exploding_configs()
    twins = [c.options for c, _ in configs if c.layer == "ln_rnn"]
    assert twins == [c.options for c, clip in configs[1:] if c.layer == "rnn" and not clip]
    assert all(not clip for _, layer, clip in pairs if layer == "ln_rnn")


def test_bench_exploding(tmp_path, monkeypatch) -> None:
    irnn = vg.exploding_configs()[-1][0]
    monkeypatch.setattr(vg, "exploding_configs", lambda: [(irnn, False), (irnn, True)])
    options = ["--mode", "exploding", "--layers", "rnn", "--num-layers", "1"]
    results = _bench(tmp_path, *options, "--explode-length", "8", "--explode-steps", "3")
    assert (tmp_path / "vanishing-gradients-exploding.png").stat().st_size > 0
    runs = results["exploding"]["runs"]
    assert [r["clip_norm"] for r in runs] == [None, 1.0]
    for r in runs:
        logged = 3 if r["diverged_at"] is None else r["diverged_at"]
        assert r["history"]["step"] == list(range(1, logged + 1))
        assert all(g > 0 for g in r["history"]["grad_norm"])


def test_bench_adding_stops_a_layer_at_its_first_failure(tmp_path, capsys) -> None:
    options = ["--mode", "adding", "--layers", "gru", "--lengths", "8", "4", "--steps", "3"]
    options += ["--num-layers", "1"]
    results = _bench(tmp_path, *options, "--test-size", "64")
    assert (tmp_path / "vanishing-gradients-adding.png").stat().st_size > 0
    part = results["adding"]
    # Three steps cannot solve T = 4 (MSE < 0.01), so T = 8 is not run.
    assert [r["length"] for r in part["runs"] if r["label"] == "gru"] == [4]
    assert part["longest_solved"] == {"gru": None}
    assert part["runs"][0]["test_mse"] > adding.SOLVED_MSE
    assert "longest solved" in capsys.readouterr().out


@pytest.mark.parametrize(
    "bad",
    [
        ["--layers", "mh_linear"],
        ["--mode", "all"],
        ["--length", "1"],
        ["--lengths", "50", "1"],
        ["--clip-norm", "0"],
        ["--steps", "0"],
        ["--lr", "-1"],
    ],
)
def test_bad_options_exit_2(bad: list[str], tmp_path, capsys) -> None:
    assert _exit_code(["bench", "vanishing-gradients", "--out", str(tmp_path), *bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0]
