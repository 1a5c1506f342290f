"""``eksft.train``: ``EKSFTConfig`` / ``EKSFTTrainer`` on TRL's SFT stack, and ``train(config)`` behind
``eksft train``. Files: config (fields), trainer (the step), loss_seam (config -> loss call), reference, psft, sed,
global_scope, mask_tracker, run (the job). What SFT shares with ``eksft rl`` (the policy from a config, the output
folder, metrics.jsonl, the command's job frame) is eksft.jobs. Usage: docs/training.md.
"""

from .config import EKSFTConfig
from .run import build_trainer, train
from .trainer import EKSFTTrainer, TrainingDiverged

__all__ = ["EKSFTConfig", "EKSFTTrainer", "TrainingDiverged", "build_trainer", "train"]
