"""``recurrent-zoo bench long-sequence``: a tiny run end to end (in a child process with two host
devices, since this one has one), its record, and its usage errors."""

from __future__ import annotations

import json

import pytest

from recurrent_zoo.cli import main

TINY = [
    "--lengths", "512",
    "--remat-chunks", "8",
    "--shards", "1", "2",
    "--timed-length", "512",
    "--repeats", "1",
    "--compare-length", "512",
    "--compare-chunk", "8",
    "--budget-gib", "0.002",
    "--hidden", "8",
    "--features", "8",
]  # fmt: skip


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("long-sequence")
    assert main(["bench", "long-sequence", "--out", str(out), *TINY]) == 0
    assert (out / "long-sequence.png").stat().st_size > 0
    return json.loads((out / "long-sequence.json").read_text())


def test_the_record_holds_every_configuration(record: dict) -> None:
    assert record["bench"] == "long-sequence"
    assert len(record["environment"]["devices"]) >= 2  # the child's host devices
    results = record["results"]
    rows = results["rows"]
    configs = {(r["T"], r["shards"], r["remat_chunk"]) for r in rows}
    assert configs == {(512, P, k) for P in (1, 2) for k in (None, 8)}
    for r in rows:
        assert r["layer"] == "lru"
        assert r["peak_MiB"] >= r["temp_MiB"] > 0
        assert r["fwd_bwd_ms"] > 0  # timed up to --timed-length
    # Sharded over P devices, each holds less than one device does.
    by = {(r["T"], r["shards"], r["remat_chunk"]): r for r in rows}
    assert by[512, 2, None]["temp_MiB"] < by[512, 1, None]["temp_MiB"]
    assert {s["shards"] for s in results["sharding"]} == {1, 2}


def test_remat_lowers_the_memory(record: dict) -> None:
    results = record["results"]
    remat = {r["layer"]: r for r in results["remat"]}
    assert set(remat) == {"lru", "gru"}
    for r in remat.values():
        assert r["temp_MiB_remat"] < r["temp_MiB_plain"]
        assert r["temp_reduction"] > 1
    rows = {(r["T"], r["shards"], r["remat_chunk"]): r for r in results["rows"]}
    assert rows[512, 1, 8]["temp_MiB"] < rows[512, 1, None]["temp_MiB"]


def test_the_longest_fit_is_within_the_budget(record: dict) -> None:
    fits = record["results"]["longest_fit"]
    budget = 0.002 * 1024
    assert fits["budget_GiB"] == 0.002
    today, best = fits["today"], record["results"]["best_fit"]
    assert (today["shards"], today["remat_chunk"]) == (1, None)
    assert [f["shards"] for f in fits["sharded"]] == [2]
    for f in [today, *fits["sharded"]]:
        assert f["T"] > 0 and f["peak_MiB"] <= budget
    assert best["T"] > today["T"]
    gain = record["results"]["targets"]["longest_T_gain"]
    assert gain == pytest.approx(best["T"] / today["T"])


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (["--shards", "0"], "--shards"),
        (["--lengths", "100", "--shards", "1", "3"], "multiple of the shards"),
        (["--timed-length", "-1"], "--timed-length"),
        (["--budget-gib", "0"], "--budget-gib"),
        (["--compare-chunk", "0"], "--compare-chunk"),
        (["--lengths", "0"], "--lengths"),
    ],
)
def test_bad_values_exit_2_with_one_line(bad, says, tmp_path, capsys) -> None:
    assert main(["bench", "long-sequence", "--out", str(tmp_path), *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("recurrent-zoo: error") and says in err
