"""Scans: the one place where recurrences are run over time.

Layout. Every function here that takes or returns an array with a time axis is **time-major**:
time is axis 0. Per-step inputs and outputs are ``[T, B, ...]``, flags (``resets``, ``mask``)
are ``[T, B]``, states are ``[B, ...]``. :func:`jax.lax.scan` loops over the leading axis, and
inputs projected time-major come out of one 2-D matmul in the order the loop reads them, so the
kernels need no transposes of their own. The layers take batch-major ``x [*batch, T, D]`` and
transpose at their boundary; :func:`valid_mask` and :func:`reverse_time`, which they also use
there, take ``time_axis`` (default 0) so that they work on batch-major arrays in place.

Every layer reduces to one of two shapes of recurrence:

* a cell, ``h_t, y_t = cell(h_{t-1}, u_t)`` (any nonlinearity), run by :func:`scan_cell`, or by
  :func:`scan_matmul_cell` when its one recurrent matmul ``h_{t-1} @ W`` is to be differentiated
  with ∂W in one matmul over all steps (the Elman RNNs, the GRU, the LSTM);
* a linear recurrence, ``h_t = a ⊙ h_{t-1} + u_t`` with a diagonal ``a: [N]`` (real or complex),
  or ``h_t = A h_{t-1} + u_t`` with a block-diagonal ``A: [H, d, d]`` acting on
  ``u: [T, B, H, d]``, run by :func:`linear_scan` sequentially or with
  :func:`jax.lax.associative_scan`, or, for a complex diagonal sequentially, by
  :func:`complex_diagonal_scan` in real arithmetic.

Strategies. A linear layer's ``scan`` field is one of :data:`METHODS`; :func:`select_kernel`
maps it, with the recurrence's structure, whether the state is complex and the backend, to one
:class:`Kernel`. Every kernel gives the same numbers up to rounding. The matmul-cell scan's speed
settings, the batch groups (:func:`batch_groups`, a default rule that :func:`set_batch_groups_rule`
replaces and the ``groups`` argument overrides) and whether the forward pass projects inputs
inside the loop (:func:`project_in_loop`), are chosen in the same module,
:mod:`recurrent_zoo.scan.strategy`.

Resets, padding and reverse are handled the same way by every kernel: a reset (``resets[t, b]``)
zeroes the state before ``u_t`` is read; a padded step (``mask[t, b]`` False, right padding from
:func:`valid_mask`) holds the state and ignores its input, even where a reset falls there; and
``reverse``, per sequence under padding, is a permutation of time (:func:`time_permutation`,
:func:`reverse_time`) applied before and after a forward scan.

Long sequences, for every kernel: :func:`remat_chunks` runs a scan in chunks whose steps the
backward pass recomputes (memory of the residuals O(T/k + k) instead of O(T)), and
:func:`sequence_parallel` shards a linear recurrence's time axis over a mesh axis inside
:func:`jax.shard_map`, exactly (each device's carry-in from an exclusive scan of the chunks'
transfers and end states).

Modules: :mod:`~recurrent_zoo.scan.time` (the time bookkeeping), :mod:`~recurrent_zoo.scan.cell`,
:mod:`~recurrent_zoo.scan.matmul_cell`, :mod:`~recurrent_zoo.scan.linear`,
:mod:`~recurrent_zoo.scan.complex_diagonal` (the kernels), :mod:`~recurrent_zoo.scan.strategy`
(the choices), :mod:`~recurrent_zoo.scan.remat` and :mod:`~recurrent_zoo.scan.sequence_parallel`
(long sequences).
"""

from recurrent_zoo.scan.cell import scan_cell
from recurrent_zoo.scan.complex_diagonal import complex_diagonal_scan
from recurrent_zoo.scan.linear import Structure, linear_scan, linear_step
from recurrent_zoo.scan.matmul_cell import (
    matmul,
    pre_activation,
    scan_matmul_cell,
)
from recurrent_zoo.scan.remat import remat_chunks
from recurrent_zoo.scan.sequence_parallel import (
    bound_axis_size,
    carry_in,
    chunk_transfer,
    sequence_parallel,
    shift_resets_back,
    time_chunk,
)
from recurrent_zoo.scan.strategy import (
    DEFAULT_BATCH_GROUPS,
    METHODS,
    RECURRENCES,
    BatchGroupsRule,
    Kernel,
    Recurrence,
    batch_groups,
    project_in_loop,
    resolve_method,
    select_kernel,
    set_batch_groups_rule,
)
from recurrent_zoo.scan.time import reverse_time, time_permutation, valid_mask

__all__ = [
    "DEFAULT_BATCH_GROUPS",
    "METHODS",
    "RECURRENCES",
    "BatchGroupsRule",
    "Kernel",
    "Recurrence",
    "Structure",
    "batch_groups",
    "bound_axis_size",
    "carry_in",
    "chunk_transfer",
    "complex_diagonal_scan",
    "linear_scan",
    "linear_step",
    "matmul",
    "pre_activation",
    "project_in_loop",
    "remat_chunks",
    "resolve_method",
    "reverse_time",
    "scan_cell",
    "scan_matmul_cell",
    "select_kernel",
    "sequence_parallel",
    "set_batch_groups_rule",
    "shift_resets_back",
    "time_chunk",
    "time_permutation",
    "valid_mask",
]
