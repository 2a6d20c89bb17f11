# Declarations of the C kernels for attention: MultiheadAttention and the transformer block (csrc/fnn_attn_decl.h).
from libc.stdint cimport int64_t, uint64_t

cdef extern from "fnn.h" nogil:
    pass
