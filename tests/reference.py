"""Plain NumPy step-by-step references of the seven layers, written from their equations.

Nothing here imports the package: each reference reads the layer's parameters by name and runs
one unbatched sequence in float64 (complex128 for complex states), one step at a time, so a bug
shared by the package's scans, parametrisations or batching cannot hide in both.

``step_function(name, options, params)`` gives ``step(h [N], x_t [D]) -> (h, y_t)``;
``run_contract`` drives any such step through the calling contract (initial state, resets,
lengths, reverse) exactly as ``docs/layers.md`` states it, one sequence at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Step = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _f64(tree: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float64) for k, v in tree.items()}


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0.0),
    "linear": lambda a: a,
}


def elman_step(p: Mapping[str, Any], activation: str, layer_norm: bool, eps: float) -> Step:
    """h_t = φ(W h + U x + b), or φ(g ⊙ (a − mean a) / sqrt(var a + eps) + β) with layer norm."""
    p = _f64(p)
    phi = ACTIVATIONS[activation]

    def step(h, x):
        a = h @ p["recurrent_kernel"] + x @ p["input_kernel"]
        if "bias" in p:
            a = a + p["bias"]
        if layer_norm:
            a = (a - a.mean()) / np.sqrt(a.var() + eps) * p["ln_scale"] + p["ln_bias"]
        h = phi(a)
        return h, h

    return step


def torch_gru_step(
    weight_ih: np.ndarray, weight_hh: np.ndarray, bias_ih: np.ndarray, bias_hh: np.ndarray
) -> Step:
    """PyTorch's ``nn.GRU`` cell in PyTorch's layout: weight_ih [3N, D], rows r, z, n.

    r = σ(W_ir x + b_ir + W_hr h + b_hr); z = σ(W_iz x + b_iz + W_hz h + b_hz);
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)); h' = (1 − z) ⊙ n + z ⊙ h.
    """
    w_ir, w_iz, w_in = np.split(np.asarray(weight_ih, np.float64), 3, axis=0)
    w_hr, w_hz, w_hn = np.split(np.asarray(weight_hh, np.float64), 3, axis=0)
    b_ir, b_iz, b_in = np.split(np.asarray(bias_ih, np.float64), 3)
    b_hr, b_hz, b_hn = np.split(np.asarray(bias_hh, np.float64), 3)

    def step(h, x):
        r = sigmoid(w_ir @ x + b_ir + w_hr @ h + b_hr)
        z = sigmoid(w_iz @ x + b_iz + w_hz @ h + b_hz)
        n = np.tanh(w_in @ x + b_in + r * (w_hn @ h + b_hn))
        h = (1 - z) * n + z * h
        return h, h

    return step


def torch_lstm_step(
    weight_ih: np.ndarray, weight_hh: np.ndarray, bias_ih: np.ndarray, bias_hh: np.ndarray
) -> Step:
    """PyTorch's ``nn.LSTM`` cell in PyTorch's layout: weight_ih [4N, D], rows i, f, g, o.

    The state is [c | h] [2N]: i = σ(W_ii x + b_ii + W_hi h + b_hi), f and o likewise,
    g = tanh(W_ig x + b_ig + W_hg h + b_hg); c' = f ⊙ c + i ⊙ g; h' = o ⊙ tanh(c'); y = h'.
    """
    w_ii, w_if, w_ig, w_io = np.split(np.asarray(weight_ih, np.float64), 4, axis=0)
    w_hi, w_hf, w_hg, w_ho = np.split(np.asarray(weight_hh, np.float64), 4, axis=0)
    b_ii, b_if, b_ig, b_io = np.split(np.asarray(bias_ih, np.float64), 4)
    b_hi, b_hf, b_hg, b_ho = np.split(np.asarray(bias_hh, np.float64), 4)

    def step(state, x):
        c, h = np.split(state, 2)
        i = sigmoid(w_ii @ x + b_ii + w_hi @ h + b_hi)
        f = sigmoid(w_if @ x + b_if + w_hf @ h + b_hf)
        g = np.tanh(w_ig @ x + b_ig + w_hg @ h + b_hg)
        o = sigmoid(w_io @ x + b_io + w_ho @ h + b_ho)
        c = f * c + i * g
        h = o * np.tanh(c)
        return np.concatenate([c, h]), h

    return step


def eigenvalues(parametrization: str, p: Mapping[str, Any]) -> np.ndarray:
    """λ ∈ ℂᴺ from the raw parameters, one closed form per parametrisation."""
    p = _f64(p)
    if parametrization == "exp":
        return np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    if parametrization == "polar":
        return p["nu"] * np.exp(1j * p["theta"])
    if parametrization == "direct":
        return p["lambda_re"] + 1j * p["lambda_im"]
    if parametrization == "optimal":
        nu = np.tanh(p["omega_nu"])
        theta = p["omega_theta"] * (1 - nu**2) / (nu * np.sqrt(1 + nu**2))
        return nu * np.exp(1j * theta)
    raise ValueError(f"no reference for parametrization {parametrization!r}")


def _skip(d: np.ndarray, x: np.ndarray) -> np.ndarray:
    return d * x if d.ndim == 1 else x @ d


def diagonal_step(p: Mapping[str, Any], parametrization: str) -> Step:
    """h_t = λ ⊙ h + γ ⊙ (B x), y_t = Re(C h_t) + D ⊙ x, with complex B, C and γ = exp(γ_log)."""
    lam = eigenvalues(parametrization, p)
    p = _f64(p)
    gamma = np.exp(p["gamma_log"]) if "gamma_log" in p else np.ones_like(lam.real)
    b = p["B_re"] + 1j * p["B_im"]
    c = p["C_re"] + 1j * p["C_im"]

    def step(h, x):
        h = lam * h + gamma * (x @ b)
        return h, np.real(h @ c) + _skip(p["D"], x)

    return step


def block_step(p: Mapping[str, Any], num_heads: int) -> Step:
    """h_t = blockdiag(A_1..A_H) h + B x, y_t = C h_t + D ⊙ x, built as one dense N×N matrix."""
    p = _f64(p)
    a = np.zeros((p["B"].shape[1],) * 2)
    d = a.shape[0] // num_heads
    for k in range(num_heads):
        a[k * d : (k + 1) * d, k * d : (k + 1) * d] = p["A"][k]

    def step(h, x):
        h = a @ h + x @ p["B"]
        return h, h @ p["C"] + _skip(p["D"], x)

    return step


def step_function(name: str, options: Mapping[str, Any], params: Mapping[str, Any]) -> Step:
    """The reference step of the layer registered as ``name`` with constructor ``options``."""
    if name in ("rnn", "ln_rnn"):
        return elman_step(
            params,
            options.get("activation", "tanh"),
            layer_norm=name == "ln_rnn",
            eps=options.get("epsilon", 1e-5),
        )
    if name == "gru":
        # Our kernels are [D, 3N] (x @ W); PyTorch's are their transposes.
        return torch_gru_step(
            np.asarray(params["input_kernel"]).T,
            np.asarray(params["recurrent_kernel"]).T,
            params["input_bias"],
            params["recurrent_bias"],
        )
    if name == "lstm":
        return torch_lstm_step(
            np.asarray(params["input_kernel"]).T,
            np.asarray(params["recurrent_kernel"]).T,
            params["input_bias"],
            params["recurrent_bias"],
        )
    if name == "crnn":
        return diagonal_step(params, options.get("parametrization", "direct"))
    if name == "lru":
        return diagonal_step(params, options.get("parametrization", "exp"))
    if name == "mh_linear":
        return block_step(params, options.get("num_heads", 1))
    raise ValueError(f"no reference for layer {name!r}")


def run(step: Step, x: np.ndarray, h0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One plain sequence x [T, D] from h0 [N]: returns (h_T, y [T, D_out])."""
    h, ys = h0, []
    for x_t in x:
        h, y = step(h, x_t)
        ys.append(y)
    return h, np.stack(ys)


def run_contract(
    step: Step,
    x: np.ndarray,
    h0: np.ndarray,
    d_out: int,
    resets: np.ndarray | None = None,
    length: int | None = None,
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """One sequence x [T, D] under the calling contract, from the documented semantics.

    The valid part x[:length] is split into pieces at the resets (a reset at t starts a new
    piece at t, which begins from the zero state); the first piece starts from h0 unless
    resets[0]. Under ``reverse`` the pieces run last to first, each backwards, and the last piece
    starts from h0 (so packed sequences stay apart in both directions). Outputs past the length
    are zero; the state returned is the one after the last step run (h0 when nothing ran).
    Resets at t >= length are ignored.
    """
    T = x.shape[0]
    n = T if length is None else int(length)
    r = np.zeros(T, bool) if resets is None else np.asarray(resets, bool)
    starts = [0] + [t for t in range(1, n) if r[t]]
    pieces = [(a, b) for a, b in zip(starts, [*starts[1:], n]) if b > a]
    zero = np.zeros_like(h0)
    y = np.zeros((T, d_out), np.result_type(float, np.real(h0)))
    h = h0
    order = pieces[::-1] if reverse else pieces
    for i, (a, b) in enumerate(order):
        # In forward time a reset at t = 0 drops h0; in reverse, h0 comes from past the end of
        # the sequence, where no reset can cut it.
        if i > 0 or (r[0] and not reverse):
            h = zero
        idx = range(b - 1, a - 1, -1) if reverse else range(a, b)
        for t in idx:
            h, y[t] = step(h, x[t])
    return h, y
