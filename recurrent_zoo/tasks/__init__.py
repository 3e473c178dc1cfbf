"""Tasks: their data, their losses, and the registry that ``recurrent-zoo train TASK`` runs.

* :mod:`.registry`: :class:`Task`, :class:`TaskSpec`, :data:`TASKS`, :func:`register` and
  :func:`supervised` (a spec from a sampler of (x, y) pairs and a loss), for a task of your own;
* :mod:`.teacher_student`: the paper's linear teacher of memory ν0 and its students
  (``teacher-student``);
* :mod:`.adding`: the adding problem (``adding``);
* :mod:`.language_model`: next-token prediction on Wikipedia (``language-model``).

Importing this package registers the three tasks.
"""

from recurrent_zoo.tasks import adding, language_model, teacher_student
from recurrent_zoo.tasks.registry import TASKS, Task, TaskSpec, register, supervised

__all__ = [
    "TASKS",
    "Task",
    "TaskSpec",
    "adding",
    "language_model",
    "register",
    "supervised",
    "teacher_student",
]
