"""The training loop: one jit-compiled step, data parallel over every device, checkpointed.

Everything random derives from the seed: the parameters from one key, the batch of step k from
``fold_in(data_key, k)`` and its dropout from ``fold_in(dropout_key, k)``. So a run resumed from a
checkpoint of step k needs nothing but that checkpoint to continue exactly as if never stopped.

The model is a linen module or an (initialised) ``flax.nnx.Module``. The step itself only sees
pure pytrees: for NNX the module is split into its graph, its ``nnx.Param``s, its RNG streams and
its other variables (batch statistics, ...), and merged again inside the step.
"""

from __future__ import annotations

import inspect
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from recurrent_zoo.train import stream as streaming
from recurrent_zoo.train.checkpoint import Checkpointer
from recurrent_zoo.train.metrics import MetricsLogger
from recurrent_zoo.train.sharding import (
    batch_sharded,
    data_mesh,
    replicate,
    replicated,
    sequence_sharded,
    sequence_size,
    shard_batch,
)

if TYPE_CHECKING:
    from flax import nnx

Array = jax.Array
Batch = Mapping[str, Any]
#: Batch entries passed to the model as keyword arguments when present.
MODEL_KWARGS = ("lengths", "resets")


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient became NaN/Inf; training stopped before applying that update."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
      state: {"step", "params", "opt_state", "model_state", "metrics"} (model_state: e.g.
        batch_stats; metrics: the last ``metrics_window`` steps' loss and metrics), and
        "carry" in a ``stream=True`` run (the model's recurrent state after the last step).
      history: the records logged (also in the JSONL file).
      interrupted: the signal number that stopped the run early (a checkpoint was written), or
        None when it ran to the end.
      resumed_from: the step of the checkpoint the run started from (None: from scratch).
      model: for an NNX model, the trained ``nnx.Module`` (a new one, in evaluation mode:
        ``.eval()``); None for a linen model.
    """

    state: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: int | None = None
    resumed_from: int | None = None
    model: Any = None

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def params(self) -> Any:
        return self.state["params"]

    @property
    def carry(self) -> Any:
        """The recurrent state carried to the next batch (``stream=True``; None otherwise)."""
        return self.state.get(streaming.CARRY)

    @property
    def variables(self) -> dict[str, Any]:
        """``{"params": ..., **model_state}``, ready for ``model.apply`` (for NNX the same
        collections as linen's: ``{"params": ..., "batch_stats": ...}``)."""
        return {"params": self.state["params"], **self.state["model_state"]}


def as_batch(batch: Any) -> dict[str, Any]:
    """A batch as a dict with "inputs" (and "targets", "lengths", "resets" when given).

    Accepts such a dict or a pair ``(inputs, targets)``.
    """
    if isinstance(batch, Mapping):
        if "inputs" not in batch:
            raise ValueError(f"a batch dict must have an 'inputs' entry, got keys {sorted(batch)}")
        return dict(batch)
    if isinstance(batch, tuple | list) and len(batch) == 2:
        return {"inputs": batch[0], "targets": batch[1]}
    raise TypeError(
        f"batch_fn must return a dict with 'inputs' (and 'targets', ...) or a pair "
        f"(inputs, targets), got {type(batch)}"
    )


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class _SignalFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step (a second SIGINT
    interrupts at once)."""

    def __init__(self, enabled: bool) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}
        self.enabled = enabled and threading.current_thread() is threading.main_thread()

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> _SignalFlag:
        if self.enabled:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


def _is_nnx_module(obj: Any) -> bool:
    # Only a program that imported flax.nnx can hold an NNX module: linen users skip its import.
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(obj, nnx.Module)


def _collection(kind: type) -> str:
    """The linen collection name of an NNX variable type ("batch_stats" for nnx.BatchStat)."""
    from flax.nnx import variablelib

    try:
        return variablelib.variable_name_from_type(kind)
    except ValueError:  # a type of the user's own, not in flax's registry
        return kind.__name__


def _filled(template: nnx.State, values: Any) -> nnx.State:
    """A copy of ``template`` holding ``values`` (a pure dict as ``nnx.to_pure_dict`` gives)."""
    from flax import nnx

    state = jax.tree.map(lambda leaf: leaf, template)  # fresh Variables: the template stays
    nnx.replace_by_pure_dict(state, values)
    return state


class _NNXParts:
    """An NNX module taken apart into pure pytrees for the jitted step, and put back together.

    ``params`` is the ``nnx.Param`` values as a nested dict (``nnx.to_pure_dict``);
    ``model_state`` every other variable but the RNG streams, as ``{collection: nested dict}``
    under linen's collection names ("batch_stats" for ``nnx.BatchStat``). The RNG streams are not
    carried from step to step: step k gets fresh keys derived from ``fold_in(dropout_key, k)``,
    as the linen path does, so a resumed run needs no RNG state from the checkpoint.
    """

    def __init__(self, model: nnx.Module) -> None:
        from flax import nnx

        work = nnx.clone(model)  # the caller's module keeps its mode and its values
        work.train()
        rest = nnx.state(work, nnx.Not(nnx.Any(nnx.Param, nnx.RngKey, nnx.RngCount)))
        is_var = lambda x: isinstance(x, nnx.Variable)
        kinds = {type(v) for v in jax.tree.leaves(rest, is_leaf=is_var) if is_var(v)}
        by_name: dict[str, type] = {}
        for kind in kinds:
            name = _collection(kind)
            if name in by_name or name == "params":
                raise ValueError(
                    f"two kinds of NNX variables share the collection name {name!r}: "
                    f"{by_name.get(name, nnx.Param)} and {kind}"
                )
            by_name[name] = kind
        self.names = sorted(by_name)
        # Exact types: a subclass of BatchStat is its own collection, not part of batch_stats.
        self._filters = {n: (lambda path, x, k=by_name[n]: type(x) is k) for n in self.names}
        split = nnx.split(work, nnx.Param, nnx.RngKey, nnx.RngCount, *self._filters.values(), ...)
        self.graphdef, self._params, self._keys, self._counts = split[:4]
        self._others = dict(zip(self.names, split[4:-1]))
        if jax.tree.leaves(split[-1]):
            raise ValueError(f"variables of no known kind in the NNX model: {split[-1]}")

    def initial(self) -> tuple[Any, dict[str, Any]]:
        """The model's own ``(params, model_state)`` as pure dicts."""
        from flax import nnx

        others = {n: nnx.to_pure_dict(self._others[n]) for n in self.names}
        return nnx.to_pure_dict(self._params), others

    def _step_keys(self, key: Array) -> nnx.State:
        # One key per RNG stream (streams shared by several modules appear once).
        leaves, treedef = jax.tree.flatten(self._keys)
        new = []
        for i, old in enumerate(leaves):
            typed = jax.dtypes.issubdtype(old.dtype, jax.dtypes.prng_key)
            shape = old.shape if typed else old.shape[:-1]
            k = jax.random.fold_in(key, i)
            k = jax.random.split(k, shape) if shape else k
            new.append(k if typed else jax.random.key_data(k))
        return jax.tree.unflatten(treedef, new)

    def merge(self, params: Any, model_state: dict[str, Any], key: Array | None) -> nnx.Module:
        """The module (in training mode) with these values; ``key``: the RNG of the step (None:
        the module's own streams)."""
        from flax import nnx

        if key is None:
            rng = [self._keys, self._counts]
        else:
            rng = [self._step_keys(key), jax.tree.map(jnp.zeros_like, self._counts)]
        others = [_filled(self._others[n], model_state[n]) for n in self.names]
        return nnx.merge(self.graphdef, _filled(self._params, params), *rng, *others)

    def model_state(self, module: nnx.Module) -> dict[str, Any]:
        """The pure ``model_state`` of ``module`` (e.g. batch statistics after a call)."""
        from flax import nnx

        return {n: nnx.to_pure_dict(nnx.state(module, self._filters[n])) for n in self.names}


def _tokens(inputs: Any) -> int:
    shape = np.shape(inputs)
    return int(math.prod(shape[:2]))


def train(
    model: nn.Module | nnx.Module,
    loss_fn: Callable[[Any, dict[str, Any]], Array],
    batch_fn: Callable[[Array, int], Any],
    optimizer: optax.GradientTransformation,
    *,
    num_steps: int,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 2,
    log_every: int = 10,
    metrics_window: int = 10,
    metrics_path: str | Path | None = None,
    verbose: bool = True,
    mesh: Mesh | None = None,
    handle_signals: bool = True,
    stream: bool = False,
) -> TrainResult:
    """Trains ``model`` for ``num_steps`` steps, resuming from ``checkpoint_dir`` when it holds one.

    Each step: batch = batch_fn(fold_in(data_key, k), k), split over the devices; predictions =
    ``model.apply(variables, batch["inputs"], train=True, lengths=..., resets=...)`` (``train``
    only if the model takes it, ``lengths``/``resets`` when the batch has them, mutable
    collections such as ``batch_stats`` updated); loss = ``loss_fn(predictions, batch)`` (a
    scalar mean over the global batch); one ``optimizer`` update.

    An NNX model (``flax.nnx.Module``, already initialised) is trained on a copy set to
    training mode (``.train()``: dropout on, batch norm on the batch's statistics) and called
    as ``model(batch["inputs"], lengths=..., resets=...)``. Its ``nnx.Param``s are the
    parameters, its other variables (e.g. ``nnx.BatchStat``) the model state updated by each
    call; its RNG streams get fresh keys each step from ``fold_in(dropout_key, k)`` (so
    ``seed`` seeds the data and dropout, not the initialisation, which the module already
    had). The module passed in is left as it was; ``result.model`` is the trained one.

    Streaming (``stream=True``, truncated backpropagation through time, see
    :mod:`recurrent_zoo.train.stream`): batch k continues the B sequences of batch k − 1, and
    the model runs from the state the previous step ended in, ``model(x_k,
    initial_state=stop_gradient(carry), resets=..., return_state=True)`` (zeros at step 0); the
    new state is kept in ``state["carry"]`` (checkpointed, split over the devices like the
    batch) and the gradient is truncated at the batch boundary. The batch's ``resets`` (True at
    a document start) cut the state within a stream.

    Args:
      model: a linen module (e.g. :class:`recurrent_zoo.SequenceModel`) or an ``nnx.Module``.
      loss_fn: ``(predictions, batch) -> scalar``, or ``-> (scalar, {name: scalar})`` to log
        more metrics (e.g. accuracy); they are averaged like the loss.
      batch_fn: ``(key, step) -> batch``, a dict with "inputs" (and "targets", "lengths",
        "resets", anything the loss needs) or a pair ``(inputs, targets)``; arrays [B, ...] with
        B a multiple of the device count (of the "data" axis's size on a data × sequence mesh).
        It must depend only on its arguments, so that resuming needs no data-iterator state.
      optimizer: an optax transformation (e.g. :func:`recurrent_zoo.optim.make_optimizer`).
      num_steps: the run's total number of steps (a resumed run stops at the same step).
      seed: seeds the initialisation, the data and dropout.
      checkpoint_dir: where checkpoints go; a run started on a folder with a checkpoint resumes.
      checkpoint_every: save every this many steps (also at the end and on SIGINT/SIGTERM).
      keep_checkpoints: how many checkpoints to keep.
      log_every: print and record metrics every this many steps (the host only waits for the
        device at these points, so steps run ahead asynchronously in between).
      metrics_window: the logged "loss" (and each metric of ``loss_fn``) at step k is the mean
        over steps k − metrics_window + 1 … k (over all steps so far while k < metrics_window),
        so it does not depend on ``log_every`` or ``checkpoint_every``, and a resumed run logs
        the figures of an uninterrupted one.
      metrics_path: JSONL file the records are appended to.
      verbose: print progress.
      mesh: the device mesh (default: all devices on one "data" axis, see
        :func:`~recurrent_zoo.train.sharding.data_mesh`). A mesh with a "seq" axis too
        (:func:`~recurrent_zoo.train.sharding.data_sequence_mesh`) also splits time: the model,
        whose layers must be built with ``sequence_axis="seq"``, runs under ``jax.shard_map``
        over "seq" with each device holding a chunk of time (see
        :func:`~recurrent_zoo.train.sharding.sequence_sharded`); T must be a multiple of the
        axis's size. The loss and metrics are computed on the global predictions: the one-device
        figures, up to rounding (dropout masks are drawn per chunk, so runs with dropout
        differ).
      handle_signals: on SIGINT/SIGTERM finish the current step, write a checkpoint and return
        with ``interrupted`` set.
      stream: carry the model's recurrent state from each batch to the next (the model must
        take ``initial_state`` and ``return_state``, as :class:`recurrent_zoo.SequenceModel`
        does, and its state leaves be [B, ...]).

    Raises:
      NonFiniteLossError: the loss or gradient norm became NaN/Inf at some step; its update was
        not applied and no checkpoint is written after it, so the last good one stays.
    """
    if not isinstance(num_steps, int) or num_steps < 0:
        raise ValueError(f"num_steps must be an int >= 0, got {num_steps!r}")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every!r}")
    if not isinstance(metrics_window, int) or metrics_window < 1:
        raise ValueError(f"metrics_window must be an int >= 1, got {metrics_window!r}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be None or >= 1, got {checkpoint_every!r}")
    mesh = data_mesh() if mesh is None else mesh
    rep = replicated(mesh)
    is_main = jax.process_index() == 0
    init_key, data_key, dropout_key = jax.random.split(jax.random.key(seed), 3)

    def get_batch(k: int) -> dict[str, Any]:
        return shard_batch(as_batch(batch_fn(jax.random.fold_in(data_key, k), k)), mesh)

    if _is_nnx_module(model):
        parts: _NNXParts | None = _NNXParts(model)
    elif isinstance(model, nn.Module):
        parts = None
    else:
        raise TypeError(f"model must be a flax linen or nnx Module, got {type(model)}")
    # NNX modules take their mode from .train()/.eval(), not from a keyword.
    takes_train = parts is None and _accepts(model.__call__, "train")
    first = get_batch(0)

    def model_kwargs(batch: dict[str, Any], train: bool) -> dict[str, Any]:
        kw = {k: batch[k] for k in MODEL_KWARGS if k in batch}
        if takes_train:
            kw["train"] = train
        return kw

    def init_variables(inputs, extra):
        variables = dict(model.init(init_key, inputs, **{**extra, **model_kwargs({}, False)}))
        return variables.pop("params"), variables

    def forward(params, model_state, key, inputs):
        # inputs: the batch's "inputs" and the MODEL_KWARGS it has.
        variables = {"params": params, **model_state}
        rngs = {"dropout": key}
        kw = model_kwargs(inputs, True)
        if stream:
            kw.update(streaming.model_kwargs(inputs.get(streaming.CARRY)))
        if parts is not None:
            module = parts.merge(params, model_state, key)
            pred = module(inputs["inputs"], **kw)
            model_state = parts.model_state(module)
        elif model_state:
            pred, model_state = model.apply(
                variables, inputs["inputs"], rngs=rngs, mutable=sorted(model_state), **kw
            )
        else:
            pred = model.apply(variables, inputs["inputs"], rngs=rngs, **kw)
        return pred, model_state

    # On a data × sequence mesh the model runs under shard_map over time; the loss below always
    # sees the global predictions, so it is the one-device loss whatever the mesh.
    # (A "seq" axis of one device leaves time whole: the plain call is the same computation.)
    sharded = (sequence_size(mesh) or 1) > 1
    run_forward = sequence_sharded(forward, mesh) if sharded else forward
    if stream and sharded:
        raise ValueError(
            "stream=True on a mesh whose 'seq' axis has more than one device is not supported: "
            "carry the state on a 'data' mesh"
        )

    def loss_of(params, model_state, batch, k, carry=None):
        inputs = {n: batch[n] for n in ("inputs", *MODEL_KWARGS) if n in batch}
        if carry is not None:
            inputs[streaming.CARRY] = carry
        key = jax.random.fold_in(dropout_key, k)
        pred, model_state = run_forward(params, model_state, key, inputs)
        if stream:
            carry, pred = streaming.split_output(pred)
        out = loss_fn(pred, batch)
        loss, aux = out if isinstance(out, tuple) else (out, {})
        return loss, (dict(aux), dict(model_state), carry)

    extra = {k: first[k] for k in MODEL_KWARGS if k in first}
    if parts is None:
        abstract = jax.eval_shape(init_variables, first["inputs"], extra)
    else:  # placed on every device of the mesh (all processes hold the same values)
        abstract = replicate(jax.device_get(parts.initial()), mesh)
    _, (aux_like, _, carry_like) = jax.eval_shape(loss_of, *abstract, first, 0)
    for name, value in aux_like.items():
        if np.shape(value) != ():
            raise ValueError(f"loss_fn's metric {name!r} must be a scalar, got shape {value.shape}")
    # Each metric's last metrics_window values (step k's in slot k % metrics_window) live in the
    # state: the logged means then do not depend on when the host looks, and checkpoints keep them.
    names = ["loss", *sorted(aux_like)]

    def fresh_state(params, model_state):
        return {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "opt_state": optimizer.init(params),
            "model_state": model_state,
            "metrics": {n: jnp.zeros(metrics_window, jnp.float32) for n in names},
        }

    def init_state(inputs, extra):
        return fresh_state(*init_variables(inputs, extra))

    if parts is None:
        state = jax.jit(init_state, out_shardings=rep)(first["inputs"], extra)
    else:
        state = jax.jit(fresh_state, out_shardings=rep)(*abstract)
    state_sh: Any = rep
    if stream:
        streaming.check_carry(carry_like, np.shape(first["inputs"])[0])
        rows = batch_sharded(mesh)  # the carry's rows live where the batch's rows do
        state[streaming.CARRY] = streaming.zero_carry(carry_like, rows)
        state_sh = streaming.state_shardings(state, rep, rows)

    def train_step(state, batch, k):
        (loss, (aux, model_state, carry)), grads = jax.value_and_grad(loss_of, has_aux=True)(
            state["params"], state["model_state"], batch, k, state.get(streaming.CARRY)
        )
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        values = {"loss": loss, **aux}
        window = {
            n: w.at[k % metrics_window].set(jnp.asarray(values[n], jnp.float32))
            for n, w in state["metrics"].items()
        }
        new = {
            "step": state["step"] + 1,
            "params": optax.apply_updates(state["params"], updates),
            "opt_state": opt_state,
            "model_state": model_state,
            "metrics": window,
        }
        if stream:
            new[streaming.CARRY] = carry
        grad_norm = optax.tree.norm(grads)
        # A non-finite step is not applied; the step check keeps the state frozen from then on
        # (later steps carry k > state.step), so the host can stop at its next sync.
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & (state["step"] == k)
        new = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
        # Slots not yet written hold zeros, so the sum over the window is the sum so far.
        count = jnp.minimum(k + 1, metrics_window)
        means = {n: jnp.sum(w) / count for n, w in window.items()}
        return new, {**means, "last_loss": loss, "grad_norm": grad_norm, "ok": ok}

    step_fn = jax.jit(
        train_step,
        in_shardings=(state_sh, jax.tree.map(lambda a: a.sharding, first), None),
        out_shardings=(state_sh, rep),
        donate_argnums=(0,),
    )

    ckpt = Checkpointer(checkpoint_dir, keep_checkpoints) if checkpoint_dir is not None else None
    logger = MetricsLogger(num_steps, _tokens(first["inputs"]), metrics_path if is_main else None)
    logger.verbose = verbose and is_main
    result = TrainResult(state)
    try:
        last_saved = None
        if ckpt is not None and ckpt.latest_step() is not None:
            last_saved = ckpt.latest_step()
            state = ckpt.restore(state, last_saved)
            result.resumed_from = last_saved
            logger.message(f"resumed from the checkpoint of step {last_saved} in {ckpt.directory}")
        k = int(state["step"])
        pending: list[tuple[int, Any]] = []
        with _SignalFlag(handle_signals) as flag:
            while k < num_steps:
                batch = first if k == 0 else get_batch(k)
                state, metrics = step_fn(state, batch, jnp.int32(k))
                pending.append((k, metrics))
                k += 1
                regular = (
                    k % log_every == 0
                    or k == num_steps
                    or (checkpoint_every is not None and k % checkpoint_every == 0)
                )
                stop = _stop_requested(flag, regular)
                save_now = ckpt is not None and (
                    k == num_steps
                    or (checkpoint_every is not None and k % checkpoint_every == 0)
                    or stop
                )
                if regular or stop:
                    record = _sync(pending, k, logger, ckpt, last_saved)
                    pending = []
                    result.history.append(record)
                    if save_now and last_saved != k:
                        t0 = time.perf_counter()
                        ckpt.save(k, state)
                        logger.exclude(time.perf_counter() - t0)
                        last_saved = k
                        logger.message(f"checkpoint of step {k} written to {ckpt.directory}")
                    if stop:
                        # A process of a multi-host run may stop on another process's signal.
                        signum = flag.signum or signal.SIGTERM
                        name = signal.Signals(signum).name
                        where = f"; checkpoint of step {k} kept" if ckpt is not None else ""
                        logger.message(f"stopped by {name} after step {k}{where}")
                        result.interrupted = signum
                        break
        result.state = state
        if parts is not None:
            result.model = parts.merge(state["params"], state["model_state"], None)
            result.model.eval()
        return result
    finally:
        if ckpt is not None:
            ckpt.close()


def _stop_requested(flag: _SignalFlag, regular: bool) -> bool:
    """Whether to stop after this step. One process stops at once on its signal; the processes
    of a multi-host run agree (any one signalled) at the regular sync points, which they all
    reach at the same step, so none is left waiting in a collective."""
    if jax.process_count() == 1:
        return flag.signum is not None
    if not regular:
        return False
    from jax.experimental import multihost_utils

    signalled = multihost_utils.process_allgather(np.array(flag.signum is not None))
    return bool(np.any(signalled))


def _sync(
    pending: list[tuple[int, Any]],
    k: int,
    logger: MetricsLogger,
    ckpt: Checkpointer | None,
    last_saved: int | None,
) -> dict[str, Any]:
    """Waits for the pending steps, stops on a non-finite one, logs the metrics of step k."""
    values = jax.device_get([m for _, m in pending])
    for (step, _), m in zip(pending, values):
        if not m["ok"]:
            kept = (
                f"the last good checkpoint (step {last_saved}) in {ckpt.directory} is kept"
                if ckpt is not None and last_saved is not None
                else "no checkpoint was written after it"
            )
            raise NonFiniteLossError(
                f"non-finite loss ({float(m['last_loss'])}) or gradient norm "
                f"({float(m['grad_norm'])}) at step {step}: training stopped before applying "
                f"it; {kept}",
                step,
            )
    # Every figure is step k's own: window means, the loss and gradient norm of step k.
    last = values[-1]
    record = {"loss": float(last["loss"]), "last_loss": float(last["last_loss"])}
    record["grad_norm"] = float(last["grad_norm"])
    record.update({n: float(v) for n, v in last.items() if n not in record and n != "ok"})
    return logger.log(k, record)
