"""``eksft demo``: base vs SFT vs EKSFT on a real pretrained model on a laptop CPU, with a report."""

from .config import DemoConfig
from .run import run_demo

__all__ = ["DemoConfig", "run_demo"]
