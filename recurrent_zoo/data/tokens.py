"""Articles → WordPiece ids → fixed-length windows and batches.

A window is what BERT sees when it reads a piece of text on its own, as the paper's tokenise-and-cut
to 512 tokens: ``[CLS] w_1 … w_{L−2} [SEP]`` with ``special_tokens=True`` (the default), or
``L`` plain word pieces without them. Two ways to cut an article:

* ``"all"``: consecutive windows over the whole article (the last one may be shorter), so every
  token of the text is used once;
* ``"first"``: only the first window of each article, as the paper did.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from recurrent_zoo import _checks as checks
from recurrent_zoo.data.text import Article, iter_articles

WINDOWS = ("all", "first")


def iter_article_ids(
    articles: Iterable[Article], tokenizer: Any, chunk: int = 16
) -> Iterator[np.ndarray]:
    """Word-piece ids (int32 [n], no special tokens) of each article, tokenised ``chunk`` at a time
    (``tokenizers`` encodes a batch in parallel)."""
    buffer: list[str] = []
    for article in articles:
        buffer.append(article.text)
        if len(buffer) == chunk:
            yield from _encode(tokenizer, buffer)
            buffer = []
    if buffer:
        yield from _encode(tokenizer, buffer)


def _encode(tokenizer: Any, texts: list[str]) -> Iterator[np.ndarray]:
    for e in tokenizer.encode_batch(texts, add_special_tokens=False):
        yield np.asarray(e.ids, np.int32)


def check_window(length: int, special_tokens: bool, max_length: int | None = None) -> None:
    """ValueError unless a window of ``length`` tokens is possible (and fits ``max_length``)."""
    shortest = 3 if special_tokens else 1
    if not isinstance(length, int | np.integer) or length < shortest:
        raise ValueError(
            f"length must be an int >= {shortest} (with special_tokens={special_tokens}), got {length!r}"
        )
    if max_length is not None and length > max_length:
        raise ValueError(
            f"length {length} is more than the model's {max_length} positions (max_position_embeddings)"
        )


def cut_windows(
    ids: np.ndarray,
    length: int,
    *,
    windows: str = "all",
    cls_id: int | None = None,
    sep_id: int | None = None,
) -> Iterator[np.ndarray]:
    """Windows of at most ``length`` tokens from one article's ids (see the module docstring).

    With ``cls_id`` and ``sep_id`` given, each window is ``[CLS] body [SEP]`` with a body of at
    most ``length − 2`` ids; without them, the body is the whole window.
    """
    if windows not in WINDOWS:
        raise ValueError(f"windows must be one of {WINDOWS}, got {windows!r}")
    special = cls_id is not None and sep_id is not None
    body = length - 2 if special else length
    starts = range(0, len(ids), body) if windows == "all" else range(min(1, len(ids)))
    for s in starts:
        piece = ids[s : s + body]
        if special:
            piece = np.concatenate([[cls_id], piece, [sep_id]]).astype(np.int32)
        yield piece


def iter_batches(
    source: str | os.PathLike[str] = "sample",
    *,
    bert: Any,
    length: int = 512,
    batch_size: int = 32,
    windows: str = "all",
    split: str = "all",
    special_tokens: bool = True,
    max_tokens: int | None = None,
    **article_kwargs: Any,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Streams ``(ids, mask)`` batches: int32 [batch_size, length] and bool [batch_size, length].

    Shorter windows are right-padded (mask False); the last batch is padded with empty rows, so
    every batch has the same shape (one compilation downstream). Stops once ``max_tokens`` real
    tokens have been yielded (the window that crosses the limit is cut).
    """
    check_window(length, special_tokens, bert.config.max_position_embeddings)
    checks.positive_int(batch_size, "batch_size")
    checks.optional_positive_int(max_tokens, "max_tokens")
    special = (bert.token_id("[CLS]"), bert.token_id("[SEP]")) if special_tokens else (None, None)
    pad = bert.tokenizer.token_to_id("[PAD]") or 0
    ids = np.full((batch_size, length), pad, np.int32)
    mask = np.zeros((batch_size, length), bool)
    row, total = 0, 0
    articles = iter_articles(source, split=split, **article_kwargs)
    for article_ids in iter_article_ids(articles, bert.tokenizer):
        for w in cut_windows(
            article_ids, length, windows=windows, cls_id=special[0], sep_id=special[1]
        ):
            if max_tokens is not None:
                w = w[: max_tokens - total]
            ids[row, : len(w)] = w
            mask[row, : len(w)] = True
            row, total = row + 1, total + len(w)
            if row == batch_size or total == max_tokens:
                yield ids.copy(), mask.copy()
                ids[:] = pad
                mask[:] = False
                row = 0
            if total == max_tokens:
                return
    if row:
        yield ids, mask


def token_stream(
    source: str | os.PathLike[str] = "sample",
    *,
    tokenizer: Any,
    split: str = "all",
    separator: int | None = None,
    max_tokens: int | None = None,
    **article_kwargs: Any,
) -> np.ndarray:
    """The articles of a split as one int32 id sequence, with ``separator`` (if given, e.g. the
    ``[SEP]`` id) after each article — the stream a next-token model reads. Reading stops once
    ``max_tokens`` ids are gathered (the stream is cut there), so an endless hub source ends."""
    checks.optional_positive_int(max_tokens, "max_tokens")
    parts, total = [], 0
    for ids in iter_article_ids(iter_articles(source, split=split, **article_kwargs), tokenizer):
        if separator is not None:
            ids = np.append(ids, np.int32(separator))
        parts.append(ids)
        total += len(ids)
        if max_tokens is not None and total >= max_tokens:
            break
    if not parts:
        raise ValueError(f"source {os.fspath(source)!r} has no articles in split {split!r}")
    return np.concatenate(parts)[:max_tokens]
