"""Training on a data × sequence mesh: batch norm's statistics over a sharded sequence, the
mesh's checks, and in processes of their own (``mesh_checks.py``) 4 host devices as a 2 × 2 mesh,
and two processes of two host devices each, giving the one-device numbers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrent_zoo as rz
from recurrent_zoo.models.norms import SequenceBatchNorm
from recurrent_zoo.models.sequence_model import shared_sequence_axis
from recurrent_zoo.train import SEQUENCE_AXIS, data_sequence_mesh

TESTS = Path(__file__).parent
SCRIPT = str(TESTS / "mesh_checks.py")
# Tiny programs: XLA's backend optimisations would cost more than they buy.
FAST = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def test_sequence_batch_norm_is_flax_batch_norm_on_one_device():
    """Unsharded, the zoo's batch norm (global-count statistics) gives nn.BatchNorm's outputs
    and running averages, padding masked out, with the same variables."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5, 4)), jnp.float32)
    mask = np.ones((3, 5), bool)
    mask[1, 2:] = False
    mask[2, :] = False
    flax_bn, zoo_bn = nn.BatchNorm(momentum=0.8), SequenceBatchNorm(SEQUENCE_AXIS, momentum=0.8)
    v = flax_bn.init(jax.random.key(0), x, use_running_average=False)
    assert jax.tree.map(jnp.shape, zoo_bn.init(jax.random.key(0), x)) == jax.tree.map(jnp.shape, v)
    v = {"params": {"scale": jnp.arange(1.0, 5.0), "bias": jnp.ones(4)}, **v}
    run = lambda bn: bn.apply(
        v, x, use_running_average=False, mask=mask[..., None], mutable=["batch_stats"]
    )
    (want, want_stats), (got, got_stats) = run(flax_bn), run(zoo_bn)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5), got_stats, want_stats)


def test_mesh_and_model_checks():
    mesh = data_sequence_mesh(1)
    assert mesh.axis_names == ("data", SEQUENCE_AXIS) and mesh.devices.shape == (1, 1)
    for bad in (0, 2, 1.0):
        with pytest.raises(ValueError, match="sequence must be a positive int dividing"):
            data_sequence_mesh(bad)
    layers = [rz.LRU(hidden_size=4, sequence_axis=SEQUENCE_AXIS), rz.LRU(hidden_size=4)]
    with pytest.raises(ValueError, match=r"same mesh axis.*\['seq', None\]"):
        shared_sequence_axis(layers)
    assert shared_sequence_axis(layers[:1]) == SEQUENCE_AXIS
    assert shared_sequence_axis([rz.GRU(hidden_size=4)]) is None


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", **extra)
    return env


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """``mesh_checks.py devices``: its checks pass; its one-device variables, for the next test."""
    out = tmp_path_factory.mktemp("mesh")
    flags = f"--xla_force_host_platform_device_count=4 {FAST}"
    child = subprocess.run(
        [sys.executable, SCRIPT, "devices", str(out)],
        env=_env(XLA_FLAGS=flags),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stderr + child.stdout
    assert child.stdout.count("ok ") == 4, child.stdout
    return out / "reference.npz"


def test_a_two_by_two_mesh_gives_the_one_device_numbers(reference):
    """Losses, metrics and parameters of linen and NNX models, pooled outputs and batch
    statistics (see ``mesh_checks.py``)."""
    assert reference.is_file()


def test_two_processes_on_a_two_by_two_mesh_give_the_one_device_numbers(reference, tmp_path):
    """Two processes on localhost, each with two host devices: batch over the processes, time
    over each process's devices."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = str(sock.getsockname()[1])
    flags = f"--xla_force_host_platform_device_count=2 {FAST}"
    children = [
        subprocess.Popen(
            [sys.executable, SCRIPT, "process", str(tmp_path), port, str(i)],
            env=_env(XLA_FLAGS=flags),
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for child in children:
        _, err = child.communicate(timeout=600)
        assert child.returncode == 0, err
    want = np.load(reference)
    for i in range(2):
        got = np.load(tmp_path / f"variables{i}.npz")
        assert sorted(got.files) == sorted(want.files)
        for name in want.files:
            np.testing.assert_allclose(got[name], want[name], rtol=2e-4, atol=1e-6, err_msg=name)
