"""recurrent-zoo bench autocorrelation: lag sums, fits, streaming, the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

import recurrent_zoo as rz
from recurrent_zoo.cli import main
from recurrent_zoo.diagnostics import autocorrelation as ac


def direct_C(x: np.ndarray, mask: np.ndarray, max_lag: int) -> np.ndarray:
    """The definition, term by term: mean over valid (b, t, t+Δ) and i of x[b,t+Δ,i]·x[b,t,i]."""
    x = x.astype(np.float64)
    out = []
    for d in range(max_lag + 1):
        valid = mask[:, d:] & mask[:, : x.shape[1] - d]
        prods = np.sum(x[:, d:] * x[:, : x.shape[1] - d], axis=-1)
        out.append(prods[valid].sum() / (valid.sum() * x.shape[-1]))
    return np.array(out)


@pytest.fixture(scope="module")
def bert():
    return rz.embeddings.load_bert(encoder=False)


def test_lag_sums_and_pair_counts_match_the_definition():
    rng = np.random.default_rng(0)
    B, L, d, K = 3, 20, 5, 17
    x = rng.normal(size=(B, L, d)).astype(np.float32) + 0.5
    lengths = np.array([20, 13, 7])
    mask = np.arange(L)[None, :] < lengths[:, None]
    mask[0, 4] = False  # a hole: the sums must not assume prefix masks
    x[~mask] = 1e3  # padding values must not leak in
    pairs = ac.pair_counts(mask, K)
    expected_pairs = [np.sum(mask[:, k:] & mask[:, : L - k]) for k in range(K + 1)]
    np.testing.assert_array_equal(pairs, expected_pairs)
    C = np.asarray(ac.lag_sums(x, mask, K), np.float64) / (pairs * d)
    np.testing.assert_allclose(C, direct_C(x, mask, K), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rho", [0.9, 0.995])
def test_fit_recovers_known_parameters(rho):
    lags = np.arange(511)
    a, c = 0.3, 0.05
    C = np.where(lags == 0, a, 0.0) + c * rho**lags
    fit = ac.fit_autocorrelation(C)
    two = fit["white_plus_exponential"]
    assert two["rho"] == pytest.approx(rho, abs=1e-6)
    assert two["c"] == pytest.approx(c, rel=1e-4) and two["a"] == pytest.approx(a, rel=1e-4)
    assert two["time_constant"] == pytest.approx(1 / (1 - rho), rel=1e-3)
    assert two["relative_rms_error"] < 1e-4
    # One exponential cannot also carry the white-noise spike at Δ = 0.
    assert fit["single_exponential"]["relative_rms_error"] > 10 * two["relative_rms_error"]
    with pytest.raises(ValueError, match="at least 3 lags"):
        ac.fit_autocorrelation(C[:2])


def test_streamed_autocorrelation_equals_the_definition_on_real_text(bert):
    K, L = 40, 48
    kwargs = dict(bert=bert, split="validation", length=L, max_tokens=6000)
    stats = ac.embedding_autocorrelation(rz.data.iter_batches(batch_size=8, **kwargs), bert, K)
    batches = list(rz.data.iter_batches(batch_size=1000, **kwargs))
    assert len(batches) == 1
    ids, mask = batches[0]
    expected = direct_C(np.asarray(bert.embed(ids)), mask, K)
    np.testing.assert_allclose(stats["C"], expected, rtol=1e-4, atol=1e-6)
    assert stats["tokens"] == 6000 and stats["sequences"] == mask.any(-1).sum()
    assert stats["tokens_per_second"] > 0
    assert stats["C"][0] > stats["C"][1] > 0  # the white-noise spike, then a positive tail


def test_log_space_fit_recovers_an_exponential_and_weighs_the_tail():
    lags = np.arange(300)
    fit = ac.fit_autocorrelation(0.05 * 0.99**lags)["log_single_exponential"]
    assert fit["rho"] == pytest.approx(0.99, abs=1e-9) and fit["c"] == pytest.approx(0.05)
    assert fit["lags_fitted"] == 300
    # With a white-noise spike at Δ = 0, least squares on C chases the spike; the log fit
    # follows the 299 lags of the tail.
    spiked = np.where(lags == 0, 1.0, 0.0) + 0.05 * 0.99**lags
    fits = ac.fit_autocorrelation(spiked)
    assert abs(fits["log_single_exponential"]["rho"] - 0.99) < 1e-3
    assert abs(fits["single_exponential"]["rho"] - 0.99) > 1e-2


def test_padded_estimator_averages_over_the_padding_too(bert):
    """--protocol paper: every position of each window counts, the [PAD] embeddings included;
    empty rows (the last batch's filler) do not."""
    K, L = 20, 64
    kwargs = dict(bert=bert, split="validation", length=L, max_tokens=3000)
    batches = list(rz.data.iter_batches(batch_size=8, **kwargs))
    batches.append((np.zeros((2, L), np.int32), np.zeros((2, L), bool)))  # a filler batch
    masks = np.concatenate([m for _, m in batches])
    assert not masks.all() and masks.any(-1).sum() < len(masks)  # padding and empty rows
    stats = ac.embedding_autocorrelation(iter(batches), bert, K, padded=True)
    ids = np.concatenate([i for i, _ in batches])
    full = ac.padded_mask(masks)
    np.testing.assert_allclose(
        stats["C"], direct_C(np.asarray(bert.embed(ids)), full, K), rtol=1e-4, atol=1e-6
    )
    masked = ac.embedding_autocorrelation(iter(batches), bert, K)
    assert not np.allclose(stats["C"], masked["C"], rtol=1e-3)
    assert stats["tokens"] == masked["tokens"] == masks.sum()


def test_contextual_path_runs_the_encoder():
    full = rz.embeddings.load_bert()
    batches = list(rz.data.iter_batches(bert=full, split="validation", length=32, max_tokens=200))
    stats = ac.embedding_autocorrelation(iter(batches), full, 10, contextual=True)
    ids, mask = batches[0]
    x = np.asarray(full.encode(ids, attention_mask=mask))
    np.testing.assert_allclose(stats["C"], direct_C(x, mask, 10), rtol=1e-4, atol=1e-6)


def test_command_line(tmp_path, capsys):
    out = tmp_path / "res"
    code = main(
        ["bench", "autocorrelation", "--out", str(out), "--length", "64", "--max-lag", "60",
         "--max-tokens", "4000", "--split", "validation"]
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / "autocorrelation.json").read_text())
    r = record["results"]
    assert len(r["C"]) == 61 and r["lags"][-1] == 60 and r["tokens"] == 4000
    assert set(r["white_plus_exponential"]) >= {"a", "c", "rho", "time_constant"}
    assert record["inputs"]["max_lag"] == 60
    assert (out / "autocorrelation.png").stat().st_size > 10_000
    assert "tokens/s" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-lag", "600"], "--max-lag"),
        (["--windows", "last"], "--windows"),
        (["--split", "test"], "--split"),
        (["--length", "600", "--max-lag", "10"], "--length"),
        (["--model", "/no/such/model"], "does not exist"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, argv, message):
    assert main(["bench", "autocorrelation", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
