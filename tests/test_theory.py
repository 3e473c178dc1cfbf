"""rz.theory against Monte Carlo simulations run through the library's own layers.

Every Monte Carlo estimate here averages one independent sample per sequence, so its relative
standard error is about √(2/B) for B sequences (2.2 % at B = 4000, 3.2 % at B = 2000). Tolerances
are set near 4–5 standard errors: loose enough never to flake, tight enough that a wrong power of
(1 − λ), a missing γ or a dropped cross term (all ≥ 20 % off at the λ used) fails.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrent_zoo as rz
from recurrent_zoo import parametrization as lam_param
from recurrent_zoo import theory as th

LAMS = np.array([0.5, 0.9, 0.97, 0.9 * np.exp(0.5j)], np.complex64)


def test_exported():
    assert rz.theory is th


# -- closed forms: the paper's printed expressions and limits ------------------------------------
@pytest.mark.parametrize("rho", [0.0, 0.3, 0.9, 0.99, 1.0])
def test_real_lambda_matches_the_papers_expressions(rho):
    lam = np.array([-0.7, 0.0, 0.5, 0.9, 0.99])
    h2 = (1 + lam * rho) / ((1 - lam * rho) * (1 - lam**2))
    dh2 = ((1 + lam**2) * (1 - lam**2 * rho**2) + 2 * lam * rho * (1 - lam**2)) / (
        (1 - lam**2) ** 3 * (1 - lam * rho) ** 2
    )
    np.testing.assert_allclose(th.state_second_moment(lam, rho), h2, rtol=2e-4)
    np.testing.assert_allclose(th.sensitivity_second_moment(lam, rho), dh2, rtol=2e-4)


def test_limits_and_normalisation():
    lam = np.array([0.3, 0.9, 0.99])
    np.testing.assert_allclose(
        th.sensitivity_second_moment(lam, 0.0), (1 + lam**2) / (1 - lam**2) ** 3, rtol=2e-4
    )
    np.testing.assert_allclose(
        th.sensitivity_second_moment(lam, 1.0), 1 / (1 - lam) ** 4, rtol=2e-4
    )
    # γ = √(1 − |λ|²) keeps E|h|² at 1 for white noise, also for complex λ.
    z = lam * np.exp(1.3j)
    np.testing.assert_allclose(th.state_second_moment(z, 0.0, normalize=True), 1.0, rtol=1e-5)
    # Broadcasting: λ [3, 1] against ρ [2].
    assert th.sensitivity_second_moment(lam[:, None], np.array([0.0, 0.5])).shape == (3, 2)


def test_loss_is_zero_at_the_teacher_and_stable_near_it():
    for star in (0.99, 0.9 * np.exp(0.4j)):
        assert float(th.teacher_student_loss(star, star, mu=0.7)) == 0.0
        assert float(th.teacher_student_loss(star, star, normalize=True)) == 0.0
    # Next to λ* = 0.99 the naive sum of ~50-sized terms would cancel to float32 noise; the
    # closed form keeps the quadratic behaviour: L ≈ ½ E[(dh/dλ)²] δ².
    delta = 1e-4
    loss = float(th.teacher_student_loss(0.99 + delta, 0.99))
    expected = 0.5 * float(th.sensitivity_second_moment(0.99, 0.0)) * delta**2
    assert loss == pytest.approx(expected, rel=0.05)


# -- Monte Carlo through ComplexDiagonalRNN ---------------------------------------------------------
@pytest.mark.parametrize("rho", [0.0, 0.9, 0.99])
def test_moments_match_simulation_through_crnn(rho):
    h2, dh2 = th.simulate_moments(jax.random.key(int(rho * 100)), LAMS, rho, batch_size=4000)
    np.testing.assert_allclose(h2, th.state_second_moment(LAMS, rho), rtol=0.1)
    np.testing.assert_allclose(dh2, th.sensitivity_second_moment(LAMS, rho), rtol=0.1)


def test_ar1_inputs_have_the_requested_correlation():
    x = th.ar1_inputs(jax.random.key(0), 0.9, 2000, 40)
    assert x.shape == (2000, 40, 1)
    c = [float(jnp.mean(x[:, 10] * x[:, 10 + d])) for d in (0, 1, 5)]
    np.testing.assert_allclose(c, [1.0, 0.9, 0.9**5], atol=0.1)
    const = th.ar1_inputs(jax.random.key(1), 1.0, 4, 10)
    np.testing.assert_allclose(const, jnp.broadcast_to(const[:, :1], const.shape))
    # Several features, as the signal-propagation bench draws them (moved from its tests).
    x = np.asarray(th.ar1_inputs(jax.random.key(1), 0.8, 64, 200, 8))
    assert x.shape == (64, 200, 8) and x.dtype == np.float32
    np.testing.assert_allclose(np.mean(x**2), 1.0, atol=0.05)
    np.testing.assert_allclose(np.mean(x[:, 1:] * x[:, :-1]), 0.8, atol=0.05)


@pytest.mark.parametrize(
    ("star", "normalize"), [(0.95, False), (0.95, True), (0.9 * np.exp(0.4j), False)]
)
def test_loss_matches_empirical_teacher_student_mse(star, normalize):
    lams = np.array([0.5, 0.9, 0.99, 0.85 * np.exp(0.3j)])
    mc = th.simulate_loss(
        jax.random.key(3), lams, star, mu=0.5, sigma=1.5, normalize=normalize, batch_size=4000
    )
    closed = th.teacher_student_loss(lams, star, mu=0.5, sigma=1.5, normalize=normalize)
    np.testing.assert_allclose(mc, closed, rtol=0.1)


# -- parametrisations, through the LRU's raw parameters ---------------------------------------------
def _lru_sensitivity(name, p, q, rho, normalize, key, batch=3000):
    """E|∂h_T/∂p|², E|∂h_T/∂q|² of a 1-unit-per-λ LRU, per sequence by reverse mode.

    With ``normalize`` the LRU's γ (gamma_log, normally its own parameter) is tied to
    γ(λ(p, q)) = √(1 − |λ|²) inside the differentiated function, which is what the closed form
    assumes.
    """
    n = p.shape[0]
    nu = np.abs(np.asarray(lam_param.get(name).to_complex(p, q)))
    T = math.ceil(20 / (1 - nu.max()))
    layer = rz.LRU(hidden_size=n, out_features=1, parametrization=name, normalize=True)
    pn, qn = lam_param.get(name).param_names
    fixed = {
        "B_re": jnp.ones((1, n)),
        "B_im": jnp.zeros((1, n)),
        "C_re": jnp.ones((n, 1)),
        "C_im": jnp.zeros((n, 1)),
        "D": jnp.zeros((1,)),
    }

    def re_im(pq, x1):
        lam = lam_param.get(name).to_complex(*pq)
        g = lam_param.gamma(jnp.abs(lam)) if normalize else jnp.ones(n)
        params = {**fixed, pn: pq[0], qn: pq[1], "gamma_log": jnp.log(g)}
        state, _ = layer.apply({"params": params}, x1, return_state=True)
        return jnp.stack([jnp.sum(state.real), jnp.sum(state.imag)])

    x = th.ar1_inputs(key, rho, batch, T)
    jac = jax.jit(jax.vmap(jax.jacrev(re_im), (None, 0)))((p, q), x)  # ([B, 2, n], [B, 2, n])
    return tuple(np.mean(np.sum(np.asarray(j) ** 2, axis=1), axis=0) for j in jac)


@pytest.mark.parametrize(
    ("name", "normalize", "rho"),
    [("exp", False, 0.9), ("optimal", True, 0.0), ("polar", True, 0.5)],
)
def test_parameter_sensitivity_matches_lru(name, normalize, rho):
    nu = jnp.array([0.6, 0.9, 0.97])
    theta = jnp.array([0.0, 0.4, 0.2])
    p, q = lam_param.get(name).encode(nu, theta)
    mc = _lru_sensitivity(name, p, q, rho, normalize, jax.random.key(7))
    closed = th.parameter_sensitivity(name, p, q, rho, normalize=normalize)
    for est, ref in zip(mc, closed):
        np.testing.assert_allclose(est, ref, rtol=0.12)


def test_optimal_parametrisation_is_flat_at_rho_zero():
    nu = jnp.array([0.3, 0.9, 0.99, 0.999])
    p, q = lam_param.get("optimal").encode(nu, jnp.zeros_like(nu))
    s_p, s_q = th.parameter_sensitivity("optimal", p, q, 0.0, normalize=True)
    np.testing.assert_allclose(s_p, 1.0, rtol=1e-3)
    np.testing.assert_allclose(s_q, 1.0, rtol=1e-3)
    # λ learned directly: the curse of memory, (1 + ν²)/(1 − ν²)³.
    s_nu, _ = th.parameter_sensitivity("polar", nu, jnp.zeros_like(nu), 0.0)
    np.testing.assert_allclose(s_nu, (1 + nu**2) / (1 - nu**2) ** 3, rtol=1e-3)


@pytest.mark.parametrize("name", ["polar", "exp", "optimal", "direct"])
@pytest.mark.parametrize("normalize", [False, True])
def test_loss_curvature_at_the_teacher_is_the_sensitivity(name, normalize):
    # At the optimum the Hessian of ½E|h − h*|² is E|∂h|² (σ = 1, μ = 0, white noise):
    # two independent routes, autodiff of the loss and the generating function.
    star = 0.95 * np.exp(0.3j)
    p, q = lam_param.get(name).encode(jnp.asarray(abs(star)), jnp.asarray(np.angle(star)))
    hess = jax.hessian(th.parametrized_loss, argnums=(1, 2))(name, p, q, star, normalize=normalize)
    s_p, s_q = th.parameter_sensitivity(name, p, q, 0.0, normalize=normalize)
    assert float(hess[0][0]) == pytest.approx(float(s_p), rel=2e-2)
    assert float(hess[1][1]) == pytest.approx(float(s_q), rel=2e-2)


def test_loss_gradient_matches_lru_empirical_gradient():
    # ∂L/∂(ν_log, θ_log) from the closed form through the exp parametrisation vs the gradient
    # of the empirical MSE between a student LRU unit (γ = 1) and a teacher unit, by reverse mode.
    name, star, student = "exp", 0.95, 0.9 * np.exp(0.2j)
    p, q = lam_param.get(name).encode(jnp.array([abs(student)]), jnp.array([np.angle(student)]))
    ps, qs = lam_param.get(name).encode(jnp.array([star]), jnp.array([0.0]))
    closed = jax.grad(lambda p, q: jnp.sum(th.parametrized_loss(name, p, q, star)), (0, 1))(p, q)
    layer = rz.LRU(hidden_size=2, out_features=1, normalize=False)
    fixed = {
        "B_re": jnp.ones((1, 2)),
        "B_im": jnp.zeros((1, 2)),
        "C_re": jnp.ones((2, 1)),
        "C_im": jnp.zeros((2, 1)),
        "D": jnp.zeros((1,)),
    }

    @jax.jit
    def mse_grad(key):
        x = jax.random.normal(key, (2000, 400, 1))

        def mse(p, q):
            params = {
                **fixed,
                "nu_log": jnp.concatenate([p, ps]),
                "theta_log": jnp.concatenate([q, qs]),
            }
            h, _ = layer.apply({"params": params}, x, return_state=True)
            return 0.5 * jnp.mean(jnp.abs(h[:, 0] - h[:, 1]) ** 2)

        return jax.grad(mse, (0, 1))(p, q)

    grads = [mse_grad(k) for k in jax.random.split(jax.random.key(11), 2)]
    for i in range(2):
        mc = np.mean([float(g[i][0]) for g in grads])
        assert mc == pytest.approx(float(closed[i][0]), rel=0.15)


# -- argument checks -------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="lam must lie inside the unit disk"):
        th.state_second_moment(1.0, 0.5)
    with pytest.raises(ValueError, match="lam_star must lie inside"):
        th.teacher_student_loss(0.5, 1.2)
    with pytest.raises(ValueError, match=r"rho must lie in \[-1, 1\]"):
        th.sensitivity_second_moment(0.5, 1.5)
    with pytest.raises(TypeError, match="rho must be real"):
        th.sensitivity_second_moment(0.5, 0.5j)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        th.teacher_student_loss(0.5, 0.9, sigma=-1.0)
    with pytest.raises(ValueError, match="parametrization must be one of"):
        th.parameter_sensitivity("cartesian", 0.1, 0.2)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        th.simulate_moments(jax.random.key(0), 0.5, 0.0, batch_size=0)
    with pytest.raises(ValueError, match="rho must be a float"):
        th.ar1_inputs(jax.random.key(0), 2.0, 2, 3)
