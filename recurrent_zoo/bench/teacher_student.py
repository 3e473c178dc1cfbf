"""``recurrent-zoo bench teacher-student``: the paper's teacher–student task (Fig. 3 and Fig. 11).

Students learn a linear time-invariant teacher whose memory is set by ν0 (its eigenvalues'
minimum magnitude). Each (student, ν0) trains S seeds × L learning rates at once (one jit-compiled
step, vmapped); the best learning rate per (student, ν0) is the one with the lowest mean final
loss over seeds. Modes:

* ``sweep``: final loss against ν0 for each student (Fig. 3A);
* ``ablation``: every student at ν0 = 0.99 (Fig. 3B);
* ``heads``: the linear RNN with 1 … 32 heads of 64 units at ν0 = 0.99 (Fig. 11).

``--protocol paper`` takes the paper's code's choices instead of the zoo's: one teacher for all
seeds, the best learning rate by the arithmetic mean over seeds of the last 100 steps' training
loss (NaN runs dropped; heads: of the final loss, the paper's validation loss), the paper's B, C,
D draws for the complex diagonal students and the LRU, and its learning-rate grids.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from recurrent_zoo.bench import _common
from recurrent_zoo.cli.options import Size, Sizes, add_protocol
from recurrent_zoo.cli.usage import UsageError

NAME = "teacher-student"
HELP = "students of every kind learning a linear teacher of growing memory ν0 (paper Fig. 3, 11)"

MODES = ("sweep", "ablation", "heads")
ABLATION_NU0 = 0.99
HEADS = (1, 2, 4, 8, 16, 32)

# Learning-rate grids in log10 (the paper's: dense RNN 3.2e-3 … 3.2e-5, LRU 0.32 … 3.2e-3).
# Block-diagonal students move each 2×2 block's entries by about one learning rate per Adam
# step, and within a short (quick) run the dense grid leaves them far from the teacher (measured:
# loss 0.38 at 1e-3 against 4e-4 at 3.2e-2, ν0 = 0.36, 400 steps), so they get a grid a decade
# and a half higher; the complex diagonal RNNs (λ = a + ib learned directly, which the LRU's
# largest steps push out of the unit disc) get one between. Heads sweep from dense to 2×2 blocks,
# so their grid spans both.
_LOG_LR = {
    "rnn": (-2.5, -3.0, -3.5, -4.0, -4.5),
    "block2": (-1.0, -1.5, -2.0, -2.5, -3.0),
    "block2_128": (-1.0, -1.5, -2.0, -2.5, -3.0),
    "heads": (-1.5, -2.25, -3.0, -3.75, -4.5),
    "crnn": (-1.5, -2.0, -2.5, -3.0, -3.5),
    "crnn_gamma": (-1.5, -2.0, -2.5, -3.0, -3.5),
    "lru": (-0.5, -1.0, -1.5, -2.0, -2.5),
}

# The paper's code's grids (its sweep files), log10 of the peak. Block-diagonal and complex
# diagonal students: 1e-2 … 3.2e-4, in the ablation 0.1 … 1e-4 for the complex ones; heads
# {0.032, 0.01, 0.0032, 0.001, 1e-4}. The dense RNN's and the LRU's are the zoo's.
_PAPER_LOG_LR = {
    **_LOG_LR,
    "block2": (-2.0, -2.5, -3.0, -3.5),
    "block2_128": (-2.0, -2.5, -3.0, -3.5),
    "heads": (-1.5, -2.0, -2.5, -3.0, -4.0),
    "crnn": (-2.0, -2.5, -3.0, -3.5),
    "crnn_gamma": (-2.0, -2.5, -3.0, -3.5),
}
_PAPER_ABLATION_LOG_LR = {
    "crnn": (-1.0, -1.5, -2.0, -2.5, -3.0, -3.5, -4.0),
    "crnn_gamma": (-1.0, -1.5, -2.0, -2.5, -3.0, -3.5, -4.0),
}

# Quick: the paper's 10,000 steps for the two students of its headline (dense RNN and LRU) at 3
# ν0, 2 seeds and batch 64: the LRU at ν0 = 0.99 needs the steps (its loss sits on a plateau for
# thousands of steps), and fewer pairs and seeds pay for them within minutes on a 2-core CPU.
# Medium (``--size medium``): the paper's steps and batch with half its seeds and whole grids,
# enough to decide the ablation's and the heads' findings on a 2-core CPU in under half an hour.
SIZES = Sizes(
    steps=Size(10_000, 10_000, "optimisation steps", medium=10_000),
    batch_size=Size(64, 128, "sequences per step", medium=128),
    seeds=Size(2, 10, "seeds (a teacher, an init and a data stream each)", medium=5),
    eval_size=Size(256, 1024, "sequences of the final evaluation", medium=1024),
    lr_points=Size(
        3,
        5,
        "learning rates per grid, taken from its middle (at most 5; paper protocol: 7)",
        medium=5,
    ),
)
_QUICK_NU0 = (0.36, 0.92, 0.99)
_QUICK_MODELS = ("rnn", "lru")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode", choices=MODES, default="sweep", help="what to run (default sweep)"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="STUDENT",
        help="students, space-separated, among the keys of "
        "recurrent_zoo.tasks.teacher_student.STUDENTS (sweep/ablation; default quick: "
        f"{' '.join(_QUICK_MODELS)}; --full or ablation: all)",
    )
    parser.add_argument(
        "--nu0",
        nargs="+",
        type=float,
        default=None,
        help=f"ν0 values of the sweep (default {' '.join(map(str, _QUICK_NU0))}; "
        "--full: the paper's 7)",
    )
    SIZES.add_arguments(parser)
    parser.add_argument("--length", type=int, default=300, help="sequence length T (default 300)")
    parser.add_argument(
        "--hidden-size", type=int, default=64, help="student units (default 64, the paper's)"
    )
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="print the estimated wall time of the run (from a few timed steps of each "
        "student's program on this machine's devices) and exit without training; --full "
        "runs print it before training",
    )
    add_protocol(
        parser,
        "one teacher for all seeds; best learning rate by the arithmetic mean of the last 100 "
        "steps' training loss, NaN runs dropped; B, C, D of crnn, crnn_gamma and lru drawn as "
        "the paper does; its learning-rate grids; with --size medium or --full every point of "
        "them",
    )


def _resolve(args: argparse.Namespace) -> dict[str, Any]:
    from recurrent_zoo.tasks import teacher_student as ts

    cfg = SIZES.resolve(args)
    level = SIZES.level(args)
    for name in ("length", "hidden_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    protocol = getattr(args, "protocol", "zoo")
    most = max(map(len, _grids(protocol, args.mode).values()))
    if cfg["lr_points"] > most:
        raise UsageError(f"--lr-points must be in 1..{most}, got {cfg['lr_points']}")
    if protocol == "paper" and level != "quick" and args.lr_points is None:
        cfg["lr_points"] = most

    if args.mode == "heads":
        bad = [h for h in HEADS if args.hidden_size % h]
        if bad:
            raise UsageError(f"--hidden-size must be divisible by {HEADS}, got {args.hidden_size}")
        models = [f"heads{h}" for h in HEADS]
        nu0s = [ABLATION_NU0]
    else:
        if args.models is None:
            every = level == "full" or args.mode == "ablation"
            models = list(ts.STUDENTS) if every else None
            models = models or list(_QUICK_MODELS)
        else:
            models = list(dict.fromkeys(args.models))
            unknown = [m for m in models if m not in ts.STUDENTS]
            if unknown:
                raise UsageError(
                    f"--models must be among {' '.join(ts.STUDENTS)}, got {' '.join(unknown)}"
                )
        if args.mode == "ablation":
            nu0s = [ABLATION_NU0]
        else:
            nu0s = args.nu0 or list(ts.NU0_GRID if level == "full" else _QUICK_NU0)
    bad = [v for v in nu0s if not 0.0 <= v < 1.0]
    if bad:
        raise UsageError(f"--nu0 values must be in [0, 1), got {bad}")
    if args.mode == "ablation" and args.nu0:
        raise UsageError("--nu0 is fixed to 0.99 in --mode ablation")
    cfg["models"], cfg["nu0"] = models, [float(v) for v in nu0s]
    cfg["protocol"], cfg["size"] = protocol, level
    return cfg


def _grids(protocol: str, mode: str) -> dict[str, tuple[float, ...]]:
    if protocol == "zoo":
        return _LOG_LR
    return {**_PAPER_LOG_LR, **(_PAPER_ABLATION_LOG_LR if mode == "ablation" else {})}


def _lr_grid(model: str, n: int, protocol: str = "zoo", mode: str = "sweep") -> list[float]:
    """The middle ``n`` points (all, if fewer) of the model's grid, largest first."""
    grid = _grids(protocol, mode)["heads" if model.startswith("heads") else model]
    n = min(n, len(grid))
    start = (len(grid) - n) // 2
    return [10.0**g for g in grid[start : start + n]]


