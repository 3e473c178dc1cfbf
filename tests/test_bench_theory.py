"""``recurrent-zoo bench theory`` end to end, at a tiny size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recurrent_zoo.cli import main

SMALL = ["--rhos", "0", "0.9", "--lambdas", "0.5", "0.9", "--batch", "1000", "--grid", "40"]


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("theory")
    assert main(["bench", "theory", "--out", str(out), *SMALL, "--teachers", "0.99", "0.68"]) == 0
    return out, json.loads((out / "theory.json").read_text())


def test_writes_json_and_plots(record, capsys):
    out, rec = record
    assert rec["bench"] == "theory"
    assert rec["inputs"]["batch"] == 1000 and rec["inputs"]["lambdas"] == [0.5, 0.9]
    for name in ("theory_sensitivity", "theory_landscape_plain", "theory_landscape_normalized"):
        assert (out / f"{name}.png").stat().st_size > 10_000


def test_simulation_agrees_with_the_closed_form(record):
    # 1000 sequences: relative standard error ≈ √(2/1000) = 4.5 %; tolerance 20 %.
    s = record[1]["results"]["sensitivity"]
    for name in ("h2", "dh2"):
        np.testing.assert_allclose(s[f"{name}_sim"], s[f"{name}_closed"], rtol=0.2)
    # E[(dh/dλ)²] at λ = 0.9 grows with the input correlation.
    assert s["dh2_closed"][1][1] > 10 * s["dh2_closed"][0][1]


def test_curvature_shows_the_parametrisations(record):
    land = record[1]["results"]["landscapes"]
    polar = land["plain"]["polar"]["curvature_magnitude"]
    # λ learned directly: curvature (1 + λ²)/(1 − λ²)³ at the teacher, sharper as λ* → 1.
    np.testing.assert_allclose(
        polar, [(1 + s**2) / (1 - s**2) ** 3 for s in (0.99, 0.68)], rtol=0.02
    )
    opt = land["normalized"]["optimal"]
    np.testing.assert_allclose(opt["curvature_magnitude"], 1.0, rtol=0.02)
    np.testing.assert_allclose(opt["curvature_angle"], 1.0, rtol=0.02)
    # θ* = 0 is not reachable by θ = exp(θ_log): recorded as missing, not as a number.
    assert land["plain"]["exp"]["curvature_angle"] == [None, None]
    loss = land["plain"]["polar"]["real"]["loss"]
    assert len(loss) == 2 and len(loss[0]) == 40 and min(loss[0]) >= 0


@pytest.mark.parametrize(
    "bad",
    [
        ["--rhos", "1.5"],
        ["--lambdas", "1.0"],
        ["--teachers", "1.2"],
        ["--batch", "0"],
        ["--grid", "2"],
        ["--parametrizations", "direct"],
    ],
)
def test_bad_options_exit_2_with_one_line(bad, tmp_path, capsys):
    try:
        code = main(["bench", "theory", "--out", str(tmp_path), *bad])
    except SystemExit as e:  # argparse's own checks (choices) exit directly
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and bad[0].lstrip("-") in err
