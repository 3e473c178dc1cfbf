"""``train`` on Flax NNX models: the loss goes down, the trained module comes back, dropout and
batch norm follow NNX's modes, a SIGTERM-killed run resumes bit for bit, the NaN guard, and 4
host devices give the one-device numbers.

The model is :class:`nnx_models.TinyModel` (nnx parts and a ToNNX-wrapped LRU). One straight run
(``straight``) is the reference; the compilation cache of ``test_train`` lets the subprocesses
reuse its compiled program.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_train
from flax import nnx
from nnx_models import TinyModel, tiny_task
from test_train import _env, check_nan_guard, figures, sigterm_after_checkpoint_2

import recurrent_zoo as rz
from recurrent_zoo.train import train

NUM_STEPS = 12
# test_train's persistent compilation cache, autouse here too (the subprocesses share it).
compilation_cache = test_train.compilation_cache


def nnx_setup():
    """``(model, loss_fn, batch_fn, optimizer)`` for the NNX runs."""
    model = TinyModel(rngs=nnx.Rngs(0))
    batch_fn, loss_fn = tiny_task()
    tx = rz.optim.make_optimizer(3e-2, total_steps=NUM_STEPS, recurrent_lr_factor=0.5)
    return model, loss_fn, batch_fn, tx


@pytest.fixture(scope="module")
def setup():
    return nnx_setup()


@pytest.fixture(scope="module")
def straight(setup):
    """NUM_STEPS straight steps, seed 0 (the reference for resume and devices)."""
    return train(*setup, num_steps=NUM_STEPS, log_every=4, verbose=False)


def _pure(module: nnx.Module, kind: type) -> dict:
    return nnx.to_pure_dict(nnx.state(module, kind))


def test_trains_and_returns_the_trained_module_in_eval_mode(setup, straight):
    model, loss_fn, _, _ = setup
    assert straight.step == NUM_STEPS and [r["step"] for r in straight.history] == [4, 8, 12]
    assert set(straight.variables) == {"params", "batch_stats"}
    trained = straight.model
    assert isinstance(trained, TinyModel) and trained is not model
    jax.tree.map(np.testing.assert_array_equal, _pure(trained, nnx.Param), straight.params)
    jax.tree.map(
        np.testing.assert_array_equal,
        _pure(trained, nnx.BatchStat),
        straight.state["model_state"]["batch_stats"],
    )
    # Batch norm ran on the batches' statistics and updated its running averages.
    assert np.all(np.asarray(trained.norm.mean[...]) != 0.0)
    assert trained.dropout.deterministic and trained.norm.use_running_average
    # The module passed in is left as it was: same values, same (training) mode.
    fresh = TinyModel(rngs=nnx.Rngs(0))
    jax.tree.map(np.testing.assert_array_equal, _pure(model, nnx.Param), _pure(fresh, nnx.Param))
    assert not model.dropout.deterministic and not model.norm.use_running_average
    # Held-out loss, both in evaluation mode.
    batch = tiny_task(batch_size=64)[0](jax.random.key(99), 0)
    before = nnx.clone(model)
    before.eval()
    loss = lambda m: float(loss_fn(m(batch["inputs"]), batch))
    assert loss(trained) < 0.8 * loss(before)


def test_trains_a_zoo_nnx_sequence_model_whose_checkpoint_the_linen_twin_reads():
    """``rz.nnx.SequenceModel`` with batch norm and dropout trains in train mode (batch
    statistics move, dropout on) and comes back in eval mode; its variables are the linen
    twin's, so ``rz.SequenceModel.apply`` gives the trained module's numbers."""
    kw = dict(num_layers=1, d_model=4, out_features=1, norm="batch", dropout=0.1)
    model = rz.nnx.SequenceModel("lru", in_features=3, rngs=nnx.Rngs(0), **kw)
    batch_fn, loss_fn = tiny_task()
    r = train(model, loss_fn, batch_fn, rz.optim.make_optimizer(1e-2), num_steps=3, verbose=False)
    assert all(np.isfinite(rec["last_loss"]) for rec in r.history)
    assert set(r.variables) == {"params", "batch_stats"}
    trained = r.model
    assert np.any(np.asarray(trained.blocks_0.norm.mean[...]) != 0.0)
    assert trained.blocks_0.dropout.deterministic and trained.blocks_0.norm.use_running_average
    x = batch_fn(jax.random.key(5), 0)["inputs"]
    linen = rz.SequenceModel("lru", **kw).apply(rz.nnx.to_linen(trained), x)
    np.testing.assert_allclose(linen, trained(x), rtol=1e-5, atol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, rz.nnx.to_linen(trained), r.variables)


class Dropped(nnx.Module):
    """y = dropout(x) · w · lengths (lengths must be passed: it is not optional)."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.w = nnx.Param(jnp.ones(()))
        self.dropout = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x, lengths):
        return self.dropout(x) * self.w * lengths[:, None, None]


