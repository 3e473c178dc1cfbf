"""Initialisers do what they say: LRU ring and γ, the γ at work on the state's variance,
eigenvalue-controlled dense init, identity (IRNN), orthogonal and chrono."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

import recurrent_zoo as rz

D = 3
# One state size for every layer here: eager init compiles its small ops once per shape.
N = 64


def _init(layer, d_in: int = D, seed: int = 0) -> dict[str, np.ndarray]:
    v = layer.init(jax.random.key(seed), jnp.zeros((1, 1, d_in), jnp.float32))
    return {k: np.asarray(a) for k, a in v["params"].items()}


@pytest.mark.parametrize("parametrization", list(rz.parametrization.PARAMETRIZATIONS))
@pytest.mark.parametrize(
    "r_min, r_max, max_phase", [(0.9, 0.999, 2 * math.pi), (0.4, 0.6, math.pi / 10)]
)
def test_lru_ring_init(parametrization: str, r_min: float, r_max: float, max_phase: float) -> None:
    """|λ| in [r_min, r_max], arg λ in [0, max_phase], γ = √(1 − |λ|²), read back through the
    reference's own closed form of each parametrisation."""
    n = 256
    layer = rz.LRU(
        hidden_size=n,
        r_min=r_min,
        r_max=r_max,
        max_phase=max_phase,
        parametrization=parametrization,
    )
    p = _init(layer)
    lam = ref.eigenvalues(parametrization, p)
    mag, phase = np.abs(lam), np.mod(np.angle(lam), 2 * np.pi)
    tol = 1e-5
    assert mag.min() >= r_min - tol and mag.max() <= r_max + tol
    phase = np.where(phase > max_phase + 1e-4, phase - 2 * np.pi, phase)  # 2π ≡ 0
    assert phase.min() >= -1e-4 and phase.max() <= max_phase + 1e-4
    # Uniform in area on the ring: E|λ|² = (r_min² + r_max²) / 2; phases spread over the range.
    np.testing.assert_allclose(np.mean(mag**2), (r_min**2 + r_max**2) / 2, rtol=0.1)
    assert np.ptp(phase) > 0.8 * max_phase
    np.testing.assert_allclose(np.exp(p["gamma_log"]), np.sqrt(1 - mag**2), rtol=1e-3, atol=1e-6)


def test_lru_default_ring_and_names() -> None:
    p = _init(rz.LRU(hidden_size=N))
    assert {"nu_log", "theta_log", "gamma_log", "B_re", "B_im", "C_re", "C_im", "D"} == set(p)
    mag = np.abs(ref.eigenvalues("exp", p))
    assert 0.9 - 1e-6 <= mag.min() and mag.max() <= 0.999 + 1e-6


def test_complex_diagonal_rnn_init() -> None:
    """Learned directly as (re, im) in the unit disk; γ only with normalize."""
    p = _init(rz.ComplexDiagonalRNN(hidden_size=N))
    assert "gamma_log" not in p
    mag = np.abs(p["lambda_re"] + 1j * p["lambda_im"])
    assert mag.max() <= 1.0 + 1e-6
    assert "gamma_log" in _init(rz.ComplexDiagonalRNN(hidden_size=N, normalize=True))


def _state_power(
    name: str, r: float, *, batch: int = 512, steps: int = 2000
) -> tuple[float, float]:
    """E|h_T,i|² / |b_i|² averaged over units, for unit white noise; and its closed form."""
    layer = rz.make_layer(name, hidden_size=N, r_min=r, r_max=r)
    v = layer.init(jax.random.key(1), jnp.zeros((1, 1, D)))
    x = np.random.default_rng(2).normal(size=(batch, steps, D)).astype(np.float32)
    h, _ = _final_state(layer)(v, x)
    p = v["params"]
    b2 = np.sum(np.asarray(p["B_re"]) ** 2 + np.asarray(p["B_im"]) ** 2, axis=0)
    gamma2 = np.exp(2 * np.asarray(p["gamma_log"])) if "gamma_log" in p else 1.0
    measured = np.mean(np.mean(np.abs(np.asarray(h)) ** 2, axis=0) / b2)
    # h_T = Σ_k λ^k γ b·x_{T−k}: E|h_T|² = γ² |b|² (1 − r^{2T}) / (1 − r²).
    expected = np.mean(gamma2 * (1 - r ** (2 * steps)) / (1 - r**2))
    return float(measured), float(expected)


