"""``recurrent-zoo bench language-model``: every zoo layer as a next-token model on Wikipedia.

Each layer goes inside the same :class:`recurrent_zoo.SequenceModel` (token embedding →
``--num-layers`` residual blocks → softmax head) and is trained with
:func:`recurrent_zoo.train.train` and :func:`recurrent_zoo.optim.make_optimizer` to predict the
next WordPiece token of the train split of the Wikipedia text (the shipped WikiText-2 sample by
default, tokenised with the BERT tokenizer of the real-data path), then evaluated on its
validation split (:func:`recurrent_zoo.data.split_articles`: whole articles held out).

Vocabulary: the quick size keeps the ``--vocab-size`` most frequent ids of the train split and maps
every other id to one shared "other" class (the softmax over 30,522 classes would cost 40 times the
recurrent layers on a CPU); ``--vocab-size 0`` (the ``--full`` default) keeps the tokenizer's whole
vocabulary. Perplexity is exp(mean cross-entropy) over that vocabulary, so compare runs of equal
vocabulary only.

Training: random windows of ``--length + 1`` tokens of the train stream (articles joined with
``[SEP]``), the batch of step k a function of the seed and k alone; Adam with warm-up
and cosine decay, gradient clipping, the recurrent parameters at ``--recurrent-lr-factor`` times
the learning rate. Validation: the whole validation stream in consecutive windows of ``--length``
tokens, each from a zero state.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

NAME = "language-model"
HELP = "every zoo layer as a next-token model on Wikipedia (WordPiece): validation perplexity"

QUICK = {"steps": 200, "vocab_size": 2048, "d_model": 128, "length": 128, "batch_size": 16}
HUB_MAX_TOKENS = 2_000_000
FULL = {"steps": 5000, "vocab_size": 0, "d_model": 256, "length": 512, "batch_size": 32}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    import recurrent_zoo as rz

    parser.add_argument(
        "--layers", nargs="+", default=list(rz.LAYERS), help=f"among {list(rz.LAYERS)}"
    )
    parser.add_argument(
        "--source",
        default="sample",
        help="'sample' (shipped WikiText-2), wikitext-2, wikitext-103, wikipedia (hub) or a path",
    )
    parser.add_argument("--model", default=None, help="BERT folder or hub name for the tokenizer")
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="cap on train tokens read (validation: a tenth of it); default: the whole local "
        f"source, {HUB_MAX_TOKENS:,} from a hub source",
    )

    def sized(name: str, help: str, kind: type = int) -> None:
        parser.add_argument(
            f"--{name}",
            type=kind,
            default=None,
            help=f"{help} (default {QUICK[name.replace('-', '_')]}; --full: {FULL[name.replace('-', '_')]})",
        )

    sized("steps", "training steps per layer")
    sized("vocab-size", "most frequent train ids kept, the rest one class; 0: whole vocabulary")
    sized("d-model", "width of the residual stream (and the layers' state size)")
    sized("length", "tokens per training window")
    sized("batch-size", "windows per step")
    parser.add_argument("--num-layers", type=int, default=2, help="recurrent blocks")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--recurrent-lr-factor", type=float, default=0.5)
    parser.add_argument("--warmup", type=float, default=0.1, help="warm-up share of the steps")
    parser.add_argument("--clip-norm", type=float, default=1.0)
    parser.add_argument("--log-every", type=int, default=10, help="steps per learning-curve point")


# ------------------------------------------------------------------------------------- data


class Vocabulary:
    """Maps tokenizer ids to model classes: the ``size`` most frequent ids of ``train`` get
    classes 0 … size − 1 (most frequent first) and every other id the class ``size``; with
    ``size=0`` the map is the identity on the tokenizer's ``full_size`` ids."""

    def __init__(self, train: np.ndarray, size: int, full_size: int) -> None:
        if size < 0:
            raise ValueError(f"vocabulary size must be >= 0, got {size}")
        if size == 0 or size >= full_size:
            self.table = np.arange(full_size, dtype=np.int32)
            self.num_classes = full_size
        else:
            counts = np.bincount(train, minlength=full_size)
            # A stable sort keeps the order of equal counts fixed (by id).
            keep = np.argsort(-counts, kind="stable")[:size]
            self.table = np.full(full_size, size, np.int32)
            self.table[keep] = np.arange(size, dtype=np.int32)
            self.num_classes = size + 1

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        return self.table[ids]

    def coverage(self, ids: np.ndarray) -> float:
        """The share of ``ids`` that keep a class of their own (1 for the whole vocabulary)."""
        if self.num_classes == len(self.table):
            return 1.0
        return float(np.mean(self(ids) != self.num_classes - 1))