def _student(model: str, nu0: float, hidden_size: int):
    from recurrent_zoo.tasks import teacher_student as ts

    if model.startswith("heads"):
        return ts.make_student("heads", nu0, hidden_size=hidden_size, num_heads=int(model[5:]))
    return ts.make_student(model, nu0, hidden_size=hidden_size)


def _teachers(seed: int, nu0: float, num_seeds: int, shared: bool = False) -> tuple[Any, Any]:
    """Per seed s: a teacher and a training key, both from fold_in(PRNGKey(seed), s); with
    ``shared`` (the paper's protocol) every seed gets seed 0's teacher."""
    import jax
    import jax.numpy as jnp

    from recurrent_zoo.tasks import teacher_student as ts

    teachers, keys = [], []
    for s in range(num_seeds):
        k_teacher, k_train = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), s))
        if shared and teachers:
            teachers.append(teachers[0])
        else:
            teachers.append(ts.make_teacher(k_teacher, nu0))
        keys.append(k_train)
    return jax.tree.map(lambda *a: jnp.stack(a), *teachers), jnp.stack(keys)


def _paper_params(model: str, student: Any, keys: Any, length: int) -> Any:
    """Per seed, the student's init with the paper's B, C, D draws (:func:`ts.paper_init`),
    stacked [S, ...]; None for the students the paper draws as the zoo does."""
    import jax
    import jax.numpy as jnp

    from recurrent_zoo.tasks import teacher_student as ts

    if model not in ts.PAPER_INIT_STUDENTS:
        return None
    x0 = jnp.zeros((1, length, 1))
    params = []
    for k in keys:
        k_init, k_paper = jax.random.split(jax.random.fold_in(k, 1))
        params.append(ts.paper_init(model, student.init(k_init, x0)["params"], k_paper))
    return jax.tree.map(lambda *a: jnp.stack(a), *params)


