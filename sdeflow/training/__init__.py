"""Training: the Trainer loop, EMA, atomic safetensors checkpoints, rebuilding models from
checkpoints, and data-parallel training on torch.distributed."""

from ..utils.sharding import ShardedGenerator
from .checkpoint import Checkpoint, CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from .data import BatchSource
from .distributed import DistributedContext, init_distributed, shutdown_distributed
from .ema import EMA
from .model_spec import ModelSpec, load_score_model
from .trainer import TrainConfig, Trainer, TrainResult

__all__ = ["Checkpoint", "CheckpointError", "DistributedContext", "EMA", "BatchSource", "ModelSpec", "TrainConfig",
           "TrainResult", "Trainer", "init_distributed", "list_checkpoints", "load_checkpoint", "load_score_model",
           "save_checkpoint", "shutdown_distributed", "ShardedGenerator"]
