"""``recurrent-zoo bench language-model``: every zoo layer as a next-token model on Wikipedia.

Each layer goes inside the same :class:`recurrent_zoo.SequenceModel` (token embedding →
``--num-layers`` residual blocks → softmax head) and is trained with
:func:`recurrent_zoo.train.train` and :func:`recurrent_zoo.optim.make_optimizer` on the
language-model task (:mod:`recurrent_zoo.tasks.language_model`): predict the next WordPiece token
of the train split of the Wikipedia text (the shipped WikiText-2 sample by default, tokenised
with the BERT tokenizer of the real-data path), then score the validation split (whole articles
held out) with the task's evaluation.

Vocabulary: the quick size keeps the ``--vocab-size`` most frequent ids of the train split and maps
every other id to one shared "other" class (the softmax over 30,522 classes would cost 40 times the
recurrent layers on a CPU); ``--vocab-size 0`` (the ``--full`` default) keeps the tokenizer's whole
vocabulary. Perplexity is exp(mean cross-entropy) over that vocabulary, so compare runs of equal
vocabulary only.

Training: random windows of ``--length + 1`` tokens of the train stream (articles joined with
``[SEP]``), the batch of step k a function of the seed and k alone; Adam with warm-up
and cosine decay, gradient clipping, the recurrent parameters at ``--recurrent-lr-factor`` times
the learning rate. Validation: the whole validation stream in consecutive windows of ``--length``
tokens, each from a zero state (``val_loss``), and the same windows read as ``--batch-size``
parallel streams with the state carried from one window to the next (``val_stream_loss``).

Streaming (``--stream``): the train stream is read as ``--batch-size`` parallel streams in
consecutive windows, the recurrent state carried from each window to the next and reset at each
article start (truncated backpropagation through time, ``train(..., stream=True)``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from recurrent_zoo.bench import _common
from recurrent_zoo.cli.options import Size, Sizes, add_layers, add_text_source
from recurrent_zoo.cli.usage import UsageError

NAME = "language-model"
HELP = "every zoo layer as a next-token model on Wikipedia (WordPiece): validation perplexity"

SIZES = Sizes(
    steps=Size(200, 5000, "training steps per layer"),
    vocab_size=Size(
        2048, 0, "most frequent train ids kept, the rest one class; 0: whole vocabulary", minimum=0
    ),
    d_model=Size(128, 256, "width of the residual stream (and the layers' state size)"),
    length=Size(128, 512, "tokens per training window"),
    batch_size=Size(16, 32, "windows per step"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_layers(parser, what="layers to train")
    add_text_source(parser, model_help="BERT folder or hub name for the tokenizer")
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="cap on train tokens read (validation: a tenth of it); default: the whole local "
        "source, recurrent_zoo.data.HUB_MAX_TOKENS from a hub source",
    )
    SIZES.add_arguments(parser)
    parser.add_argument("--num-layers", type=int, default=2, help="recurrent blocks")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--recurrent-lr-factor", type=float, default=0.5)
    parser.add_argument("--warmup", type=float, default=0.1, help="warm-up share of the steps")
    parser.add_argument("--clip-norm", type=float, default=1.0)
    parser.add_argument("--log-every", type=int, default=10, help="steps per learning-curve point")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="train on consecutive windows of parallel streams, the recurrent state carried "
        "from one to the next (truncated backpropagation through time)",
    )


def _check(args: argparse.Namespace) -> dict[str, int]:
    """Checks the options; returns the sizes."""
    sizes = SIZES.resolve(args)
    if args.num_layers < 1:
        raise UsageError(f"--num-layers: got {args.num_layers}, expected >= 1")
    if not 0.0 < args.validation_fraction < 1.0:
        raise UsageError(
            f"--validation-fraction: got {args.validation_fraction}, expected a number in (0, 1)"
        )
    if not 0.0 <= args.warmup < 1.0:
        raise UsageError(f"--warmup: got {args.warmup}, expected a share in [0, 1)")
    if args.lr <= 0 or args.recurrent_lr_factor <= 0 or args.clip_norm <= 0:
        raise UsageError("--lr, --recurrent-lr-factor and --clip-norm must be > 0")
    if args.log_every < 1:
        raise UsageError(f"--log-every: got {args.log_every}, expected >= 1")
    if args.max_tokens is not None and args.max_tokens < 20:
        raise UsageError(f"--max-tokens: got {args.max_tokens}, expected at least 20")
    return sizes


def train_layer(
    layer: str,
    corpus: Any,
    sizes: dict[str, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Trains and evaluates one layer on ``corpus`` (a
    :class:`~recurrent_zoo.tasks.language_model.Corpus`); returns its row of results and its
    learning curve."""
    import jax
    import numpy as np

    import recurrent_zoo as rz
    from recurrent_zoo.tasks.language_model import evaluate, evaluate_stream, language_model_spec
    from recurrent_zoo.train import train

    spec = language_model_spec(corpus, sizes["batch_size"], sizes["length"], stream=args.stream)
    model = rz.SequenceModel(
        layer,
        num_layers=args.num_layers,
        d_model=sizes["d_model"],
        out_features=spec.d_out,
        vocab_size=spec.vocab_size,
    )
    steps = sizes["steps"]
    optimizer = rz.optim.make_optimizer(
        args.lr,
        total_steps=steps,
        warmup_steps=int(args.warmup * steps),
        recurrent_lr_factor=args.recurrent_lr_factor,
        clip_norm=args.clip_norm,
    )
    start = time.perf_counter()
    result = train(
        model,
        spec.loss_fn,
        spec.batch_fn,
        optimizer,
        num_steps=steps,
        seed=args.seed,
        log_every=min(args.log_every, steps),
        metrics_window=min(args.log_every, steps),  # each curve point: the mean since the last
        verbose=False,
        handle_signals=False,
        stream=spec.stream,
    )
    train_seconds = time.perf_counter() - start
    history = result.history
    tokens_per_step = sizes["batch_size"] * sizes["length"]
    # Throughput after the first record (which holds the compilation).
    if len(history) > 1:
        span = history[-1]["elapsed_s"] - history[0]["elapsed_s"]
        tokens_per_second = (history[-1]["step"] - history[0]["step"]) * tokens_per_step / span
    else:
        tokens_per_second = steps * tokens_per_step / train_seconds
    start = time.perf_counter()
    # Both readings of the validation stream, whichever way the model was trained.
    val = evaluate(model, result.variables, corpus.validation, sizes["length"], sizes["batch_size"])
    streamed = evaluate_stream(
        model,
        result.variables,
        corpus.validation,
        sizes["length"],
        sizes["batch_size"],
        corpus.validation_starts,
    )
    params = sum(int(np.size(p)) for p in jax.tree.leaves(result.params))
    return {
        "layer": layer,
        "val_loss": val["loss"],
        "val_perplexity": val["perplexity"],
        "val_stream_loss": streamed["loss"],
        "val_stream_perplexity": streamed["perplexity"],
        "train_loss": history[-1]["loss"],
        "train_tokens_per_s": tokens_per_second,
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - start,
        "parameters": params,
        "curve": {"step": [h["step"] for h in history], "loss": [h["loss"] for h in history]},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from recurrent_zoo import data
    from recurrent_zoo.tasks.language_model import load_corpus

    sizes = _check(args)
    start = time.perf_counter()
    try:
        corpus = load_corpus(
            args.source,
            sizes["vocab_size"],
            model=args.model,
            validation_fraction=args.validation_fraction,
            max_tokens=args.max_tokens,
        )
    except (FileNotFoundError, ConnectionError, ValueError) as e:
        raise UsageError(str(e)) from e
    rows = []
    for layer in _common.progress(args.layers, "language-model: layers"):
        rows.append(train_layer(layer, corpus, sizes, args))
    results = {
        "source": data.source_description(args.source),
        "sizes": sizes,
        "stream": bool(args.stream),
        "train_tokens": len(corpus.train),
        "validation_tokens": len(corpus.validation) - 1,
        "num_classes": corpus.num_classes,
        "validation_coverage": corpus.validation_coverage,
        "train_coverage": corpus.train_coverage,
        "total_seconds": time.perf_counter() - start,
        "layers": rows,
    }
    _common.write_json(args.out, NAME, _common.args_dict(args), results)
    _plot(rows, results, args.out)
    columns = [
        "layer",
        "val_loss",
        "val_perplexity",
        "val_stream_perplexity",
        "train_loss",
        "train_tokens_per_s",
        "train_seconds",
        "parameters",
    ]
    print(
        f"{results['train_tokens']:,} train / {results['validation_tokens']:,} validation tokens, "
        f"{corpus.num_classes:,} classes ({100 * results['validation_coverage']:.1f}% of validation "
        f"tokens keep their own class), {sizes['steps']} steps of {sizes['batch_size']}×"
        f"{sizes['length']} per layer{' (streamed)' if args.stream else ''}, "
        f"{results['total_seconds']:.0f} s in all"
    )
    print(_common.format_table(rows, columns))
    return results


def _plot(rows: Sequence[dict[str, Any]], results: dict[str, Any], out: str) -> None:
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    steps = results["sizes"]["steps"]
    for ax, first in zip(axes, (0, steps // 2)):
        for i, row in enumerate(rows):
            color = f"C{i % 10}"
            curve = [
                (s, v) for s, v in zip(row["curve"]["step"], row["curve"]["loss"]) if s >= first
            ]
            if curve:
                ax.plot(*zip(*curve), color=color, label=f"{row['layer']} train")
            ax.plot(
                [steps],
                [row["val_loss"]],
                "o",
                color=color,
                label=f"{row['layer']} validation, ppl {row['val_perplexity']:.1f}",
            )
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    s = results["sizes"]
    axes[0].set_ylabel("cross-entropy (nats)")
    axes[0].set_title(
        f"next WordPiece token: {results['num_classes']:,} classes, "
        f"{s['batch_size']}×{s['length']} tokens/step" + (", streamed" if results["stream"] else "")
    )
    axes[1].set_title("second half (train: mean over each logging interval)")
    axes[1].legend(fontsize=7, ncol=2)
    _common.save_figure(fig, out, NAME)
