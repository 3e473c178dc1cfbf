"""Which kernel runs a recurrence, and how it splits the batch: every such choice is made here.

:func:`select_kernel` maps a layer's requested ``scan`` (one of :data:`METHODS`), the structure of
its recurrence, whether the state is complex, and the backend to one :class:`Kernel`, in one
``match``. :func:`batch_groups` and :func:`project_in_loop` are the matmul-cell scan's two
speed settings. The defaults were tuned on the machines described in ``benchmarks/speed-cpu*.md``,
where the measurements behind them are recorded; none of them changes a result beyond rounding.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Literal

import jax

from recurrent_zoo import _checks as checks

METHODS: tuple[str, ...] = ("auto", "sequential", "associative")
"""The values of a linear layer's ``scan`` field. "auto" picks one of the others per backend."""

Recurrence = Literal["diagonal", "block", "dense"]
RECURRENCES: tuple[str, ...] = ("diagonal", "block", "dense")
"""Shapes of linear recurrence ``h_t = A h_{t−1} + u_t``: "diagonal" (A a vector [N]), "block"
(A block-diagonal [H, d, d]) or "dense" (one block [1, N, N]: a full matrix)."""


class Kernel(enum.Enum):
    """The kernels a linear recurrence can run on (every one gives the same numbers).

    * ``SEQUENTIAL``: :func:`~recurrent_zoo.scan.linear_scan` with ``method="sequential"``, a
      :func:`jax.lax.scan` of :func:`~recurrent_zoo.scan.linear_step`: O(T) work, depth T.
    * ``ASSOCIATIVE``: :func:`~recurrent_zoo.scan.linear_scan` with ``method="associative"``,
      :func:`jax.lax.associative_scan`: depth log T, but every level composes coefficients (d×d
      matrix products for blocks).
    * ``COMPLEX_SPLIT``: :func:`~recurrent_zoo.scan.complex_diagonal_scan`, the sequential scan of
      a complex diagonal carried as ``[re | im]`` in real arithmetic, with its own JVP.
    * ``MATMUL_CELL``: :func:`~recurrent_zoo.scan.scan_matmul_cell`, the sequential scan of one
      dense block as a cell with one recurrent matmul (its gradient in one matmul over all steps).
    """

    SEQUENTIAL = "sequential"
    ASSOCIATIVE = "associative"
    COMPLEX_SPLIT = "complex_split"
    MATMUL_CELL = "matmul_cell"

    @property
    def method(self) -> str:
        """The entry of :data:`METHODS` this kernel implements: "associative" or "sequential"."""
        return "associative" if self is Kernel.ASSOCIATIVE else "sequential"


def select_kernel(
    scan: str = "auto",
    structure: Recurrence = "diagonal",
    *,
    complex_state: bool = False,
    backend: str | None = None,
) -> Kernel:
    """The kernel that runs a linear recurrence, for a layer's requested ``scan``.

    "associative" is always :attr:`Kernel.ASSOCIATIVE`. "sequential" is the fastest sequential
    kernel for the structure: :attr:`Kernel.COMPLEX_SPLIT` for a complex diagonal,
    :attr:`Kernel.MATMUL_CELL` for one dense block, :attr:`Kernel.SEQUENTIAL` otherwise. "auto"
    is associative for a diagonal recurrence off the CPU (GPU/TPU: its parallel depth wins there)
    and sequential otherwise: on the CPU the sequential scan's O(T) work without log-depth
    overhead wins, and for blocks every associative level multiplies d×d matrices.

    Args:
      scan: one of :data:`METHODS`.
      structure: one of :data:`RECURRENCES`.
      complex_state: the diagonal and the state are complex.
      backend: the JAX backend the kernel runs on (default: :func:`jax.default_backend`).

    Raises:
      ValueError: ``scan`` or ``structure`` is not one of the allowed values, or a complex state
        is asked for a structure other than "diagonal".
    """
    checks.choice(scan, METHODS, "scan")
    checks.choice(structure, RECURRENCES, "structure")
    if complex_state and structure != "diagonal":
        raise ValueError(f"complex_state needs structure 'diagonal', got {structure!r}")
    backend = backend or jax.default_backend()
    match scan, structure, complex_state, backend:
        case ("associative", _, _, _):
            return Kernel.ASSOCIATIVE
        case ("auto", "diagonal", _, b) if b != "cpu":
            return Kernel.ASSOCIATIVE
        case (_, "diagonal", True, _):
            return Kernel.COMPLEX_SPLIT
        case (_, "dense", _, _):
            return Kernel.MATMUL_CELL
        case _:
            return Kernel.SEQUENTIAL


