"""``eksft.train``: ``EKSFTConfig`` / ``EKSFTTrainer`` on TRL's SFT stack, and ``train(config)`` behind
``eksft train``. Files: config (fields), trainer (the step), step_log (metric sums, masked targets), reference
(loading it), psft, sed, divergence, interval (resume mid-interval), sft_data (dataset preparation), metrics
(metrics.jsonl), models (policy and tokenizer from a config; loading is eksft.models.loading), run (the job).
Usage: docs/training.md.
"""

from .config import EKSFTConfig
from .run import build_trainer, train
from .trainer import EKSFTTrainer, TrainingDiverged

__all__ = ["EKSFTConfig", "EKSFTTrainer", "TrainingDiverged", "build_trainer", "train"]
