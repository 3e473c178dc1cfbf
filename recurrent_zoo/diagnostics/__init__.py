"""Diagnostics of trainability (``rz.diagnostics``).

* Signal propagation at initialisation (:mod:`.signal_propagation`): mean squared activity of
  chosen submodules (:func:`activity`) and mean squared gradient per parameter group
  (:func:`gradient_by_group`).
* Adam's effective learning rates per parameter group (:mod:`.adam`).
"""

from recurrent_zoo.diagnostics.adam import adam_effective_learning_rates, group_summary
from recurrent_zoo.diagnostics.signal_propagation import (
    activity,
    gradient_by_group,
    group_mean_square,
    mean_square,
    name_groups,
    path_name,
)

__all__ = [
    "activity",
    "adam_effective_learning_rates",
    "gradient_by_group",
    "group_mean_square",
    "group_summary",
    "mean_square",
    "name_groups",
    "path_name",
]
