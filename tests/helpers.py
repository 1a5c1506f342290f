"""Small test helpers shared across test folders (fixtures live in tests/conftest.py)."""

from __future__ import annotations

from transformers import TrainerCallback


class StopAt(TrainerCallback):
    """Stops training after ``step`` optimiser steps: an interrupted run, for resume tests."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


#: The training arguments every tiny CPU test run shares: a metrics line per step, no checkpoints, no reporters, no
#: progress bar, no activation checkpointing, no pinned memory.
QUIET_RUN = dict(
    logging_steps=1,
    save_strategy="no",
    report_to=[],
    gradient_checkpointing=False,
    disable_tqdm=True,
    dataloader_pin_memory=False,
)
