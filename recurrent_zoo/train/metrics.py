"""Progress on screen and metrics appended to a JSONL file, from the main process only."""

from __future__ import annotations

import datetime as _dt
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO


def format_duration(seconds: float) -> str:
    """``h:mm:ss`` (or ``?`` when unknown)."""
    if not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _rate(x: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


class MetricsLogger:
    """Prints ``step, loss, tokens/s, ETA`` lines and appends one JSON record per call to ``path``.

    Args:
      num_steps: the run's last step (for the ETA).
      tokens_per_step: tokens (batch × time) in one step's batch.
      path: the JSONL file (appended to; None: no file).
      verbose: print progress lines.
      stream: where progress goes (stderr by default).
    """

    def __init__(
        self,
        num_steps: int,
        tokens_per_step: int,
        path: str | Path | None = None,
        verbose: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self.num_steps = num_steps
        self.tokens_per_step = tokens_per_step
        self.path = None if path is None else Path(path)
        self.verbose = verbose
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self._last_time = self.start
        self._last_step: int | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, step: int, metrics: dict[str, float]) -> dict[str, Any]:
        """Records the metrics after ``step`` steps (e.g. loss averaged since the last call)."""
        now = time.perf_counter()
        record: dict[str, Any] = {"step": step, **metrics}
        if self._last_step is not None and step > self._last_step:
            dt = now - self._last_time
            steps_per_s = (step - self._last_step) / max(dt, 1e-9)
            record["tokens_per_s"] = steps_per_s * self.tokens_per_step
            record["eta_s"] = (self.num_steps - step) / steps_per_s
        record["elapsed_s"] = now - self.start
        record["time"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._last_time, self._last_step = now, step
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        if self.verbose:
            width = len(str(self.num_steps))
            line = f"step {step:>{width}}/{self.num_steps}  loss {record.get('loss', math.nan):.4e}"
            if "tokens_per_s" in record:
                line += f"  {_rate(record['tokens_per_s'])} tok/s"
                line += f"  eta {format_duration(record['eta_s'])}"
            print(line, file=self.stream, flush=True)
        return record

    def exclude(self, seconds: float) -> None:
        """Leaves ``seconds`` (e.g. writing a checkpoint) out of the next tokens/s and ETA."""
        self._last_time += seconds

    def message(self, text: str) -> None:
        """A line of status (checkpoint written, resumed, interrupted)."""
        if self.verbose:
            print(text, file=self.stream, flush=True)
