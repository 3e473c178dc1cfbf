"""Next-token data: WordPiece id streams of Wikipedia, a reduced vocabulary and shifted batches.

>>> train, validation, full_size = rz.data.load_token_streams("sample")
>>> vocab = rz.data.Vocabulary(train, size=2048, full_size=full_size)   # 2,048 ids + "other"
>>> batch_fn = rz.data.next_token_batches(vocab(train), batch_size=16, length=128)
>>> batch_fn(key, step)          # {"inputs": int32 [16, 128], "targets": the same, one later}
>>> starts = rz.data.document_starts(train, separator=102)   # the [SEP] id of BERT's vocabulary
>>> stream_fn = rz.data.next_token_stream(vocab(train), 16, 128, starts)  # 16 parallel streams
>>> stream_fn(key, step)         # window step of each stream, and "resets" at article starts

The language-model task (:mod:`recurrent_zoo.tasks.language_model`) trains on these.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

#: Train tokens read from a hub source (an endless stream) unless a cap is given.
HUB_MAX_TOKENS = 2_000_000


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
        """The classes of ``ids`` (int32, same shape)."""
        return self.table[ids]

    def coverage(self, ids: np.ndarray) -> float:
        """The share of ``ids`` that keep a class of their own (1 for the whole vocabulary)."""
        if self.num_classes == len(self.table):
            return 1.0
        return float(np.mean(self(ids) != self.num_classes - 1))


def load_token_streams(
    source: str | os.PathLike[str] = "sample",
    model: str | None = None,
    validation_fraction: float = 0.1,
    max_tokens: int | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """(train ids, validation ids, tokenizer vocabulary size) of a source, tokenised with the BERT
    tokenizer of ``model`` (:func:`recurrent_zoo.embeddings.load_bert`; None: the offline
    default). Each split's articles are joined, each followed by ``[SEP]``; at most
    ``max_tokens`` train and ``max_tokens // 10`` validation ids are read."""
    from recurrent_zoo.data.tokens import token_stream
    from recurrent_zoo.embeddings import load_bert

    bert = load_bert(model, encoder=False)
    sep = bert.token_id("[SEP]")
    kw = dict(tokenizer=bert.tokenizer, separator=sep, validation_fraction=validation_fraction)
    val_max = None if max_tokens is None else max(max_tokens // 10, 2)
    train = token_stream(source, split="train", max_tokens=max_tokens, **kw)
    validation = token_stream(source, split="validation", max_tokens=val_max, **kw)
    return train, validation, bert.config.vocab_size


def next_token_batches(
    stream: np.ndarray, batch_size: int, length: int
) -> Callable[[Any, int], dict[str, Any]]:
    """``(key, step) -> {"inputs", "targets"}``: int32 [batch_size, length] windows of ``stream``
    at positions drawn from ``key`` alone, and the same windows shifted by one token."""
    import jax
    import jax.numpy as jnp

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


def document_starts(stream: np.ndarray, separator: int) -> np.ndarray:
    """bool [n]: True where a document begins in ``stream`` (documents each followed by
    ``separator``, as :func:`load_token_streams` joins articles): at 0 and after each separator."""
    stream = np.asarray(stream)
    starts = np.zeros(len(stream), bool)
    starts[:1] = True
    starts[1:] = stream[:-1] == separator
    return starts


def next_token_stream(
    stream: np.ndarray, batch_size: int, length: int, starts: np.ndarray | None = None
) -> Callable[[Any, int], dict[str, Any]]:
    """``(key, step) -> {"inputs", "targets", "resets"}``: consecutive windows of ``batch_size``
    parallel streams, for streaming training (``train(..., stream=True)``).

    ``stream`` [n] is cut into B lanes of ``lane = (n − 1) // B`` tokens (lane b starts at token
    b · lane; the remainder is dropped), each read in W = lane // length windows of ``length``
    tokens. Step k reads window w = k mod W of every lane: inputs int32 [B, length] the lane's
    tokens w·length … (w+1)·length − 1, targets the same shifted by one token, resets bool
    [B, length] True where ``starts`` marks a document start (:func:`document_starts`) and at
    the first token of window 0, where each pass over a lane begins. The batch depends on the
    step alone (``key`` is unused), so a resumed run reads what an uninterrupted one would.
    """
    stream = np.asarray(stream, np.int32)
    lane = (len(stream) - 1) // batch_size
    windows = lane // length
    if windows < 1:
        raise ValueError(
            f"the train split has {len(stream)} tokens, fewer than {batch_size} streams of a "
            f"window of {length + 1}"
        )
    starts = np.zeros(len(stream), bool) if starts is None else np.asarray(starts, bool)
    if starts.shape != stream.shape:
        raise ValueError(f"starts must be bool {stream.shape}, got shape {starts.shape}")
    rows = (np.arange(batch_size) * lane)[:, None] + np.arange(length)[None, :]

    def batch_fn(key: Any, step: int) -> dict[str, np.ndarray]:
        w = int(step) % windows
        index = rows + w * length
        resets = starts[index]
        if w == 0:
            resets[:, 0] = True
        return {"inputs": stream[index], "targets": stream[index + 1], "resets": resets}

    return batch_fn


__all__ = [
    "HUB_MAX_TOKENS",
    "Vocabulary",
    "document_starts",
    "load_token_streams",
    "next_token_batches",
    "next_token_stream",
]
