# Declarations of the C kernels for EmbeddingBag, Conv1d and the (batch, time, ...) sequence losses (csrc/fnn_seq_decl.h).
from libc.stdint cimport int64_t, uint64_t

cdef extern from "fnn.h" nogil:
    pass
