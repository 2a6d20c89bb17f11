# Typed entry points for the recurrent layers: GRU and LSTM, included into _ops.pyx (one compiled module).