def _program(
    args: argparse.Namespace, cfg: dict[str, Any], model: str, nu0: float, teachers: Any, keys: Any
) -> tuple[list[float], dict[str, Any]]:
    """``(learning rates, arguments)`` of one (student, ν0) program: the keywords that
    ``ts.train_students`` and ``ts.time_steps`` share (all but chunking, progress and devices)."""
    import jax.numpy as jnp

    lrs = _lr_grid(model, cfg["lr_points"], cfg["protocol"], args.mode)
    student = _student(model, nu0, args.hidden_size)
    paper = cfg["protocol"] == "paper"
    return lrs, {
        "student": student,
        "teachers": teachers,
        "keys": keys,
        "learning_rates": jnp.asarray(lrs),
        "params": _paper_params(model, student, keys, args.length) if paper else None,
        "steps": cfg["steps"],
        "batch_size": cfg["batch_size"],
        "length": args.length,
        "eval_size": cfg["eval_size"],
    }


def _summary(final: Any, lrs: list[float], train: Any = None) -> dict[str, Any]:
    """Best learning rate and its losses over seeds; ``final`` and ``train`` [seed, lr].

    Zoo protocol (``train`` None): the lowest mean over seeds of log final loss (diverged runs
    lose). Paper protocol: the lowest arithmetic mean over seeds of ``train`` (the last 100
    steps' training loss, or the final loss where the paper ranks by validation loss), runs
    whose loss is not finite dropped; ``mean`` is that mean at the best learning rate.
    """
    import numpy as np

    with np.errstate(divide="ignore", invalid="ignore"):
        if train is None:
            score = np.mean(np.log(final), axis=0)
        else:
            finite = np.isfinite(train)
            kept = finite.sum(axis=0)
            score = np.where(kept > 0, np.where(finite, train, 0.0).sum(axis=0) / kept, np.inf)
    best = int(np.argmin(np.where(np.isfinite(score), score, np.inf)))
    losses = np.asarray(final if train is None else train, np.float64)[:, best]
    losses = np.where(np.isfinite(losses), losses, np.inf)
    finite = losses[np.isfinite(losses)]
    geo = float(np.exp(np.mean(np.log(finite)))) if finite.size else math.inf
    out = {
        "best_lr": lrs[best],
        "losses": losses.tolist(),
        "geomean": geo,
        "min": float(np.min(losses)),
        "max": float(np.max(losses)),
    }
    if train is not None:
        out["mean"] = float(np.mean(finite)) if finite.size else math.inf
        out["final_losses"] = final[:, best].tolist()
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import jax

    from recurrent_zoo.tasks import teacher_student as ts

    cfg = _resolve(args)
    paper = cfg["protocol"] == "paper"
    # The medium and paper sizes take from half an hour to hours: say how long before starting.
    # (Quick runs skip it: the timing compiles every student once more, a tenth of their time.)
    estimate = _estimate(args, cfg) if cfg["size"] != "quick" or args.estimate else None
    if args.estimate:
        return {"config": cfg, "estimate": estimate}
    start_all = time.perf_counter()
    programs = [(nu0, model) for nu0 in cfg["nu0"] for model in cfg["models"]]
    teachers = {nu0: _teachers(args.seed, nu0, cfg["seeds"], shared=paper) for nu0 in cfg["nu0"]}

    def train(program: tuple[float, str], devices: list[Any]) -> tuple[dict, dict]:
        nu0, model = program
        t0 = time.perf_counter()
        lrs, call = _program(args, cfg, model, nu0, *teachers[nu0])
        result = ts.train_students(
            **call,
            chunk=_chunk(cfg["steps"]),
            progress=_common.progress,
            desc=f"{model:>10s} ν0={nu0:.2f}",
            devices=devices,
        )
        if not paper:
            summary = _summary(result.final_loss, lrs)
        else:
            # The paper ranks heads by its validation loss, the rest by training loss.
            by_final = args.mode == "heads"
            summary = _summary(
                result.final_loss, lrs, result.final_loss if by_final else result.curve[..., -1]
            )
        seconds = time.perf_counter() - t0
        run = {
            "model": model,
            "nu0": nu0,
            "learning_rates": lrs,
            "final_loss": result.final_loss,  # [seed, lr]
            "curve": result.curve,  # [seed, lr, chunk]
            "seconds": seconds,
            "devices": [d.id for d in devices],
            **summary,
        }
        row = {
            "model": model,
            "nu0": nu0,
            "best_lr": summary["best_lr"],
            **(
                {"loss (mean)": summary["mean"]}
                if paper
                else {"loss (geomean)": summary["geomean"]}
            ),
            "min": summary["min"],
            "max": summary["max"],
            "s": seconds,
        }
        return run, row

    done = _run_programs(programs, train, jax.local_devices())
    runs, rows = [run for run, _ in done], [row for _, row in done]
    total = time.perf_counter() - start_all
    print(_common.format_table(rows))
    print(f"total {total:.1f}s")
    results = {
        "mode": args.mode,
        "config": cfg,
        "runs": runs,
        "seconds": total,
        "estimate": estimate,
    }
    name = NAME if args.mode == "sweep" else f"{NAME}-{args.mode}"
    _common.write_json(args.out, name, _common.args_dict(args), results)
    _plot(args.mode, runs, args.out, name, "mean" if paper else "geomean")
    return results