def resolve_method(method: str, structure: Recurrence = "diagonal") -> str:
    """The entry of :data:`METHODS` that ``method`` ("auto" included) runs on the default backend.

    ``select_kernel(method, structure).method``: "sequential" or "associative".
    """
    return select_kernel(method, structure).method


# -- batch groups of the matmul-cell scan ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BatchGroupsRule:
    """The default number of batch-row groups of :func:`~recurrent_zoo.scan.scan_matmul_cell`.

    ``groups`` groups of rows on the backends in ``backends`` from ``min_rows`` rows up, one group
    otherwise. Groups are independent: each has its own matmul and cell per step, and XLA's CPU
    runtime runs independent operations concurrently, keeping several cores busy through a step's
    small operations. The shipped rule, :data:`DEFAULT_BATCH_GROUPS`, was tuned on a 2-core CPU
    (measurements in ``benchmarks/speed-cpu.md``); a machine with more cores may prefer another
    one. Change it process-wide with :func:`set_batch_groups_rule`, or per layer with the
    matmul-cell layers' ``batch_groups`` field (per call: the ``groups`` argument).
    """

    groups: int = 2
    min_rows: int = 16
    backends: tuple[str, ...] = ("cpu",)

    def __post_init__(self) -> None:
        checks.positive_int(self.groups, "groups")
        checks.positive_int(self.min_rows, "min_rows")

    def __call__(self, batch: int, backend: str | None = None) -> int:
        """How many groups ``batch`` rows run in on ``backend`` (default: the default backend)."""
        backend = backend or jax.default_backend()
        return self.groups if batch >= self.min_rows and backend in self.backends else 1


DEFAULT_BATCH_GROUPS = BatchGroupsRule()
"""The shipped rule: two groups on the CPU from 16 rows up."""

_batch_groups_rule = DEFAULT_BATCH_GROUPS


def set_batch_groups_rule(rule: BatchGroupsRule | None) -> BatchGroupsRule:
    """Makes ``rule`` the process-wide default of ``groups=None`` (None: back to the shipped one).

    Returns the rule it replaces, so a caller can restore it. The rule is read when a function is
    traced: a jitted function already compiled keeps the grouping it was traced with.
    """
    global _batch_groups_rule
    if rule is not None and not isinstance(rule, BatchGroupsRule):
        raise TypeError(f"rule must be a BatchGroupsRule or None, got {type(rule).__name__}")
    previous, _batch_groups_rule = _batch_groups_rule, rule or DEFAULT_BATCH_GROUPS
    return previous


def batch_groups(batch: int, groups: int | None = None) -> tuple[int, ...]:
    """Row counts of the batch groups that :func:`~recurrent_zoo.scan.scan_matmul_cell` runs side
    by side: ``groups`` as even as possible (at most one per row), or, with ``groups=None``, as
    many as the current :class:`BatchGroupsRule` says."""
    checks.optional_positive_int(groups, "groups")
    if groups is None:
        groups = _batch_groups_rule(batch)
    s = min(groups, max(batch, 1))
    q, r = divmod(batch, s)
    return tuple(q + (i < r) for i in range(s))


def project_in_loop(width: int, state_size: int, backend: str | None = None) -> bool:
    """Whether :func:`~recurrent_zoo.scan.scan_matmul_cell`'s forward pass without derivatives
    projects its inputs step by step inside the loop rather than for all steps at once.

    On the CPU, for a projection wider than the state (the GRU's 3N, the LSTM's 4N): the one big
    matmul over all steps, split over the cores, is what suffers most when they are shared, and
    done per step it runs alongside the recurrence. A projection as wide as the state (the Elman
    RNNs) stays one matmul, which is faster for it. Elsewhere, one matmul.
    """
    backend = backend or jax.default_backend()
    return backend == "cpu" and width > state_size
