"""rz.diagnostics signal propagation (against closed forms) and the signal-propagation bench."""

from __future__ import annotations

import argparse
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrent_zoo as rz
from recurrent_zoo.bench import signal_propagation as bench
from recurrent_zoo.cli import main
from recurrent_zoo.cli.usage import UsageError
from recurrent_zoo.diagnostics import (
    activity,
    gradient_by_group,
    group_mean_square,
    mean_square,
    name_groups,
)

LAM, T = 0.9, 40


def _scalar_rnn():
    """h_t = λ h_{t−1} + x_t, y_t = h_t (1 unit, A = λ, B = C = 1, D = 0) inside a Sequential."""
    model = nn.Sequential([rz.MultiHeadLinearRNN(hidden_size=1, scan="sequential")])
    x = jnp.ones((1, T, 1))
    shapes = jax.tree.map(jnp.shape, model.init(jax.random.PRNGKey(0), x)["params"])
    params = {
        "layers_0": {
            "A": jnp.full((1, 1, 1), LAM),
            "B": jnp.ones((1, 1)),
            "C": jnp.ones((1, 1)),
            "D": jnp.zeros((1,)),
        }
    }
    assert jax.tree.map(jnp.shape, params) == shapes
    return model, {"params": params}, x


def _closed_form():
    """With x_t = 1: h_t = Σ_{k<t} λ^k, ∂h_t/∂λ = Σ_{k<t} k λ^{k−1}; L = ½ mean_t h_t²."""
    t = np.arange(1, T + 1)
    h = (1 - LAM**t) / (1 - LAM)
    dh = np.array([sum(k * LAM ** (k - 1) for k in range(n)) for n in t])
    g_a = np.mean(h * dh)
    # ∂L/∂B = ∂L/∂C = mean h_t² (B = C = 1), ∂L/∂D = mean h_t·x_t.
    g_rest = (2 * np.mean(h * h) ** 2 + np.mean(h) ** 2) / 3
    return np.mean(h**2), g_a**2, g_rest


def test_activity_and_gradients_match_the_closed_form():
    model, variables, x = _scalar_rnn()
    act_ref, g_a_ref, g_rest_ref = _closed_form()
    act = activity(model, variables, x, modules=rz.RecurrentLayer)
    assert list(act) == ["layers_0"]
    np.testing.assert_allclose(float(act["layers_0"]), act_ref, rtol=1e-5)

    loss = lambda p: 0.5 * jnp.mean(model.apply({"params": p}, x) ** 2)
    grads = gradient_by_group(loss, variables["params"], name_groups(recurrence="A"))
    np.testing.assert_allclose(float(grads["recurrence"]), g_a_ref, rtol=1e-4)
    np.testing.assert_allclose(float(grads["rest"]), g_rest_ref, rtol=1e-4)


def test_group_mean_square_weights_entries_and_takes_label_trees():
    tree = {"a": 2 * jnp.ones(3), "b": {"c": jnp.full((1,), 5.0)}, "d": jnp.ones((2, 2))}
    by_path = group_mean_square(tree, name_groups(g=("a", "c")))
    np.testing.assert_allclose(float(by_path["g"]), (3 * 4 + 25) / 4)
    np.testing.assert_allclose(float(by_path["rest"]), 1.0)
    labels = {"a": "x", "b": {"c": "y"}, "d": "x"}
    by_label = group_mean_square(tree, labels)
    np.testing.assert_allclose(float(by_label["x"]), (12 + 4) / 7)
    with pytest.raises(ValueError, match="structure"):
        group_mean_square(tree, {"a": "x"})
    with pytest.raises(ValueError, match="at least one group"):
        name_groups()
    assert float(mean_square(jnp.array([3 + 4j]))) == pytest.approx(25.0)


