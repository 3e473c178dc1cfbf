"""The formulations that ``recurrent-zoo bench speed`` races our layers against.

Each peer computes the same function as one of our layers, given parameters mapped from that
layer's (``tests/test_bench_speed.py`` checks this). A peer is built from an initialised layer:
``build(layer, params) -> (peer_params, apply)`` with ``apply(peer_params, x [B, T, D]) -> y``, so
forward and forward+backward (gradient with respect to the peer's own parameters) can be jitted
and timed the same way as ours.

* ``reference``: the LRU paper's formulation, as in its published code and minimal-LRU: complex
  parameters, B and C applied per step as complex matvecs (``vmap`` over time), a per-sequence
  ``jax.lax.associative_scan``, all ``vmap``-ed over the batch.
* ``scan``: the best straightforward JAX formulation: the input projection for all steps in one
  matmul, then ``jax.lax.scan`` over time in the layer's natural dtype (complex64 for complex
  states), differentiated by JAX.
* ``flax``: ``flax.linen.RNN`` over ``nn.SimpleCell`` / ``nn.GRUCell`` / ``nn.OptimizedLSTMCell``.
* ``torch``: ``torch.nn.RNN`` / ``torch.nn.GRU`` / ``torch.nn.LSTM`` on the CPU, when torch is
  importable (optional, never a dependency); built by :func:`torch_peer`, since it is not a JAX
  function.
* ``ideal`` (linear-readout layers, forward only): what the layer cannot avoid: the input
  projection, the readout and one write of the state tensor, timed as separate pieces whose
  times are summed (:func:`ideal_pieces`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import recurrent_zoo as rz

Array = jax.Array
Apply = Callable[[Any, Array], Array]

# Which peers each layer is raced against (``ideal``, ``torch`` and ``nnx`` are handled
# separately); a layer that is not (yet) registered in ``rz.LAYERS`` is left out. ``nnx`` is the
# zoo's own NNX twin (``rz.nnx.from_linen``) under ``nnx.jit``: it must cost nothing.
PEERS: dict[str, tuple[str, ...]] = {
    name: peers
    for name, peers in {
        "lru": ("reference", "scan", "ideal", "nnx"),
        "crnn": ("reference", "scan", "ideal", "nnx"),
        "mh_linear": ("scan", "ideal", "nnx"),
        "rnn": ("flax", "torch", "scan", "nnx"),
        "ln_rnn": ("scan", "nnx"),
        "gru": ("flax", "torch", "scan", "nnx"),
        "lstm": ("flax", "torch", "scan", "nnx"),
    }.items()
    if name in rz.LAYERS
}
ALL_PEERS = ("reference", "scan", "flax", "torch", "ideal", "nnx")


def _complex_lambda(layer: rz.ComplexDiagonalRNN, p: dict[str, Array]) -> Array:
    """λ written out from the paper's formulas (not through our parametrisation module)."""
    if layer.parametrization == "exp":
        return jnp.exp(-jnp.exp(p["nu_log"]) + 1j * jnp.exp(p["theta_log"]))
    if layer.parametrization == "direct":
        return p["lambda_re"] + 1j * p["lambda_im"]
    raise ValueError(
        f"the reference peer supports parametrization 'exp' or 'direct', got "
        f"{layer.parametrization!r}"
    )


def _skip(D: Array, x: Array) -> Array:
    return x * D if D.ndim == 1 else x @ D


# -- reference: the LRU paper's formulation ---------------------------------------------------
def _reference(layer: rz.ComplexDiagonalRNN, params: dict[str, Array]) -> tuple[Any, Apply]:
    # The paper stores B as [N, D_in] and C as [D_out, N].
    keep = [
        k for k in ("nu_log", "theta_log", "lambda_re", "lambda_im", "gamma_log") if k in params
    ]
    q = {k: params[k] for k in keep}
    q.update(B_re=params["B_re"].T, B_im=params["B_im"].T)
    q.update(C_re=params["C_re"].T, C_im=params["C_im"].T, D=params["D"])

    def apply(q, x):
        lam = _complex_lambda(layer, q)
        B = q["B_re"] + 1j * q["B_im"]
        if "gamma_log" in q:
            B = B * jnp.exp(q["gamma_log"])[:, None]
        C = q["C_re"] + 1j * q["C_im"]

        def binary_operator(e_i, e_j):
            a_i, bu_i = e_i
            a_j, bu_j = e_j
            return a_j * a_i, a_j * bu_i + bu_j

        def one_sequence(u):  # [T, D_in]
            lam_elements = jnp.repeat(lam[None, :], u.shape[0], axis=0)
            bu_elements = jax.vmap(lambda u_t: B @ u_t)(u)
            _, states = jax.lax.associative_scan(binary_operator, (lam_elements, bu_elements))
            return jax.vmap(lambda h, u_t: (C @ h).real + _skip(q["D"], u_t))(states, u)

        return jax.vmap(one_sequence)(x)

    return q, apply