_FINAL_STATE: dict[str, object] = {}


def _final_state(layer):
    key = type(layer).__name__
    if key not in _FINAL_STATE:
        # r does not change the compiled function: one compile per layer class.
        _FINAL_STATE[key] = jax.jit(lambda v, x: layer.apply(v, x, return_state=True))
    return _FINAL_STATE[key]


def test_lru_gamma_keeps_state_variance_flat_while_crnn_grows() -> None:
    lru = {r: _state_power("lru", r) for r in (0.5, 0.999)}
    crnn = {r: _state_power("crnn", r) for r in (0.5, 0.999)}
    for r in (0.5, 0.999):
        np.testing.assert_allclose(*lru[r], rtol=0.15, err_msg=f"LRU, r={r}")
        np.testing.assert_allclose(*crnn[r], rtol=0.15, err_msg=f"crnn, r={r}")
    # γ at work: about the same at r = 0.5 and r = 0.999 ...
    assert 0.8 < lru[0.999][0] / lru[0.5][0] < 1.25
    # ... while without it the variance follows 1 / (1 − r²) (up to the finite horizon).
    ratio = crnn[0.999][0] / crnn[0.5][0]
    np.testing.assert_allclose(ratio, (1 - 0.999**2000) / (1 - 0.999**2) * (1 - 0.5**2), rtol=0.2)
    assert ratio > 250


@pytest.mark.parametrize("nu0, theta0", [(0.0, math.pi), (0.5, 0.3), (0.9, 0.1), (0.99, 0.0)])
@pytest.mark.parametrize("shape", [(6, 6), (40, 2, 2), (10, 5, 5)], ids=["dense", "2x2", "5x5"])
def test_eigenvalue_controlled_init(nu0: float, theta0: float, shape: tuple[int, ...]) -> None:
    a = np.asarray(rz.initializers.eigenvalue_controlled(nu0, theta0)(jax.random.key(3), shape))
    assert a.shape == shape and a.dtype == np.float32
    lam = np.linalg.eigvals(a.astype(np.float64))
    assert np.abs(lam).min() >= nu0 - 1e-5, np.abs(lam).min()
    assert np.abs(lam).max() < 1.0
    assert np.abs(np.angle(lam)).max() <= theta0 + 1e-5
    if nu0 < 0.5:  # magnitudes spread over the range, not a constant
        assert np.ptp(np.abs(lam)) > 0.2


