"""Optimizers (each owning its compiled update) and learning-rate schedules,
with torch.optim's names, defaults and update rules."""
from .optimizers import SGD, Adagrad, Adam, AdamW, NAdam, Optimizer, RMSprop, clip_grad_norm
from .schedulers import CosineAnnealingLR, LinearLR, LinearWarmup, LRScheduler, StepLR

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "NAdam", "clip_grad_norm",
           "LRScheduler", "StepLR", "LinearLR", "CosineAnnealingLR", "LinearWarmup"]
