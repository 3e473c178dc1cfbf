"""Next-token prediction on Wikipedia: the loss, the validation score and the training task.

The data are :mod:`recurrent_zoo.data.next_token`'s: WordPiece id streams of the train and
validation articles (whole articles held out), mapped to a :class:`~recurrent_zoo.data.Vocabulary`
that keeps the most frequent train ids and folds the rest into one "other" class (size 0: the
tokenizer's whole vocabulary). Perplexity is exp(mean cross-entropy) over that vocabulary, so
compare runs of equal vocabulary only.

Registered as the training task ``language-model``::

    recurrent-zoo train language-model --layer lru --vocab-size 2048 --seq-len 128

trains on random windows of the train stream and prints the validation loss and perplexity;
with ``--stream`` it reads the train stream as ``--batch-size`` parallel streams in consecutive
windows, carrying the recurrent state from one window to the next (truncated backpropagation
through time, reset at each article start), and scores the validation stream the same way
(:func:`evaluate_stream`).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recurrent_zoo import data
from recurrent_zoo.cli.options import add_text_source
from recurrent_zoo.tasks.registry import Task, TaskSpec, register

#: Default window length (tokens) of the training task.
DEFAULT_LENGTH = 128
#: Default vocabulary of the training task: the most frequent train ids kept (0: all).
DEFAULT_VOCAB_SIZE = 2048


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy (nats): logits float [..., C], targets int [...]."""
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), targets
    ).mean()


def evaluate(
    model: Any, variables: Any, stream: np.ndarray, length: int, batch_size: int
) -> dict[str, float]:
    """Mean cross-entropy over every next-token prediction of ``stream``, read in consecutive
    windows of ``length`` tokens (each from a zero state); the last window is padded and masked.

    Returns ``loss`` (nats), ``perplexity`` exp(loss) and ``tokens`` (predictions scored).
    """
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
        logits = model.apply(variables, xb).astype(jnp.float32)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        return jnp.sum(jnp.where(mb, nll, 0.0))

    total = sum(
        float(summed(x[s : s + batch_size], y[s : s + batch_size], m[s : s + batch_size]))
        for s in range(0, rows, batch_size)
    )
    loss = total / n
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": n}


