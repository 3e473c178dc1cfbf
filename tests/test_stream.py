"""Streaming training (``train(..., stream=True)``, truncated BPTT): the stream data source, the
carried state against one long call (outputs, final state, the truncated gradient), the NNX
front-end, the streaming evaluation, a SIGTERM-killed streaming run resuming exactly, and 4 host
devices giving the one-device numbers.

The reference of each check is the model called once over the whole stream (each lane of it),
with the same resets; a step of the streaming run must reproduce that call's window.
"""

from __future__ import annotations

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import test_train
from test_train import TESTS, _env, figures, sigterm_after_checkpoint_2

import recurrent_zoo as rz
from recurrent_zoo import data
from recurrent_zoo.tasks import language_model as lm
from recurrent_zoo.train import train

NUM_STEPS = 8
V, B, T, WINDOWS = 8, 4, 6, 4  # classes, streams, window length, windows per lane
SEP = V - 1
# test_train's persistent compilation cache, autouse here too (the subprocesses share it).
compilation_cache = test_train.compilation_cache


def token_stream() -> np.ndarray:
    """B lanes of WINDOWS windows of T tokens (+1 target), documents ended by SEP."""
    ids = np.random.default_rng(0).integers(0, SEP, B * T * WINDOWS + 1).astype(np.int32)
    ids[[4, 15, 30, 31, 50, 77]] = SEP  # document ends inside windows and across window edges
    return ids


def stream_setup(optimizer: optax.GradientTransformation | None = None):
    """``(model, loss_fn, batch_fn, optimizer)`` of a 2-block LRU language model on the stream
    (no norm, no MLP: little to compile)."""
    ids = token_stream()
    batch_fn = data.next_token_stream(ids, B, T, data.document_starts(ids, SEP))
    model = rz.SequenceModel(
        "lru", num_layers=2, d_model=4, out_features=V, vocab_size=V, norm=None, mlp=None
    )
    tx = optimizer or rz.optim.make_optimizer(1e-2, total_steps=NUM_STEPS)
    return model, lambda p, b: lm.cross_entropy(p, b["targets"]), batch_fn, tx


def keep_gradients() -> optax.GradientTransformation:
    """Leaves the parameters as they are and keeps the last step's gradient as its state."""

    def init(params):
        return {"grads": jax.tree.map(jnp.zeros_like, params)}

    def update(grads, state, params=None):
        return jax.tree.map(jnp.zeros_like, grads), {"grads": grads}

    return optax.GradientTransformation(init, update)


@jax.jit
def long_call(variables: dict, inputs: jax.Array, resets: jax.Array, steps: int = 3 * T):
    """``(states after step ``steps``, logits)`` of the streaming runs' model in one call over
    ``inputs`` [B, 3T] (one compiled program for every check)."""
    lengths = jnp.full(inputs.shape[:1], steps)
    return stream_setup()[0].apply(
        variables, inputs, resets=resets, lengths=lengths, return_state=True
    )


def lanes(steps: int) -> dict[str, np.ndarray]:
    """The first ``steps`` windows of every lane as one long batch [B, steps · T]."""
    _, _, batch_fn, _ = stream_setup()
    parts = [batch_fn(None, k) for k in range(steps)]
    return {n: np.concatenate([p[n] for p in parts], axis=1) for n in parts[0]}


def test_stream_batches_are_consecutive_windows_of_parallel_lanes():
    ids = np.arange(33, dtype=np.int32)  # 2 lanes of 16 tokens (+1): 3 windows of 5 each
    starts = data.document_starts(np.where(ids % 7 == 6, -1, ids), -1)
    np.testing.assert_array_equal(np.flatnonzero(starts), [0, 7, 14, 21, 28])
    batch_fn = data.next_token_stream(ids, 2, 5, starts)
    b = [batch_fn(jax.random.key(k), k) for k in range(4)]
    np.testing.assert_array_equal(b[0]["inputs"], [[0, 1, 2, 3, 4], [16, 17, 18, 19, 20]])
    np.testing.assert_array_equal(b[1]["inputs"], b[0]["inputs"] + 5)  # the lane goes on
    np.testing.assert_array_equal(b[2]["targets"], b[2]["inputs"] + 1)
    np.testing.assert_array_equal(b[3]["inputs"], b[0]["inputs"])  # the next pass
    # Resets at the document starts (7, 14, 21, 28) and where each pass over a lane begins.
    np.testing.assert_array_equal(
        np.concatenate([b[k]["resets"] for k in range(3)], axis=1).nonzero(),
        ([0, 0, 0, 1, 1, 1], [0, 7, 14, 0, 5, 12]),
    )
    with pytest.raises(ValueError, match="fewer than 2 streams"):
        data.next_token_stream(ids[:10], 2, 5)


