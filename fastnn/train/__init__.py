"""The training floor: the Trainer's one step pipeline and one fit loop,
callbacks, progress and logs, and checkpoints (save/load)."""
from .callbacks import Callback, EarlyStopping, History, ModelCheckpoint
from .checkpoint import load, save
from .trainer import DivergenceError, DivergenceWarning, Trainer

__all__ = ["Trainer", "DivergenceError", "DivergenceWarning", "Callback", "History",
           "EarlyStopping", "ModelCheckpoint", "save", "load"]
