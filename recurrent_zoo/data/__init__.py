"""Wikipedia text and real input sequences (``rz.data``).

>>> import recurrent_zoo as rz
>>> train = rz.data.load_articles("sample", split="train")      # the shipped WikiText-2 sample
>>> x = rz.data.wikipedia_embeddings(num_sequences=8, length=128)  # float32 [8, 128, 384]
>>> train, validation, full_size = rz.data.load_token_streams("sample")  # next-token ids

``datasets``, ``tokenizers`` and ``safetensors`` (the ``data`` extra) are imported only when text
is read, so importing this package stays fast.
"""

from recurrent_zoo.data.embeddings import wikipedia_embeddings, wikipedia_windows
from recurrent_zoo.data.next_token import (
    HUB_MAX_TOKENS,
    Vocabulary,
    document_starts,
    load_token_streams,
    next_token_batches,
    next_token_stream,
)
from recurrent_zoo.data.text import (
    DEFAULT_VALIDATION_FRACTION,
    HUB_SOURCES,
    SAMPLE,
    SPLITS,
    Article,
    article_split,
    articles_from_lines,
    iter_articles,
    load_articles,
    source_description,
    split_articles,
    validation_score,
)
from recurrent_zoo.data.tokens import (
    WINDOWS,
    cut_windows,
    iter_article_ids,
    iter_batches,
    token_stream,
)

__all__ = [
    "DEFAULT_VALIDATION_FRACTION",
    "HUB_MAX_TOKENS",
    "HUB_SOURCES",
    "SAMPLE",
    "SPLITS",
    "WINDOWS",
    "Article",
    "Vocabulary",
    "article_split",
    "articles_from_lines",
    "cut_windows",
    "document_starts",
    "iter_article_ids",
    "iter_articles",
    "iter_batches",
    "load_articles",
    "load_token_streams",
    "next_token_batches",
    "next_token_stream",
    "source_description",
    "split_articles",
    "token_stream",
    "validation_score",
    "wikipedia_embeddings",
    "wikipedia_windows",
]
