/* Kernel bodies for attention: MultiheadAttention and the transformer block, templated on T/S like
 * fnn_template.h, which includes this file once per dtype. */
