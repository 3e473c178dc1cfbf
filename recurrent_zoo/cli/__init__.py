"""The ``recurrent-zoo`` command line: ``list``, ``bench NAME`` and ``train TASK``.

* :mod:`.usage`: :class:`UsageError` (a bad option value: one line, exit status 2) and the
  parser that reports argparse's own errors the same way;
* :mod:`.options`: the options every bench spells the same way and the :class:`~.options.Sizes`
  of the quick and full sizes;
* :mod:`.names`: the layer names and summaries that ``list`` prints, without importing Flax.

Start-up stays light: ``recurrent-zoo --help``, ``list`` and ``bench NAME --help`` import neither
JAX nor Flax. Only the branch the command line names is built (the benches' options for
``bench``, the tasks' for ``train``), and each bench imports its heavy modules inside ``run``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from recurrent_zoo.cli.usage import Parser, UsageError

#: Optional imports by top-level module, and the extra of ``pyproject.toml`` that installs each.
EXTRAS = {
    "matplotlib": "bench",
    "tqdm": "bench",
    "orbax": "train",
    "datasets": "data",
    "tokenizers": "data",
    "safetensors": "data",
}

LIST_HELP = "print the zoo, one line per layer"
BENCH_HELP = "run a benchmark"
TRAIN_HELP = "train a SequenceModel of any zoo layer on a task (checkpointed, resumable)"


def _list() -> int:
    from recurrent_zoo.cli.names import LAYERS

    for name, (cls, summary) in LAYERS.items():
        print(f"{name:10s} {cls:20s} {summary}")
    return 0


def _missing_dependency(error: ModuleNotFoundError, what: str) -> str | None:
    """One line saying what to install for a missing optional module (None: not optional)."""
    from recurrent_zoo.embeddings.bert import _DEFAULT_PACKAGE

    module = (error.name or "").partition(".")[0]
    if module in EXTRAS:
        extra = EXTRAS[module]
        return (
            f"{what} needs the '{extra}' extra (no module {module!r}): "
            f"pip install 'recurrent-zoo[{extra}]'"
        )
    if module == _DEFAULT_PACKAGE:
        return f"{what}: {error}"  # the error says how to install it, and why --no-deps
    return None


def _add_benches(bench: argparse.ArgumentParser) -> None:
    from recurrent_zoo.bench import discover
    from recurrent_zoo.cli.options import add_common

    benches = bench.add_subparsers(dest="bench", required=True, parser_class=Parser)
    for name, module in discover().items():
        p = benches.add_parser(name, help=module.HELP, description=module.HELP)
        add_common(p)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)


def _add_tasks(train: argparse.ArgumentParser) -> None:
    from recurrent_zoo.train.command import add_task_parsers

    add_task_parsers(train, Parser)


def _command(argv: Sequence[str]) -> str:
    """The sub-command ``argv`` names (its first word that is not an option), or ""."""
    return next((word for word in argv if not word.startswith("-")), "")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of the whole command line. With ``command`` ("bench", "train", or "" for
    none), only that branch gets its sub-commands (the others keep their name and help), which
    keeps start-up light."""
    from recurrent_zoo import __version__

    parser = Parser(prog="recurrent-zoo", description="A zoo of recurrent layers for JAX/Flax.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser("list", help=LIST_HELP, description=LIST_HELP)
    bench = sub.add_parser("bench", help=BENCH_HELP, description=BENCH_HELP)
    train = sub.add_parser("train", help=TRAIN_HELP, description=TRAIN_HELP)
    if command in (None, "bench"):
        _add_benches(bench)
    if command in (None, "train"):
        _add_tasks(train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a bad option (one line already printed)
        return int(e.code or 0)
    try:
        if args.command == "list":
            return _list()
        if args.command == "train":
            return args._run(args)
        args._run(args)
        return 0
    except UsageError as e:
        print(f"recurrent-zoo: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        what = " ".join(
            filter(None, [args.command, vars(args).get("bench"), vars(args).get("task")])
        )
        message = _missing_dependency(e, what)
        if message is None:
            raise  # not an optional dependency: a broken install, keep the traceback
        print(f"recurrent-zoo: error: {message}", file=sys.stderr)
        return 2


__all__ = ["EXTRAS", "Parser", "UsageError", "build_parser", "main"]
