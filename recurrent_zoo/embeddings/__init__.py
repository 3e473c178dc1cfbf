"""Pretrained token embeddings in JAX: a BERT loader (embedding layer and full encoder)."""

from recurrent_zoo.embeddings.bert import (
    DEFAULT_MODEL,
    REQUIRED_FILES,
    Bert,
    BertConfig,
    embeddings,
    encoder,
    load_bert,
    resolve_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "REQUIRED_FILES",
    "Bert",
    "BertConfig",
    "embeddings",
    "encoder",
    "load_bert",
    "resolve_model",
]