def test_activity_selects_by_predicate_and_averages_repeated_calls():
    class Twice(nn.Module):
        @nn.compact
        def __call__(self, x):
            dense = nn.Dense(1, use_bias=False, kernel_init=nn.initializers.ones)
            return dense(dense(x))

    x = jnp.full((1, 1), 3.0)
    m = Twice()
    v = m.init(jax.random.PRNGKey(0), x)
    act = activity(m, v, x, modules=lambda mdl: isinstance(mdl, nn.Dense))
    assert float(act["Dense_0"]) == pytest.approx((9 + 9) / 2)  # both calls output 3
    with pytest.raises(TypeError, match="modules"):
        activity(m, v, x, modules=3)


def test_bench_end_to_end_shows_the_curse_of_memory(tmp_path, capsys):
    argv = ["bench", "signal-propagation", "--out", str(tmp_path), "--layers", "crnn"]
    argv += ["--norms", "none", "--T", "1", "100", "--num-sequences", "4", "--length", "64"]
    argv += ["--d-model", "8", "--d-in", "4"]
    assert main(argv) == 0
    record = json.loads((tmp_path / "signal-propagation.json").read_text())
    assert (tmp_path / "signal-propagation.png").stat().st_size > 0
    recs = record["results"]["records"]
    assert [r["T"] for r in recs] == [1.0, 100.0]
    assert all(len(r["activity"]) == 4 for r in recs)
    assert set(recs[0]["gradients"]) == {"lambda", "rest"}
    growth = record["results"]["growth"][0]
    # ν ∈ [0.99, 0.995] against ν ∈ [0, 0.5]: the λ-gradients of the complex diagonal RNN explode.
    assert growth["grad lambda"] > 100
    assert growth["activity(last layer)"] > 2
    assert "grad lambda" in capsys.readouterr().out


def test_block_outputs_include_the_residual(tmp_path):
    """Both activities are reported; the block's is E[(x + branch)²] of each residual block,
    which --protocol paper plots (the paper's quantity)."""
    import jax

    from recurrent_zoo.bench import signal_propagation as sp

    argv = ["bench", "signal-propagation", "--out", str(tmp_path), "--layers", "gru"]
    argv += ["--norms", "none", "--T", "1", "100", "--num-sequences", "4", "--length", "16"]
    argv += ["--d-model", "8", "--d-in", "4", "--protocol", "paper"]
    assert main(argv) == 0
    record = json.loads((tmp_path / "signal-propagation.json").read_text())
    assert (tmp_path / "signal-propagation.png").stat().st_size > 0
    for r in record["results"]["records"]:
        assert len(r["block_activity"]) == 4 and r["block_activity"] != r["activity"]
    assert "block output(last)" in record["results"]["growth"][0]

    model = sp.make_model("gru", 10.0, "none", 8, 4)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 16, 4))
    variables = model.init(jax.random.PRNGKey(1), x)
    m = sp.measure(model, variables, x, "gru", "none")
    _, state = model.apply(variables, x, capture_intermediates=True)
    inter = state["intermediates"]
    outs = [inter[k]["__call__"][0] for k in sorted(inter) if k.startswith("blocks")]
    outs = [o[-1] if isinstance(o, tuple) else o for o in outs]  # (state, y) or y
    want = [float(jnp.mean(jnp.square(o))) for o in outs]
    np.testing.assert_allclose(m["block_activity"], want, rtol=1e-5)


@pytest.mark.parametrize(
    "bad",
    [
        ["--layers", "transformer"],
        ["--T", "0.5"],
        ["--rho", "1"],
        ["--norms", ""],
        ["--length", "1"],
    ],
)
def test_bad_options_exit_2(bad, tmp_path, capsys):
    assert main(["bench", "signal-propagation", "--out", str(tmp_path), *bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0]


def test_wikipedia_inputs_or_a_clear_usage_error():
    args = argparse.Namespace(inputs="wikipedia", seed=0)
    cfg = {"num_sequences": 2, "length": 16, "d_in": 32}
    if not _has_default_model():
        with pytest.raises(UsageError, match="wikipedia"):
            bench._inputs(args, cfg)
        return
    x = bench._inputs(args, cfg)
    assert x.shape[:2] == (2, 16) and cfg["d_in"] == x.shape[2]


def _has_default_model() -> bool:
    try:
        from recurrent_zoo.embeddings import resolve_model

        return resolve_model(None).exists()
    except Exception:
        return False
