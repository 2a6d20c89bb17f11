"""fastnn: neural networks for multicore CPUs, with a compiled Cython/C/OpenMP
core under a PyTorch-shaped API."""
__version__ = "0.1.0"

from ._threading import get_num_threads, set_num_threads
from ._random import seed
from .parameter import Parameter
from .module import Module, Sequential
from .layers import Dropout, Embedding, Flatten, LayerNorm, Linear
from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .optim import SGD, Adagrad, Adam, AdamW, NAdam, Optimizer, RMSprop, clip_grad_norm
from .schedulers import CosineAnnealingLR, LinearLR, LinearWarmup, LRScheduler, StepLR
from .callbacks import Callback, EarlyStopping, History, ModelCheckpoint
from .trainer import DivergenceError, DivergenceWarning, Trainer
from .distributed import DistributedTrainer  # mpi4py is imported only when one is built
from .perceptron import ConvergenceWarning, Perceptron
from .io import load, save
from .onnx_export import export_onnx  # onnx itself is imported on the first export
from .text import perplexity
from . import datasets, text
from ._info import info

__all__ = [
    "__version__", "info", "seed", "set_num_threads", "get_num_threads",
    "Parameter", "Module", "Sequential",
    "Linear", "Dropout", "LayerNorm", "Embedding", "Flatten",
    "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax",
    "MSELoss", "CrossEntropyLoss", "BCELoss", "BCEWithLogitsLoss",
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "NAdam", "clip_grad_norm",
    "LRScheduler", "StepLR", "LinearLR", "CosineAnnealingLR", "LinearWarmup",
    "Callback", "History", "EarlyStopping", "ModelCheckpoint",
    "Trainer", "DivergenceError", "DivergenceWarning", "DistributedTrainer", "Perceptron", "ConvergenceWarning",
    "save", "load", "perplexity", "datasets", "text",
    "export_onnx",
]
