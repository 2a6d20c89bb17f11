# Declarations of the C kernels for the recurrent layers: GRU and LSTM (csrc/fnn_rnn_decl.h).
from libc.stdint cimport int64_t, uint64_t

cdef extern from "fnn.h" nogil:
    pass
