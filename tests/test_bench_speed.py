"""``recurrent-zoo bench speed``: every peer computes our layer's function; the bench runs end to end."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrent_zoo as rz
from recurrent_zoo import cli, scan
from recurrent_zoo.bench import _peers, speed

B, T, D, N = 2, 6, 3, 4


def _layer(name: str) -> rz.layers.base.RecurrentLayer:
    kw = {"num_heads": 2} if name == "mh_linear" else {}
    return rz.make_layer(name, hidden_size=N, **kw)


@pytest.fixture(scope="module")
def x() -> jax.Array:
    return jax.random.normal(jax.random.key(0), (B, T, D))


def _loss(apply):
    return lambda q, x: jnp.mean(jnp.square(apply(q, x)))


PAIRS = [
    (layer, peer) for layer, ps in _peers.PEERS.items() for peer in ps if peer in _peers.BUILDERS
]


@pytest.mark.parametrize(("layer_name", "peer"), PAIRS)
def test_peer_computes_the_layer(layer_name: str, peer: str, x: jax.Array) -> None:
    """Same outputs and, being the same function of x, the same input gradient."""
    layer = _layer(layer_name)
    v = layer.init(jax.random.key(1), x)
    q, apply = _peers.build(peer, layer, v["params"])

    @jax.jit
    def both(q, v, x):
        return (
            (apply(q, x), layer.apply(v, x)),
            (jax.grad(_loss(apply), 1)(q, x), jax.grad(_loss(layer.apply), 1)(v, x)),
            (jax.grad(_loss(apply))(q, x), jax.grad(_loss(layer.apply))(v, x)["params"]),
        )

    (y_peer, y), (gx_peer, gx), (g_peer, g) = both(q, v, x)
    np.testing.assert_allclose(y_peer, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx_peer, gx, rtol=1e-4, atol=1e-5)
    if peer == "reference":
        # The paper's parametrisation and ours: the same parameter gradients, up to layout.
        for k in set(q) & set(g):
            expected = g[k].T if k[0] in "BC" else g[k]
            np.testing.assert_allclose(g_peer[k], expected, rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("layer_name", ["rnn", "gru"])
def test_torch_peer_computes_the_layer(layer_name: str, x: jax.Array) -> None:
    pytest.importorskip("torch")  # an optional peer, never a dependency
    layer = _layer(layer_name)
    v = layer.init(jax.random.key(3), x)
    module = _peers.torch_peer(layer, v["params"])
    fwd, fwd_bwd = _peers.torch_callables(module, x)
    np.testing.assert_allclose(fwd().numpy(), layer.apply(v, x), rtol=1e-5, atol=1e-5)
    fwd_bwd()
    assert module.weight_hh_l0.grad is not None


def test_ideal_pieces_are_the_layers_shapes(x: jax.Array) -> None:
    layer = rz.LRU(hidden_size=N)
    v = layer.init(jax.random.key(4), x)
    pieces = _peers.ideal_pieces(layer, v["params"], x)
    shapes = [jax.eval_shape(fn, *args).shape for _, (fn, args) in pieces]
    assert shapes == [(B, T, 2 * N), (B, T, 2 * N), (B, T, D)]


def test_complex_diagonal_scan_matches_the_complex_recurrence() -> None:
    """The real-arithmetic kernel and its VJP against complex arithmetic run step by step."""
    k = jax.random.split(jax.random.key(5), 4)
    a = jax.lax.complex(0.9 * jax.random.uniform(k[0], (N,)), 0.3 * jax.random.normal(k[1], (N,)))
    u = jax.random.normal(k[2], (T, B, 2 * N))
    h0 = jax.random.normal(k[3], (B, 2 * N))
    resets = jnp.zeros((T, B), bool).at[2, 0].set(True).at[4, 1].set(True)
    mask = jnp.arange(T)[:, None] < jnp.array([T, 4])[None, :]

    def complex_loop(a, u, h0):
        h = jax.lax.complex(h0[:, :N], h0[:, N:])
        hs = []
        for t in range(T):
            new = jnp.where(resets[t][:, None], 0, a * h) + jax.lax.complex(
                u[t, :, :N], u[t, :, N:]
            )
            h = jnp.where(mask[t][:, None], new, h)
            hs.append(jnp.concatenate([h.real, h.imag], -1))
        return jnp.stack(hs)

    def kernel(a, u, h0):
        return scan.complex_diagonal_scan(a.real, a.imag, u, h0, resets=resets, mask=mask)[1]

    kernel, complex_loop = jax.jit(kernel), jax.jit(complex_loop)
    np.testing.assert_allclose(kernel(a, u, h0), complex_loop(a, u, h0), rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda *args: jnp.sum(jnp.sin(f(*args)))
    g1 = jax.jit(jax.grad(loss(kernel), argnums=(0, 1, 2)))(a, u, h0)
    g2 = jax.jit(jax.grad(loss(complex_loop), argnums=(0, 1, 2)))(a, u, h0)
    for p, q in zip(g1, g2):
        np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-5)


def test_bench_speed_end_to_end(tmp_path, capsys) -> None:
    code = cli.main(
        ["bench", "speed", "--out", str(tmp_path), "--layers", "lru", "rnn", "--lengths", "4",
         "8", "--batch", "2", "--hidden", "4", "--features", "3", "--repeats", "1",
         "--peers", "flax", "ideal"]
    )  # fmt: skip
    assert code == 0
    record = json.loads((tmp_path / "speed.json").read_text())
    assert (tmp_path / "speed.png").stat().st_size > 0
    res = record["results"]
    assert {(r["layer"], r["T"]) for r in res["rows"]} == {
        (name, t) for name in ("lru", "rnn") for t in (4, 8)
    }
    assert {r["peer"] for r in res["ratios"]} == {"flax", "ideal"}
    for r in res["rows"]:
        assert (
            r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0 and r["compile_s"] > 0 and r["fwd_bwd_MB"] > 0
        )
    for r in res["ratios"]:
        assert r["fwd_x"] > 0
    assert {e["impl"] for e in res["exponents"]} == {"ours", "ideal", "flax"}
    assert "memory_analysis" in res["memory_source"]
    out = capsys.readouterr().out
    assert "ratios, peer / ours" in out and "fitted exponent" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--layers", "transformer"], "--layers"),
        (["--scans", "magic"], "--scans"),
        (["--lengths", "0"], "--lengths"),
        (["--peers", "keras"], "--peers"),
        (["--dtypes", "int8"], "--dtypes"),
        (["--batch", "0"], "--batch"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, argv, needle) -> None:
    assert cli.main(["bench", "speed", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_default_is_the_quick_size() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["bench", "speed"])
    assert args.lengths is None and speed.QUICK_LENGTHS == (256, 1024)
    assert args.batch == 32 and args.hidden == 256 and args.features == 256


def test_bench_speed_races_the_nnx_twin(tmp_path) -> None:
    """``--peers nnx``: the layer's rz.nnx twin, timed under nnx.jit, gets a ratio row."""
    code = cli.main(
        ["bench", "speed", "--out", str(tmp_path), "--layers", "gru", "--lengths", "4",
         "--batch", "2", "--hidden", "4", "--features", "3", "--repeats", "1", "--peers", "nnx"]
    )  # fmt: skip
    assert code == 0
    (r,) = json.loads((tmp_path / "speed.json").read_text())["results"]["ratios"]
    assert r["peer"] == "nnx" and r["fwd_x"] > 0 and r["fwd_bwd_x"] > 0 and r["mem_x"] > 0
