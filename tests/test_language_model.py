"""Next-token data (vocabulary, batches), the language-model task's evaluation, and the
``recurrent-zoo bench language-model`` command line."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import optax
import pytest

from recurrent_zoo import data
from recurrent_zoo.cli import main
from recurrent_zoo.tasks import language_model as lm


def test_vocabulary_keeps_the_most_frequent_ids():
    train = np.array([5, 5, 5, 7, 7, 2, 9, 9, 9, 9], np.int32)
    vocab = data.Vocabulary(train, size=2, full_size=12)
    assert vocab.num_classes == 3
    np.testing.assert_array_equal(vocab(np.array([9, 5, 7, 2, 0, 11])), [0, 1, 2, 2, 2, 2])
    assert vocab.coverage(np.array([9, 5, 7, 2])) == 0.5
    whole = data.Vocabulary(train, size=0, full_size=12)
    assert whole.num_classes == 12 and whole.coverage(train) == 1.0
    np.testing.assert_array_equal(whole(np.arange(12)), np.arange(12))
    with pytest.raises(ValueError, match="vocabulary size"):
        data.Vocabulary(train, size=-1, full_size=12)


def test_batches_are_shifted_windows_fixed_by_the_key():
    stream = np.arange(1000, dtype=np.int32) * 3
    batch_fn = data.next_token_batches(stream, batch_size=4, length=16)
    key = jax.random.key(1)
    b = batch_fn(key, 0)
    x, y = np.asarray(b["inputs"]), np.asarray(b["targets"])
    assert x.shape == y.shape == (4, 16)
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])
    np.testing.assert_array_equal(np.diff(x, axis=1), 3)  # contiguous pieces of the stream
    np.testing.assert_array_equal(x, np.asarray(batch_fn(key, 7)["inputs"]))
    assert not np.array_equal(x, np.asarray(batch_fn(jax.random.key(2), 0)["inputs"]))
    with pytest.raises(ValueError, match="fewer than a window"):
        data.next_token_batches(stream[:10], batch_size=2, length=16)


class Bigram:
    """A stand-in model whose logits at t depend on the token at t alone: evaluate's windowing
    and masking are then checked against a direct sum, without compiling a recurrent model."""

    def apply(self, variables, x):
        return variables["table"][x]


def test_evaluate_counts_every_prediction_once():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(11, 11)).astype(np.float32)
    stream = rng.integers(0, 11, size=53).astype(np.int32)  # 52 predictions: 3 windows of 16 + 4
    got = lm.evaluate(
        Bigram(), {"table": jax.numpy.asarray(table)}, stream, length=16, batch_size=2
    )
    nll = optax.softmax_cross_entropy_with_integer_labels(table[stream[:-1]], stream[1:])
    expected = float(np.mean(nll))
    assert got["tokens"] == 52
    assert got["loss"] == pytest.approx(expected, rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)


def test_command_line_trains_and_beats_a_uniform_guess(tmp_path, capsys):
    out = tmp_path / "res"
    argv = ["bench", "language-model", "--out", str(out), "--layers", "rnn",
            "--steps", "12", "--log-every", "4", "--d-model", "16", "--num-layers", "1",
            "--length", "32", "--batch-size", "4", "--vocab-size", "64", "--lr", "1e-2"]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "language-model.json").read_text())
    r = record["results"]
    assert r["num_classes"] == 65 and 0.3 < r["validation_coverage"] < 1.0
    assert r["train_tokens"] > 200_000 and r["validation_tokens"] > 5_000
    assert [row["layer"] for row in r["layers"]] == ["rnn"]
    for row in r["layers"]:
        assert row["curve"]["step"] == [4, 8, 12]
        # Learning the token frequencies alone beats the uniform guess, log(65) nats.
        assert row["val_loss"] < math.log(65) - 0.3
        assert row["val_perplexity"] == pytest.approx(math.exp(row["val_loss"]))
        # The same text read with the state carried over: close to the windowed reading.
        assert abs(row["val_stream_loss"] - row["val_loss"]) < 0.2
        assert row["val_stream_perplexity"] == pytest.approx(math.exp(row["val_stream_loss"]))
        assert row["train_tokens_per_s"] > 0 and row["parameters"] > 0
    assert (out / "language-model.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "val_perplexity" in printed and "rnn" in printed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--layers", "transformer"], "--layers"),
        (["--steps", "0"], "--steps"),
        (["--vocab-size", "-3"], "--vocab-size"),
        (["--validation-fraction", "1.5"], "--validation-fraction"),
        (["--model", "/no/such/model"], "does not exist"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, argv, message):
    assert main(["bench", "language-model", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.parametrize("stream", [[], ["--stream"]], ids=["windows", "stream"])
def test_train_command_runs_the_registered_task_and_scores_validation(capsys, stream):
    from recurrent_zoo.tasks import TASKS

    assert TASKS["language-model"] is lm.TASK
    argv = ["train", "language-model", "--layer", "rnn", "--num-layers", "1", "--d-model", "8",
            "--steps", "2", "--batch-size", "2", "--seq-len", "16", "--vocab-size", "32",
            *stream, "--max-tokens", "3000", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("evaluation:"))
    scores = dict(item.split() for item in line.removeprefix("evaluation: ").split(", "))
    assert set(scores) == {"loss", "perplexity", "tokens"}
    assert float(scores["perplexity"]) == pytest.approx(math.exp(float(scores["loss"])), rel=2e-3)
    assert main([*argv[:-3], "--vocab-size", "-1"]) == 2
