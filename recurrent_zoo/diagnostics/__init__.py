"""Diagnostics of trainability (``rz.diagnostics``).

* Signal propagation at initialisation (:mod:`.signal_propagation`): mean squared activity of
  chosen submodules (:func:`activity`) and mean squared gradient per parameter group
  (:func:`gradient_by_group`).
* Adam's effective learning rates per parameter group (:mod:`.adam`).
* Parameter groups shared by both (:mod:`.groups`).
"""

from recurrent_zoo.diagnostics.adam import adam_effective_learning_rates, group_summary
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
    "gradient_by_group",
    "group_leaves",
    "group_mean_square",
    "group_summary",
    "mean_square",
    "name_groups",
    "path_name",
]