# -- scan: the straightforward lax.scan formulation -------------------------------------------
def _time_scan(step: Callable[[Array, Array], Array], h0: Array, u: Array) -> Array:
    """``h_t = step(h_{t−1}, u_t)`` over ``u [B, T, ...]``; all states [B, T, ...]."""

    def body(h, u_t):
        h = step(h, u_t)
        return h, h

    _, hs = jax.lax.scan(body, h0, jnp.swapaxes(u, 0, 1))
    return jnp.swapaxes(hs, 0, 1)


def _scan(layer: nn.Module, params: dict[str, Array]) -> tuple[Any, Apply]:
    name = layer_name(layer)
    n = layer.hidden_size
    if name in ("lru", "crnn"):

        def apply(q, x):
            lam = _complex_lambda(layer, q)
            B = q["B_re"] + 1j * q["B_im"]
            if "gamma_log" in q:
                B = B * jnp.exp(q["gamma_log"])
            u = x.astype(jnp.complex64) @ B
            hs = _time_scan(lambda h, u_t: lam * h + u_t, jnp.zeros((x.shape[0], n), u.dtype), u)
            return (hs @ (q["C_re"] + 1j * q["C_im"])).real + _skip(q["D"], x)

    elif name == "mh_linear":
        heads, d = layer.num_heads, layer.head_size

        def apply(q, x):
            u = (x @ q["B"]).reshape(*x.shape[:2], heads, d)
            h0 = jnp.zeros((x.shape[0], heads, d), u.dtype)
            hs = _time_scan(lambda h, u_t: jnp.einsum("hij,bhj->bhi", q["A"], h) + u_t, h0, u)
            return hs.reshape(*x.shape[:2], n) @ q["C"] + _skip(q["D"], x)

    elif name in ("rnn", "ln_rnn"):
        phi = rz.layers.rnn.ACTIVATIONS[layer.activation]

        def apply(q, x):
            u = x @ q["input_kernel"]
            if "bias" in q:
                u = u + q["bias"]

            def step(h, u_t):
                a = h @ q["recurrent_kernel"] + u_t
                if "ln_scale" in q:
                    mu = a.mean(-1, keepdims=True)
                    var = jnp.square(a - mu).mean(-1, keepdims=True)
                    a = (a - mu) / jnp.sqrt(var + layer.epsilon) * q["ln_scale"] + q["ln_bias"]
                return phi(a)

            return _time_scan(step, jnp.zeros((x.shape[0], n), u.dtype), u)

    elif name == "gru":

        def apply(q, x):
            gi = x @ q["input_kernel"] + q["input_bias"]

            def step(h, gi_t):
                gh = h @ q["recurrent_kernel"] + q["recurrent_bias"]
                r = jax.nn.sigmoid(gi_t[:, :n] + gh[:, :n])
                z = jax.nn.sigmoid(gi_t[:, n : 2 * n] + gh[:, n : 2 * n])
                c = jnp.tanh(gi_t[:, 2 * n :] + r * gh[:, 2 * n :])
                return (1 - z) * c + z * h

            return _time_scan(step, jnp.zeros((x.shape[0], n), gi.dtype), gi)

    elif name == "lstm":

        def apply(q, x):
            gi = x @ q["input_kernel"] + q["input_bias"]

            def step(carry, gi_t):
                c, h = carry
                i, f, g, o = jnp.split(
                    gi_t + h @ q["recurrent_kernel"] + q["recurrent_bias"], 4, -1
                )
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (c, h), h

            zeros = jnp.zeros((x.shape[0], n), gi.dtype)
            _, hs = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(gi, 0, 1))
            return jnp.swapaxes(hs, 0, 1)

    else:
        raise ValueError(f"no scan peer for layer {name!r}")
    return dict(params), apply


# -- flax: nn.RNN over Flax's own cells -------------------------------------------------------
def _flax(layer: nn.Module, params: dict[str, Array]) -> tuple[Any, Apply]:
    name = layer_name(layer)
    n = layer.hidden_size
    if name == "rnn":
        act = rz.layers.rnn.ACTIVATIONS[layer.activation]
        rnn = nn.RNN(nn.SimpleCell(features=n, activation_fn=act))
        bias = params.get("bias", jnp.zeros((n,), params["input_kernel"].dtype))
        cell = {
            "i": {"kernel": params["input_kernel"], "bias": bias},
            "h": {"kernel": params["recurrent_kernel"]},
        }
    elif name == "gru":
        rnn = nn.RNN(nn.GRUCell(features=n))
        Wi, bi = params["input_kernel"], params["input_bias"]
        Wh, bh = params["recurrent_kernel"], params["recurrent_bias"]
        g = lambda a, k: a[..., k * n : (k + 1) * n]
        # Flax's GRUCell has biases on ir, iz, in and hn only: r and z see one summed bias.
        cell = {
            "ir": {"kernel": g(Wi, 0), "bias": g(bi, 0) + g(bh, 0)},
            "iz": {"kernel": g(Wi, 1), "bias": g(bi, 1) + g(bh, 1)},
            "in": {"kernel": g(Wi, 2), "bias": g(bi, 2)},
            "hr": {"kernel": g(Wh, 0)},
            "hz": {"kernel": g(Wh, 1)},
            "hn": {"kernel": g(Wh, 2), "bias": g(bh, 2)},
        }
    elif name == "lstm":
        rnn = nn.RNN(nn.OptimizedLSTMCell(features=n))
        Wi, Wh = params["input_kernel"], params["recurrent_kernel"]
        b = params["input_bias"] + params["recurrent_bias"]
        g = lambda a, k: a[..., k * n : (k + 1) * n]
        # Flax's LSTM cells have one bias per gate, on the recurrent side.
        cell = {f"i{gate}": {"kernel": g(Wi, k)} for k, gate in enumerate("ifgo")}
        cell.update(
            {f"h{gate}": {"kernel": g(Wh, k), "bias": g(b, k)} for k, gate in enumerate("ifgo")}
        )
    else:
        raise ValueError(f"no flax peer for layer {name!r}")
    return {"params": {"cell": cell}}, rnn.apply


