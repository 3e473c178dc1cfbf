"""The layer harness: every layer configuration × every scan backend, with shared compiled calls.

A :class:`Case` is one layer configuration (a registry name and constructor options) and, for
layers with a ``scan`` field, one of ``rz.scan.METHODS`` — so backends added later are covered
without touching the tests — run through one front-end: the linen layer, or its NNX twin
(``rz.nnx``) holding the same variables. Parameters are drawn once per configuration (they do not
depend on the scan backend or the front-end) and every jitted function is cached, so each shape is
compiled once per process and front-end.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from flax import nnx

import recurrent_zoo as rz

# Small shapes: the harness runs ~30 cases through a dozen checks each on a 2-core CPU.
B, T, D, N = 3, 8, 3, 4

# float32 after T = 8 steps against float64; λ through the "optimal" parametrisation costs the
# most digits (outputs of size ~3 agree to ~3e-5).
TOL = dict(rtol=1e-4, atol=1e-4)


def _configs() -> dict[str, tuple[str, dict[str, Any]]]:
    """Configuration id -> (registry name, constructor options); every registered layer first."""
    cfg: dict[str, tuple[str, dict[str, Any]]] = {name: (name, {}) for name in rz.LAYERS}
    cfg["rnn_relu_identity"] = ("rnn", {"activation": "relu", "recurrent_init": "identity"})
    cfg["rnn_linear_eigen"] = ("rnn", {"activation": "linear", "recurrent_init": "eigen"})
    cfg["rnn_sigmoid_he"] = ("rnn", {"activation": "sigmoid", "recurrent_init": "he"})
    # sigmoid through the general (feature-mixing) cell path as well as the elementwise one.
    cfg["ln_rnn_sigmoid_glorot"] = ("ln_rnn", {"activation": "sigmoid", "recurrent_init": "glorot"})
    # out_features ≠ D (a dense skip matrix D) rides on two of the variants.
    cfg["crnn_normalize_out5"] = ("crnn", {"normalize": True, "out_features": 5})
    for p in rz.parametrization.PARAMETRIZATIONS:
        if p != rz.LRU.parametrization:
            cfg[f"lru_{p}"] = ("lru", {"parametrization": p})
    cfg["mh_linear_half_out5"] = ("mh_linear", {"num_heads": N // 2, "out_features": 5})
    cfg["gru_chrono"] = ("gru", {"chrono_init": 3.0})
    cfg["lstm_chrono_forget0"] = ("lstm", {"chrono_init": (2.0, 8.0), "forget_bias": 0.0})
    # The matmul-cell scans over uneven groups of batch rows (B = 3: 2 + 1 and 1 + 1 + 1).
    cfg["gru_groups2"] = ("gru", {"batch_groups": 2})
    cfg["rnn_groups3"] = ("rnn", {"batch_groups": 3})
    cfg["ln_rnn_groups2"] = ("ln_rnn", {"batch_groups": 2})
    cfg["lstm_groups2"] = ("lstm", {"batch_groups": 2})
    return cfg


CONFIGS = _configs()


def has_scan(name: str) -> bool:
    """Whether the layer registered as ``name`` takes a ``scan`` strategy."""
    return "scan" in {f.name for f in dataclasses.fields(rz.LAYERS[name])}


FRONTENDS = ("linen", "nnx")


@dataclasses.dataclass(frozen=True)
class Case:
    config: str
    method: str | None = None
    frontend: str = "linen"

    @property
    def name(self) -> str:
        return CONFIGS[self.config][0]

    @property
    def options(self) -> dict[str, Any]:
        return dict(CONFIGS[self.config][1])

    @property
    def id(self) -> str:
        parts = (self.config, self.method, None if self.frontend == "linen" else self.frontend)
        return "-".join(p for p in parts if p is not None)

    def layer(self, **overrides: Any) -> rz.RecurrentLayer:
        kw = {"hidden_size": N, **self.options, **overrides}
        if self.method is not None:
            kw.setdefault("scan", self.method)
        return rz.make_layer(self.name, **kw)

    def frontend_layer(self) -> Any:
        """The layer as the front-end has it: the linen layer, or its NNX twin."""
        if self.frontend == "nnx":
            return nnx_layer(self, self.variables["params"])
        return self.layer()

    @property
    def d_out(self) -> int:
        return self.options.get("out_features") or (N if self.name in CELL_NAMES else D)

    @property
    def complex_state(self) -> bool:
        return jnp.issubdtype(self.layer().state_dtype, jnp.complexfloating)

    # A state of several blocks (the LSTM's (c, h)) is one array [*batch, blocks·N] in the tests,
    # its blocks concatenated in order, so that every check indexes, stacks and compares it like
    # any other layer's; the layer sees its own structure.
    @property
    def state_blocks(self) -> int:
        return len(jax.tree.leaves(self.layer().state_shape(())))

    @property
    def state_size(self) -> int:
        return self.state_blocks * N

    def to_layer_state(self, h: Any) -> Any:
        """The tests' state array [..., blocks·N] as the layer's state structure."""
        if h is None or self.state_blocks == 1:
            return h
        return tuple(jnp.split(jnp.asarray(h), self.state_blocks, axis=-1))

    def from_layer_state(self, s: Any) -> Any:
        """The layer's state as the tests' one array [..., blocks·N]."""
        leaves = jax.tree.leaves(s)
        return leaves[0] if len(leaves) == 1 else jnp.concatenate(leaves, axis=-1)

    # -- shared, compiled ------------------------------------------------------------------
    @property
    def variables(self) -> Any:
        return variables(self.config)

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.variables["params"].items()}

    def call(self, x, h0=None, resets=None, lengths=None, reverse=False):
        """(state, y) of one sequence call, jitted once per case and input structure.

        Each new shape or None-pattern compiles again, so the tests use a few: the plain call
        ``(x, h0)`` and the full one ``(x, h0, resets, lengths)``, with [B, T, D] inputs.
        """
        out = call_fn(self, reverse)(self.variables, x, h0, resets, lengths)
        return jax.tree.map(np.asarray, out)

    def step(self, h, x_t):
        return jax.tree.map(np.asarray, step_fn(self.config, self.frontend)(self.variables, h, x_t))

    def full(self, x, h0, resets=None, lengths=None, reverse=False):
        """The call with every argument given: no resets and full lengths stand in for None."""
        batch = x.shape[:-2]
        resets = np.zeros((*batch, x.shape[-2]), bool) if resets is None else resets
        lengths = np.full(batch, x.shape[-2], np.int32) if lengths is None else lengths
        return self.call(x, h0, resets, lengths, reverse)

    def step_loop(self, x, h0):
        """Steps through x [B, T, D]: (states [B, T + 1, N] including h0, ys [B, T, D_out])."""
        hs, ys, h = [h0], [], h0
        for t in range(x.shape[-2]):
            h, y = self.step(h, x[..., t, :])
            hs.append(h)
            ys.append(y)
        return np.stack(hs, axis=-2), np.stack(ys, axis=-2)

    def cell_loop(self, x, h0, resets, lengths, ct_h, ct_y) -> dict[str, Any]:
        """The layer's reference cell, with no fused path: see :func:`cell_loop_fn`."""
        return jax.tree.map(
            np.asarray, cell_loop_fn(self.config)(self.params, x, h0, resets, lengths, ct_h, ct_y)
        )

    def vjp(self, x, h0, ct_h, ct_y) -> tuple[Any, Any]:
        """The VJP of the plain call's ``(state, y)`` at ``(ct_h, ct_y)``, w.r.t. (params, x)."""
        return jax.tree.map(np.asarray, vjp_fn(self)(self.params, x, h0, ct_h, ct_y))

    def reference_step(self) -> ref.Step:
        return ref.step_function(self.name, self.options, self.params)

    def reference_state(self, h) -> np.ndarray:
        """h in the reference's precision: complex128 or float64."""
        return np.asarray(h).astype(np.complex128 if self.complex_state else np.float64)

    def reference(self, x, h0, resets=None, lengths=None, reverse=False):
        """(states, ys) of :func:`reference.run_contract` over a flat batch x [B, T, D]."""
        step = self.reference_step()
        hs, ys = [], []
        for b in range(x.shape[0]):
            h, y = ref.run_contract(
                step,
                np.asarray(x[b], np.float64),
                self.reference_state(h0[b]),
                self.d_out,
                None if resets is None else resets[b],
                None if lengths is None else lengths[b],
                reverse,
            )
            hs.append(h)
            ys.append(y)
        return np.stack(hs), np.stack(ys)

    def random_state(self, batch_shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
        rng = np.random.default_rng(seed)
        h = rng.normal(size=(*batch_shape, self.state_size))
        if self.complex_state:
            h = h + 1j * rng.normal(size=h.shape)
            return h.astype(np.complex64)
        return h.astype(np.float32)


CELL_NAMES = tuple(n for n in rz.LAYERS if not has_scan(n))


def _seed(text: str) -> int:
    return zlib.crc32(text.encode())


@functools.cache
def variables(config: str) -> Any:
    """Initialised variables with every parameter nudged by N(0, 0.1²).

    The nudge makes zero-initialised biases and the γ = √(1 − |λ|²) coupling non-trivial, so the
    reference comparisons exercise every parameter.
    """
    case = Case(config)
    layer = case.layer()
    # Eagerly: its small ops compile once for all configurations, unlike one jit per layer.
    v = layer.init(jax.random.key(_seed(config)), jnp.zeros((1, 1, D), jnp.float32))
    rng = np.random.default_rng(_seed(config))
    return jax.tree.map(lambda a: np.asarray(a) + 0.1 * rng.normal(size=a.shape).astype(a.dtype), v)


@functools.cache
def nnx_split(case: Case) -> tuple[nnx.GraphDef, nnx.State]:
    """The graph and state of the NNX twin of the case's layer (``rz.nnx.from_linen``)."""
    return nnx.split(rz.nnx.from_linen(case.layer(), case.variables))


def nnx_layer(case: Case, params: Any) -> rz.nnx.RecurrentLayer:
    """The NNX twin holding ``params`` (the linen ``variables["params"]``, traced or not):
    ``nnx.merge`` of the cached graph with a state filled from them, as inside ``nnx.jit``."""
    graphdef, template = nnx_split(case)
    state = jax.tree.map(lambda a: a, template)  # a copy: the template stays concrete
    nnx.replace_by_pure_dict(state, dict(params))
    return nnx.merge(graphdef, state)


def _runner(case: Case) -> Callable[..., Any]:
    """``(variables, method, *args, **kwargs)`` → the case's layer applied through its front-end:
    ``layer.apply`` (linen), or the method of the NNX twin holding the same variables."""
    if case.frontend == "nnx":
        return lambda v, method, *a, **kw: getattr(nnx_layer(case, v["params"]), method)(*a, **kw)
    layer = case.layer()
    return lambda v, method, *a, **kw: layer.apply(v, *a, method=method, **kw)


@functools.cache
def call_fn(case: Case, reverse: bool) -> Callable[..., Any]:
    run = _runner(case)

    def f(v, x, h0, resets, lengths):
        h, y = run(
            v,
            "__call__",
            x,
            initial_state=case.to_layer_state(h0),
            resets=resets,
            lengths=lengths,
            reverse=reverse,
            return_state=True,
        )
        return case.from_layer_state(h), y

    return jit(f)


@functools.cache
def step_fn(config: str, frontend: str = "linen") -> Callable[..., Any]:
    case = Case(config, frontend=frontend)
    run = _runner(case)

    def f(v, h, x_t):
        h, y = run(v, "step", case.to_layer_state(h), x_t)
        return case.from_layer_state(h), y

    return jit(f)


def _plain_vjp(run: Callable[..., Any], p, x, h0, ct_h, ct_y) -> tuple[Any, Any]:
    (h, y), pullback = jax.vjp(lambda p, x: run(p, x, h0), p, x)
    return pullback((ct_h.astype(h.dtype), ct_y.astype(y.dtype)))


@functools.cache
def vjp_fn(case: Case) -> Callable[..., Any]:
    """The fused call's VJP (see :meth:`Case.vjp`), jitted once per case."""
    apply = _runner(case)

    def run(p, x, h0):
        s, y = apply(
            {"params": p}, "__call__", x, initial_state=case.to_layer_state(h0), return_state=True
        )
        return case.from_layer_state(s), y

    return jit(functools.partial(_plain_vjp, run))


@functools.cache
def long_fn(case: Case, **layer_options: Any) -> Callable[..., Any]:
    """The full call in both directions and its VJP, for the long-sequence options.

    ``f(params, x, h0, resets, lengths, ct_h, ct_y)`` returns ``{"forward": (state, y),
    "reverse": (state, y), "vjp": (∂params, ∂x)}``, the VJP being of the forward call's
    ``(state, y)`` at ``(ct_h, ct_y)``; the layer is built with ``layer_options`` (e.g.
    ``remat_chunk``). Jitted once per case and options.
    """
    layer = case.layer(**layer_options)

    def run(p, x, h0, resets, lengths, reverse):
        s, y = layer.apply(
            {"params": p},
            x,
            initial_state=case.to_layer_state(h0),
            resets=resets,
            lengths=lengths,
            reverse=reverse,
            return_state=True,
        )
        return case.from_layer_state(s), y

    def f(p, x, h0, resets, lengths, ct_h, ct_y):
        forward = lambda p, x, h0: run(p, x, h0, resets, lengths, False)
        return {
            "forward": forward(p, x, h0),
            "reverse": run(p, x, h0, resets, lengths, True),
            "vjp": _plain_vjp(forward, p, x, h0, ct_h, ct_y),
        }

    return jit(f)


@functools.cache
def cell_loop_fn(config: str) -> Callable[..., Any]:
    """``layer.cell`` alone, jitted once per configuration (the cell has no scan backend).

    ``f(params, x, h0, resets, lengths, ct_h, ct_y)`` returns a dict: ``"plain"``, the
    ``(state, y)`` of a ``lax.scan`` of ``layer.cell(params, ·, ·)`` over x [B, T, D] from h0;
    ``"vjp"``, that loop's VJP at ``(ct_h, ct_y)`` w.r.t. (params, x); and ``"forward"`` and
    ``"reverse"``, ``(state, y)`` of the full calling contract with resets and lengths, run by
    ``apply_sequence`` over the reference loop instead of the fused path.
    """
    case = Case(config)
    layer = case.layer()

    def run(p, x, h0):
        s, ys = jax.lax.scan(
            lambda s, x_t: layer.cell(p, s, x_t), case.to_layer_state(h0), jnp.swapaxes(x, 0, 1)
        )
        return case.from_layer_state(s), jnp.swapaxes(ys, 0, 1).astype(layer.dtype)

    def contract(p, x, h0, resets, lengths, reverse):
        s, y = rz.layers.base.apply_sequence(
            layer,
            p,
            x,
            initial_state=case.to_layer_state(h0),
            resets=resets,
            lengths=lengths,
            reverse=reverse,
            return_state=True,
            sequence=functools.partial(rz.layers.base.reference_sequence, layer),
        )
        return case.from_layer_state(s), y

    def f(p, x, h0, resets, lengths, ct_h, ct_y):
        return {
            "plain": run(p, x, h0),
            "vjp": _plain_vjp(run, p, x, h0, ct_h, ct_y),
            "forward": contract(p, x, h0, resets, lengths, False),
            "reverse": contract(p, x, h0, resets, lengths, True),
        }

    return jit(f)


# The harness compiles a few hundred tiny programs; XLA's backend optimisations cost a third of
# each compile and buy nothing at these sizes (the numbers are the same to float tolerance).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def jit(f: Callable[..., Any], **kw: Any) -> Callable[..., Any]:
    """jax.jit with the harness's fast-compile options (CPU only: tests run there in CI)."""
    if jax.default_backend() == "cpu":
        kw.setdefault("compiler_options", FAST_COMPILE)
    return jax.jit(f, **kw)


# "auto" is an alias of one of these (checked in test_scan.py); every other strategy, including
# ones added later to rz.scan.METHODS, runs through the whole harness.
SCAN_METHODS = tuple(m for m in rz.scan.METHODS if m != "auto")


def all_cases() -> list[Case]:
    """Every configuration, times every scan strategy where the layer has a ``scan`` field."""
    out = []
    for config, (name, _) in CONFIGS.items():
        methods = SCAN_METHODS if has_scan(name) else (None,)
        out.extend(Case(config, m) for m in methods)
    return out


CASES = all_cases()
CASE_PARAMS = [pytest.param(c, id=c.id) for c in CASES]
# One case per configuration (the layer's default backend), for checks that do not involve scans.
CONFIG_PARAMS = [pytest.param(Case(c), id=c) for c in CONFIGS]
LINEAR_CASE_PARAMS = [p for p in CASE_PARAMS if p.values[0].method is not None]
# The same cases through every front-end (linen first), for the contract and reference checks.
FRONTEND_CASE_PARAMS = [
    pytest.param(c, id=c.id)
    for f in FRONTENDS
    for c in (dataclasses.replace(c, frontend=f) for c in CASES)
]
FRONTEND_CONFIG_PARAMS = [
    pytest.param(Case(c, frontend=f), id=Case(c, frontend=f).id) for f in FRONTENDS for c in CONFIGS
]


def inputs(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def assert_close(actual: Any, expected: Any, what: str = "", **tol: float) -> None:
    tol = {**TOL, **tol}
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), err_msg=what, **tol)
