"""``eksft pipeline``: SFT -> evaluation -> DAPO -> evaluation for several methods, one report (docs/rl.md)."""

from .config import PipelineConfig, load_pipeline_config, pipeline_config_from
from .run import run_pipeline

__all__ = ["PipelineConfig", "load_pipeline_config", "pipeline_config_from", "run_pipeline"]