def test_eigenvalue_controlled_init_in_layers() -> None:
    p = _init(rz.MultiHeadLinearRNN(hidden_size=N, num_heads=N // 2, r_min=0.6, max_phase=0.5))
    lam = np.linalg.eigvals(p["A"].astype(np.float64))
    assert p["A"].shape == (N // 2, 2, 2)
    assert np.abs(lam).min() >= 0.6 - 1e-5 and np.abs(lam).max() < 1
    assert np.abs(np.angle(lam)).max() <= 0.5 + 1e-5
    w = _init(rz.VanillaRNN(hidden_size=N, recurrent_init="eigen"))["recurrent_kernel"]
    assert np.abs(np.linalg.eigvals(w.astype(np.float64))).max() < 1


def test_identity_init_is_an_irnn() -> None:
    """W = I and b = 0: with no input, a relu IRNN holds any non-negative state exactly."""
    layer = rz.VanillaRNN(hidden_size=N, activation="relu", recurrent_init="identity")
    v = layer.init(jax.random.key(0), jnp.zeros((1, 1, D)))
    np.testing.assert_array_equal(np.asarray(v["params"]["recurrent_kernel"]), np.eye(N))
    h0 = np.abs(np.random.default_rng(0).normal(size=(2, N))).astype(np.float32)
    h, y = layer.apply(v, np.zeros((2, 6, D), np.float32), initial_state=h0, return_state=True)
    np.testing.assert_array_equal(np.asarray(h), h0)
    np.testing.assert_array_equal(np.asarray(y), np.broadcast_to(h0[:, None], (2, 6, N)))


@pytest.mark.parametrize("name, variance", [("glorot", 1 / N), ("he", 2 / N)])
def test_glorot_and_he_recurrent_kernels(name: str, variance: float) -> None:
    """Asked for by name: zero mean and variance 1/N (Glorot, fan_in = fan_out = N) or 2/N (He)."""
    w = _init(rz.VanillaRNN(hidden_size=N, recurrent_init=name))["recurrent_kernel"]
    assert w.shape == (N, N)
    # N² = 4096 draws: the sample variance is within 10 % with a margin of 4 standard errors.
    np.testing.assert_allclose(np.var(w), variance, rtol=0.1)
    assert abs(np.mean(w)) < 4 * math.sqrt(variance / N**2)


def test_every_named_recurrent_init_is_accepted() -> None:
    for name in rz.initializers.RECURRENT_INITS:
        w = _init(rz.VanillaRNN(hidden_size=N, recurrent_init=name))["recurrent_kernel"]
        assert w.shape == (N, N) and np.all(np.isfinite(w)) and np.any(w != 0), name


def test_orthogonal_recurrent_kernels() -> None:
    w = _init(rz.VanillaRNN(hidden_size=N))["recurrent_kernel"]
    np.testing.assert_allclose(w @ w.T, np.eye(N), atol=1e-5)
    wh = _init(rz.GRU(hidden_size=N))["recurrent_kernel"]
    assert wh.shape == (N, 3 * N)
    for g in np.split(wh, 3, axis=1):  # each gate's block is orthogonal on its own
        np.testing.assert_allclose(g @ g.T, np.eye(N), atol=1e-5)


@pytest.mark.parametrize("chrono, lo, hi", [(8.0, 8.0, 16.0), ((2.0, 50.0), 2.0, 50.0)])
def test_chrono_init(chrono, lo: float, hi: float) -> None:
    """Update-gate bias b_z = log U[lo, hi]; r and n biases stay 0. With no input and no
    recurrent weights the state decays as z^t, z = σ(b_z): a memory of 1 + e^{b_z} steps."""
    n = N
    layer = rz.GRU(hidden_size=n, chrono_init=chrono)
    v = layer.init(jax.random.key(0), jnp.zeros((1, 1, D)))
    b = np.asarray(v["params"]["input_bias"])
    b_r, b_z, b_n = np.split(b, 3)
    np.testing.assert_array_equal(b_r, 0)
    np.testing.assert_array_equal(b_n, 0)
    assert b_z.min() >= math.log(lo) - 1e-6 and b_z.max() <= math.log(hi) + 1e-6
    assert np.ptp(b_z) > 0.3 * (math.log(hi) - math.log(lo))
    params = dict(v["params"], recurrent_kernel=jnp.zeros((n, 3 * n)))
    steps = 10
    h, _ = layer.apply(
        {"params": params},
        np.zeros((1, steps, D), np.float32),
        initial_state=np.ones((1, n), np.float32),
        return_state=True,
    )
    z = 1 / (1 + np.exp(-b_z))
    np.testing.assert_allclose(np.asarray(h[0]), z**steps, rtol=1e-4)
    memory = 1 / (1 - z)
    assert memory.min() >= 1 + lo - 1e-3 and memory.max() <= 1 + hi + 1e-3


def test_no_chrono_means_zero_biases() -> None:
    p = _init(rz.GRU(hidden_size=N))
    np.testing.assert_array_equal(p["input_bias"], 0)
    np.testing.assert_array_equal(p["recurrent_bias"], 0)