# -- torch (optional) -------------------------------------------------------------------------
def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_peer(layer: nn.Module, params: dict[str, Array]) -> Any:
    """``torch.nn.RNN`` / ``GRU`` / ``LSTM`` (batch first, CPU) with our parameters copied in."""
    import torch

    name = layer_name(layer)
    t = lambda a: torch.tensor(np.asarray(a, dtype=np.float32))
    n = layer.hidden_size
    d_in = params["input_kernel"].shape[0]
    if name in ("gru", "lstm"):  # the same gate order and parameter layout as ours
        module = (torch.nn.GRU if name == "gru" else torch.nn.LSTM)(d_in, n, batch_first=True)
        weights = {
            "weight_ih_l0": params["input_kernel"].T,
            "weight_hh_l0": params["recurrent_kernel"].T,
            "bias_ih_l0": params["input_bias"],
            "bias_hh_l0": params["recurrent_bias"],
        }
    elif name == "rnn":
        if layer.activation not in ("tanh", "relu"):
            raise ValueError(f"torch.nn.RNN has no activation {layer.activation!r}")
        module = torch.nn.RNN(d_in, n, nonlinearity=layer.activation, batch_first=True)
        weights = {
            "weight_ih_l0": params["input_kernel"].T,
            "weight_hh_l0": params["recurrent_kernel"].T,
            "bias_ih_l0": params.get("bias", np.zeros((n,), np.float32)),
            "bias_hh_l0": np.zeros((n,), np.float32),
        }
    else:
        raise ValueError(f"no torch peer for layer {name!r}")
    with torch.no_grad():
        for k, v in weights.items():
            getattr(module, k).copy_(t(v))
    return module


def torch_callables(module: Any, x: Array) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """Forward and forward+backward (gradients of mean(y²) into the module's parameters)."""
    import torch

    xt = torch.tensor(np.asarray(x, dtype=np.float32))

    def fwd():
        with torch.no_grad():
            return module(xt)[0]

    def fwd_bwd():
        module.zero_grad(set_to_none=True)
        y = module(xt)[0]
        y.square().mean().backward()
        return y

    return fwd, fwd_bwd


# -- ideal: the unavoidable work of a linear-readout layer ------------------------------------
def ideal_pieces(layer: nn.Module, params: dict[str, Array], x: Array) -> list[tuple[str, Any]]:
    """``[(what, (fn, args))]``: input projection, state write, readout, each to be timed alone.

    The state has 2N real numbers per step for complex layers ([re | im]), N for real ones; the
    projections are the two real matmuls [B·T, D_in]×[D_in, state] and [B·T, state]×[state, D_out].
    """
    name = layer_name(layer)
    width = 2 * layer.hidden_size if name in ("lru", "crnn") else layer.hidden_size
    d_out = layer.out_features or x.shape[-1]
    B, T, d_in = x.shape
    key = jax.random.key(0)
    w_in = jax.random.normal(key, (d_in, width), x.dtype)
    w_out = jax.random.normal(key, (width, d_out), x.dtype)
    states = jnp.ones((B, T, width), x.dtype)
    return [
        ("input matmul", (lambda x, w: x @ w, (x, w_in))),
        ("state write", (lambda s: s * 2, (states,))),
        ("readout matmul", (lambda s, w: s @ w, (states, w_out))),
    ]


# -- registry ---------------------------------------------------------------------------------
BUILDERS: dict[str, Callable[[nn.Module, dict[str, Array]], tuple[Any, Apply]]] = {
    "reference": _reference,
    "scan": _scan,
    "flax": _flax,
}


def layer_name(layer: nn.Module) -> str:
    """The registry name of a layer instance (``rz.LAYERS`` key)."""
    for name, cls in rz.LAYERS.items():
        if type(layer) is cls:
            return name
    raise ValueError(f"not a zoo layer: {type(layer).__name__}")


def build(peer: str, layer: nn.Module, params: dict[str, Array]) -> tuple[Any, Apply]:
    """``(peer_params, apply)`` for a JAX peer of ``layer`` with its ``params`` mapped in."""
    if peer not in BUILDERS:
        raise ValueError(f"peer must be one of {list(BUILDERS)}, got {peer!r}")
    return BUILDERS[peer](layer, params)
