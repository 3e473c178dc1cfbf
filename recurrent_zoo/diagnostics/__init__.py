"""Diagnostics of trainability (``rz.diagnostics``).

* Signal propagation at initialisation (:mod:`.signal_propagation`): mean squared activity of
  chosen submodules (:func:`activity`) and mean squared gradient per parameter group
  (:func:`gradient_by_group`).
* Adam's effective learning rates per parameter group (:mod:`.adam`).
* Parameter groups shared by both (:mod:`.groups`).
* The uncentred autocorrelation C(Δ) of embedding sequences and its exponential fits
  (:mod:`.autocorrelation`): how correlated real inputs are over time.
"""

from recurrent_zoo.diagnostics.adam import adam_effective_learning_rates, group_summary
from recurrent_zoo.diagnostics.autocorrelation import (
    embedding_autocorrelation,
    fit_autocorrelation,
    lag_sums,
    pair_counts,
)
from recurrent_zoo.diagnostics.groups import group_leaves, name_groups, path_name
from recurrent_zoo.diagnostics.signal_propagation import (
    activity,
    gradient_by_group,
    group_mean_square,
    mean_square,
)

__all__ = [
    "activity",
    "adam_effective_learning_rates",
    "embedding_autocorrelation",
    "fit_autocorrelation",
    "gradient_by_group",
    "group_leaves",
    "group_mean_square",
    "group_summary",
    "lag_sums",
    "mean_square",
    "name_groups",
    "pair_counts",
    "path_name",
]