def _plot(mode: str, runs: list[dict[str, Any]], out: str, name: str, center: str) -> None:
    import numpy as np
    from matplotlib.ticker import NullLocator

    plt = _common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    models = list(dict.fromkeys(r["model"] for r in runs))
    if mode == "sweep":
        for model in models:
            rs = [r for r in runs if r["model"] == model]
            nu = np.array([r["nu0"] for r in rs])
            x = 1 - nu
            ax.plot(x, [r[center] for r in rs], "o-", label=model)
            ax.fill_between(x, [r["min"] for r in rs], [r["max"] for r in rs], alpha=0.2)
        ax.set_xscale("log")
        ax.invert_xaxis()
        ticks = sorted({r["nu0"] for r in runs})
        ax.set_xticks([1 - v for v in ticks], [f"{v:g}" for v in ticks])
        ax.xaxis.set_minor_locator(NullLocator())  # keep the ν0 labels alone
        ax.set_xlabel("ν0 (teacher's memory; axis 1 − ν0, log)")
    else:
        pos = np.arange(len(models))
        geo = [next(r for r in runs if r["model"] == m)[center] for m in models]
        ax.bar(pos, geo, color="tab:blue", alpha=0.6)
        for i, m in enumerate(models):
            losses = next(r for r in runs if r["model"] == m)["losses"]
            ax.plot([i] * len(losses), losses, "k.", ms=4)
        labels = [m.replace("heads", "") for m in models] if mode == "heads" else models
        ax.set_xticks(pos, labels, rotation=0 if mode == "heads" else 30)
        ax.set_xlabel("number of heads (64 units)" if mode == "heads" else "student")
        ax.set_title(f"ν0 = {runs[0]['nu0']:g}")
    ax.set_yscale("log")
    ax.set_ylabel(
        "final loss (best lr; geomean, min–max over seeds)"
        if center == "geomean"
        else "last 100 steps' training loss (best lr; mean, min–max over seeds)"
    )
    if mode == "sweep":
        ax.legend(fontsize=8)
    _common.save_figure(fig, out, name)


