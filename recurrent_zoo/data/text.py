"""Wikipedia text as a stream of articles, through Hugging Face ``datasets``.

Three kinds of source, all read the same way:

* ``"sample"`` (the default): the WikiText-2 raw test split that ships with the package
  (:data:`SAMPLE`; real Wikipedia articles under CC BY-SA 3.0, see ``sample/NOTICE``). Offline.
* a local path (a file or a folder of files): ``.txt``/``.raw`` files in WikiText's format (an
  article starts at a line `` = Title = ``; a file without such lines is one article), or
  ``.json``/``.jsonl``/``.parquet`` files with one article per record in a ``"text"`` field
  (and, optionally, ``"title"``), as the Wikipedia dumps on the hub are laid out.
* a hub name, where the Hugging Face hub can be reached: ``"wikitext-2"``, ``"wikitext-103"``
  (``Salesforce/wikitext``, raw) and ``"wikipedia"`` (``wikimedia/wikipedia``, English). These
  stream, so a million tokens never sit in memory at once.

Every source is split by article into train and validation deterministically: an article is in the
validation split when the hash of its title falls below ``validation_fraction``. The rule needs no
pass over the data, so it works on streams, and it puts an article in the same split whichever
source or order it comes from.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from recurrent_zoo import _checks as checks

SAMPLE: Path = Path(__file__).resolve().parent / "sample" / "wiki.test.raw"
"""The shipped sample: WikiText-2 raw, test split (1,290,547 bytes, CC BY-SA 3.0; see NOTICE)."""

HUB_SOURCES: dict[str, tuple[str, str, str]] = {
    # name: (hub dataset, configuration, record layout)
    "wikitext-2": ("Salesforce/wikitext", "wikitext-2-raw-v1", "lines"),
    "wikitext-103": ("Salesforce/wikitext", "wikitext-103-raw-v1", "lines"),
    "wikipedia": ("wikimedia/wikipedia", "20231101.en", "articles"),
}

SPLITS = ("all", "train", "validation")
DEFAULT_VALIDATION_FRACTION = 0.1

# A WikiText article title: ` = Title = `. Section headings (` = = Section = = `) have more "=".
_TITLE = re.compile(r"^ = ([^=].*?) = $")
_RECORD_SUFFIXES = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}


class Article(NamedTuple):
    """One Wikipedia article: its title (the split key) and its text (what gets tokenised)."""

    title: str
    text: str


def validation_score(title: str) -> float:
    """A number in [0, 1) fixed by the title alone: SHA-256 of its UTF-8 bytes, first 8 bytes."""
    digest = hashlib.sha256(title.strip().encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def article_split(title: str, validation_fraction: float = DEFAULT_VALIDATION_FRACTION) -> str:
    """``"validation"`` if :func:`validation_score` of the title is below the fraction, else ``"train"``."""
    return "validation" if validation_score(title) < validation_fraction else "train"


def split_articles(
    articles: Iterable[Article], validation_fraction: float = DEFAULT_VALIDATION_FRACTION
) -> tuple[list[Article], list[Article]]:
    """(train, validation) by :func:`article_split`, each in the order the articles came."""
    _check_fraction(validation_fraction)
    train, validation = [], []
    for a in articles:
        (
            validation if article_split(a.title, validation_fraction) == "validation" else train
        ).append(a)
    return train, validation


def articles_from_lines(lines: Iterable[str], default_title: str = "") -> Iterator[Article]:
    """Groups WikiText-format lines into articles, each starting at a `` = Title = `` line.

    Line endings are dropped and blank lines skipped; the title line stays in the article's text.
    Lines before the first title form an article titled ``default_title`` (if not blank).
    """
    title, body = default_title, []
    for line in lines:
        line = line.rstrip("\r\n")
        m = _TITLE.match(line)
        if m:
            if any(s.strip() for s in body):
                yield Article(title, "\n".join(body))
            title, body = m.group(1).strip(), [line]
        elif line.strip():
            body.append(line)
    if any(s.strip() for s in body):
        yield Article(title, "\n".join(body))


def iter_articles(
    source: str | os.PathLike[str] = "sample",
    *,
    split: str = "all",
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    limit: int | None = None,
    hub_split: str = "train",
) -> Iterator[Article]:
    """Streams the articles of ``source`` (see the module docstring), in order.

    Args:
      source: ``"sample"``, a hub name in :data:`HUB_SOURCES`, or a local file or folder.
      split: ``"all"``, ``"train"`` or ``"validation"`` (see :func:`article_split`).
      validation_fraction: the share of articles (in expectation) that go to validation.
      limit: stop after this many articles of the split (None: all).
      hub_split: which split of the hub dataset to read.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    _check_fraction(validation_fraction)
    checks.optional_positive_int(limit, "limit")
    count = 0
    for article in _raw_articles(source, hub_split):
        if split != "all" and article_split(article.title, validation_fraction) != split:
            continue
        yield article
        count += 1
        if limit is not None and count >= limit:
            return


