# Typed entry points for EmbeddingBag, Conv1d and the (batch, time, ...) sequence losses, included into _ops.pyx (one compiled module).
