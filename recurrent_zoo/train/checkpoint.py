"""Checkpoints with orbax: atomic writes, the last few kept, exact resume.

Orbax writes a checkpoint into a temporary folder and renames it when complete, so a process
killed at any moment leaves the previous checkpoint readable; unfinished temporary folders are
ignored on restore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax


class Checkpointer:
    """Saves and restores the training state (a pytree of arrays) under ``directory``.

    Args:
      directory: the checkpoint folder (created if missing); one sub-folder per saved step.
      keep: how many of the latest checkpoints to keep.
    """

    def __init__(self, directory: str | Path, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep!r}")
        import orbax.checkpoint as ocp  # the "train" extra; only checkpointing needs it

        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        return self._manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        """Writes ``state`` as the checkpoint of ``step`` and waits until it is on disk."""
        import orbax.checkpoint as ocp

        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()

    def restore(self, like: Any, step: int | None = None) -> Any:
        """Reads the checkpoint of ``step`` (default: the latest) into the structure, shapes,
        dtypes and shardings of ``like`` (arrays or ``jax.ShapeDtypeStruct``s)."""
        import orbax.checkpoint as ocp

        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=getattr(a, "sharding", None)),
            like,
        )
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"the checkpoint of step {step} in {self.directory} does not match this model "
                f"and optimiser (was it written by another configuration?): {e}"
            ) from e

    def close(self) -> None:
        self._manager.close()