@pytest.fixture(scope="module")
def frozen():
    """3 streaming steps with the parameters held fixed, the last step's gradient kept."""
    model, loss_fn, batch_fn, tx = stream_setup(keep_gradients())
    return train(model, loss_fn, batch_fn, tx, num_steps=3, log_every=1, verbose=False, stream=True)


def test_streaming_equals_one_long_call(frozen):
    _, loss_fn, _, _ = stream_setup()
    long = lanes(3)
    states, logits = long_call(frozen.variables, long["inputs"], long["resets"])
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), frozen.carry, states
    )
    # Each step's loss is the long call's loss over that window.
    for k, record in enumerate(frozen.history):
        window = slice(k * T, (k + 1) * T)
        expected = loss_fn(logits[:, window], {"targets": long["targets"][:, window]})
        np.testing.assert_allclose(record["last_loss"], expected, rtol=1e-5)
    # Each window from zeros (a reset at every window's start) gives other outputs: what
    # matches is the carried state.
    cut = long["resets"] | (np.arange(3 * T) % T == 0)
    _, fresh = long_call(frozen.variables, long["inputs"], cut)
    assert not np.allclose(fresh[:, 2 * T :], logits[:, 2 * T :], atol=1e-4)


def test_the_gradient_is_the_windows_with_the_incoming_state_stopped(frozen):
    model, loss_fn, _, _ = stream_setup()
    long = lanes(3)
    incoming, _ = long_call(frozen.variables, long["inputs"], long["resets"], 2 * T)
    last = {n: v[:, 2 * T :] for n, v in long.items()}

    def window_loss(params):
        _, y = model.apply(
            {"params": params},
            last["inputs"],
            initial_state=incoming,  # a constant: no gradient flows into the earlier windows
            resets=last["resets"],
            return_state=True,
        )
        return loss_fn(y, last)

    expected = jax.jit(jax.grad(window_loss))(frozen.params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        frozen.state["opt_state"]["grads"],
        expected,
    )


def test_nnx_models_stream_too():
    from flax import nnx

    model = rz.nnx.SequenceModel(
        "lru", 2, 4, V, vocab_size=V, norm=None, mlp=None, rngs=nnx.Rngs(0)
    )
    _, loss_fn, batch_fn, _ = stream_setup()
    result = train(
        model, loss_fn, batch_fn, keep_gradients(), num_steps=3, verbose=False, stream=True
    )
    long = lanes(3)
    call = nnx.jit(lambda m, x, r: m(x, resets=r, return_state=True))
    states, _ = call(result.model, long["inputs"], long["resets"])
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), result.carry, states
    )


class Stateless(nn.Module):
    """Takes the streaming keywords but returns no state."""

    @nn.compact
    def __call__(self, x, *, resets=None, initial_state=None, return_state=False):
        return nn.Embed(V, V)(x)


def test_a_model_that_returns_no_state_is_refused():
    _, loss_fn, batch_fn, tx = stream_setup()
    with pytest.raises(TypeError, match="return_state"):
        train(Stateless(), loss_fn, batch_fn, tx, num_steps=1, verbose=False, stream=True)


