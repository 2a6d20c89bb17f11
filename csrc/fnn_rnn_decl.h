/* Declarations for the recurrent layers: GRU and LSTM (fnn_rnn.h); included by fnn_decl.h once per dtype. */
