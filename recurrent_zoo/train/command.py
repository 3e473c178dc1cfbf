"""``recurrent-zoo train TASK [options]``: any zoo layer, sizes and optimiser on a registered task."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from pathlib import Path
from typing import Any

from recurrent_zoo.cli.usage import UsageError


def _layer_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a plain string, e.g. parametrization=polar
    return key.strip(), value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options every task shares: model, optimiser, run and checkpoints."""
    from recurrent_zoo.layers import LAYERS
    from recurrent_zoo.models import MLPS, NORMS
    from recurrent_zoo.optim import OPTIMIZERS

    m = p.add_argument_group("model")
    m.add_argument("--layer", default="lru", choices=sorted(LAYERS), help="zoo layer (lru)")
    m.add_argument("--num-layers", type=int, default=2, help="blocks in the stack (2)")
    m.add_argument("--d-model", type=int, default=32, help="width of the residual stream (32)")
    m.add_argument("--hidden-size", type=int, default=None, help="layer state size (d-model)")
    m.add_argument(
        "--layer-option",
        type=_layer_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a layer field, e.g. r_min=0.9 (repeatable)",
    )
    m.add_argument("--norm", default="layer", choices=[*NORMS, "none"], help="(layer)")
    m.add_argument("--mlp", default="glu", choices=[*MLPS, "none"], help="(glu)")
    m.add_argument("--dropout", type=float, default=0.0)
    o = p.add_argument_group("optimiser")
    o.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    o.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (1e-3)")
    o.add_argument("--warmup", type=int, default=0, help="warm-up steps (0)")
    o.add_argument("--end-lr", type=float, default=1e-7, help="learning rate at the end (1e-7)")
    o.add_argument("--recurrent-lr-factor", type=float, default=1.0)
    o.add_argument("--weight-decay", type=float, default=0.0)
    o.add_argument("--clip-norm", type=float, default=None, help="global-norm clipping (off)")
    r = p.add_argument_group("run")
    r.add_argument("--steps", type=int, default=500, help="training steps (500)")
    r.add_argument("--batch-size", type=int, default=32, help="global batch size (32)")
    r.add_argument("--seq-len", type=int, default=None, help="sequence length (task's default)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--checkpoint-dir", default=None, help="checkpoints; a run on it resumes")
    r.add_argument("--checkpoint-every", type=int, default=None, help="save every N steps")
    r.add_argument("--log-every", type=int, default=10, help="progress every N steps (10)")
    r.add_argument(
        "--metrics-window",
        type=int,
        default=10,
        help="the logged loss is the mean over the last N steps (10)",
    )
    r.add_argument(
        "--metrics",
        default=None,
        help="JSONL file of metrics (default: metrics.jsonl in the checkpoint folder)",
    )
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    r.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-host run (jax.distributed.initialize; see docs/training.md)",
    )


def _check(args: argparse.Namespace) -> None:
    positive = ["num_layers", "d_model", "steps", "batch_size", "log_every", "metrics_window"]
    optional_positive = ["hidden_size", "seq_len", "checkpoint_every"]
    for name in positive + optional_positive:
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if not 0.0 <= args.dropout < 1.0:
        raise UsageError(f"--dropout must lie in [0, 1), got {args.dropout}")
    if args.checkpoint_every is not None and args.checkpoint_dir is None:
        raise UsageError("--checkpoint-every needs --checkpoint-dir")


def build(args: argparse.Namespace) -> dict[str, Any]:
    """Model, loss, data and optimiser from the options; a bad value raises UsageError."""
    import jax

    from recurrent_zoo.layers import LAYERS
    from recurrent_zoo.models import SequenceModel
    from recurrent_zoo.optim import make_optimizer
    from recurrent_zoo.train.loop import as_batch

    _check(args)
    fields = {f.name for f in dataclasses.fields(LAYERS[args.layer])} - {"parent", "name"}
    layer_kwargs = dict(args.layer_option)
    for key in layer_kwargs:
        if key not in fields or key == "hidden_size":
            raise UsageError(
                f"--layer-option {key}: not an option of {args.layer}; choose from "
                f"{sorted(fields - {'hidden_size'})}"
            )
    try:
        spec = args._task.build(args)
        model = SequenceModel(
            args.layer,
            num_layers=args.num_layers,
            d_model=args.d_model,
            out_features=spec.d_out,
            vocab_size=spec.vocab_size,
            pooling=spec.pooling,
            hidden_size=args.hidden_size,
            layer_kwargs=layer_kwargs,
            norm=None if args.norm == "none" else args.norm,
            mlp=None if args.mlp == "none" else args.mlp,
            dropout=args.dropout,
        )
        optimizer = make_optimizer(
            args.lr,
            total_steps=args.steps,
            warmup_steps=args.warmup,
            end_learning_rate=args.end_lr,
            recurrent_lr_factor=args.recurrent_lr_factor,
            weight_decay=args.weight_decay,
            clip_norm=args.clip_norm,
            optimizer=args.optimizer,
        )
        # Trace the model once on a batch so that a bad combination fails here, as a usage error.
        batch = as_batch(spec.batch_fn(jax.random.key(0), 0))
        jax.eval_shape(lambda x: model.init(jax.random.key(0), x), batch["inputs"])
    except (ValueError, TypeError) as e:
        raise UsageError(str(e).splitlines()[0]) from e
    return {"model": model, "spec": spec, "optimizer": optimizer}


def run(args: argparse.Namespace) -> int:
    """Runs ``recurrent-zoo train``; returns the exit status."""
    from recurrent_zoo.train.loop import NonFiniteLossError, train
    from recurrent_zoo.train.sharding import initialize_distributed

    if args.distributed:
        initialize_distributed()
    built = build(args)
    metrics = args.metrics
    if metrics is None and args.checkpoint_dir is not None:
        metrics = Path(args.checkpoint_dir) / "metrics.jsonl"
    try:
        result = train(
            built["model"],
            built["spec"].loss_fn,
            built["spec"].batch_fn,
            built["optimizer"],
            num_steps=args.steps,
            seed=args.seed,
            checkpoint_dir=args.checkpoint_dir,
            checkpoint_every=args.checkpoint_every,
            log_every=args.log_every,
            metrics_window=args.metrics_window,
            metrics_path=metrics,
            verbose=not args.quiet,
            stream=built["spec"].stream,
        )
    except NonFiniteLossError as e:
        print(f"recurrent-zoo: error: {e}", file=sys.stderr)
        return 1
    if result.interrupted is not None:
        return 128 + int(result.interrupted)
    last = result.history[-1] if result.history else {}
    if "loss" in last:
        window = min(args.metrics_window, result.step)
        print(
            f"done: {result.step} steps, final loss {last['loss']:.4e} "
            f"(mean of the last {window} steps)"
        )
    if built["spec"].evaluate is not None:
        scores = built["spec"].evaluate(built["model"], result.variables)
        print("evaluation: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
    return 0


def add_task_parsers(
    train: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]
) -> None:
    """Adds one sub-command per registered task (:data:`recurrent_zoo.tasks.TASKS`) to the
    CLI's ``train`` parser."""
    from recurrent_zoo.tasks import TASKS

    tasks = train.add_subparsers(dest="task", required=True, parser_class=parser_class)
    for name, task in TASKS.items():
        p = tasks.add_parser(name, help=task.help, description=task.help)
        add_arguments(p)
        task.add_arguments(p)
        p.set_defaults(_run=run, _task=task)


__all__ = ["add_arguments", "add_task_parsers", "build", "run"]
