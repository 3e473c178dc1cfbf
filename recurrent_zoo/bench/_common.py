"""What every bench shares: its output folder, JSON record, table, progress and plots.

Light to import (JAX, NumPy and matplotlib load inside the functions that use them), so that the
benches' option parsers build without them. The options themselves are
:mod:`recurrent_zoo.cli.options`'.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def compiled_memory(compiled: Any) -> dict[str, int] | None:
    """XLA's per-device memory analysis of a compiled executable, in bytes: "argument",
    "output", "temp", "alias" and "peak" = argument + output + temp − alias. None where the
    backend gives no analysis."""
    m = compiled.memory_analysis()
    if m is None:
        return None
    out = {
        "argument": int(m.argument_size_in_bytes),
        "output": int(m.output_size_in_bytes),
        "temp": int(m.temp_size_in_bytes),
        "alias": int(m.alias_size_in_bytes),
    }
    out["peak"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
    return out


def environment() -> dict[str, Any]:
    """Where a result was produced: versions, backend, devices, host."""
    import flax
    import jax
    import jaxlib
    import optax

    devices = jax.devices()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d.device_kind) for d in devices],
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _jsonable(record: Any) -> Any:
    """``record`` with arrays as lists, non-finite floats as None/"inf"/"-inf", paths as text."""
    import jax
    import numpy as np

    def convert(x: Any) -> Any:
        if isinstance(x, dict):
            return {str(k): convert(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [convert(v) for v in x]
        if isinstance(x, np.ndarray | jax.Array):
            return convert(np.asarray(x).tolist())
        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, float) and not np.isfinite(x):
            return None if np.isnan(x) else ("inf" if x > 0 else "-inf")
        if isinstance(x, Path):
            return str(x)
        return x

    return convert(record)


def write_json(out: str | Path, name: str, inputs: dict[str, Any], results: Any) -> Path:
    """Writes ``{out}/{name}.json`` with the inputs, the environment and the results (atomically)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    record = {"bench": name, "inputs": inputs, "environment": environment(), "results": results}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(record), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def args_dict(args: Any) -> dict[str, Any]:
    """The parsed options of a bench, for its JSON record."""
    return {k: v for k, v in vars(args).items() if not k.startswith("_") and not callable(v)}


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain-text table; floats in 4 significant digits."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """Yields ``items`` under a tqdm progress bar on stderr (count, elapsed time, ETA).

    ``total`` is only needed when ``items`` has no length (a generator).
    """
    from tqdm import tqdm

    return iter(tqdm(items, desc=desc, total=total, file=sys.stderr, dynamic_ncols=True))


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: str | Path, name: str) -> Path:
    """Saves ``{out}/{name}.png`` and closes the figure."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(fig)
    return path
