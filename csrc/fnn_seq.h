/* Kernel bodies for EmbeddingBag, Conv1d and the (batch, time, ...) sequence losses, templated on T/S like
 * fnn_template.h, which includes this file once per dtype. */
