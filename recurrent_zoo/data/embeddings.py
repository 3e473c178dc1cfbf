"""Real input sequences: BERT embeddings of Wikipedia windows, as the paper feeds its networks."""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from recurrent_zoo import _checks as checks
from recurrent_zoo.data.text import iter_articles
from recurrent_zoo.data.tokens import check_window, cut_windows, iter_article_ids

# How many full windows to read from a source before sampling, per requested sequence: bounds the
# work on a hub stream; the shipped sample (about 530 windows of 512) is read whole for 128.
_POOL_FACTOR = 8


@functools.lru_cache(maxsize=8)
def _window_pool(
    source: str, split: str, length: int, special_tokens: bool, model_path: str, pool: int
) -> np.ndarray:
    from recurrent_zoo.embeddings import load_bert

    bert = load_bert(model_path, encoder=False)
    cls_sep = (bert.token_id("[CLS]"), bert.token_id("[SEP]")) if special_tokens else (None, None)
    found = []
    for ids in iter_article_ids(iter_articles(source, split=split), bert.tokenizer):
        for w in cut_windows(ids, length, windows="all", cls_id=cls_sep[0], sep_id=cls_sep[1]):
            if len(w) == length:
                found.append(w)
        if len(found) >= pool:
            break
    return np.stack(found) if found else np.zeros((0, length), np.int32)


def wikipedia_windows(
    num_sequences: int,
    length: int,
    seed: int = 0,
    *,
    source: str | os.PathLike[str] = "sample",
    split: str = "all",
    model: str | os.PathLike[str] | None = None,
    special_tokens: bool = True,
) -> np.ndarray:
    """int32 [num_sequences, length]: token windows of Wikipedia text, drawn without replacement.

    The windows are the full-length consecutive windows of the articles (see
    :mod:`recurrent_zoo.data.tokens`), read in order until ``8 · num_sequences`` of them are
    found (or the source ends), then ``num_sequences`` are drawn with ``seed``.
    """
    from recurrent_zoo.embeddings import load_bert, resolve_model

    checks.positive_int(num_sequences, "num_sequences")
    path = str(resolve_model(model).resolve())
    check_window(
        length, special_tokens, load_bert(path, encoder=False).config.max_position_embeddings
    )
    pool = _window_pool(
        os.fspath(source),
        split,
        int(length),
        bool(special_tokens),
        path,
        _POOL_FACTOR * int(num_sequences),
    )
    if len(pool) < num_sequences:
        raise ValueError(
            f"num_sequences={num_sequences} windows of length {length} were asked for, but source "
            f"{os.fspath(source)!r} (split {split!r}) has only {len(pool)}: ask for fewer or "
            "shorter sequences, or use a larger source"
        )
    rng = np.random.default_rng(seed)
    return pool[rng.choice(len(pool), size=int(num_sequences), replace=False)]


def wikipedia_embeddings(
    num_sequences: int,
    length: int,
    seed: int = 0,
    *,
    source: str | os.PathLike[str] = "sample",
    split: str = "all",
    model: str | os.PathLike[str] | None = None,
    contextual: bool = False,
    special_tokens: bool = True,
    batch_size: int = 32,
) -> np.ndarray:
    """float32 [num_sequences, length, d]: BERT embeddings of Wikipedia windows.

    By default: the embedding layer's output (word + position + token type, then LayerNorm; BERT's
    ``hidden_states[0]``, as the paper) of the offline default model (d = 384) on the shipped
    WikiText-2 sample. ``contextual=True`` runs the full encoder instead. ``seed`` picks the windows
    (:func:`wikipedia_windows`); the same arguments give the same array.
    """
    from recurrent_zoo.embeddings import load_bert

    windows = wikipedia_windows(
        num_sequences,
        length,
        seed,
        source=source,
        split=split,
        model=model,
        special_tokens=special_tokens,
    )
    bert = load_bert(model, encoder=bool(contextual))
    out = np.empty((len(windows), length, bert.hidden_size), np.float32)
    for s in range(0, len(windows), batch_size):
        batch = windows[s : s + batch_size]
        out[s : s + len(batch)] = _apply(bert, batch, contextual)
    return out


def _apply(bert: Any, ids: np.ndarray, contextual: bool) -> np.ndarray:
    return np.asarray(bert.encode(ids) if contextual else bert.embed(ids))