# -- placing the programs on the devices ---------------------------------------------------------
def _concurrent(num_programs: int, num_devices: int) -> bool:
    """Whether the programs run side by side, one device each (else one after the other, each
    with its seeds split over every device).

    A program's step is a chain of small sequential operations (the impulse response's scan):
    on an accelerator it is bound by that chain's latency, which splitting the seeds does not
    shorten, so whole programs go to separate devices whenever there are enough of them.
    """
    return 1 < num_devices <= num_programs


def _run_programs(programs: list[Any], train: Any, devices: list[Any]) -> list[Any]:
    """``[train(p, devices_of_p) for p in programs]``, in order, placed by :func:`_concurrent`.

    Side by side: one thread per device, each taking the next program and a free device (JAX
    releases the GIL while a device computes). The results are those of one device: a program
    runs the same computation wherever it is placed.
    """
    if not _concurrent(len(programs), len(devices)):
        return [train(p, devices) for p in programs]
    import queue
    from concurrent.futures import ThreadPoolExecutor

    import jax

    free: queue.Queue = queue.Queue()
    for d in devices:
        free.put(d)

    def on_a_free_device(program: Any) -> Any:
        device = free.get()
        try:
            with jax.default_device(device):  # thread-local: init and setup run there too
                return train(program, [device])
        finally:
            free.put(device)

    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        return list(pool.map(on_a_free_device, programs))


# -- the wall-time estimate ----------------------------------------------------------------------
def _chunk(steps: int) -> int:
    """Steps per compiled call (and per point of the training curve)."""
    return max(1, min(100, steps // 10))


def _duration(seconds: float) -> str:
    """``seconds`` as "1 h 5 min", "4 min 10 s" or "35 s"."""
    s = round(seconds)
    if s >= 3600:
        hours, minutes = divmod(round(s / 60), 60)
        return f"{hours} h {minutes} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{seconds:.0f} s"


def _estimate(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    """Times a few steps of each student's program where the run will run, and prints
    "estimated wall time: ..." for the whole run.

    ν0 changes the teacher, not the program's shapes or work, so each student is timed once (at
    the first ν0) and counts once per ν0. Per student: setup (init, compilation, final
    evaluation; measured) + steps × the measured wall time of one step of all seeds × learning
    rates, on the devices the program will run on (:func:`_concurrent`): one device when the
    programs run side by side (the total then divides by the number of devices), else split
    over all of them.
    """
    import jax
    import jax.numpy as jnp

    from recurrent_zoo.tasks import teacher_student as ts

    t0 = time.perf_counter()
    paper = cfg["protocol"] == "paper"
    nu0, steps = cfg["nu0"][0], cfg["steps"]
    teachers, keys = _teachers(args.seed, nu0, cfg["seeds"], shared=paper)
    # A tiny program first: the process's first compilation carries one-time costs (backend
    # start-up, first tracing of the library), which no program of the run pays again.
    ts.time_steps(
        _student(cfg["models"][0], nu0, args.hidden_size), jax.tree.map(lambda a: a[:1], teachers),
        keys[:1], jnp.ones(1), steps=1, batch_size=1, length=4, eval_size=1, chunk=1, repeats=1,
    )  # fmt: skip
    devices = jax.local_devices()
    side_by_side = _concurrent(len(cfg["nu0"]) * len(cfg["models"]), len(devices))
    costs = {}
    for model in cfg["models"]:
        _, call = _program(args, cfg, model, nu0, teachers, keys)
        costs[model] = ts.time_steps(
            **call,
            chunk=min(_chunk(steps), 25),
            devices=devices[:1] if side_by_side else devices,
        )
    per_nu0 = sum(c.seconds(steps) for c in costs.values())
    seconds = len(cfg["nu0"]) * per_nu0
    if side_by_side:  # the programs share the devices out; none can finish before the longest
        seconds = max(seconds / len(devices), max(c.seconds(steps) for c in costs.values()))
        where = f"one {devices[0].platform} device each, {len(devices)} programs side by side"
    else:
        where = f"{len(devices)} {devices[0].platform} device{'s' if len(devices) > 1 else ''}"
    per_step = ", ".join(f"{m} {c.step_seconds * 1e3:.3g}" for m, c in costs.items())
    setup = max(c.setup_seconds for c in costs.values())
    print(
        f"estimated wall time: {_duration(seconds)} ({len(cfg['nu0'])} ν0 × "
        f"{len(costs)} students × {steps:,} steps; ms per step of {cfg['seeds']} seeds × "
        f"their learning rates on {where}: {per_step}; setup ≤ {setup:.1f} s per program; "
        f"timed in {time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    return {
        "seconds": seconds,
        "devices": len(devices),
        "programs_side_by_side": side_by_side,
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "students": {m: c._asdict() for m, c in costs.items()},
    }
