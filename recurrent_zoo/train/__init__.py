"""Training: a jit-compiled, data- (and sequence-) parallel, checkpointed loop, and
``recurrent-zoo train`` (:mod:`.command`), which runs the tasks of :mod:`recurrent_zoo.tasks`."""

from recurrent_zoo.train.checkpoint import Checkpointer
from recurrent_zoo.train.loop import NonFiniteLossError, TrainResult, as_batch, train
from recurrent_zoo.train.metrics import MetricsLogger
from recurrent_zoo.train.sharding import (
    SEQUENCE_AXIS,
    batch_sharded,
    data_mesh,
    data_sequence_mesh,
    initialize_distributed,
    replicate,
    replicated,
    sequence_sharded,
    shard_batch,
)

__all__ = [
    "SEQUENCE_AXIS",
    "Checkpointer",
    "MetricsLogger",
    "NonFiniteLossError",
    "TrainResult",
    "as_batch",
    "batch_sharded",
    "data_mesh",
    "data_sequence_mesh",
    "initialize_distributed",
    "replicate",
    "replicated",
    "sequence_sharded",
    "shard_batch",
    "train",
]
