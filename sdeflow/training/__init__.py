"""Training: the Trainer loop, EMA, and atomic safetensors checkpoints."""

from .checkpoint import Checkpoint, CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from .data import BatchSource
from .ema import EMA
from .trainer import TrainConfig, Trainer, TrainResult

__all__ = ["Checkpoint", "CheckpointError", "EMA", "BatchSource", "TrainConfig", "TrainResult", "Trainer",
           "list_checkpoints", "load_checkpoint", "save_checkpoint"]