def load_streams(
    source: str, model: str | None, validation_fraction: float, max_tokens: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """(train ids, validation ids, tokenizer vocabulary size): each split's articles joined, each
    followed by ``[SEP]``; at most ``max_tokens`` train and ``max_tokens // 10`` validation ids."""
    from recurrent_zoo import data
    from recurrent_zoo.embeddings import load_bert

    bert = load_bert(model, encoder=False)
    sep = bert.token_id("[SEP]")
    kw = dict(tokenizer=bert.tokenizer, separator=sep, validation_fraction=validation_fraction)
    val_max = None if max_tokens is None else max(max_tokens // 10, 2)
    train = data.token_stream(source, split="train", max_tokens=max_tokens, **kw)
    validation = data.token_stream(source, split="validation", max_tokens=val_max, **kw)
    return train, validation, bert.config.vocab_size


def make_batch_fn(stream: np.ndarray, batch_size: int, length: int):
    """``(key, step) -> {"inputs", "targets"}``: int32 [B, length] windows of the stream at
    positions drawn from ``key``, and the same shifted by one token."""
    if len(stream) < length + 2:
        raise ValueError(
            f"the train split has {len(stream)} tokens, fewer than a window of {length + 1}"
        )
    tokens = jnp.asarray(stream)
    offsets = jnp.arange(length + 1)

    @jax.jit
    def batch_fn(key: jax.Array) -> dict[str, jax.Array]:
        starts = jax.random.randint(key, (batch_size, 1), 0, len(stream) - length)
        window = tokens[starts + offsets]
        return {"inputs": window[:, :-1], "targets": window[:, 1:]}

    return lambda key, step: batch_fn(key)


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy (nats)."""
    import optax

    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), targets
    ).mean()


def evaluate(
    model: Any, variables: Any, stream: np.ndarray, length: int, batch_size: int
) -> dict[str, float]:
    """Mean cross-entropy over every next-token prediction of ``stream``, read in consecutive
    windows of ``length`` tokens (each from a zero state); the last window is padded and masked."""
    inputs, targets = stream[:-1], stream[1:]
    n = len(targets)
    windows = math.ceil(n / length)
    rows = math.ceil(windows / batch_size) * batch_size
    x = np.zeros(rows * length, np.int32)
    y = np.zeros(rows * length, np.int32)
    m = np.zeros(rows * length, bool)
    x[:n], y[:n], m[:n] = inputs, targets, True
    x, y, m = (a.reshape(rows, length) for a in (x, y, m))

    @jax.jit
    def summed(xb, yb, mb):
        import optax

        logits = model.apply(variables, xb).astype(jnp.float32)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        return jnp.sum(jnp.where(mb, nll, 0.0))

    total = sum(
        float(summed(x[s : s + batch_size], y[s : s + batch_size], m[s : s + batch_size]))
        for s in range(0, rows, batch_size)
    )
    loss = total / n
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": n}


# ------------------------------------------------------------------------------------ bench


def _sizes(args: argparse.Namespace) -> dict[str, int]:
    base = FULL if args.full else QUICK
    return {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in base.items()}


def _check(args: argparse.Namespace, sizes: dict[str, int]) -> None:
    import recurrent_zoo as rz
    from recurrent_zoo.bench._common import UsageError

    bad = [name for name in args.layers if name not in rz.LAYERS]
    if bad:
        raise UsageError(f"--layers: got {bad}, expected names among {list(rz.LAYERS)}")
    for name in ("steps", "d_model", "length", "batch_size"):
        if sizes[name] < 1:
            raise UsageError(f"--{name.replace('_', '-')}: got {sizes[name]}, expected >= 1")
    if sizes["vocab_size"] < 0:
        raise UsageError(f"--vocab-size: got {sizes['vocab_size']}, expected >= 0")
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


def train_layer(
    layer: str,
    train_ids: np.ndarray,
    validation_ids: np.ndarray,
    num_classes: int,
    sizes: dict[str, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Trains and evaluates one layer; returns its row of results and its learning curve."""
    import recurrent_zoo as rz
    from recurrent_zoo.train import train

    model = rz.SequenceModel(
        layer,
        num_layers=args.num_layers,
        d_model=sizes["d_model"],
        out_features=num_classes,
        vocab_size=num_classes,
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
        lambda logits, batch: cross_entropy(logits, batch["targets"]),
        make_batch_fn(train_ids, sizes["batch_size"], sizes["length"]),
        optimizer,
        num_steps=steps,
        seed=args.seed,
        log_every=min(args.log_every, steps),
        metrics_window=min(args.log_every, steps),  # each curve point: the mean since the last
        verbose=False,
        handle_signals=False,
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
    val = evaluate(model, result.variables, validation_ids, sizes["length"], sizes["batch_size"])
    params = sum(int(np.size(p)) for p in jax.tree.leaves(result.params))
    return {
        "layer": layer,
        "val_loss": val["loss"],
        "val_perplexity": val["perplexity"],
        "train_loss": history[-1]["loss"],
        "train_tokens_per_s": tokens_per_second,
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - start,
        "parameters": params,
        "curve": {"step": [h["step"] for h in history], "loss": [h["loss"] for h in history]},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from recurrent_zoo import data
    from recurrent_zoo.bench._common import (
        UsageError,
        args_dict,
        format_table,
        progress,
        write_json,
    )

    sizes = _sizes(args)
    _check(args, sizes)
    start = time.perf_counter()
    try:
        max_tokens = args.max_tokens
        if max_tokens is None and args.source in data.HUB_SOURCES:
            max_tokens = HUB_MAX_TOKENS
        train_raw, val_raw, full_vocab = load_streams(
            args.source, args.model, args.validation_fraction, max_tokens
        )
    except (FileNotFoundError, ConnectionError, ValueError) as e:
        raise UsageError(str(e)) from e
    vocab = Vocabulary(train_raw, sizes["vocab_size"], full_vocab)
    train_ids, val_ids = vocab(train_raw), vocab(val_raw)
    rows = []
    for layer in progress(args.layers, "language-model: layers"):
        rows.append(train_layer(layer, train_ids, val_ids, vocab.num_classes, sizes, args))
    results = {
        "source": data.source_description(args.source),
        "sizes": sizes,
        "train_tokens": len(train_ids),
        "validation_tokens": len(val_ids) - 1,
        "num_classes": vocab.num_classes,
        "validation_coverage": vocab.coverage(val_raw),
        "train_coverage": vocab.coverage(train_raw),
        "total_seconds": time.perf_counter() - start,
        "layers": rows,
    }
    write_json(args.out, NAME, args_dict(args), results)
    _plot(rows, results, args.out)
    columns = [
        "layer",
        "val_loss",
        "val_perplexity",
        "train_loss",
        "train_tokens_per_s",
        "train_seconds",
        "parameters",
    ]
    print(
        f"{results['train_tokens']:,} train / {results['validation_tokens']:,} validation tokens, "
        f"{vocab.num_classes:,} classes ({100 * results['validation_coverage']:.1f}% of validation "
        f"tokens keep their own class), {sizes['steps']} steps of {sizes['batch_size']}×"
        f"{sizes['length']} per layer, {results['total_seconds']:.0f} s in all"
    )
    print(format_table(rows, columns))
    return results


def _plot(rows: Sequence[dict[str, Any]], results: dict[str, Any], out: str) -> None:
    from recurrent_zoo.bench._common import pyplot, save_figure

    plt = pyplot()
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
        f"{s['batch_size']}×{s['length']} tokens/step"
    )
    axes[1].set_title("second half (train: mean over each logging interval)")
    axes[1].legend(fontsize=7, ncol=2)
    save_figure(fig, out, NAME)
