"""The paper's teacher–student task: learn a linear time-invariant system with long memory.

Teacher: h_t = A h_{t−1} + B x_t, y_t = C h_t + D x_t, h_0 = 0, x_t ~ N(0, 1) i.i.d. A is dense
and real with eigenvalue magnitudes in [ν0, 1) (``initializers.eigenvalue_controlled``), so ν0
sets how long the teacher remembers.

Registered as the training task ``teacher-student`` (``recurrent-zoo train teacher-student``);
:func:`train_students` trains the paper's students over seeds × learning rates at once (the
``teacher-student`` bench).
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from recurrent_zoo import initializers as inits
from recurrent_zoo import scan
from recurrent_zoo.tasks.registry import Task, TaskSpec, register, supervised

Array = jax.Array

#: The paper's ν0 grid, 1 − 0.01·2^k.
NU0_GRID = (0.36, 0.68, 0.84, 0.92, 0.96, 0.98, 0.99)


class Teacher(NamedTuple):
    """A linear time-invariant system. A [n, n], B [n, d_in], C [d_out, n], D [d_out, d_in]."""

    A: Array
    B: Array
    C: Array
    D: Array


def make_teacher(
    key: Array,
    nu0: float,
    hidden_size: int = 10,
    theta0: float = math.pi,
    d_in: int = 1,
    d_out: int = 1,
) -> Teacher:
    """Draws the paper's teacher: B ~ N(0, 1), C ~ N(0, 1/n), D ~ N(0, 1)."""
    ka, kb, kc, kd = jax.random.split(key, 4)
    n = hidden_size
    return Teacher(
        A=inits.eigenvalue_controlled(nu0, theta0)(ka, (n, n)),
        B=jax.random.normal(kb, (n, d_in)),
        C=jax.random.normal(kc, (d_out, n)) / math.sqrt(n),
        D=jax.random.normal(kd, (d_out, d_in)),
    )


def run_teacher(teacher: Teacher, x: Array) -> Array:
    """y [B, T, d_out] of the teacher on x [B, T, d_in], from h_0 = 0."""
    u = jnp.einsum("btd,nd->tbn", x, teacher.B)[:, :, None, :]  # time-major, one block
    h0 = jnp.zeros((x.shape[0], 1, teacher.A.shape[0]), u.dtype)
    _, hs = scan.linear_scan(teacher.A[None], u, h0, method="sequential", structure="block")
    return jnp.einsum("tbn,on->bto", hs[:, :, 0], teacher.C) + jnp.einsum(
        "btd,od->bto", x, teacher.D
    )


def sample_batch(
    key: Array, teacher: Teacher, batch_size: int, length: int = 300
) -> tuple[Array, Array]:
    """A fresh batch: x ~ N(0, 1) [B, T, d_in] and the teacher's y [B, T, d_out]."""
    x = jax.random.normal(key, (batch_size, length, teacher.B.shape[1]))
    return x, run_teacher(teacher, x)


def loss(prediction: Array, target: Array) -> Array:
    """½·mean over batch, time and outputs of (ŷ − y)²."""
    return 0.5 * jnp.mean(jnp.square(prediction - target))


# -- students ----------------------------------------------------------------------------------

#: The paper's students, by name: (layer class name, hidden size, fixed options). Diagonal
#: students start on the ring ν0 ≤ |λ| ≤ 1; dense and block-diagonal ones from the
#: eigenvalue-controlled init with minimum magnitude 0.
STUDENTS: dict[str, str] = {
    "rnn": "dense linear RNN, 64 units (1 head)",
    "block2": "2×2 block-diagonal linear RNN, 64 units (32 heads)",
    "block2_128": "2×2 block-diagonal linear RNN, 128 units (64 heads)",
    "crnn": "complex diagonal RNN, 64 units, λ = a + ib, no γ",
    "crnn_gamma": "complex diagonal RNN, 64 units, λ = a + ib, learned γ",
    "lru": "LRU, 64 units (exponential parametrisation, learned γ)",
}