def evaluate_stream(
    model: Any,
    variables: Any,
    stream: np.ndarray,
    length: int,
    batch_size: int,
    starts: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean cross-entropy with the recurrent state carried through the stream: ``stream`` is cut
    into ``batch_size`` lanes of ``lane = (n − 1) // batch_size`` predictions (the remainder, fewer
    than ``batch_size``, is not scored), each read in consecutive windows of ``length`` tokens,
    every window starting from the state the previous one ended in (``model.apply(variables, x,
    initial_state=s, resets=r, return_state=True)``); ``resets`` where ``starts`` marks a document
    start (:func:`recurrent_zoo.data.document_starts`), and zeros at each lane's start. The last
    window is padded and masked.

    Returns ``loss`` (nats), ``perplexity`` exp(loss) and ``tokens`` (predictions scored).
    """
    stream = np.asarray(stream, np.int32)
    lane = (len(stream) - 1) // batch_size
    if lane < 1:
        raise ValueError(f"a stream of {len(stream)} tokens has no prediction per lane")
    starts = np.zeros(len(stream), bool) if starts is None else np.asarray(starts, bool)
    windows = math.ceil(lane / length)
    index = (np.arange(batch_size) * lane)[:, None] + np.arange(windows * length)[None, :]
    valid = np.arange(windows * length)[None, :] < lane
    index = np.where(valid, index, 0)  # padding reads token 0, masked out
    x, y = stream[index], stream[index + 1]
    resets = starts[index]
    resets[:, 0] = True

    @jax.jit
    def window(state, xb, yb, rb, mb):
        state, logits = model.apply(
            variables, xb, initial_state=state, resets=rb, return_state=True
        )
        nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), yb)
        return state, jnp.sum(jnp.where(mb, nll, 0.0))

    first = lambda xb: model.apply(variables, xb, return_state=True)[0]
    state = jax.tree.map(
        lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(first, x[:, :length])
    )
    total = 0.0
    mask = np.broadcast_to(valid, x.shape)
    for w in range(windows):
        cut = slice(w * length, (w + 1) * length)
        state, s = window(state, x[:, cut], y[:, cut], resets[:, cut], mask[:, cut])
        total += float(s)
    n = batch_size * lane
    loss = total / n
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": n}


@dataclass(frozen=True)
class Corpus:
    """Train and validation streams in a vocabulary's classes.

    Attributes:
      train, validation: int32 class ids [n_train], [n_validation].
      vocabulary: the map from tokenizer ids to classes.
      train_coverage, validation_coverage: the share of each split's tokens that keep a class of
        their own (1 with the whole vocabulary).
      train_starts, validation_starts: bool [n_train], [n_validation], True where an article
        begins (:func:`recurrent_zoo.data.document_starts`; None: not known).
    """

    train: np.ndarray
    validation: np.ndarray
    vocabulary: data.Vocabulary
    train_coverage: float
    validation_coverage: float
    train_starts: np.ndarray | None = None
    validation_starts: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return self.vocabulary.num_classes


def load_corpus(
    source: str = "sample",
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    *,
    model: str | None = None,
    validation_fraction: float = 0.1,
    max_tokens: int | None = None,
) -> Corpus:
    """Reads and tokenises ``source`` (:func:`recurrent_zoo.data.load_token_streams`; a hub source
    is capped at :data:`recurrent_zoo.data.HUB_MAX_TOKENS` unless ``max_tokens`` is given) and
    maps it to a vocabulary of the ``vocab_size`` most frequent train ids (0: all)."""
    if max_tokens is None and source in data.HUB_SOURCES:
        max_tokens = data.HUB_MAX_TOKENS
    from recurrent_zoo.embeddings import load_bert

    train, validation, full_size = data.load_token_streams(
        source, model, validation_fraction, max_tokens
    )
    sep = load_bert(model, encoder=False).token_id("[SEP]")  # cached: the tokenizer just used
    vocab = data.Vocabulary(train, vocab_size, full_size)
    return Corpus(
        vocab(train),
        vocab(validation),
        vocab,
        vocab.coverage(train),
        vocab.coverage(validation),
        data.document_starts(train, sep),
        data.document_starts(validation, sep),
    )


def language_model_spec(
    corpus: Corpus, batch_size: int, length: int, stream: bool = False
) -> TaskSpec:
    """The training task on ``corpus``: token inputs int32 [B, length], one prediction per step
    over the corpus's classes, loss :func:`cross_entropy`, evaluation :func:`evaluate` on the
    validation stream.

    With ``stream``, the batches are consecutive windows of B parallel streams with resets at
    article starts (:func:`recurrent_zoo.data.next_token_stream`), trained with the state carried
    over (``TaskSpec.stream``), and the evaluation is :func:`evaluate_stream`."""
    if stream:
        batch_fn = data.next_token_stream(corpus.train, batch_size, length, corpus.train_starts)
        score = lambda model, variables: evaluate_stream(
            model, variables, corpus.validation, length, batch_size, corpus.validation_starts
        )
    else:
        batch_fn = data.next_token_batches(corpus.train, batch_size, length)
        score = lambda model, variables: evaluate(
            model, variables, corpus.validation, length, batch_size
        )
    return TaskSpec(
        batch_fn=batch_fn,
        loss_fn=lambda logits, batch: cross_entropy(logits, batch["targets"]),
        d_in=corpus.num_classes,
        d_out=corpus.num_classes,
        vocab_size=corpus.num_classes,
        evaluate=score,
        stream=stream,
    )


def _arguments(p: argparse.ArgumentParser) -> None:
    add_text_source(p, model_help="BERT folder or hub name for the tokenizer")
    p.add_argument(
        "--vocab-size",
        type=int,
        default=DEFAULT_VOCAB_SIZE,
        help="most frequent train ids kept, the rest one class; 0: whole vocabulary "
        f"(default {DEFAULT_VOCAB_SIZE})",
    )
    p.add_argument("--validation-fraction", type=float, default=0.1)
    p.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="cap on train tokens read (validation: a tenth of it); default: the whole local "
        f"source, {data.HUB_MAX_TOKENS:,} from a hub source",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="read --batch-size parallel streams in consecutive windows, the recurrent state "
        "carried from one to the next (truncated backpropagation through time)",
    )


def _build(args: argparse.Namespace) -> TaskSpec:
    if args.vocab_size < 0:
        raise ValueError(f"--vocab-size must be >= 0, got {args.vocab_size}")
    if not 0.0 < args.validation_fraction < 1.0:
        raise ValueError(
            f"--validation-fraction must lie in (0, 1), got {args.validation_fraction}"
        )
    try:
        corpus = load_corpus(
            args.source,
            args.vocab_size,
            model=args.model,
            validation_fraction=args.validation_fraction,
            max_tokens=args.max_tokens,
        )
    except (FileNotFoundError, ConnectionError) as e:
        raise ValueError(str(e)) from e
    return language_model_spec(
        corpus, args.batch_size, args.seq_len or DEFAULT_LENGTH, stream=args.stream
    )


TASK = register(
    Task(
        "language-model",
        "next WordPiece token of Wikipedia text (validation loss and perplexity at the end)",
        _arguments,
        _build,
    )
)

__all__ = [
    "DEFAULT_LENGTH",
    "DEFAULT_VOCAB_SIZE",
    "TASK",
    "Corpus",
    "cross_entropy",
    "evaluate",
    "evaluate_stream",
    "language_model_spec",
    "load_corpus",
]