def test_dropout_is_on_with_a_fresh_mask_each_step_and_lengths_are_passed():
    def batch_fn(key, step):
        return {"inputs": jnp.ones((4, 8, 3)), "lengths": jnp.full((4,), 2)}

    model = Dropped(nnx.Rngs(0))
    run = lambda: train(
        model,
        lambda y, b: jnp.mean(y),
        batch_fn,
        rz.optim.make_optimizer(1e-9),
        num_steps=3,
        log_every=1,
        verbose=False,
    )
    losses = [r["last_loss"] for r in run().history]
    # Without dropout every loss would be 2 (= w · lengths); with it, the mean of 96 entries
    # 0 or 4 (kept and scaled by 1 / 0.5): a multiple of 1/24.
    assert all(loss != 2.0 and np.isclose(loss * 24, round(loss * 24)) for loss in losses)
    assert len(set(losses)) == 3  # a new mask each step
    assert [r["last_loss"] for r in run().history] == losses  # and the same ones again


def test_nan_guard_stops_naming_the_step_and_keeps_the_last_checkpoint(setup, tmp_path):
    check_nan_guard(setup, tmp_path, NUM_STEPS)


# -- real processes ------------------------------------------------------------------------
TESTS = Path(__file__).parent
CHILD = """
import sys, time
import numpy as np
import jax
sys.path.insert(0, sys.argv[1])
from test_train_nnx import NUM_STEPS, nnx_setup
from recurrent_zoo.train import train

mode, out = sys.argv[2], sys.argv[3]
model, loss_fn, batch_fn, tx = nnx_setup()
if mode == "devices":
    assert jax.device_count() == 4
    r = train(model, loss_fn, batch_fn, tx, num_steps=NUM_STEPS, verbose=False)
    leaves = jax.tree_util.tree_flatten_with_path(r.variables)[0]
    np.savez(f"{out}/variables.npz",
             **{jax.tree_util.keystr(p): np.asarray(jax.device_get(v)) for p, v in leaves})
else:
    def slow(key, step):  # leaves the parent time to send the signal mid-run
        time.sleep(0.3)
        return batch_fn(key, step)
    r = train(model, loss_fn, slow, tx, num_steps=NUM_STEPS, checkpoint_dir=out,
              checkpoint_every=2, log_every=1, verbose=False)
    print("interrupted", r.interrupted, r.step)
"""


def test_sigterm_then_resume_continues_exactly(setup, straight, compilation_cache, tmp_path):
    ckpt = tmp_path / "ckpt"
    step = sigterm_after_checkpoint_2(CHILD, ckpt, compilation_cache, NUM_STEPS)
    resumed = train(*setup, num_steps=NUM_STEPS, checkpoint_dir=ckpt, verbose=False)
    assert resumed.resumed_from == int(step)  # the checkpoint written on SIGTERM
    jax.tree.map(np.testing.assert_array_equal, resumed.variables, straight.variables)
    jax.tree.map(np.testing.assert_array_equal, resumed.state, straight.state)
    # The loss window is part of the checkpoint: the last record is the straight run's.
    assert figures(resumed.history[-1]) == figures(straight.history[-1])


def test_four_devices_give_the_one_device_numbers(straight, compilation_cache, tmp_path):
    """The batch split over 4 host devices (params replicated): the one-device numbers."""
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(TESTS), "devices", str(tmp_path)],
        env=_env(compilation_cache, XLA_FLAGS="--xla_force_host_platform_device_count=4"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr
    got = np.load(tmp_path / "variables.npz")
    leaves = jax.tree_util.tree_flatten_with_path(straight.variables)[0]
    assert len(got.files) == len(leaves)
    for path, want in leaves:
        np.testing.assert_allclose(got[jax.tree_util.keystr(path)], want, rtol=2e-4, atol=1e-6)
