"""Diagnostics of trainability: Adam's effective learning rates per parameter group."""

from recurrent_zoo.diagnostics.adam import adam_effective_learning_rates, group_summary

__all__ = ["adam_effective_learning_rates", "group_summary"]
