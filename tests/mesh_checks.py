"""Training on a data × sequence mesh = training on one device, in processes of their own.

Run as a script with XLA_FLAGS asking for host devices (``test_train_mesh`` starts it):

* ``python tests/mesh_checks.py devices OUT`` (4 host devices): on a 2 × 2 mesh ("data" ×
  "seq"), a linen ``SequenceModel`` of an LRU block (batch norm, lengths, resets, per-step outputs,
  a masked loss and metric over the valid steps) and an NNX ``SequenceModel`` of an ``mh_linear``
  block (two heads, pooling "mean") train to the one-device losses, metrics and parameters;
  a ``crnn`` model with pooling "last" gives the one-device outputs and batch statistics
  under :func:`recurrent_zoo.train.sequence_sharded`; the one-device variables of
  the LRU run go to ``OUT/reference.npz``. A model whose layers lack ``sequence_axis="seq"``
  and a T that the "seq" axis does not divide are refused with a ValueError.
* ``python tests/mesh_checks.py process OUT PORT ID`` (2 host devices, one of two processes on
  localhost): the LRU run on a 2 × 2 mesh spanning both processes; its variables go to
  ``OUT/variablesID.npz``.

Any mismatch raises, and the script exits non-zero.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

import recurrent_zoo as rz
from recurrent_zoo.train import data_mesh, data_sequence_mesh, sequence_sharded, train

B, T, D = 4, 8, 3  # chunks of 4 steps on the 2 × 2 mesh
NUM_STEPS = 3
AXIS = rz.train.SEQUENCE_AXIS
TOL = dict(rtol=2e-4, atol=1e-6)
LENGTHS = np.array([T, 5, 0, 7], np.int32)  # one ends inside the first chunk, one is empty


def batch_fn(key: jax.Array, step: int) -> dict[str, jax.Array]:
    """Inputs [B, T, D], per-step targets [B, T, 1], pooled targets [B, 1], lengths, resets."""
    x = jax.random.normal(key, (B, T, D))
    resets = np.zeros((B, T), bool)
    resets[0, T // 2] = True  # on the boundary of the two chunks
    resets[3, 2] = True
    return {
        "inputs": x,
        "targets": 0.3 * jnp.cumsum(x[..., :1], axis=1),
        "pooled": jnp.sum(x[..., :1], axis=1),
        "lengths": jnp.asarray(LENGTHS),
        "resets": jnp.asarray(resets),
    }


def masked_loss(pred: jax.Array, batch: dict) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean square error over the valid steps (global count), and their mean absolute error."""
    valid = (jnp.arange(T) < batch["lengths"][:, None])[..., None]
    count = jnp.sum(valid)
    err = pred - batch["targets"]
    mse = jnp.sum(jnp.where(valid, err**2, 0.0)) / count
    return mse, {"mae": jnp.sum(jnp.where(valid, jnp.abs(err), 0.0)) / count}


def pooled_loss(pred: jax.Array, batch: dict) -> jax.Array:
    return jnp.mean((pred - batch["pooled"]) ** 2)


def lru_setup():
    """``(model, loss_fn, batch_fn, optimizer)``: an LRU block with batch norm."""
    model = rz.SequenceModel(
        "lru",
        num_layers=1,
        d_model=4,
        out_features=1,
        hidden_size=4,
        norm="batch",
        layer_kwargs={"sequence_axis": AXIS},
    )
    tx = rz.optim.make_optimizer(1e-2, total_steps=NUM_STEPS, recurrent_lr_factor=0.5)
    return model, masked_loss, batch_fn, tx


def _run(setup, mesh):
    return train(*setup, num_steps=NUM_STEPS, log_every=1, verbose=False, mesh=mesh)


def _flat(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): np.asarray(jax.device_get(v)) for p, v in leaves}


