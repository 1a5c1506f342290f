"""``eksft.train``: ``EKSFTConfig`` / ``EKSFTTrainer`` on TRL's SFT stack, and ``train(config)`` behind
``eksft train``. Files: config (fields), trainer (the step), loss_seam (config -> loss call), reference, psft, sed,
global_scope, metrics, models (policy and tokenizer from a config; loading is eksft.models.loading), run (the job).
Usage: docs/training.md.
"""

from .config import EKSFTConfig
from .run import build_trainer, train
from .trainer import EKSFTTrainer, TrainingDiverged

__all__ = ["EKSFTConfig", "EKSFTTrainer", "TrainingDiverged", "build_trainer", "train"]
