"""The ``recurrent-zoo`` command line: ``list``, ``bench NAME`` and ``train TASK``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from recurrent_zoo.bench._common import UsageError

#: Optional imports by top-level module, and the extra of ``pyproject.toml`` that installs each.
EXTRAS = {
    "matplotlib": "bench",
    "tqdm": "bench",
    "orbax": "train",
    "datasets": "data",
    "tokenizers": "data",
    "safetensors": "data",
}


class _Parser(argparse.ArgumentParser):
    """Bad options exit with status 2 and one line saying what was wrong."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _list() -> int:
    import recurrent_zoo as rz

    for name, cls in rz.LAYERS.items():
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:10s} {cls.__name__:20s} {summary}")
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


def build_parser() -> argparse.ArgumentParser:
    from recurrent_zoo import __version__
    from recurrent_zoo.bench import discover

    parser = _Parser(prog="recurrent-zoo", description="A zoo of recurrent layers for JAX/Flax.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="print the zoo, one line per layer")
    bench = sub.add_parser("bench", help="run a benchmark")
    benches = bench.add_subparsers(dest="bench", required=True, parser_class=_Parser)
    for name, module in discover().items():
        p = benches.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("--out", default="results", help="output folder (default: results/)")
        p.add_argument(
            "--full", action="store_true", help="the paper's full size (for accelerators)"
        )
        p.add_argument("--seed", type=int, default=0, help="random seed")
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    from recurrent_zoo.train.command import add_parser as add_train_parser

    add_train_parser(sub, _Parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