def make_student(
    name: str,
    nu0: float,
    theta0: float = math.pi,
    hidden_size: int = 64,
    num_heads: int = 1,
    **layer_kwargs: Any,
) -> nn.Module:
    """The student ``name`` (a key of :data:`STUDENTS`, or ``"heads"``) for teachers of memory ν0.

    ``"heads"`` is the linear RNN with ``num_heads`` dense blocks of the paper's Fig. 11. The
    diagonal students' |λ| start uniform (in area) on the ring [ν0, 1], arg λ ~ U[−θ0, θ0]; the
    block students use the teacher's init with minimum magnitude 0. ``hidden_size`` counts
    complex units for the diagonal students and real units for the others ("block2_128" doubles
    it). ``layer_kwargs`` go to the layer (e.g. ``scan``, ``unroll``).
    """
    from recurrent_zoo.layers import LRU, ComplexDiagonalRNN, MultiHeadLinearRNN

    if not 0.0 <= nu0 < 1.0:
        raise ValueError(f"nu0 must be in [0, 1), got {nu0!r}")
    n = hidden_size
    ring = dict(r_min=nu0, r_max=1.0, min_phase=-theta0, max_phase=theta0, **layer_kwargs)
    block = dict(r_min=0.0, max_phase=theta0, **layer_kwargs)
    if name == "rnn":
        return MultiHeadLinearRNN(n, num_heads=1, **block)
    if name == "block2":
        return MultiHeadLinearRNN(n, num_heads=n // 2, **block)
    if name == "block2_128":
        return MultiHeadLinearRNN(2 * n, num_heads=n, **block)
    if name == "heads":
        return MultiHeadLinearRNN(n, num_heads=num_heads, **block)
    if name == "crnn":
        return ComplexDiagonalRNN(n, normalize=False, **ring)
    if name == "crnn_gamma":
        return ComplexDiagonalRNN(n, normalize=True, **ring)
    if name == "lru":
        return LRU(n, **ring)
    raise ValueError(f"student must be one of {[*STUDENTS, 'heads']}, got {name!r}")


#: Students whose init :func:`paper_init` changes: the complex diagonal ones and the LRU.
PAPER_INIT_STUDENTS = ("crnn", "crnn_gamma", "lru")


def paper_init(name: str, params: dict[str, Array], key: Array) -> dict[str, Array]:
    """The student's parameters with B, C and D redrawn as the paper's code draws them.

    For the complex diagonal students and the LRU (:data:`PAPER_INIT_STUDENTS`) the paper's
    code draws every matrix as N(0, 1)/√(its first axis) in its own layout: B_re, B_im [N, d_in]
    ~ N(0, 1/N), C_re, C_im [d_out, N] ~ N(0, 1/d_out) and D [d_out, d_in] ~ N(0, 1/d_out);
    the zoo's layers draw B ~ N(0, 1/(2·d_in)) and C ~ N(0, 1/N). λ and γ keep the zoo's draw
    (the same ring and phases as the paper's). D here is the layer's element-wise D [d_in], the
    paper's full matrix when d_in = d_out = 1 (the task's case). Other students come back as
    they are.
    """
    if name not in PAPER_INIT_STUDENTS:
        return params
    d_in, n = params["B_re"].shape
    d_out = params["C_re"].shape[1]
    if params["D"].shape != (d_in,) or d_in != d_out:
        raise ValueError(f"paper_init needs d_in = d_out, got d_in={d_in} and d_out={d_out}")
    kb_re, kb_im, kc_re, kc_im, kd = jax.random.split(key, 5)
    dtype = params["B_re"].dtype
    normal = lambda k, shape, var: jax.random.normal(k, shape, dtype) * math.sqrt(var)
    return {
        **params,
        "B_re": normal(kb_re, (d_in, n), 1 / n),
        "B_im": normal(kb_im, (d_in, n), 1 / n),
        "C_re": normal(kc_re, (n, d_out), 1 / d_out),
        "C_im": normal(kc_im, (n, d_out), 1 / d_out),
        "D": normal(kd, (d_in,), 1 / d_out),
    }


# -- training ----------------------------------------------------------------------------------


class SweepResult(NamedTuple):
    """What :func:`train_students` returns: S seeds × L learning rates of one student, K logged
    chunks (not :class:`recurrent_zoo.train.TrainResult`, the state of one training run).

    final_loss [S, L]: loss on a fresh evaluation batch after training (inf where it diverged).
    curve [S, L, K]: mean training loss over each chunk of steps.
    params: the trained parameters, leaves [S, L, ...].
    """

    final_loss: np.ndarray
    curve: np.ndarray
    params: Any


def cosine_adam(learning_rate: Array | float, steps: int, end_value: float = 1e-7):
    """Adam with the learning rate decayed by a cosine from its peak to ``end_value``, no warm-up."""
    peak = jnp.asarray(learning_rate, jnp.float32)
    return optax.adam(optax.cosine_decay_schedule(peak, steps, alpha=end_value / peak))


#: How :func:`train_students` computes the training loss: ``"impulse"`` (the students' impulse
#: responses and an FFT convolution, default) or ``"scan"`` (every student run over the batch).
METHODS = ("impulse", "scan")


def impulse_response(apply: Callable[[Array], Array], length: int, d_in: int) -> Array:
    """k [d_in, T, d_out]: ``apply``'s output for a unit impulse at t = 0 on each input.

    ``apply`` maps x [B, T, d_in] to y [B, T, d_out] and is assumed linear and time-invariant,
    started at rest (every teacher and student here): then y = :func:`causal_conv` (x, k).
    """
    x = jnp.zeros((d_in, length, d_in)).at[:, 0, :].set(jnp.eye(d_in))
    return apply(x)


def _fft_size(n: int) -> int:
    """The smallest 2^a·3^b·5^c ≥ n: lengths the FFT does fastest."""
    best = 2 ** math.ceil(math.log2(max(n, 1)))
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def causal_conv(x: Array, k: Array) -> Array:
    """y [B, T, d_out] with y[b, t, o] = Σ_j Σ_{s ≤ t} k[j, t − s, o] · x[b, s, j].

    x [B, T, d_in], k [d_in, T, d_out] (:func:`impulse_response`). Computed by real FFTs of
    length ≥ 2T − 1, so the circular convolution does not wrap around.
    """
    T = x.shape[1]
    n = _fft_size(2 * T - 1)
    xf = jnp.fft.rfft(x, n, axis=1)
    kf = jnp.fft.rfft(k, n, axis=1)
    return jnp.fft.irfft(jnp.einsum("bfj,jfo->bfo", xf, kf), n, axis=1)[:, :T]


#: The mesh axis over which :func:`train_students` splits the seeds.
GRID_AXIS = "grid"


class _Program(NamedTuple):
    """One (student, seeds × learning rates) program, placed on its devices: the state, the
    per-seed data, and the two compiled functions (:func:`_program`)."""

    params: Any  # leaves [S', L, ...], S' = S padded to a multiple of the devices
    opt_state: Any
    data: tuple[Teacher, Array, Array]  # teachers, their impulse responses, data keys: [S', ...]
    run_chunk: Callable[..., tuple[Any, Any, Array]]
    evaluate: Callable[[Any, tuple[Teacher, Array, Array]], Array]
    num_seeds: int  # S, the seeds asked for; rows S: are copies of seed 0


def _pad_seeds(tree: Any, num: int) -> Any:
    """Each leaf [S, ...] with ``num`` copies of its row 0 appended."""
    if num == 0:
        return tree
    return jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[:1], num, axis=0)]), tree)


