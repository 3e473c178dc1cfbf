"""The options every bench spells the same way, and the one type for its sizes.

* :func:`add_common`: ``--out``, ``--full`` and ``--seed`` (the front-end adds them to every bench);
* :func:`add_layers`: ``--layers a b c``, space-separated names from ``rz.LAYERS``;
* :class:`Sizes`: the options whose default is a quick size, and the paper's size with ``--full``
  (and, for the benches that define one, a medium size with ``--size medium``);
* :func:`add_text_source`: ``--source`` and ``--model`` wherever Wikipedia text is read;
* :func:`add_protocol`: ``--protocol zoo|paper``, the zoo's choices or the paper's code's.

Only :mod:`argparse` is imported here: ``recurrent-zoo bench NAME --help`` builds every bench's
options without JAX.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from recurrent_zoo.cli.names import LAYERS
from recurrent_zoo.cli.usage import UsageError


def add_common(parser: argparse.ArgumentParser) -> None:
    """``--out`` (folder, default ``results``), ``--full`` (the paper's size) and ``--seed``."""
    parser.add_argument("--out", default="results", help="output folder (default: results/)")
    parser.add_argument(
        "--full", action="store_true", help="the paper's full size (for accelerators)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def add_layers(
    parser: argparse.ArgumentParser,
    default: Sequence[str] | None = None,
    among: Sequence[str] | None = None,
    what: str = "layers to run",
) -> None:
    """``--layers a b c``: space-separated registry names, each among ``among`` (default: every
    layer of ``rz.LAYERS``); ``default`` (default: all of ``among``) when not given."""
    among = list(LAYERS if among is None else among)
    unknown = [name for name in among if name not in LAYERS]
    if unknown:
        raise ValueError(f"not registry names: {unknown}")
    default = list(among if default is None else default)
    parser.add_argument(
        "--layers",
        nargs="+",
        choices=among,
        default=default,
        metavar="LAYER",
        help=f"{what}, space-separated among {' '.join(among)} (default: {' '.join(default)})",
    )


def add_text_source(parser: argparse.ArgumentParser, model_help: str) -> None:
    """``--source`` (the text: ``recurrent_zoo.data``'s sources) and ``--model`` (the BERT model
    or tokenizer), for every command that reads Wikipedia."""
    parser.add_argument(
        "--source",
        default="sample",
        help="'sample' (shipped WikiText-2), wikitext-2, wikitext-103, wikipedia (hub) or a path",
    )
    parser.add_argument("--model", default=None, help=model_help)


#: ``--protocol`` values: the zoo's own experimental choices, or those of the paper's code.
PROTOCOLS = ("zoo", "paper")


def add_protocol(parser: argparse.ArgumentParser, paper: str) -> None:
    """``--protocol zoo|paper`` (default zoo); ``paper`` says what the paper's protocol changes."""
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="zoo",
        help=f"zoo (default): the zoo's own choices; paper: the paper's code's ({paper})",
    )


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(_shown(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


#: The named sizes, smallest first: ``quick`` (the default), ``medium`` (``--size medium``, for
#: the benches that define it) and ``full`` (``--full`` or ``--size full``).
SIZE_NAMES = ("quick", "medium", "full")


@dataclass(frozen=True)
class Size:
    """One option whose default is ``quick``, ``medium`` with ``--size medium``, or ``full``
    with ``--full``.

    Attributes:
      quick: the default size (minutes on a 2-core CPU).
      full: the paper's size (for accelerators).
      help: what the option sets; the defaults are appended.
      type: converts one command-line word (``int``, ``float``).
      many: a space-separated list (``nargs="+"``); quick and full are then sequences.
      minimum: the smallest value allowed (each element of a list); None: no bound.
      medium: the value with ``--size medium`` (under half an hour on a 2-core CPU, enough to
        decide a finding); None: the quick value.
    """

    quick: Any
    full: Any
    help: str
    type: Callable[[str], Any] = int
    many: bool = False
    minimum: float | None = 1
    medium: Any = None

    def at(self, size: str) -> Any:
        """The value at the named size (one of :data:`SIZE_NAMES`)."""
        if size == "full":
            return self.full
        if size == "medium" and self.medium is not None:
            return self.medium
        return self.quick


class Sizes:
    """A bench's :class:`Size` options by name (``batch_size`` is ``--batch-size``).

    >>> SIZES = Sizes(steps=Size(400, 10_000, "training steps"))
    >>> SIZES.add_arguments(parser)           # --steps N, default None: "not given"
    >>> SIZES.resolve(args)                   # {"steps": 400}, or 10_000 with --full

    When some size has a ``medium`` value, :meth:`add_arguments` adds ``--size quick|medium|full``
    as well (``--full`` is ``--size full``).
    """

    def __init__(self, **sizes: Size) -> None:
        self._sizes = dict(sizes)

    def __getitem__(self, name: str) -> Size:
        return self._sizes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._sizes)

    def __len__(self) -> int:
        return len(self._sizes)

    @staticmethod
    def flag(name: str) -> str:
        """The option of ``name``: ``batch_size`` -> ``--batch-size``."""
        return "--" + name.replace("_", "-")

    @property
    def has_medium(self) -> bool:
        """Whether some size defines a medium value (then ``--size`` is an option)."""
        return any(size.medium is not None for size in self._sizes.values())

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Adds one option per size; each defaults to None, so that a given value is told apart.
        With a medium size, also ``--size quick|medium|full`` (default quick)."""
        if self.has_medium:
            parser.add_argument(
                "--size",
                choices=SIZE_NAMES,
                default=None,
                help="quick (default), medium (under half an hour on a 2-core CPU) or full "
                "(the same as --full)",
            )
        for name, size in self._sizes.items():
            medium = f"; --size medium: {_shown(size.medium)}" if size.medium is not None else ""
            parser.add_argument(
                self.flag(name),
                type=size.type,
                nargs="+" if size.many else None,
                default=None,
                help=f"{size.help} (default {_shown(size.quick)}{medium}; "
                f"--full: {_shown(size.full)})",
            )

    @staticmethod
    def level(args: argparse.Namespace) -> str:
        """The named size of ``args`` (one of :data:`SIZE_NAMES`): ``--size``, or full with
        ``--full``, else quick. ``--full`` with ``--size quick`` or ``medium`` raises
        :class:`UsageError`."""
        full = bool(getattr(args, "full", False))
        size = getattr(args, "size", None)
        if full and size not in (None, "full"):
            raise UsageError(f"--full contradicts --size {size}")
        return "full" if full else (size or "quick")

    def resolve(self, args: argparse.Namespace) -> dict[str, Any]:
        """Each size's value: as given, else the one of :meth:`level` (quick, medium or full);
        lists come back as lists. A value below its minimum raises :class:`UsageError`."""
        level = self.level(args)
        out: dict[str, Any] = {}
        for name, size in self._sizes.items():
            value = getattr(args, name, None)
            if value is None:
                value = size.at(level)
            values = list(value) if size.many else [value]
            if size.minimum is not None and any(v < size.minimum for v in values):
                raise UsageError(
                    f"{self.flag(name)} must be >= {size.minimum:g}, got {_shown(value)}"
                )
            out[name] = values if size.many else value
        return out


__all__ = [
    "LAYERS",
    "PROTOCOLS",
    "SIZE_NAMES",
    "Size",
    "Sizes",
    "UsageError",
    "add_common",
    "add_layers",
    "add_protocol",
    "add_text_source",
]
