"""The RL stage after SFT: DAPO on TRL's ``GRPOTrainer`` (``eksft rl``; docs/rl.md)."""

from .config import RLConfig
from .rewards import MathAccuracyReward, reward_functions
from .run import build_rl_trainer, train_rl
from .trainer import DAPOTrainer

__all__ = ["RLConfig", "DAPOTrainer", "MathAccuracyReward", "build_rl_trainer", "reward_functions", "train_rl"]
