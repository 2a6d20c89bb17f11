"""fastnn: neural networks for multicore CPUs, with a compiled Cython/C/OpenMP
core under a PyTorch-shaped API."""
from ._version import __version__

from ._threading import get_num_threads, set_num_threads
from ._random import seed
from .nn import (GELU, GRU, LSTM, BCELoss, BCEWithLogitsLoss, Conv1d, CrossEntropyLoss, Dropout,
                 Embedding, EmbeddingBag, Flatten,
                 LayerNorm, LeakyReLU, Linear, Module, MSELoss, MultiheadAttention, Parameter,
                 PositionalEmbedding, ReLU, Residual, Sequential, Sigmoid, Softmax, Tanh,
                 TransformerBlock)
from .optim import (SGD, Adagrad, Adam, AdamW, CosineAnnealingLR, LinearLR, LinearWarmup,
                    LRScheduler, NAdam, Optimizer, RMSprop, StepLR, clip_grad_norm)
from .train import (Callback, DivergenceError, DivergenceWarning, EarlyStopping, History,
                    ModelCheckpoint, Trainer, load, save)
from .distributed import DistributedTrainer  # mpi4py is imported only when one is built
from .apps.perceptron import ConvergenceWarning, Perceptron
from .apps import text
from .apps.text import perplexity
from .onnx_export import export_onnx  # onnx itself is imported on the first export
from . import datasets
from ._info import info

__all__ = [
    "__version__", "info", "seed", "set_num_threads", "get_num_threads",
    "Parameter", "Module", "Sequential",
    "Linear", "Dropout", "LayerNorm", "Embedding", "Flatten",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax",
    "MSELoss", "CrossEntropyLoss", "BCELoss", "BCEWithLogitsLoss",
    "MultiheadAttention", "TransformerBlock", "PositionalEmbedding", "Residual",
    "GRU", "LSTM", "Conv1d", "EmbeddingBag",
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "NAdam", "clip_grad_norm",
    "LRScheduler", "StepLR", "LinearLR", "CosineAnnealingLR", "LinearWarmup",
    "Callback", "History", "EarlyStopping", "ModelCheckpoint",
    "Trainer", "DivergenceError", "DivergenceWarning", "DistributedTrainer", "Perceptron", "ConvergenceWarning",
    "save", "load", "perplexity", "datasets", "text",
    "export_onnx",
]