def _same_run(want, got, what: str) -> None:
    for w, g in zip(want.history, got.history, strict=True):
        for name in ("last_loss", "loss", "grad_norm", *(n for n in w if n == "mae")):
            np.testing.assert_allclose(g[name], w[name], err_msg=f"{what}: {name}", **TOL)
    flat_want, flat_got = _flat(want.variables), _flat(got.variables)
    assert flat_want.keys() == flat_got.keys(), what
    for path, w in flat_want.items():
        np.testing.assert_allclose(flat_got[path], w, err_msg=f"{what}: {path}", **TOL)
    print("ok", what, [round(r["last_loss"], 5) for r in got.history], flush=True)


def check_training(out: str) -> None:
    one, mesh = data_mesh(jax.devices()[:1]), data_sequence_mesh(2)
    setup = lru_setup()
    want = _run(setup, one)
    assert "mae" in want.history[0]
    _same_run(want, _run(setup, mesh), "lru, batch norm, lengths, resets, masked loss")
    np.savez(f"{out}/reference.npz", **_flat(want.variables))

    from flax import nnx

    model = rz.nnx.SequenceModel(
        "mh_linear", 1, 4, 1, in_features=D, pooling="mean", norm="batch",
        layer_kwargs={"sequence_axis": AXIS, "num_heads": 2}, rngs=nnx.Rngs(0),
    )  # fmt: skip
    setup = (model, pooled_loss, batch_fn, rz.optim.make_optimizer(1e-2))
    _same_run(_run(setup, one), _run(setup, mesh), "nnx mh_linear, pooling mean")


def check_pooling() -> None:
    """A crnn model with pooling "last": outputs and updated batch statistics (mean pooling is
    the NNX run's)."""
    mesh = data_sequence_mesh(2)
    batch = batch_fn(jax.random.key(3), 0)
    inputs = {k: batch[k] for k in ("inputs", "lengths", "resets")}
    model = rz.SequenceModel(
        "crnn", num_layers=1, d_model=4, out_features=2, pooling="last", norm="batch",
        layer_kwargs={"sequence_axis": AXIS},
    )  # fmt: skip
    v = model.init(jax.random.key(0), batch["inputs"])

    def forward(params, state, key, inputs):
        x = inputs.pop("inputs")
        variables = {"params": params, **state}
        return model.apply(variables, x, train=True, mutable=["batch_stats"], **inputs)

    args = (v["params"], {"batch_stats": v["batch_stats"]}, jax.random.key(0), inputs)
    want = _flat(forward(*args[:3], dict(inputs)))
    for path, g in _flat(jax.jit(sequence_sharded(forward, mesh))(*args)).items():
        np.testing.assert_allclose(g, want[path], err_msg=f"pooling last: {path}", **TOL)
    print("ok crnn, pooling last", flush=True)


def check_errors() -> None:
    """A model not built for the mesh's "seq" axis, and T not a multiple of its size."""
    setup = lru_setup()
    for kw in ({}, {"sequence_axis": "time"}):
        model = rz.SequenceModel("lru", num_layers=1, d_model=4, out_features=1, layer_kwargs=kw)
        try:
            _run((model, *setup[1:]), data_sequence_mesh(2))
        except ValueError as e:
            assert "never communicates over it" in str(e) and "sequence_axis='seq'" in str(e), e
        else:
            raise AssertionError(f"a model with layer_kwargs={kw} trained on a sequence mesh")
    odd = lambda key, step: {**batch_fn(key, step), "inputs": jnp.ones((B, 6, D))}
    try:
        _run((setup[0], setup[1], odd, setup[3]), data_sequence_mesh(4))
    except ValueError as e:
        assert "multiple of the size of the mesh's 'seq' axis (4)" in str(e), e
    else:
        raise AssertionError("T = 6 split over 4 devices")
    print("ok errors", flush=True)


def main(argv: list[str]) -> int:
    mode, out = argv[1], argv[2]
    if mode == "devices":
        assert jax.device_count() == 4, jax.devices()
        check_errors()
        check_pooling()
        check_training(out)
    else:
        from recurrent_zoo.train import initialize_distributed

        initialize_distributed(f"localhost:{argv[3]}", 2, int(argv[4]))
        assert jax.process_count() == 2 and jax.device_count() == 4
        r = _run(lru_setup(), data_sequence_mesh(2))
        np.savez(f"{out}/variables{jax.process_index()}.npz", **_flat(r.variables))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
