"""``eksft.train``: ``EKSFTConfig`` / ``EKSFTTrainer`` on TRL's SFT stack, and ``train(config)`` behind
``eksft train``. Files: config (fields), trainer (the step), step_log (metric sums, masked targets), reference
(loading it), psft, sed, divergence, interval (resume mid-interval), sft_data (dataset preparation), run (the job).
What SFT shares with ``eksft rl`` (the policy from a config, the output folder, metrics.jsonl, the command's job
frame) is eksft.jobs. Usage: docs/training.md.
"""

from .config import EKSFTConfig
from .run import build_trainer, train
from .trainer import EKSFTTrainer, TrainingDiverged

__all__ = ["EKSFTConfig", "EKSFTTrainer", "TrainingDiverged", "build_trainer", "train"]
