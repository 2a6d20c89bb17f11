/* Declarations for attention: MultiheadAttention and the transformer block (fnn_attn.h); included by fnn_decl.h once per dtype. */
