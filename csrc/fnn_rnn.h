/* Kernel bodies for the recurrent layers: GRU and LSTM, templated on T/S like
 * fnn_template.h, which includes this file once per dtype. */
