# Typed entry points for attention: MultiheadAttention and the transformer block, included into _ops.pyx (one compiled module).
