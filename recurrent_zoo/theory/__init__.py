"""The one-dimensional theory of the curse of memory (Zucchet & Orvieto 2024).

* :mod:`~recurrent_zoo.theory.closed_form`: second moments of h and ∂h/∂λ against λ and ρ, the
  parameter sensitivity under each parametrisation, and the 1-D teacher–student loss;
* :mod:`~recurrent_zoo.theory.simulation`: the same quantities by Monte Carlo through the library's
  own layer, and the AR(1) inputs they use.

Both are re-exported here: ``rz.theory.state_second_moment``, ``rz.theory.simulate_moments``, …
"""

from recurrent_zoo.theory.closed_form import (
    parameter_sensitivity,
    parametrized_loss,
    sensitivity_second_moment,
    state_second_moment,
    teacher_student_loss,
)
from recurrent_zoo.theory.simulation import ar1_inputs, simulate_loss, simulate_moments

__all__ = [
    "ar1_inputs",
    "parameter_sensitivity",
    "parametrized_loss",
    "sensitivity_second_moment",
    "simulate_loss",
    "simulate_moments",
    "state_second_moment",
    "teacher_student_loss",
]
