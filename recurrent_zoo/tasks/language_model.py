"""Next-token prediction on Wikipedia: the loss, the validation score and the training task.

The data are :mod:`recurrent_zoo.data.next_token`'s: WordPiece id streams of the train and
validation articles (whole articles held out), mapped to a :class:`~recurrent_zoo.data.Vocabulary`
that keeps the most frequent train ids and folds the rest into one "other" class (size 0: the
tokenizer's whole vocabulary). Perplexity is exp(mean cross-entropy) over that vocabulary, so
compare runs of equal vocabulary only.

Registered as the training task ``language-model``::

    recurrent-zoo train language-model --layer lru --vocab-size 2048 --seq-len 128

trains on random windows of the train stream and prints the validation loss and perplexity.
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


@dataclass(frozen=True)
class Corpus:
    """Train and validation streams in a vocabulary's classes.

    Attributes:
      train, validation: int32 class ids [n_train], [n_validation].
      vocabulary: the map from tokenizer ids to classes.
      train_coverage, validation_coverage: the share of each split's tokens that keep a class of
        their own (1 with the whole vocabulary).
    """

    train: np.ndarray
    validation: np.ndarray
    vocabulary: data.Vocabulary
    train_coverage: float
    validation_coverage: float

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
    train, validation, full_size = data.load_token_streams(
        source, model, validation_fraction, max_tokens
    )
    vocab = data.Vocabulary(train, vocab_size, full_size)
    return Corpus(
        vocab(train), vocab(validation), vocab, vocab.coverage(train), vocab.coverage(validation)
    )


def language_model_spec(corpus: Corpus, batch_size: int, length: int) -> TaskSpec:
    """The training task on ``corpus``: token inputs int32 [B, length], one prediction per step
    over the corpus's classes, loss :func:`cross_entropy`, evaluation :func:`evaluate` on the
    validation stream."""
    return TaskSpec(
        batch_fn=data.next_token_batches(corpus.train, batch_size, length),
        loss_fn=lambda logits, batch: cross_entropy(logits, batch["targets"]),
        d_in=corpus.num_classes,
        d_out=corpus.num_classes,
        vocab_size=corpus.num_classes,
        evaluate=lambda model, variables: evaluate(
            model, variables, corpus.validation, length, batch_size
        ),
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
    return language_model_spec(corpus, args.batch_size, args.seq_len or DEFAULT_LENGTH)


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
    "language_model_spec",
    "load_corpus",
]
