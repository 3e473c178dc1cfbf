"""rz.data: the shipped sample, article splitting, sources, token windows, real input sequences."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import recurrent_zoo as rz
from recurrent_zoo.data import text as text_module

SAMPLE_SHA256 = "4f3e427e4aff23acff917a8a51aeae21bf12832256e26914c8fc250dcef4103c"


@pytest.fixture(scope="module")
def articles():
    return rz.data.load_articles("sample")


@pytest.fixture(scope="module")
def bert():
    return rz.embeddings.load_bert(encoder=False)


def test_sample_is_shipped_unchanged_with_its_attribution():
    data = rz.data.SAMPLE.read_bytes()
    assert len(data) == 1_290_547
    assert hashlib.sha256(data).hexdigest() == SAMPLE_SHA256
    notice = (rz.data.SAMPLE.parent / "NOTICE").read_text()
    for needle in ("CC BY-SA 3.0", "GFDL", "Wikipedia", "WikiText", "Merity"):
        assert needle in notice


def test_sample_articles(articles):
    # 64 lines begin like a title: two table footnotes lack the closing " =", and two formula
    # lines in "Constant k filter" do look like titles (and split that article).
    assert len(articles) == 62
    assert articles[0].title == "Robert Boulter"
    assert articles[-1].title == "The Hustler ( film )"
    assert articles[0].text.startswith(" = Robert Boulter = \n Robert Boulter is an English film")
    assert all("\r" not in a.text for a in articles)
    # Every non-blank line of the file lands in exactly one article.
    lines = [ln for ln in rz.data.SAMPLE.read_bytes().decode("utf-8").split("\r\n") if ln.strip()]
    assert sum(a.text.count("\n") + 1 for a in articles) == len(lines)


def test_split_is_deterministic_disjoint_and_complete(articles):
    train, validation = rz.data.split_articles(articles)
    assert len(train) + len(validation) == len(articles)
    assert {a.title for a in train}.isdisjoint({a.title for a in validation})
    assert 0 < len(validation) < len(articles) / 4
    # Same split from the streaming reader, and independent of the order articles come in.
    assert [a.title for a in rz.data.iter_articles(split="validation")] == [
        a.title for a in validation
    ]
    again = rz.data.split_articles(list(reversed(articles)))[1]
    assert sorted(a.title for a in again) == sorted(a.title for a in validation)
    assert rz.data.split_articles(articles, validation_fraction=0.0)[1] == []
    assert rz.data.split_articles(articles, validation_fraction=1.0)[0] == []
    assert rz.data.article_split("x", 0.5) == rz.data.article_split("x", 0.5)


def test_articles_from_lines_groups_at_titles_only():
    lines = [
        " = A = \r\n",
        " first line \r\n",
        " = = Section = = \r\n",
        "\n",
        " more \n",
        " = B = ",
        " b",
    ]
    got = list(rz.data.articles_from_lines(lines))
    assert [a.title for a in got] == ["A", "B"]
    assert got[0].text == " = A = \n first line \n = = Section = = \n more "
    assert list(rz.data.articles_from_lines([" preface ", " = T = ", " x"], default_title="f")) == [
        rz.data.Article("f", " preface "),
        rz.data.Article("T", " = T = \n x"),
    ]


def test_local_files(tmp_path):
    (tmp_path / "wiki.txt").write_text(" = One = \n alpha beta \n = Two = \n gamma \n")
    (tmp_path / "plain.txt").write_text("just some text\nover two lines\n")
    records = [{"title": "Rec", "text": "record text"}, {"text": "untitled record\nsecond"}]
    (tmp_path / "dump.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    got = rz.data.load_articles(tmp_path)  # a folder: its files in sorted order
    assert [a.title for a in got] == [
        "Rec",
        "untitled record",
        "plain",
        "One",
        "Two",
    ]  # a text file without titles: its name
    assert rz.data.load_articles(tmp_path / "wiki.txt", limit=1) == [
        rz.data.Article("One", " = One = \n alpha beta ")
    ]
    (tmp_path / "bad.json").write_text(json.dumps({"body": "no text field"}))
    with pytest.raises(ValueError, match="'text' field"):
        rz.data.load_articles(tmp_path / "bad.json")


def test_bad_sources_and_options():
    with pytest.raises(ValueError, match="no such path"):
        rz.data.load_articles("no/such/folder")
    with pytest.raises(ValueError, match="split must be one of"):
        rz.data.load_articles(split="test")
    with pytest.raises(ValueError, match="validation_fraction"):
        rz.data.load_articles(validation_fraction=1.5)
    with pytest.raises(ValueError, match="limit"):
        rz.data.load_articles(limit=0)
    with pytest.raises(TypeError, match="source"):
        rz.data.load_articles(3)


def test_unreachable_hub_names_the_source(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConnectionError, match=r"'wikitext-103'.*Salesforce/wikitext.*sample"):
        next(rz.data.iter_articles("wikitext-103"))


def test_hub_sources_are_read_as_streams(monkeypatch):
    import datasets

    calls = []

    def fake(repo, config, split, streaming):
        calls.append((repo, config, split, streaming))
        if repo == "Salesforce/wikitext":
            return iter(
                [
                    {"text": ""},
                    {"text": " = A = \n"},
                    {"text": " a \n"},
                    {"text": " = B = \n"},
                    {"text": " b \n"},
                ]
            )
        return iter([{"title": "T", "text": "article body"}])

    monkeypatch.setattr(datasets, "load_dataset", fake)
    assert [a.title for a in rz.data.iter_articles("wikitext-2")] == ["A", "B"]
    assert list(rz.data.iter_articles("wikipedia")) == [rz.data.Article("T", "article body")]
    assert all(c[-1] is True for c in calls)
    assert text_module.HUB_SOURCES["wikipedia"][:2] == ("wikimedia/wikipedia", "20231101.en")


def test_cut_windows():
    ids = np.arange(10, 20, dtype=np.int32)
    plain = list(rz.data.cut_windows(ids, 4))
    assert [w.tolist() for w in plain] == [[10, 11, 12, 13], [14, 15, 16, 17], [18, 19]]
    special = list(rz.data.cut_windows(ids, 5, cls_id=1, sep_id=2))
    assert [w.tolist() for w in special] == [
        [1, 10, 11, 12, 2],
        [1, 13, 14, 15, 2],
        [1, 16, 17, 18, 2],
        [1, 19, 2],
    ]
    assert [
        w.tolist() for w in rz.data.cut_windows(ids, 5, windows="first", cls_id=1, sep_id=2)
    ] == [[1, 10, 11, 12, 2]]
    with pytest.raises(ValueError, match="windows must be one of"):
        list(rz.data.cut_windows(ids, 4, windows="last"))


def test_iter_batches_keeps_every_token(bert, articles):
    validation = rz.data.split_articles(articles)[1]
    n_words = sum(len(ids) for ids in rz.data.iter_article_ids(validation, bert.tokenizer))
    batches = list(rz.data.iter_batches(bert=bert, split="validation", length=128, batch_size=16))
    assert all(ids.shape == (16, 128) and mask.shape == (16, 128) for ids, mask in batches)
    rows = [(i, m) for ids, mask in batches for i, m in zip(ids, mask) if m.any()]
    # Each window holds up to 126 word pieces between [CLS] and [SEP].
    assert sum(m.sum() - 2 for _, m in rows) == n_words
    assert all(i[0] == 101 and i[m.sum() - 1] == 102 and (i[~m] == 0).all() for i, m in rows)
    capped = list(rz.data.iter_batches(bert=bert, length=128, batch_size=16, max_tokens=1000))
    assert sum(mask.sum() for _, mask in capped) == 1000
    with pytest.raises(ValueError, match="max_position_embeddings"):
        next(rz.data.iter_batches(bert=bert, length=513))


def test_token_stream(bert):
    stream = rz.data.token_stream(tokenizer=bert.tokenizer, split="validation", separator=102)
    assert stream.dtype == np.int32
    assert (stream == 102).sum() == len(rz.data.load_articles(split="validation"))
    capped = rz.data.token_stream(
        tokenizer=bert.tokenizer, split="validation", separator=102, max_tokens=1234
    )
    np.testing.assert_array_equal(capped, stream[:1234])
    with pytest.raises(ValueError, match="no articles"):
        rz.data.token_stream(tokenizer=bert.tokenizer, split="validation", validation_fraction=0.0)


def test_wikipedia_embeddings(bert):
    x = rz.data.wikipedia_embeddings(num_sequences=6, length=64, seed=1)
    assert x.shape == (6, 64, 384) and x.dtype == np.float32
    np.testing.assert_array_equal(x, rz.data.wikipedia_embeddings(6, 64, seed=1))
    windows = rz.data.wikipedia_windows(6, 64, seed=1)
    assert (windows[:, 0] == 101).all() and (windows[:, -1] == 102).all()
    np.testing.assert_allclose(x, np.asarray(bert.embed(windows)), rtol=1e-6, atol=1e-6)
    other = rz.data.wikipedia_windows(6, 64, seed=2)
    assert not np.array_equal(windows, other)
    # LayerNorm output: each token has (about) the LayerNorm bias as mean, unit-ish scale.
    assert np.isfinite(x).all() and 0.05 < float(np.mean(x**2)) < 5.0
    plain = rz.data.wikipedia_windows(2, 16, special_tokens=False)
    assert not np.isin(plain, [101, 102]).any()


def test_wikipedia_embeddings_bad_input():
    with pytest.raises(ValueError, match="num_sequences"):
        rz.data.wikipedia_embeddings(0, 64)
    with pytest.raises(ValueError, match="length"):
        rz.data.wikipedia_embeddings(2, 600)
    with pytest.raises(ValueError, match=r"has only \d+"):
        rz.data.wikipedia_embeddings(1000, 512, split="validation")


def test_an_endless_hub_stream_is_read_only_as_far_as_needed(monkeypatch, bert):
    import itertools

    import datasets

    read = []

    def endless(repo, config, split, streaming):
        def records():
            for i in itertools.count():
                read.append(i)
                yield {"title": f"Article {i}", "text": "the quick brown fox jumps over it . " * 40}

        return records()

    monkeypatch.setattr(datasets, "load_dataset", endless)
    batches = rz.data.iter_batches("wikipedia", bert=bert, length=64, batch_size=4, max_tokens=3000)
    assert sum(int(mask.sum()) for _, mask in batches) == 3000
    assert len(read) < 40  # about 360 tokens per article: a few articles, not the whole stream
    from recurrent_zoo.data.embeddings import _window_pool

    try:
        x = rz.data.wikipedia_embeddings(3, 64, source="wikipedia")
        assert x.shape == (3, 64, 384)
    finally:
        _window_pool.cache_clear()  # the pool of windows is cached per source name