def load_articles(source: str | os.PathLike[str] = "sample", **kwargs: Any) -> list[Article]:
    """:func:`iter_articles` as a list (for sources that fit in memory, such as the sample)."""
    return list(iter_articles(source, **kwargs))


def source_description(source: str | os.PathLike[str]) -> str:
    """A short human-readable name of a source, for tables and JSON records."""
    if isinstance(source, str) and source == "sample":
        return "sample (WikiText-2 raw test split, shipped)"
    if isinstance(source, str) and source in HUB_SOURCES:
        repo, config, _ = HUB_SOURCES[source]
        return f"{source} (hub: {repo}, {config})"
    return f"local: {os.fspath(source)}"


def _check_fraction(validation_fraction: float) -> None:
    if not isinstance(validation_fraction, int | float) or not 0.0 <= validation_fraction <= 1.0:
        raise ValueError(
            f"validation_fraction must be a number in [0, 1], got {validation_fraction!r}"
        )


def _raw_articles(source: str | os.PathLike[str], hub_split: str) -> Iterator[Article]:
    if isinstance(source, str) and source == "sample":
        return _local_articles(SAMPLE)
    if isinstance(source, str) and source in HUB_SOURCES:
        return _hub_articles(source, hub_split)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.exists():
            return _local_articles(path)
        raise ValueError(
            f"source must be 'sample', one of the hub names {sorted(HUB_SOURCES)} or an existing "
            f"file or folder, got {os.fspath(source)!r} (no such path)"
        )
    raise TypeError(f"source must be a str or a path, got {type(source).__name__}")


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"source folder {str(path)!r} holds no files")
    return files


def _local_articles(path: Path) -> Iterator[Article]:
    import datasets

    for file in _local_files(path):
        builder = _RECORD_SUFFIXES.get(file.suffix.lower())
        if builder is None:
            # One record per file; `datasets` streams it without writing a cache.
            ds = datasets.load_dataset(
                "text", data_files=str(file), split="train", streaming=True, sample_by="document"
            )
            for record in ds:
                yield from articles_from_lines(record["text"].splitlines(), default_title=file.stem)
        else:
            ds = datasets.load_dataset(builder, data_files=str(file), split="train", streaming=True)
            yield from _record_articles(ds, where=str(file))


def _record_articles(records: Iterable[dict[str, Any]], where: str) -> Iterator[Article]:
    for i, record in enumerate(records):
        if "text" not in record:
            raise ValueError(
                f"records of {where} must have a 'text' field, got fields {sorted(record)}"
            )
        text = record["text"] or ""
        title = record.get("title") or text.strip().split("\n", 1)[0] or f"{where}#{i}"
        if text.strip():
            yield Article(str(title), text)


def _hub_articles(name: str, hub_split: str) -> Iterator[Article]:
    import datasets

    repo, config, layout = HUB_SOURCES[name]

    def unreachable(e: Exception) -> ConnectionError:
        return ConnectionError(
            f"could not read source {name!r} ({repo}, {config}, split {hub_split!r}) from the "
            f"Hugging Face hub: {type(e).__name__}: {e}. Use source='sample' (the shipped "
            f"WikiText-2 sample) or a local path instead"
        )

    try:
        ds = datasets.load_dataset(repo, config, split=hub_split, streaming=True)
        records = iter(ds)
        first = next(records)
    except StopIteration:
        return
    except Exception as e:  # the hub raises many kinds of error when it cannot be reached
        raise unreachable(e) from e

    def all_records() -> Iterator[dict[str, Any]]:
        yield first
        yield from records

    if layout == "lines":
        yield from articles_from_lines(r["text"] for r in all_records())
    else:
        yield from _record_articles(all_records(), where=f"{repo} ({config})")
