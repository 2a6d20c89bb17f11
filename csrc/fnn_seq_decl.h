/* Declarations for EmbeddingBag, Conv1d and the (batch, time, ...) sequence losses (fnn_seq.h); included by fnn_decl.h once per dtype. */
