"""The model floor: parameters in flat buffers, modules and the dense-stack
container, layers, activations and losses (PyTorch's names and semantics)."""
from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .attention import MultiheadAttention, PositionalEmbedding, Residual, TransformerBlock
from .recurrent import GRU, LSTM
from .sequence import Conv1d, EmbeddingBag
from .layers import Dropout, Embedding, Flatten, LayerNorm, Linear
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import Module
from .sequential import Sequential
from .parameter import Parameter

__all__ = ["Parameter", "Module", "Sequential", "Linear", "Dropout", "LayerNorm", "Embedding",
           "Flatten", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "MSELoss",
           "CrossEntropyLoss", "BCELoss", "BCEWithLogitsLoss", "MultiheadAttention",
           "TransformerBlock", "PositionalEmbedding", "Residual", "GRU", "LSTM", "Conv1d",
           "EmbeddingBag"]