def _program(
    student: nn.Module,
    teachers: Teacher,
    keys: Array,
    learning_rates: Array,
    *,
    steps: int,
    batch_size: int,
    length: int,
    eval_size: int,
    method: str,
    params: Any,
    devices: Any,
) -> _Program:
    """Builds :func:`train_students`' program (arguments as there)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    lrs = jnp.asarray(learning_rates, jnp.float32)
    if lrs.ndim != 1 or not bool(jnp.all(lrs > 0)):
        raise ValueError(f"learning_rates must be a 1-D array of positive floats, got {lrs}")
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    num_seeds, num_lrs = keys.shape[0], lrs.shape[0]
    d_in = teachers.B.shape[-1]

    # Init is eager per seed (the eigenvalue-controlled init runs a host callback), then
    # broadcast over the learning rates.
    init_keys, data_keys = jax.vmap(jax.random.split, out_axes=1)(keys)
    if params is None:
        x0 = jnp.zeros((1, length, d_in))
        params = [student.init(k, x0)["params"] for k in init_keys]
        params = jax.tree.map(lambda *p: jnp.stack(p), *params)

    # The teachers' impulse responses, once: [S, d_in, T, d_out].
    k_teachers = jax.jit(
        jax.vmap(lambda t: impulse_response(functools.partial(run_teacher, t), length, d_in))
    )(teachers)

    # The seeds are independent programs: split them over the devices, padded with copies of
    # seed 0 to a multiple of their number, so that every device runs the same share.
    pad = -num_seeds % len(devices)
    params, data = _pad_seeds((params, (teachers, k_teachers, data_keys)), pad)
    padded = num_seeds + pad
    params = jax.tree.map(
        lambda p: jnp.broadcast_to(p[:, None], (padded, num_lrs, *p.shape[1:])), params
    )
    opt_state = jax.vmap(jax.vmap(lambda p, lr: cosine_adam(lr, steps).init(p)))(
        params, jnp.broadcast_to(lrs, (padded, num_lrs))
    )
    mesh = Mesh(np.asarray(devices), (GRID_AXIS,)) if len(devices) > 1 else None
    where = devices[0] if mesh is None else NamedSharding(mesh, P(GRID_AXIS))
    params, opt_state, data = jax.device_put((params, opt_state, data), where)

    def per_device(f, in_specs):
        # Each device runs the step on its own seeds (shard_map): left to the partitioner, the
        # FFTs of the vmapped seeds would be all-gathered and computed on every device. No
        # collective runs inside, so the replication check (which the layers' scans, started
        # from unvarying zeros, would fail) has nothing to guard.
        if mesh is None:
            return f
        return jax.shard_map(
            f, mesh=mesh, in_specs=in_specs, out_specs=P(GRID_AXIS), check_vma=False
        )

    def loss_fn(p, x, y):
        return loss(student.apply({"params": p}, x), y)

    def impulse_loss(p, x, k_teacher):
        k = impulse_response(lambda z: student.apply({"params": p}, z), length, d_in)
        return loss(causal_conv(x, k - k_teacher), 0.0)

    def seed_step(p_l, o_l, teacher, k_teacher, key, step):
        batch_key = jax.random.fold_in(key, step)
        if method == "impulse":
            x = jax.random.normal(batch_key, (batch_size, length, d_in))
            value_and_grad = lambda p: jax.value_and_grad(impulse_loss)(p, x, k_teacher)
        else:
            x, y = sample_batch(batch_key, teacher, batch_size, length)
            value_and_grad = lambda p: jax.value_and_grad(loss_fn)(p, x, y)

        def one(p, o, lr):
            value, g = value_and_grad(p)
            updates, o = cosine_adam(lr, steps).update(g, o, p)
            return optax.apply_updates(p, updates), o, value

        return jax.vmap(one)(p_l, o_l, lrs)

    all_step = jax.vmap(seed_step, in_axes=(0, 0, 0, 0, 0, None))

    @functools.partial(jax.jit, static_argnums=4, donate_argnums=(0, 1))
    def run_chunk(p, o, data, start, n):
        def chunk(p, o, data, start):
            def body(carry, step):
                p, o = carry
                p, o, value = all_step(p, o, *data, step)
                return (p, o), value

            (p, o), values = jax.lax.scan(body, (p, o), start + jnp.arange(n))
            return p, o, jnp.mean(values, axis=0)

        grid = P(GRID_AXIS)
        return per_device(chunk, (grid, grid, grid, P()))(p, o, data, start)

    @jax.jit
    def evaluate(p, data):
        # One seed at a time (per device): the learning rates' states over the evaluation batch
        # are the largest arrays of the run.
        def per_seed(args):
            p_l, teacher, _, key = args
            x, y = sample_batch(jax.random.fold_in(key, steps + 1), teacher, eval_size, length)
            return jax.vmap(lambda p: loss_fn(p, x, y))(p_l)

        seeds = lambda p, data: jax.lax.map(per_seed, (p, *data))
        return per_device(seeds, P(GRID_AXIS))(p, data)

    return _Program(params, opt_state, data, run_chunk, evaluate, num_seeds)


def train_students(
    student: nn.Module,
    teachers: Teacher,
    keys: Array,
    learning_rates: Array,
    *,
    steps: int,
    batch_size: int = 128,
    length: int = 300,
    eval_size: int = 512,
    chunk: int = 100,
    method: str = "impulse",
    params: Any = None,
    progress: Callable[[Iterable[int], str, int], Iterable[int]] | None = None,
    desc: str = "train",
    devices: Sequence[jax.Device] | None = None,
) -> SweepResult:
    """Trains one student per (seed, learning rate), all in one vmapped, jit-compiled step.

    Seed s has its own teacher ``teachers[s]`` (leaves with a leading axis S; the same teacher
    repeated S times is the paper's protocol), student init and data stream from ``keys[s]``;
    the L learning rates of a seed share its init and its batches (common random numbers, so the
    learning-rate comparison is not blurred by data noise).

    Teacher and students are linear and time-invariant from rest, so the prediction error is
    ŷ − y = k_student ∗ x − k_teacher ∗ x = (k_student − k_teacher) ∗ x, with k the impulse
    responses [d_in, T, d_out]. ``method="impulse"`` computes the loss that way: the student's
    layer runs once per step on one impulse (not on B sequences), its gradient flows back through
    that run, and the batch enters through one FFT convolution. ``method="scan"`` runs the student
    and the teacher over the batch. Both are the same loss of the same parameters on the same
    batches (equal up to float32 rounding); the final loss is always measured the second way, by
    the student's own forward pass over a fresh evaluation batch.

    With several devices the seeds are split over them (``jax.sharding``: a one-axis mesh
    :data:`GRID_AXIS`, every [S, L, ...] array sharded along S): each device trains its seeds ×
    all learning rates, with no communication between devices during training. S is padded with
    copies of seed 0 to a multiple of the number of devices (they are trained and dropped), so
    S = 10 on 8 devices trains 16 seeds, 2 per device.

    Args:
      student: the flax module (x [B, T, d_in] → ŷ [B, T, d_out]); with ``method="impulse"`` it
        must be linear and time-invariant (every student of :func:`make_student` is).
      teachers: S stacked teachers.
      keys: [S] PRNG keys.
      learning_rates: [L] peak learning rates (Adam, cosine decay to 1e-7, no warm-up).
      steps: optimisation steps; chunk: steps per compiled call (the training curve's resolution).
      method: one of :data:`METHODS`.
      params: optional initial parameters, leaves [S, ...] (one init per seed); None: the
        student's own init from ``keys``.
      progress: optional ``progress(iterable, desc, total)`` wrapper (e.g. ``bench._common.progress``).
      devices: the devices to split the seeds over (one process's); None: every local device
        (``jax.local_devices()``). One device runs unsharded.
    """
    if steps < 1 or chunk < 1:
        raise ValueError(f"steps and chunk must be >= 1, got steps={steps}, chunk={chunk}")
    prog = _program(
        student, teachers, keys, learning_rates, steps=steps, batch_size=batch_size,
        length=length, eval_size=eval_size, method=method, params=params, devices=devices,
    )  # fmt: skip
    params, opt_state = prog.params, prog.opt_state
    starts = range(0, steps, chunk)
    wrapped = progress(starts, desc, len(starts)) if progress is not None else starts
    curve = []
    for start in wrapped:
        params, opt_state, mean_loss = prog.run_chunk(
            params, opt_state, prog.data, jnp.int32(start), min(chunk, steps - start)
        )
        curve.append(np.asarray(mean_loss))
    final = np.asarray(prog.evaluate(params, prog.data), np.float64)
    final = np.where(np.isfinite(final), final, np.inf)
    s = prog.num_seeds
    if s < final.shape[0]:  # drop the padding seeds
        params = jax.tree.map(lambda a: a[:s], params)
    return SweepResult(final[:s], np.stack(curve, axis=-1)[:s], params)


class StepCost(NamedTuple):
    """What :func:`time_steps` measures of one :func:`train_students` program.

    step_seconds: wall seconds per training step of all S × L copies (median of the timed
      chunks, after compilation), on ``devices`` devices.
    setup_seconds: the rest of a run: init, the teachers' impulse responses, compiling the step,
      and compiling and running the final evaluation.
    devices: the number of devices the seeds were split over.
    """

    step_seconds: float
    setup_seconds: float
    devices: int

    def seconds(self, steps: int) -> float:
        """The wall time of a run of ``steps`` steps: setup + steps × step_seconds."""
        return self.setup_seconds + steps * self.step_seconds


def time_steps(
    student: nn.Module,
    teachers: Teacher,
    keys: Array,
    learning_rates: Array,
    *,
    steps: int,
    batch_size: int = 128,
    length: int = 300,
    eval_size: int = 512,
    chunk: int = 100,
    method: str = "impulse",
    params: Any = None,
    devices: Sequence[jax.Device] | None = None,
    repeats: int = 2,
) -> StepCost:
    """Times :func:`train_students`' program (same arguments) on the devices it would run on.

    Builds the same program, runs one chunk of ``chunk`` steps (compiling it), then ``repeats``
    timed chunks, and the final evaluation. ``steps`` sets the learning-rate schedule only; the
    run takes (1 + repeats) · chunk steps. Every call waits for the device, so the figures are
    wall times of the device's work, not of dispatch.
    """
    if chunk < 1 or repeats < 1:
        raise ValueError(f"chunk and repeats must be >= 1, got chunk={chunk}, repeats={repeats}")
    t0 = time.perf_counter()
    prog = _program(
        student, teachers, keys, learning_rates, steps=steps, batch_size=batch_size,
        length=length, eval_size=eval_size, method=method, params=params, devices=devices,
    )  # fmt: skip
    p, o = prog.params, prog.opt_state
    jax.block_until_ready((p, o, prog.data))
    stamps = []
    for i in range(1 + repeats):
        p, o, mean_loss = prog.run_chunk(p, o, prog.data, jnp.int32(i * chunk), chunk)
        jax.block_until_ready((p, o, mean_loss))
        stamps.append(time.perf_counter())
    step = float(np.median(np.diff(stamps))) / chunk
    jax.block_until_ready(prog.evaluate(p, prog.data))
    setup = time.perf_counter() - t0 - (1 + repeats) * chunk * step
    n = len(jax.local_devices() if devices is None else devices)
    return StepCost(step, max(setup, 0.0), n)


# -- the training task -------------------------------------------------------------------------
def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nu0", type=float, default=0.99, help="teacher's minimum |eigenvalue| (default 0.99)"
    )
    p.add_argument(
        "--teacher-hidden", type=int, default=10, help="teacher's state size (default 10)"
    )


def _build(args: argparse.Namespace) -> TaskSpec:
    if not 0.0 <= args.nu0 < 1.0:
        raise ValueError(f"--nu0 must lie in [0, 1), got {args.nu0}")
    if args.teacher_hidden < 1:
        raise ValueError(f"--teacher-hidden must be >= 1, got {args.teacher_hidden}")
    # The teacher has its own stream, apart from the loop's (init, data, dropout) keys.
    teacher = make_teacher(
        jax.random.fold_in(jax.random.key(args.seed), 0x7EAC4E2), args.nu0, args.teacher_hidden
    )
    length = args.seq_len or 300
    sample = jax.jit(lambda key: sample_batch(key, teacher, args.batch_size, length))
    return supervised(sample, loss, d_in=1, d_out=1)


TASK = register(
    Task(
        "teacher-student",
        "learn a linear teacher with memory ν0 from fresh N(0, 1) inputs (paper Fig. 3)",
        _arguments,
        _build,
    )
)