def test_evaluate_stream_carries_the_state_through_the_validation_stream(frozen):
    model, loss_fn, _, _ = stream_setup()
    ids = token_stream()[: B * 3 * T + 2]  # 4 lanes of 18 predictions, one token left over
    starts = data.document_starts(ids, SEP)
    # Windows of 7: the third one padded.
    got = lm.evaluate_stream(model, frozen.variables, ids, 7, B, starts)
    index = (np.arange(B) * 3 * T)[:, None] + np.arange(3 * T)
    resets = starts[index]
    resets[:, 0] = True
    _, logits = long_call(frozen.variables, ids[index], resets)
    assert got["tokens"] == B * 3 * T
    np.testing.assert_allclose(got["loss"], loss_fn(logits, {"targets": ids[index + 1]}), rtol=1e-5)
    np.testing.assert_allclose(got["perplexity"], np.exp(got["loss"]), rtol=1e-6)


# -- real processes: killed and resumed; 4 host devices ------------------------------------------
CHILD = """
import sys, time
import jax
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_stream import NUM_STEPS, stream_setup
from recurrent_zoo.train import train

mode, out = sys.argv[2], sys.argv[3]
model, loss_fn, batch_fn, tx = stream_setup()
if mode == "devices":
    assert jax.device_count() == 4
    r = train(model, loss_fn, batch_fn, tx, num_steps=NUM_STEPS, verbose=False, stream=True)
    # Each device holds the carried state of its own row of the batch.
    for leaf in jax.tree.leaves(r.carry):
        assert {s.data.shape[0] for s in leaf.addressable_shards} == {1}, leaf.sharding
    leaves = jax.tree_util.tree_flatten_with_path({"carry": r.carry, **r.variables})[0]
    from recurrent_zoo.train import data_sequence_mesh
    try:  # time split over a "seq" axis: not with a carried state (yet)
        train(model, loss_fn, batch_fn, tx, num_steps=1, verbose=False, stream=True,
              mesh=data_sequence_mesh(2))
        raise AssertionError("stream=True on a data x sequence mesh was accepted")
    except ValueError as e:
        assert "'seq' axis" in str(e), e
    np.savez(f"{out}/state.npz",
             **{jax.tree_util.keystr(p): np.asarray(jax.device_get(v)) for p, v in leaves})
else:
    def slow(key, step):  # leaves the parent time to send the signal mid-run
        time.sleep(0.3)
        return batch_fn(key, step)
    r = train(model, loss_fn, slow, tx, num_steps=NUM_STEPS, checkpoint_dir=out,
              checkpoint_every=2, log_every=1, verbose=False, stream=True)
    print("interrupted", r.interrupted, r.step)
"""


@pytest.fixture(scope="module")
def straight():
    """NUM_STEPS straight streaming steps (the reference for resume and devices)."""
    return train(*stream_setup(), num_steps=NUM_STEPS, log_every=4, verbose=False, stream=True)


def test_sigterm_then_resume_continues_a_stream_exactly(straight, compilation_cache, tmp_path):
    ckpt = tmp_path / "ckpt"
    step = sigterm_after_checkpoint_2(CHILD, ckpt, compilation_cache, NUM_STEPS)
    resumed = train(
        *stream_setup(), num_steps=NUM_STEPS, checkpoint_dir=ckpt, verbose=False, stream=True
    )
    assert resumed.resumed_from == step  # the checkpoint written on SIGTERM
    # The carried state came back from the checkpoint: the parameters and the state match.
    jax.tree.map(np.testing.assert_array_equal, resumed.variables, straight.variables)
    jax.tree.map(np.testing.assert_array_equal, resumed.carry, straight.carry)
    assert figures(resumed.history[-1]) == figures(straight.history[-1])


def test_four_devices_stream_like_one(straight, compilation_cache, tmp_path):
    """The batch and the carried state split over 4 host devices: the one-device numbers."""
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(TESTS), "devices", str(tmp_path)],
        env=_env(compilation_cache, XLA_FLAGS="--xla_force_host_platform_device_count=4"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr
    got = np.load(tmp_path / "state.npz")
    leaves = jax.tree_util.tree_flatten_with_path({"carry": straight.carry, **straight.variables})
    assert len(got.files) == len(leaves[0])
    for path, want in leaves[0]:
        np.testing.assert_allclose(got[jax.tree_util.keystr(path)], want, rtol=2e-4, atol=1e-6)
